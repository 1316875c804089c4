package httptracker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first accepts with errs, then accepts from ln.
type failingListener struct {
	net.Listener
	errs []error
}

func (f *failingListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

func TestAcceptRetry(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	var logged lockedBuffer
	ln := newAcceptRetry(&failingListener{Listener: inner, errs: []error{emfile, emfile, emfile}}, slog.New(slog.NewTextHandler(&logged, nil)))
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp4", inner.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after three EMFILEs: %v", err)
	}
	c.Close()
	if n := strings.Count(logged.String(), "cannot accept connections"); n != 1 {
		t.Errorf("%d warnings for three failures within a second, want 1:\n%s", n, logged.String())
	}

	// Other errors end Accept, as before.
	other := &failingListener{Listener: inner, errs: []error{errors.New("listener broken")}}
	if _, err := newAcceptRetry(other, slog.New(slog.DiscardHandler)).Accept(); err == nil || err.Error() != "listener broken" {
		t.Fatalf("Accept = %v, want the listener's error", err)
	}

	// Close ends a wait between retries at once.
	stuck := &failingListener{Listener: inner, errs: make([]error, 100)}
	for i := range stuck.errs {
		stuck.errs[i] = fmt.Errorf("accept: %w", syscall.ENFILE)
	}
	sl := newAcceptRetry(stuck, slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { _, err := sl.Accept(); done <- err }()
	time.Sleep(200 * time.Millisecond)
	sl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}
