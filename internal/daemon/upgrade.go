package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/starling-tracker/starling/internal/handoff"
	"github.com/starling-tracker/starling/internal/snapshot"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/udptracker"
)

// UpgradeTimeout bounds each step of an upgrade: the new process building
// itself, and then loading the swarms and serving. Past it, the old
// process keeps serving.
const UpgradeTimeout = time.Minute

// Option changes how New builds the daemon.
type Option func(*Daemon)

// WithHandoff builds the daemon as the new process of an upgrade: on the
// sockets the old process handed over, with its connection-id key, and
// with the swarms it writes out when told to go (instead of the snapshot
// file read at a normal start).
func WithHandoff(c *handoff.Child) Option {
	return func(d *Daemon) {
		d.child = c
		if k := c.Secret(secretConnectionIDKey); len(k) == 16 {
			udptracker.SetConnectionIDKey([16]byte(k))
		}
	}
}

// OnReady runs f once the daemon serves (after an upgrade, once it has
// taken over): where a PID file is written and systemd is told.
func OnReady(f func()) Option { return func(d *Daemon) { d.onReady = f } }

// OnUpgradeFailed runs f with the reason when an upgrade fails and this
// process serves on: where `starling upgrade` learns it at once.
func OnUpgradeFailed(f func(error)) Option { return func(d *Daemon) { d.onUpgradeFailed = f } }

const secretConnectionIDKey = "connection_id_key"

func udpName(i int) string  { return fmt.Sprintf("udp_trackers[%d]", i) }
func httpName(i int) string { return fmt.Sprintf("http_trackers[%d]", i) }

// inheritedUDP gives the UDP listener i the old process's sockets, if this
// is an upgrade and the listener's address did not change.
func (d *Daemon) inheritedUDP(i int, bind string) ([]*net.UDPConn, error) {
	if d.child == nil {
		return nil, nil
	}
	return d.child.UDP(udpName(i), bind)
}

// inheritedTCP is inheritedUDP for a TCP listener.
func (d *Daemon) inheritedTCP(name, bind string) (net.Listener, error) {
	if d.child == nil {
		return nil, nil
	}
	return d.child.TCP(name, bind)
}

// takeOver is the new process's part of an upgrade, once every listener is
// bound: say prepared, wait for the old process to stop changing its
// swarms and write them out, and load them.
func (d *Daemon) takeOver(ctx context.Context) error {
	c := d.child
	c.CloseUnused()
	wait, cancel := context.WithTimeout(ctx, UpgradeTimeout)
	defer cancel()
	dumper, takes := d.store.(swarm.Dumper)
	if takes {
		readyMemory(c.Manifest.SwarmsBytes)
	}
	in, err := c.Prepared(wait, takes)
	if err != nil {
		return err
	}
	if in == nil {
		if late := c.Late(); late != nil {
			late.Close()
		}
		return nil
	}
	defer in.Close()
	// No collection while the swarms load: the heap only grows, with the
	// store's pointer-free slabs, and each cycle the growth set off took
	// a share of the core the load (the UDP pause) runs on.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	cutoff := expiryCutoff(time.Now().Unix(), d.reload.maxPeerTimeout.Load())
	st, err := snapshot.Read(in, dumper.Restore, cutoff)
	if err != nil {
		err = fmt.Errorf("load the swarms handed over: %w", err)
		c.Fail(err)
		return err
	}
	d.log.Info("upgrade: swarms taken over", "old_pid", c.Manifest.OldPID, "peers", st.Peers-st.Expired,
		"took", st.Took.Round(time.Millisecond))
	if late := c.Late(); late != nil {
		done := make(chan struct{})
		d.lateDone.Store(&done)
		go d.applyLate(late, done)
	}
	return nil
}

// readyMemory has n bytes of heap backed by the system before the swarms
// come: a new process's heap is not, and the first write to each of its
// pages is a fault. The load is the UDP pause of an upgrade; this runs
// before it, while the old process serves (for 1.6 M peers, 75 ms of the
// new process's time that a profile of the load no longer shows). Freed
// again, the pages stay with the runtime (its scavenger gives them back
// over minutes) for the load to reuse.
func readyMemory(n uint64) {
	const piece, page = 1 << 20, 4096
	held := make([][]byte, 0, n/piece+1)
	for left := n; left > 0; left -= min(left, piece) {
		b := make([]byte, piece)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		held = append(held, b)
	}
	held = nil
	runtime.GC()
}

// Upgrade starts the binary at this process's path with the same
// arguments, hands it the listening sockets and, once it is built, the
// swarms; when it serves, this process stops (Run returns nil). If the new
// process fails or is not ready within UpgradeTimeout, it is killed and
// this one serves on, and the error says why.
func (d *Daemon) Upgrade(ctx context.Context) (err error) {
	if !d.upgrading.CompareAndSwap(false, true) {
		return handoff.ErrBusy
	}
	// This process's swarms are not whole until the announces of the
	// upgrade that started it are applied.
	d.waitLate(ctx)
	defer func() {
		if err != nil {
			d.upgrading.Store(false)
			d.log.Error("upgrade failed: this process serves on", "err", err)
			if d.onUpgradeFailed != nil {
				d.onUpgradeFailed(err)
			}
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary's path: %w", err)
	}
	m, files, err := d.handoffFiles()
	if err != nil {
		return err
	}
	d.log.Info("upgrade: starting the new binary", "path", exe)
	p, err := handoff.Start(exe, os.Args[1:], os.Environ(), m, files)
	for _, f := range files {
		f.Close() // the new process has its own copies
	}
	if err != nil {
		return err
	}
	wait, cancel := context.WithTimeout(ctx, UpgradeTimeout)
	defer cancel()
	if err := p.WaitPrepared(wait); err != nil {
		p.Abort()
		return err
	}
	// From here UDP does not change the swarms here: it stops reading (its
	// requests wait in the sockets for the new process), and the swarms
	// are written for it. HTTP serves on until the new process does; what
	// its announces change from then on goes over the late pipe (when
	// the new process reads it), recorded from before the swarms are
	// written.
	var paused []*udptracker.Server
	var late *lateLog
	resume := func() {
		if late != nil {
			d.tracker.Record(nil)
			late.close(time.Now())
		}
		for _, u := range paused {
			u.Resume()
		}
	}
	for _, u := range d.udp {
		if err := u.Pause(wait); err != nil {
			resume()
			p.Abort()
			return fmt.Errorf("pause the UDP tracker: %w", err)
		}
		paused = append(paused, u)
	}
	if w := p.Late(); w != nil {
		late = newLateLog(w)
		d.tracker.Record(late.add)
	}
	file, err := d.handOver(wait, p)
	if file != "" {
		defer os.Remove(file)
	}
	if err != nil {
		resume()
		p.Abort()
		return err
	}
	if err := p.WaitReady(wait); err != nil {
		resume()
		p.Abort()
		return err
	}
	p.Release()
	d.late = late
	d.log.Info("upgrade: the new process serves; this one stops", "new_pid", p.PID())
	d.handedOver.Store(true)
	close(d.upgraded)
	return nil
}

// handoffFiles duplicates every listening socket for the new process and
// describes them, with the connection-id key.
func (d *Daemon) handoffFiles() (m handoff.Manifest, files []*os.File, err error) {
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	key, err := udptracker.ConnectionIDKey()
	if err != nil {
		return m, nil, err
	}
	m.OldPID = os.Getpid()
	if s, ok := d.store.(memoryReleaser); ok {
		m.SwarmsBytes = s.MemoryBytes()
	}
	m.Secrets = map[string][]byte{secretConnectionIDKey: key[:]}
	add := func(name, network, addr string, fs ...*os.File) {
		l := handoff.Listener{Name: name, Network: network, Addr: addr}
		for _, f := range fs {
			l.Files = append(l.Files, len(files))
			files = append(files, f)
		}
		m.Listeners = append(m.Listeners, l)
	}
	for i, u := range d.udp {
		fs, err := u.Files()
		if err != nil {
			return m, files, err
		}
		add(udpName(i), "udp", d.cfg.UDPTrackers[i].BindAddress.String(), fs...)
	}
	tcp := func(name, bind string, ln net.Listener) error {
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return fmt.Errorf("%s: not a TCP listener", name)
		}
		f, err := tl.File()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		add(name, "tcp", bind, f)
		return nil
	}
	for i, h := range d.http {
		if err := tcp(httpName(i), h.bind, h.raw); err != nil {
			return m, files, err
		}
	}
	if err := d.handoffWebSocket(tcp); err != nil {
		return m, files, err
	}
	for _, s := range d.aux {
		if s.raw != nil {
			if err := tcp(s.key, s.bind, s.raw); err != nil {
				return m, files, err
			}
		}
	}
	return m, files, nil
}

// handOver tells the new process to go and hands it the swarms the way it
// takes them: written into the pipe while it loads them, or, for a new
// process of a release before the pipe, in a file it loads after (whose
// path it returns, to be removed once the new process is ready).
func (d *Daemon) handOver(ctx context.Context, p *handoff.Parent) (file string, err error) {
	dumper, ok := d.store.(swarm.Dumper)
	switch {
	case !ok || p.Takes() == handoff.TakesNothing:
		return "", p.Go("")
	case p.Takes() == handoff.TakesPipe:
		return "", p.GoStream(ctx, func(w io.Writer) error {
			st, err := snapshot.Stream(w, dumper.Dump, time.Now())
			if err == nil {
				d.log.Info("upgrade: swarms handed to the new process", "peers", st.Peers, "bytes", st.Bytes,
					"took", st.Took.Round(time.Millisecond))
			}
			return err
		})
	}
	path, err := d.handoverSnapshot(dumper)
	if err != nil {
		return "", err
	}
	if err := p.Go(path); err != nil {
		return path, fmt.Errorf("tell the new process to go: %w", err)
	}
	return path, nil
}

// handoverSnapshot writes the swarms into a file for a new process of a
// release before the pipe, beside the snapshot file (or in the temporary
// directory without one).
func (d *Daemon) handoverSnapshot(dumper swarm.Dumper) (string, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("starling-upgrade-%d.snapshot", os.Getpid()))
	if d.snap != nil {
		path = d.snap.path + ".upgrade"
	}
	st, err := snapshot.Write(path, dumper.Dump, time.Now())
	if err != nil {
		return "", fmt.Errorf("write the swarms for the new process: %w", err)
	}
	d.log.Info("upgrade: swarms written for the new process", "path", path, "peers", st.Peers, "took", st.Took.Round(time.Millisecond))
	return path, nil
}
