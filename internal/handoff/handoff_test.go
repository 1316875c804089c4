package handoff

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs the new process's side when the test binary is started by
// Start (a process of itself, as an upgrade starts one).
func TestMain(m *testing.M) {
	if os.Getenv(EnvFD) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child takes the inherited TCP listener, says prepared, reads the swarms
// it is handed, says ready, and answers one connection with what it read.
// The manifest's secret changes its part: "fail" gives up at once, "none"
// takes no swarms, "legacy" speaks as a release before the swarms pipe
// (and answers with the file's name), "nolate" as a release with the
// swarms pipe but before the late pipe, "die" exits after the swarms'
// first byte. A process that takes the late pipe reads it to its end after
// saying ready, and answers with it too.
func child() int {
	c, err := Inherited()
	if err != nil {
		return 3
	}
	if string(c.Secret("tcp")) == "fail" {
		c.Fail(errors.New("asked to fail"))
		return 4
	}
	ln, err := c.TCP("tcp", c.Manifest.Listeners[0].Addr)
	if err != nil || ln == nil {
		c.Fail(errors.New("no listener"))
		return 5
	}
	c.CloseUnused()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got string
	switch string(c.Secret("tcp")) {
	case "legacy":
		if c.enc.Encode(message{State: "prepared", PID: os.Getpid()}) != nil {
			return 6
		}
		m, err := readMessage(c.rd)
		if err != nil || !m.Go || m.Stream {
			return 6
		}
		got = "file " + m.Snapshot
	case "nolate":
		if c.enc.Encode(message{State: "prepared", PID: os.Getpid(), Swarms: "pipe"}) != nil {
			return 6
		}
		m, err := readMessage(c.rd)
		if err != nil || !m.Go || !m.Stream || c.swarms == nil {
			return 6
		}
		b, err := io.ReadAll(c.swarms)
		if err != nil {
			return 6
		}
		got = "swarms " + string(b)
	default:
		in, err := c.Prepared(ctx, string(c.Secret("tcp")) != "none")
		if err != nil {
			return 6
		}
		if in != nil {
			if string(c.Secret("tcp")) == "die" {
				in.Read(make([]byte, 1))
				os.Exit(9)
			}
			b, err := io.ReadAll(in)
			if err != nil {
				return 6
			}
			in.Close()
			got = "swarms " + string(b)
		}
	}
	late := c.Late()
	if err := c.Ready(); err != nil {
		return 7
	}
	if late != nil {
		b, err := io.ReadAll(late)
		if err != nil {
			return 10
		}
		got += " late " + string(b)
	}
	conn, err := ln.Accept()
	if err != nil {
		return 8
	}
	conn.Write([]byte("child " + got + "\n"))
	conn.Close()
	return 0
}

func startChild(t *testing.T, secret string) (*Parent, net.Listener) {
	t.Helper()
	return startChildPipe(t, secret, true)
}

// startChildPipe is startChild, as a release before the swarms pipe when
// pipe is false.
func startChildPipe(t *testing.T, secret string, pipe bool) (*Parent, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := Manifest{
		Listeners: []Listener{{Name: "tcp", Network: "tcp", Addr: ln.Addr().String(), Files: []int{0}}},
		Secrets:   map[string][]byte{"tcp": []byte(secret)},
		OldPID:    os.Getpid(),
	}
	p, err := start(os.Args[0], []string{"-test.run=^$"}, os.Environ(), m, []*os.File{f}, pipe)
	if err != nil {
		t.Fatal(err)
	}
	return p, ln
}

// TestHandoff: the new process gets the listener, prepares, takes the
// swarms the way it said it would, and serves on the same socket once the
// old one stops accepting.
func TestHandoff(t *testing.T) {
	// More than the pipe holds, so the writer must wait for the reader.
	swarms := strings.Repeat("0123456789abcdef", 3*pipeSize/16)
	for _, tc := range []struct {
		secret string
		takes  Takes
		hand   func(context.Context, *Parent) error
		// late is written to the late pipe after the new process is
		// ready; "" when the new process does not read one.
		late string
		want string
	}{
		{"pipe", TakesPipe, func(ctx context.Context, p *Parent) error {
			return p.GoStream(ctx, func(w io.Writer) error {
				_, err := io.WriteString(w, swarms)
				return err
			})
		}, "announces", "child swarms " + swarms + " late announces"},
		{"nolate", TakesPipe, func(ctx context.Context, p *Parent) error {
			return p.GoStream(ctx, func(w io.Writer) error {
				_, err := io.WriteString(w, "small")
				return err
			})
		}, "", "child swarms small"},
		{"none", TakesNothing, func(_ context.Context, p *Parent) error { return p.Go("") }, "", "child "},
		{"legacy", TakesFile, func(_ context.Context, p *Parent) error { return p.Go("/tmp/swarms.snapshot") },
			"", "child file /tmp/swarms.snapshot"},
	} {
		t.Run(tc.secret, func(t *testing.T) {
			p, ln := startChild(t, tc.secret)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := p.WaitPrepared(ctx); err != nil {
				t.Fatal(err)
			}
			if p.Takes() != tc.takes {
				t.Fatalf("the new process takes the swarms as %d, want %d", p.Takes(), tc.takes)
			}
			if err := tc.hand(ctx, p); err != nil {
				t.Fatal(err)
			}
			if err := p.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			late := p.Late()
			if (late != nil) != (tc.late != "") {
				t.Fatalf("late pipe %v, want one: %v", late, tc.late != "")
			}
			if late != nil {
				if _, err := io.WriteString(late, tc.late); err != nil {
					t.Fatal(err)
				}
				late.Close()
			}
			addr := ln.Addr().String()
			ln.Close() // the old process's copy; the socket lives on in the new one
			p.Release()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || line != tc.want+"\n" {
				t.Fatalf("read %.80q (%d bytes), %v; want %.80q", line, len(line), err, tc.want)
			}
			if err := <-p.exit; err != nil {
				t.Fatalf("new process: %v", err)
			}
		})
	}
}

// TestHandoffFromOlderRelease: an old process of a release before the
// swarms pipe passes none and gives a file whatever the new process says;
// the new process loads the file.
func TestHandoffFromOlderRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "swarms.snapshot")
	if err := os.WriteFile(path, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, ln := startChildPipe(t, "pipe", false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitPrepared(ctx); err != nil {
		t.Fatal(err)
	}
	if p.Takes() != TakesFile {
		t.Fatalf("a new process given no pipe takes the swarms as %d, want a file", p.Takes())
	}
	if p.Late() != nil {
		t.Fatal("a late pipe without the swarms pipe")
	}
	if err := p.Go(path); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	p.Release()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "child swarms from a file\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

// TestHandoffStreamBroken: when the new process dies while the swarms are
// being written, the write fails at once instead of waiting on a pipe
// nobody reads.
func TestHandoffStreamBroken(t *testing.T) {
	p, _ := startChild(t, "die")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitPrepared(ctx); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err := p.GoStream(ctx, func(w io.Writer) error {
		chunk := make([]byte, 64<<10)
		for range 1 << 12 { // 256 MiB, far more than the pipe holds
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("writing to a new process that died: %v, want EPIPE", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("the failed write took %s", d)
	}
	if err := p.WaitReady(ctx); err == nil {
		t.Fatal("a dead new process was reported ready")
	}
	p.Abort()
}

// TestHandoffFailure: a new process that gives up is reported with its
// reason, and the old one keeps its listener.
func TestHandoffFailure(t *testing.T) {
	// The new process writes its reason and exits at once, so the parent
	// may see the exit first: it must still report the reason (CI saw
	// "exited before it was prepared" once). Several runs give the race
	// its chances.
	for i := 0; i < 10; i++ {
		p, _ := startChild(t, "fail")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := p.WaitPrepared(ctx)
		cancel()
		p.Abort()
		if err == nil || !strings.Contains(err.Error(), "asked to fail") {
			t.Fatalf("run %d: got %v, want the new process's reason", i, err)
		}
	}
	p, ln := startChild(t, "fail")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := p.WaitPrepared(ctx)
	if err == nil || !strings.Contains(err.Error(), "asked to fail") {
		t.Fatalf("got %v, want the new process's reason", err)
	}
	p.Abort()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("the old listener no longer accepts: %v", err)
	}
	c.Close()
}
