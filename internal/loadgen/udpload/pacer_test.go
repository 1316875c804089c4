package udpload

import (
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
	}{{"timer", func(w *window, f, e int64) pacer { return newTimerPacer(w, f, e) }}, {"default", newPacer}}
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
	p := newPacer(&window{epoch: time.Now()}, 1, 1000)
	defer p.close()
	if _, timers := p.(*timerPacer); timers && runtime.GOOS == "linux" {
		t.Fatal("no timerfd pacer on Linux")
	}
}
