package httptracker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// acceptRetry keeps a listener accepting through errors that pass: out of
// file descriptors (EMFILE, ENFILE), of buffers or memory, or a connection
// aborted before it was accepted. fasthttp's Serve returns on any accept
// error but a timeout, and the daemon stops every service when one
// listener fails, so a client that opened enough connections stopped the
// whole tracker, UDP and API included, and lost its swarms. As net/http
// does, it waits (5 ms, doubling to 1 s) and tries again, warning at most
// once a second.
type acceptRetry struct {
	net.Listener
	log       *slog.Logger
	limit     logLimit
	done      chan struct{}
	closeOnce sync.Once
}

func newAcceptRetry(ln net.Listener, log *slog.Logger) *acceptRetry {
	return &acceptRetry{Listener: ln, log: log, limit: logLimit{every: time.Second}, done: make(chan struct{})}
}

func (l *acceptRetry) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !passingAcceptError(err) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		if suppressed, ok := l.limit.allow(time.Now()); ok {
			l.log.Warn("HTTP tracker cannot accept connections, retrying; if it lasts, raise the open-file limit (LimitNOFILE, ulimit -n)",
				"address", l.Addr().String(), "error", err.Error(), "retry_in", delay.String(), "suppressed", suppressed)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

func (l *acceptRetry) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// passingAcceptError reports whether an accept error says nothing about
// the listener itself, so accepting may succeed again later.
func passingAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
