package daemon

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/snapshot"
	"github.com/starling-tracker/starling/internal/swarm"
)

// An upgrade's old process writes its swarms out once, but serves HTTP
// until the new process serves (and then drains its connections): what
// the announces it answers meanwhile change must reach the new process
// too, or those peers are missing there until they announce again (two
// upgrades under 4 HTTP clients lost 143 of 11,351). The old process
// records them (tracker.Record) from the moment its swarms are written,
// and a lateLog sends them over the upgrade's late pipe; the new process
// applies them on top of the swarms (applyLate).

// maxLateBytes bounds what the old process holds for the pipe (about
// 730,000 announces): past it, announces are answered but not passed on,
// and the log says how many.
const maxLateBytes = 64 << 20

// lateLog encodes the recorded announces into a buffer, and one goroutine
// writes that to the pipe, so an announce never waits for the new process.
type lateLog struct {
	w    *os.File
	wake chan struct{}
	done chan struct{}

	mu      sync.Mutex
	buf     []byte
	pending uint64 // announces in buf
	closed  bool
	err     error
	sent    uint64
	lost    uint64
}

func newLateLog(w *os.File) *lateLog {
	l := &lateLog{w: w, wake: make(chan struct{}, 1), done: make(chan struct{}),
		buf: snapshot.AppendAnnouncesHeader(make([]byte, 0, 64<<10))}
	go l.run()
	return l
}

// add is the tracker's recorder.
func (l *lateLog) add(a *swarm.Announce) {
	l.mu.Lock()
	if l.closed || l.err != nil || len(l.buf)+snapshot.AnnounceLen > maxLateBytes {
		l.lost++
	} else {
		l.buf = snapshot.AppendAnnounce(l.buf, a)
		l.pending++
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lateLog) run() {
	defer close(l.done)
	var out []byte
	for range l.wake {
		l.mu.Lock()
		out, l.buf = l.buf, out[:0]
		n := l.pending
		l.pending = 0
		closed := l.closed
		failed := l.err != nil
		l.mu.Unlock()
		var err error
		if len(out) > 0 && !failed {
			_, err = l.w.Write(out)
		}
		l.mu.Lock()
		switch {
		case failed || err != nil:
			l.lost += n
			if l.err == nil {
				l.err = err
			}
		default:
			l.sent += n
		}
		l.mu.Unlock()
		if closed {
			l.w.Close()
			return
		}
	}
}

// close stops taking announces, writes what is left, waiting at most
// until deadline for the new process to read it, and closes the pipe. It
// says how many announces went over, how many did not, and why not.
func (l *lateLog) close(deadline time.Time) (sent, lost uint64, err error) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	_ = l.w.SetWriteDeadline(deadline)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.lost, l.err
}

// stopLate ends the recording of an upgrade that went through, once this
// process changes its swarms no more (its servers stopped).
func (d *Daemon) stopLate() {
	if d.late == nil {
		return
	}
	d.tracker.Record(nil)
	sent, lost, err := d.late.close(time.Now().Add(5 * time.Second))
	d.late = nil
	if lost > 0 {
		d.log.Warn("upgrade: announces answered here after the swarms were written could not be passed on; those peers are missing from the new process until they announce again",
			"passed_on", sent, "not_passed_on", lost, "err", err)
		return
	}
	d.log.Info("upgrade: announces answered here after the swarms were written passed on", "announces", sent)
}

// applyLate is the new process's side: it applies the announces the old
// process answered after writing the swarms, as they come, until the old
// process closes the pipe (once it serves no more).
func (d *Daemon) applyLate(late *os.File, done chan struct{}) {
	defer close(done)
	defer late.Close()
	var resp bittorrent.AnnounceResponse
	var refused int
	n, err := snapshot.ReadAnnounces(late, func(a *swarm.Announce) error {
		a.Families = bittorrent.BothFamilies
		resp.Reset()
		if _, err := d.store.Announce(context.Background(), a, &resp); err != nil {
			refused++ // a capacity limit here, as it would refuse the peer now
		}
		return nil
	})
	if err != nil {
		d.log.Warn("upgrade: the announces the old process answered after writing the swarms were cut short", "applied", n, "err", err)
		return
	}
	d.log.Info("upgrade: announces the old process answered after writing the swarms applied", "announces", n, "refused", refused)
}

// waitLate waits (up to a minute) until the announces of the upgrade that
// started this process are applied: before this process writes its swarms
// for a snapshot at its stop or for an upgrade of its own.
func (d *Daemon) waitLate(ctx context.Context) {
	done := d.lateDone.Load()
	if done == nil {
		return
	}
	select {
	case <-*done:
	case <-ctx.Done():
	case <-time.After(UpgradeTimeout):
		d.log.Warn("upgrade: the old process still passes announces on after a minute; going on without the rest")
	}
}
