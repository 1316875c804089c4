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
// armed once for the whole schedule (absolute first expiry, fixed
// interval), and read through Go's network poller, so a paced socket's
// sender parks between ticks like any other read and nothing spins. A read
// returns how many expirations passed since the last one.
type fdPacer struct {
	f   *os.File
	buf [8]byte
}

// newPacer is a timerfd pacer, or the Go timer one where the kernel has no
// timerfd.
func newPacer(win *window, first, every int64) pacer {
	p, err := newFDPacer(win, first, every)
	if err != nil {
		return newTimerPacer(win, first, every)
	}
	return p
}

func newFDPacer(win *window, first, every int64) (*fdPacer, error) {
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
	epoch := ts.Nano() - win.now()
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(epoch + first), Interval: unix.NsecToTimespec(every)}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &fdPacer{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (p *fdPacer) wait() (uint64, error) {
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
	return binary.NativeEndian.Uint64(p.buf[:]), nil
}

func (p *fdPacer) stop()  { _ = p.f.SetReadDeadline(time.Unix(1, 0)) }
func (p *fdPacer) close() { p.f.Close() }
