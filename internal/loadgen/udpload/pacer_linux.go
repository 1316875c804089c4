//go:build linux

package udpload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fdPacer ticks with a timerfd: the kernel's timer, exact to microseconds,
// read through Go's network poller, so a paced socket's sender parks
// between ticks like any other read and nothing spins. An even schedule
// arms it once (absolute first expiry, fixed interval), and a read returns
// how many expirations passed since the last one; a Poisson one arms it
// for each tick, at the tick's absolute time.
type fdPacer struct {
	f     *os.File
	fd    int // f's descriptor, for re-arming without f.Fd (which makes it blocking)
	win   *window
	epoch int64     // the window's epoch on CLOCK_MONOTONIC
	a     *arrivals // nil: an even schedule, armed once
	buf   [8]byte
}

// newPacer is a timerfd pacer, or the Go timer one where the kernel has no
// timerfd.
func newPacer(win *window, a *arrivals) pacer {
	p, err := newFDPacer(win, a)
	if err != nil {
		return newTimerPacer(win, a)
	}
	return p
}

func newFDPacer(win *window, a *arrivals) (*fdPacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	// Go's monotonic clock is CLOCK_MONOTONIC: the epoch's reading of it is
	// now's less the time since the epoch.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	p := &fdPacer{fd: fd, win: win, epoch: ts.Nano() - win.now()}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(p.epoch + a.next)}
	if a.rng == nil {
		spec.Interval = unix.NsecToTimespec(a.every)
	} else {
		p.a = a
	}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	p.f = os.NewFile(uintptr(fd), "timerfd")
	return p, nil
}

func (p *fdPacer) wait() (uint64, error) {
	for {
		n, err := p.f.Read(p.buf[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
				return 0, errPacerStopped
			}
			return 0, fmt.Errorf("timerfd: %w", err)
		}
		if n != 8 {
			return 0, fmt.Errorf("timerfd: read %d bytes", n)
		}
		if p.a == nil {
			return binary.NativeEndian.Uint64(p.buf[:]), nil
		}
		// A Poisson schedule: count the ticks due by now and arm the
		// timer for the next one.
		ticks := p.a.due(p.win.now())
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(p.epoch + p.a.next)}
		if err := unix.TimerfdSettime(p.fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
			return 0, fmt.Errorf("timerfd: %w", err)
		}
		if ticks > 0 {
			return ticks, nil
		}
	}
}

func (p *fdPacer) stop()  { _ = p.f.SetReadDeadline(time.Unix(1, 0)) }
func (p *fdPacer) close() { p.f.Close() }
