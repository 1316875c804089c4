package udpload

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestPacers: each pacer ticks on its schedule, counting the ticks a late
// caller missed, and stop ends a wait at once.
func TestPacers(t *testing.T) {
	type maker func(win *window, first, every int64) pacer
	pacers := []struct {
		name string
		make maker
	}{
		{"timer", func(w *window, f, e int64) pacer { return newTimerPacer(w, newArrivals(f, e, nil)) }},
		{"default", func(w *window, f, e int64) pacer { return newPacer(w, newArrivals(f, e, nil)) }},
	}
	for _, tc := range pacers {
		t.Run(tc.name, func(t *testing.T) {
			win := &window{epoch: time.Now()}
			const every = int64(2 * time.Millisecond)
			first := win.now() + int64(5*time.Millisecond)
			p := tc.make(win, first, every)
			defer p.close()
			var total uint64
			for total < 100 {
				n, err := p.wait()
				if err != nil {
					t.Fatal(err)
				}
				now := win.now()
				total += n
				// The tick just returned was due at first+(total-1)*every:
				// not before it, and, on an idle machine, soon after.
				due := first + int64(total-1)*every
				if now < due {
					t.Fatalf("tick %d at %v, due at %v", total, time.Duration(now), time.Duration(due))
				}
				if total == 50 {
					time.Sleep(10 * time.Millisecond) // miss about 5 ticks
				}
			}
			// 100 ticks take 5 ms + 99 intervals; the late caller got the
			// missed ones at once.
			if el := time.Duration(win.now() - first); el < 99*time.Duration(every) || el > 99*time.Duration(every)+50*time.Millisecond {
				t.Fatalf("100 ticks of %v took %v", time.Duration(every), el)
			}
			done := make(chan error, 1)
			go func() {
				for {
					if _, err := p.wait(); err != nil {
						done <- err
						return
					}
				}
			}()
			time.Sleep(5 * time.Millisecond)
			p.stop()
			select {
			case err := <-done:
				if err != errPacerStopped {
					t.Fatalf("wait after stop: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("stop did not end the wait")
			}
			if _, err := p.wait(); err != errPacerStopped {
				t.Fatalf("wait after stop: %v", err)
			}
		})
	}
	p := newPacer(&window{epoch: time.Now()}, newArrivals(1, 1000, nil))
	defer p.close()
	if _, timers := p.(*timerPacer); timers && runtime.GOOS == "linux" {
		t.Fatal("no timerfd pacer on Linux")
	}
}

// TestPoissonPacers: with a random source, each pacer ticks at the times
// of a Poisson process: about the schedule's rate, with gaps as uneven as
// an exponential distribution's (standard deviation near the mean), never
// before a tick is due, and a late caller gets the missed ticks at once.
func TestPoissonPacers(t *testing.T) {
	const every = int64(time.Millisecond)
	for _, tc := range []struct {
		name string
		make func(*window, *arrivals) pacer
	}{
		{"timer", func(w *window, a *arrivals) pacer { return newTimerPacer(w, a) }},
		{"default", newPacer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			win := &window{epoch: time.Now()}
			first := win.now() + int64(time.Millisecond)
			// The same seed as the pacer's: the ticks it must return.
			want := newArrivals(first, every, rand.New(rand.NewPCG(7, 7)))
			p := tc.make(win, newArrivals(first, every, rand.New(rand.NewPCG(7, 7))))
			defer p.close()
			var total, due uint64 // ticks returned, and due by the schedule
			late := false
			for total < 400 {
				n, err := p.wait()
				if err != nil {
					t.Fatal(err)
				}
				due += want.due(win.now())
				total += n
				if total > due {
					t.Fatalf("%d ticks returned, only %d due", total, due)
				}
				if late && n < 5 {
					t.Fatalf("%d ticks after 20 ms late, want the missed ones at once", n)
				}
				late = false
				if total >= 200 && due < 300 && !late && total-n < 200 {
					time.Sleep(20 * time.Millisecond) // about 20 ticks due at once
					late = true
				}
			}
			el := time.Duration(win.now() - first)
			if el < 300*time.Millisecond || el > 550*time.Millisecond {
				t.Fatalf("400 ticks of mean gap %v took %v", time.Duration(every), el)
			}
		})
	}
	// The schedule itself: the mean and spread of its gaps.
	a := newArrivals(0, every, rand.New(rand.NewPCG(1, 2)))
	var sum, sq float64
	prev := a.next
	const n = 20000
	for i := 0; i < n; i++ {
		a.due(a.next)
		g := float64(a.next - prev)
		prev = a.next
		sum += g
		sq += g * g
	}
	mean := sum / n
	sd := math.Sqrt(sq/n - mean*mean)
	if math.Abs(mean/float64(every)-1) > 0.05 || math.Abs(sd/mean-1) > 0.1 {
		t.Fatalf("gaps: mean %.0f ns, sd %.0f ns; want a mean of %d ns and an sd near the mean", mean, sd, every)
	}
}
