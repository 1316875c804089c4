package daemon

import (
	"errors"
	"io/fs"
	"sync"
	"time"

	"github.com/starling-tracker/starling/internal/snapshot"
	"github.com/starling-tracker/starling/internal/swarm"
)

// snapshots writes the memory store's swarms to core.swarm.snapshot_path
// every snapshot_interval and on a graceful stop, and reads them back at
// start, so a restart loses no swarm.
type snapshots struct {
	path     string
	interval time.Duration
	dumper   swarm.Dumper
	mu       sync.Mutex // one write at a time
	stop     chan struct{}
	done     chan struct{}
}

// restoreSnapshot fills the new store from the snapshot file, if there is
// one. A file that cannot be used (torn, truncated, foreign, newer) is
// logged and the tracker starts with empty swarms: fresh() builds a new
// store, since the one handed over may hold part of the file.
func (d *Daemon) restoreSnapshot(fresh func() (swarm.Store, error)) error {
	path := d.cfg.Core.Swarm.SnapshotPath
	dumper, ok := d.store.(swarm.Dumper)
	if path == "" || !ok {
		return nil
	}
	d.snap = &snapshots{path: path, interval: d.cfg.Core.Swarm.SnapshotInterval.Duration(), dumper: dumper}
	if d.child != nil {
		return nil // an upgrade: the old process hands its swarms over
	}
	cutoff := expiryCutoff(time.Now().Unix(), int64(d.cfg.Core.TrackerPolicy.MaxPeerTimeout))
	st, err := snapshot.LoadFile(path, dumper.Restore, cutoff)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.log.Info("no swarm snapshot yet: starting with empty swarms", "path", path)
		return nil
	case err != nil:
		d.log.Error("the swarm snapshot cannot be used: starting with empty swarms (it is replaced at the next snapshot)",
			"path", path, "err", err)
		store, ferr := fresh()
		if ferr != nil {
			return ferr
		}
		d.store = store
		d.snap.dumper, _ = store.(swarm.Dumper)
		return nil
	}
	d.log.Info("swarms restored from the snapshot", "path", path, "torrent_records", st.Torrents,
		"peers", st.Peers-st.Expired, "expired_while_down", st.Expired, "bytes", st.Bytes, "took", st.Took.Round(time.Millisecond))
	return nil
}

// startSnapshots writes a snapshot every interval until stopSnapshots.
func (d *Daemon) startSnapshots() {
	s := d.snap
	if s == nil || s.interval <= 0 {
		return
	}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				// During an upgrade the swarms go to the new process,
				// which owns the file once it serves.
				if !d.upgrading.Load() {
					d.writeSnapshot("periodic")
				}
			}
		}
	}()
}

// finalSnapshot stops the periodic writer and, with write, writes the
// last snapshot, once the listeners have answered what was in flight.
func (d *Daemon) finalSnapshot(write bool) error {
	s := d.snap
	if s == nil {
		return nil
	}
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
	if !write {
		return nil
	}
	return d.writeSnapshot("shutdown")
}

func (d *Daemon) writeSnapshot(reason string) error {
	s := d.snap
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := snapshot.Write(s.path, s.dumper.Dump, time.Now())
	if err != nil {
		d.log.Error("swarm snapshot not written", "path", s.path, "reason", reason, "err", err)
		return err
	}
	d.log.Info("swarm snapshot written", "path", s.path, "reason", reason, "torrent_records", st.Torrents,
		"peers", st.Peers, "bytes", st.Bytes, "took", st.Took.Round(time.Millisecond))
	return nil
}

// expiryCutoff is the last-seen time (unix seconds) at or before which a
// peer has been silent for longer than timeout at now. A peer's time is
// stored in whole seconds, read from a clock up to 100 ms behind, and now
// may be as well: two seconds of margin keep every peer for at least
// timeout (a sweep at now-timeout removed some up to a second early).
func expiryCutoff(now, timeout int64) int64 { return now - timeout - 2 }
