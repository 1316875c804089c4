// Package handoff passes a running tracker's listening sockets to a new
// process of itself, for an upgrade without downtime: the old process
// starts the new binary with the sockets as inherited file descriptors and
// a control channel, the new one builds itself on them and says it is
// prepared, the old one stops changing its swarms and writes them out, the
// new one reads them and starts serving, and the old one then stops.
//
// The control channel is a Unix socket pair on the new process's fd 3
// (STARLING_UPGRADE_FD): one JSON message a line. The old process sends
// the manifest first and later a go message; the new process answers
// prepared, then ready, or failed with the reason.
//
// The swarms go over a pipe, also inherited, so the new process loads them
// while the old one is still writing: the pause of an upgrade is the
// longer of the two, not their sum, and nothing waits for a disk. A new
// process says in its prepared message whether it reads the pipe; one of
// a release before the pipe says nothing and is given a file instead.
//
// A second pipe carries the announces the old process answers after its
// swarms were written (HTTP is served there until the new process serves),
// for the new process to apply on top of them, until the old one stops. A
// new process says in its prepared message that it reads it; the old
// process writes to it only then.
package handoff

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnvFD names the environment variable that tells a process it was started
// by an upgrade, and on which descriptor its control channel is.
const EnvFD = "STARLING_UPGRADE_FD"

// Manifest is what the old process hands the new one.
type Manifest struct {
	// Listeners are the sockets, each under the name of its configuration
	// entry ("udp_trackers[0]", "http_api", ...).
	Listeners []Listener `json:"listeners"`
	// Secrets are opaque values a listener must keep across the upgrade
	// (a UDP listener's connection-id keys), by listener name.
	Secrets map[string][]byte `json:"secrets,omitempty"`
	// OldPID is the process handing over.
	OldPID int `json:"old_pid"`
	// SwarmsPipe is the read end of the pipe the swarms come on, as an
	// index into the files passed with the manifest (nil: no pipe).
	SwarmsPipe *int `json:"swarms_pipe,omitempty"`
	// SwarmsBytes is the memory the old process's swarms hold, for the new
	// one to have ready before they come (0: unknown).
	SwarmsBytes uint64 `json:"swarms_bytes,omitempty"`
	// LatePipe is the read end of the pipe the announces answered after
	// the swarms were written come on, as SwarmsPipe (nil: no pipe).
	LatePipe *int `json:"late_pipe,omitempty"`
}

// Listener is one configured listener's sockets.
type Listener struct {
	Name string `json:"name"`
	// Network is "udp" or "tcp"; Addr the configured bind address.
	Network string `json:"network"`
	Addr    string `json:"addr"`
	// Files are the listener's descriptors as indexes into the files passed
	// with the manifest (the new process's fd 4 is index 0).
	Files []int `json:"files"`
}

type message struct {
	State    string `json:"state,omitempty"` // prepared, ready, failed
	Error    string `json:"error,omitempty"`
	PID      int    `json:"pid,omitempty"`
	Go       bool   `json:"go,omitempty"`
	Snapshot string `json:"snapshot,omitempty"` // go: the swarms are in this file
	Stream   bool   `json:"stream,omitempty"`   // go: the swarms come on the pipe
	// Swarms, in the prepared message, is how the new process takes the
	// swarms: "pipe", "none", or absent (a release that takes a file).
	Swarms string `json:"swarms,omitempty"`
	// Late, in the prepared message, says the new process reads the late
	// pipe.
	Late     bool      `json:"late,omitempty"`
	Manifest *Manifest `json:"manifest,omitempty"`
}

// maxMessage bounds one control message: a manifest of hundreds of
// listeners and their keys is a few KiB.
const maxMessage = 1 << 20

// maxFiles bounds the descriptors one manifest may name.
const maxFiles = 4096

// readMessage reads one newline-terminated message of at most maxMessage
// bytes and decodes it.
func readMessage(rd *bufio.Reader) (message, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxMessage {
			return message{}, fmt.Errorf("control message longer than %d bytes", maxMessage)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return message{}, err
		}
		return decodeMessage(line)
	}
}

// decodeMessage decodes one control message and checks its manifest: a
// listener names its network and at most maxFiles descriptors, each an
// index below maxFiles and named once in the whole manifest.
func decodeMessage(line []byte) (message, error) {
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, fmt.Errorf("control message: %w", err)
	}
	if m.Manifest == nil {
		return m, nil
	}
	seen := map[int]bool{}
	for _, pipe := range []struct {
		name string
		i    *int
	}{{"swarms", m.Manifest.SwarmsPipe}, {"late", m.Manifest.LatePipe}} {
		if pipe.i == nil {
			continue
		}
		if i := *pipe.i; i < 0 || i >= maxFiles || seen[i] {
			return message{}, fmt.Errorf("manifest: %s pipe at descriptor index %d, out of range or named twice", pipe.name, i)
		}
		seen[*pipe.i] = true
	}
	for _, l := range m.Manifest.Listeners {
		if l.Network != "udp" && l.Network != "tcp" {
			return message{}, fmt.Errorf("manifest: listener %q has network %q, not udp or tcp", l.Name, l.Network)
		}
		for _, i := range l.Files {
			if i < 0 || i >= maxFiles || seen[i] {
				return message{}, fmt.Errorf("manifest: listener %q names descriptor index %d twice or out of range", l.Name, i)
			}
			seen[i] = true
		}
	}
	return m, nil
}

// firstFile is the descriptor of the first passed file in the new process
// (0-2 are the standard streams, 3 the control channel).
const firstFile = 4

// Parent is the old process's side of one upgrade.
type Parent struct {
	cmd    *exec.Cmd
	ctrl   *os.File
	rd     *bufio.Reader
	enc    *json.Encoder
	exit   chan error
	swarms *os.File // the pipe's write end
	late   *os.File // the late pipe's write end, until Late takes it
	takes  Takes
	// takesLate: the new process said it reads the late pipe.
	takesLate bool
}

// Takes is how the new process takes the swarms, as it said when prepared.
type Takes int

const (
	// TakesFile: a release before the pipe; it loads the file named in
	// the go message.
	TakesFile Takes = iota
	// TakesPipe: it loads them from the pipe while they are written.
	TakesPipe
	// TakesNothing: it keeps no swarms of its own (a Redis store).
	TakesNothing
)

// pipeSize is asked of the kernel for the swarms pipe (1 MiB, the most an
// unprivileged process gets by default) so each wake-up moves more.
const pipeSize = 1 << 20

// Start runs exe with args and env (plus EnvFD) and hands it m and files,
// and the read end of the swarms pipe.
// The new process shares this one's standard output and error.
func Start(exe string, args, env []string, m Manifest, files []*os.File) (*Parent, error) {
	return start(exe, args, env, m, files, true)
}

// start is Start, without the swarms pipe when pipe is false: as a release
// before the pipe started the new process (for tests).
func start(exe string, args, env []string, m Manifest, files []*os.File, pipe bool) (*Parent, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("upgrade: control channel: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "upgrade-control")
	theirs := os.NewFile(uintptr(fds[1]), "upgrade-control-child")
	defer theirs.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append([]string(nil), env...), EnvFD+"=3")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = append([]*os.File{theirs}, files...)
	var pw, late *os.File
	if pipe {
		var pr *os.File
		if pr, pw, err = os.Pipe(); err != nil {
			mine.Close()
			return nil, fmt.Errorf("upgrade: swarms pipe: %w", err)
		}
		// The read end is the new process's: with it closed here, a write
		// fails once that process is gone.
		defer pr.Close()
		// Through Control, not Fd(): Fd would make the pipe blocking,
		// and writes to it could no longer have a deadline.
		if rc, err := pw.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
		}
		i := len(files)
		m.SwarmsPipe = &i
		cmd.ExtraFiles = append(cmd.ExtraFiles, pr)
		lr, lw, err := os.Pipe()
		if err != nil {
			mine.Close()
			pw.Close()
			return nil, fmt.Errorf("upgrade: late announces pipe: %w", err)
		}
		defer lr.Close()
		late = lw
		j := i + 1
		m.LatePipe = &j
		cmd.ExtraFiles = append(cmd.ExtraFiles, lr)
	}
	if err := cmd.Start(); err != nil {
		mine.Close()
		if pw != nil {
			pw.Close()
			late.Close()
		}
		return nil, fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	p := &Parent{cmd: cmd, ctrl: mine, rd: bufio.NewReader(mine), enc: json.NewEncoder(mine), exit: make(chan error, 1),
		swarms: pw, late: late}
	go func() { p.exit <- cmd.Wait() }()
	if err := p.enc.Encode(message{Manifest: &m}); err != nil {
		p.Abort()
		return nil, fmt.Errorf("upgrade: send the manifest: %w", err)
	}
	return p, nil
}

// PID is the new process's.
func (p *Parent) PID() int { return p.cmd.Process.Pid }

// await reads the next message and checks it is want; a failure, an exit
// of the new process or the deadline is an error.
func (p *Parent) await(ctx context.Context, want string) (message, error) {
	got := make(chan struct {
		m   message
		err error
	}, 1)
	go func() {
		m, err := readMessage(p.rd)
		got <- struct {
			m   message
			err error
		}{m, err}
	}()
	judge := func(m message, err error) (message, error) {
		switch {
		case err != nil:
			return m, fmt.Errorf("the new process closed its control channel before it was %s (see its log)", want)
		case m.State == "failed":
			return m, fmt.Errorf("the new process failed: %s", m.Error)
		case m.State != want:
			return m, fmt.Errorf("the new process said %q, expected %q", m.State, want)
		}
		return m, nil
	}
	select {
	case r := <-got:
		return judge(r.m, r.err)
	case err := <-p.exit:
		p.exit <- err
		// A process that gives up says why, then exits: both may be
		// there by now, and the reason is what the operator needs. Its
		// end of the channel is closed, so the read ends at once.
		select {
		case r := <-got:
			if r.err == nil {
				return judge(r.m, nil)
			}
		case <-time.After(time.Second):
		}
		return message{}, fmt.Errorf("the new process exited before it was %s: %v", want, err)
	case <-ctx.Done():
		return message{}, fmt.Errorf("the new process was not %s in time: %w", want, ctx.Err())
	}
}

// WaitPrepared waits until the new process has built itself on the sockets.
func (p *Parent) WaitPrepared(ctx context.Context) error {
	m, err := p.await(ctx, "prepared")
	switch m.Swarms {
	case "pipe":
		p.takes = TakesPipe
	case "none":
		p.takes = TakesNothing
	}
	p.takesLate = m.Late && p.late != nil
	return err
}

// Late returns the write end of the pipe for the announces answered after
// the swarms were written, if the prepared new process reads it (nil
// otherwise): the caller writes them there, in order (see
// snapshot.AppendAnnounce), and closes it once this process changes its
// swarms no more. A write fails once the new process is gone.
func (p *Parent) Late() *os.File {
	if !p.takesLate || p.late == nil {
		return nil
	}
	w := p.late
	p.late = nil
	return w
}

// Takes is how the prepared new process takes the swarms.
func (p *Parent) Takes() Takes { return p.takes }

// Go tells the new process to load the swarms from the file snapshot (""
// for none) and serve.
func (p *Parent) Go(snapshot string) error {
	p.closePipe()
	return p.enc.Encode(message{Go: true, Snapshot: snapshot})
}

// GoStream tells the new process to load the swarms from the pipe and
// serve, and has write write them there. The write fails when the new
// process goes away, and at ctx's deadline if it stops reading.
func (p *Parent) GoStream(ctx context.Context, write func(io.Writer) error) error {
	if p.swarms == nil {
		return errors.New("upgrade: the swarms pipe is closed")
	}
	if err := p.enc.Encode(message{Go: true, Stream: true}); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = p.swarms.SetWriteDeadline(d)
	}
	err := write(p.swarms)
	if cerr := p.closePipe(); err == nil {
		err = cerr // the end of the stream, which the new process waits for
	}
	if err != nil {
		return fmt.Errorf("upgrade: hand the swarms over: %w", err)
	}
	return nil
}

func (p *Parent) closePipe() error {
	if p.late != nil && !p.takesLate {
		p.late.Close() // no reader: nothing will be written to it
		p.late = nil
	}
	if p.swarms == nil {
		return nil
	}
	err := p.swarms.Close()
	p.swarms = nil
	return err
}

// WaitReady waits until the new process serves.
func (p *Parent) WaitReady(ctx context.Context) error {
	_, err := p.await(ctx, "ready")
	return err
}

// Abort kills the new process (it had not taken over) and waits for it.
func (p *Parent) Abort() {
	_ = p.cmd.Process.Kill()
	err := <-p.exit
	p.exit <- err
	p.ctrl.Close()
	p.closePipe()
	if p.late != nil {
		p.late.Close()
		p.late = nil
	}
}

// Release lets the new process run on alone.
func (p *Parent) Release() {
	p.ctrl.Close()
	p.closePipe()
	if p.late != nil { // not taken with Late
		p.late.Close()
		p.late = nil
	}
}

// Child is the new process's side.
type Child struct {
	Manifest Manifest
	ctrl     *os.File
	rd       *bufio.Reader
	enc      *json.Encoder
	used     map[int]bool
	swarms   *os.File // the pipe's read end, if the old process passed one
	late     *os.File // the late pipe's read end, likewise
	// lateSaid: the prepared message said this process reads the late pipe.
	lateSaid bool
	// streamed: the go message said the swarms come on the pipe.
	streamed bool
}

// Inherited returns the upgrade this process was started for, or nil when
// it was started normally. It reads the manifest.
func Inherited() (*Child, error) {
	v := os.Getenv(EnvFD)
	if v == "" {
		return nil, nil
	}
	os.Unsetenv(EnvFD) // not for processes this one starts
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", EnvFD, v)
	}
	ctrl := os.NewFile(uintptr(fd), "upgrade-control")
	c := &Child{ctrl: ctrl, rd: bufio.NewReader(ctrl), enc: json.NewEncoder(ctrl), used: map[int]bool{}}
	_ = ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := readMessage(c.rd)
	_ = ctrl.SetReadDeadline(time.Time{})
	if err != nil || m.Manifest == nil {
		return nil, fmt.Errorf("read the upgrade manifest: %v", err)
	}
	c.Manifest = *m.Manifest
	if i := c.Manifest.SwarmsPipe; i != nil {
		c.swarms = os.NewFile(uintptr(firstFile+*i), "upgrade-swarms")
	}
	if i := c.Manifest.LatePipe; i != nil {
		c.late = os.NewFile(uintptr(firstFile+*i), "upgrade-late")
	}
	return c, nil
}

func (c *Child) listener(name, network, addr string) (Listener, bool) {
	for _, l := range c.Manifest.Listeners {
		if l.Name == name && l.Network == network && l.Addr == addr {
			return l, true
		}
	}
	return Listener{}, false
}

func (c *Child) file(i int) *os.File {
	c.used[i] = true
	return os.NewFile(uintptr(firstFile+i), "inherited-socket")
}

// UDP returns the inherited sockets of the named listener if it was bound
// to addr, else nil (bind anew).
func (c *Child) UDP(name, addr string) ([]*net.UDPConn, error) {
	l, ok := c.listener(name, "udp", addr)
	if !ok {
		return nil, nil
	}
	var out []*net.UDPConn
	for _, i := range l.Files {
		f := c.file(i)
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("inherited %s socket: %w", name, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			return nil, fmt.Errorf("inherited %s socket is not UDP", name)
		}
		out = append(out, uc)
	}
	return out, nil
}

// TCP returns the inherited listener of the named entry if it was bound to
// addr, else nil (bind anew).
func (c *Child) TCP(name, addr string) (net.Listener, error) {
	l, ok := c.listener(name, "tcp", addr)
	if !ok || len(l.Files) != 1 {
		return nil, nil
	}
	f := c.file(l.Files[0])
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("inherited %s listener: %w", name, err)
	}
	return ln, nil
}

// Secret is the named listener's kept value, if any.
func (c *Child) Secret(name string) []byte { return c.Manifest.Secrets[name] }

// CloseUnused closes inherited sockets no listener took (a bind address
// changed in the configuration).
func (c *Child) CloseUnused() {
	for _, l := range c.Manifest.Listeners {
		for _, i := range l.Files {
			if !c.used[i] {
				c.file(i).Close()
			}
		}
	}
}

// Prepared tells the old process this one is built, and whether it takes
// swarms, and waits for its go. It returns the swarms to load, to be read
// to their end and closed: the pipe, or the file an old process of a
// release before the pipe wrote; nil for none.
func (c *Child) Prepared(ctx context.Context, takesSwarms bool) (io.ReadCloser, error) {
	hello := message{State: "prepared", PID: os.Getpid()}
	switch {
	case !takesSwarms:
		hello.Swarms = "none"
	case c.swarms != nil:
		hello.Swarms = "pipe"
		hello.Late = c.late != nil
	} // else a file, as a release before the pipe would take them
	c.lateSaid = hello.Late
	if err := c.enc.Encode(hello); err != nil {
		return nil, fmt.Errorf("upgrade: tell the old process: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.ctrl.SetReadDeadline(d)
	}
	m, err := readMessage(c.rd)
	_ = c.ctrl.SetReadDeadline(time.Time{})
	if err != nil || !m.Go {
		return nil, fmt.Errorf("upgrade: no go from the old process: %v", err)
	}
	pipe := c.swarms
	c.swarms = nil
	c.streamed = m.Stream
	switch {
	case m.Stream && pipe != nil:
		return pipe, nil
	case m.Stream:
		return nil, errors.New("upgrade: the old process streams the swarms, but passed no pipe")
	}
	if pipe != nil {
		pipe.Close()
	}
	if !takesSwarms || m.Snapshot == "" {
		return nil, nil
	}
	return os.Open(m.Snapshot)
}

// Late returns, after Prepared, the read end of the pipe the announces the
// old process answered after writing the swarms come on (see
// snapshot.ReadAnnounces), to be read to its end (the old process's) and
// closed; nil when there is none, because either process is of a release
// without it or the swarms did not come on the pipe.
func (c *Child) Late() *os.File {
	l := c.late
	c.late = nil
	if l != nil && !(c.lateSaid && c.streamed) {
		l.Close()
		return nil
	}
	return l
}

// Ready tells the old process this one serves, and closes the channel.
func (c *Child) Ready() error {
	err := c.enc.Encode(message{State: "ready", PID: os.Getpid()})
	c.ctrl.Close()
	return err
}

// Fail tells the old process why this one gives up (it keeps serving).
func (c *Child) Fail(reason error) {
	_ = c.enc.Encode(message{State: "failed", Error: reason.Error(), PID: os.Getpid()})
	c.ctrl.Close()
}

// ErrBusy is returned when an upgrade is asked for while one runs.
var ErrBusy = errors.New("an upgrade is already under way")
