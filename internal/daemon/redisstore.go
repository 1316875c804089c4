package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/redisswarm"
)

// redisStore is the daemon's side of a Redis swarm store: the store, and
// the persisted completed counts kept loaded in it.
type redisStore struct {
	store *redisswarm.Store
	stop  chan struct{}
	done  chan struct{}
}

// countsCheck is how often a node checks that Redis still holds the
// persisted completed counts (one EXISTS): a Redis restarted empty while
// the nodes run gets them back within it. Completions counted in Redis
// between its restart and the reload are lost (the reload only raises).
const countsCheck = 500 * time.Millisecond

// newRedisStore builds the Redis swarm store. It does not wait for Redis:
// a node whose Redis is down starts degraded (announces answered "swarm
// store unavailable, try later") and the persisted completed counts are
// loaded once Redis answers. Snapshots do not apply: the swarms live in
// Redis and outlive the node. With load (persisted completed counts), the
// node loads counts at start, and loads them again from the database
// whenever Redis has lost them (restarted empty, flushed).
func newRedisStore(ctx context.Context, sw config.Swarm, opts swarm.Options, counts []swarm.CompletedCount,
	load func(context.Context) ([]swarm.CompletedCount, error), log *slog.Logger) (*redisStore, error) {
	s, err := redisswarm.New(redisswarm.Config{URL: sw.RedisURL, Prefix: sw.RedisKeyPrefix, Options: opts,
		NoPeerDetail: !sw.RedisPeerDetail, Logger: log})
	if err != nil {
		return nil, err
	}
	log.Info("swarm store: redis at "+redisswarm.Addr(sw.RedisURL)+" prefix "+sw.RedisKeyPrefix,
		"redis", redisswarm.Addr(sw.RedisURL), "prefix", sw.RedisKeyPrefix)
	if sw.SnapshotPath != "" {
		log.Info("swarm snapshots are off with the Redis store: the swarms live in Redis (core.swarm.snapshot_path is ignored)")
	}
	r := &redisStore{store: s, stop: make(chan struct{}), done: make(chan struct{})}
	if load == nil {
		close(r.done)
		return r, nil
	}
	// Counts only raise what Redis holds, so nodes loading the same
	// (or older) counts never lower another node's.
	loaded := s.SetCompleted(ctx, counts) == nil && s.MarkCounts(ctx) == nil
	if !loaded {
		log.Warn("completed counts not loaded into Redis yet: retrying while it is unavailable")
	}
	go r.keepCounts(counts, load, loaded, log)
	return r, nil
}

// keepCounts loads the completed counts into Redis until it holds them,
// then checks every countsCheck that it still does, and loads them again
// from the database when it does not.
func (r *redisStore) keepCounts(counts []swarm.CompletedCount, load func(context.Context) ([]swarm.CompletedCount, error),
	loaded bool, log *slog.Logger) {
	defer close(r.done)
	s := r.store
	t := time.NewTicker(countsCheck)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if s.Health() != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := func() error {
			if loaded {
				ok, err := s.CountsLoaded(ctx)
				if err != nil || ok {
					return err
				}
				if counts, err = load(ctx); err != nil {
					return err
				}
			}
			if err := s.SetCompleted(ctx, counts); err != nil {
				return err
			}
			if err := s.MarkCounts(ctx); err != nil {
				return err
			}
			why := "Redis answers again"
			if loaded {
				why = "Redis had lost them (restarted empty or flushed)"
			}
			log.Info("completed counts loaded into Redis", "torrents", len(counts), "why", why)
			loaded, counts = true, nil
			return nil
		}()
		cancel()
		if err != nil && !failing {
			log.Warn("cannot check or load the completed counts in Redis; retrying", "err", err)
		}
		failing = err != nil
	}
}

// Close stops the retries and the store's connections.
func (r *redisStore) Close() error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	return r.store.Close()
}

// healthTarget reports the store in /health_check: a Redis that cannot be
// reached leaves the status Ok with a "degraded" message, since the node
// answers every request (with an error to announces and scrapes) and a
// restart would not bring Redis back.
func (r *redisStore) healthTarget() healthcheck.Target {
	name := r.store.String()
	return healthcheck.Target{Binding: "redis " + name, Info: "checking the swarm store at: redis " + name, OK: "Connected",
		Probe:    func(context.Context) error { return r.store.Health() },
		Degraded: "degraded: swarm store unavailable (announces and scrapes answer \"swarm store unavailable, try later\")"}
}

// stats converts the store's counters for the metrics registry.
func (r *redisStore) stats() metrics.StoreStats {
	st := r.store.Stats()
	out := metrics.StoreStats{Degraded: st.Degraded, Bounds: redisswarm.Buckets, Ops: make([]metrics.StoreOpStats, len(st.Ops))}
	for i, o := range st.Ops {
		out.Ops[i] = metrics.StoreOpStats{Op: o.Op, Calls: o.Calls, Errors: o.Errors, Refused: o.Refused, Shed: o.Shed,
			Sum: o.Sum, Counts: o.Counts}
	}
	return out
}
