package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/redisswarm"
)

// redisStore is the daemon's side of a Redis swarm store: the store and
// the loading of persisted completed counts, retried while Redis is down.
type redisStore struct {
	store *redisswarm.Store
	stop  chan struct{}
	done  chan struct{}
}

// newRedisStore builds the Redis swarm store. It does not wait for Redis:
// a node whose Redis is down starts degraded (announces answered "swarm
// store unavailable, try later") and the persisted completed counts are
// loaded once Redis answers. Snapshots do not apply: the swarms live in
// Redis and outlive the node.
func newRedisStore(ctx context.Context, sw config.Swarm, opts swarm.Options, counts []swarm.CompletedCount, log *slog.Logger) (*redisStore, error) {
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
	if len(counts) == 0 {
		close(r.done)
		return r, nil
	}
	// Counts only raise what Redis holds, so nodes loading the same
	// (or older) counts never lower another node's.
	if err := s.SetCompleted(ctx, counts); err == nil {
		close(r.done)
		return r, nil
	} else {
		log.Warn("completed counts not loaded into Redis yet: retrying while it is unavailable", "err", err)
	}
	go func() {
		defer close(r.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
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
			err := s.SetCompleted(ctx, counts)
			cancel()
			if err == nil {
				log.Info("completed counts loaded into Redis", "torrents", len(counts))
				return
			}
		}
	}()
	return r, nil
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

var (
	storeDegradedDesc = prometheus.NewDesc("starling_swarm_store_degraded",
		"1 while the swarm store (Redis) cannot be reached and announces and scrapes are refused, else 0.", nil, nil)
	storeErrorsDesc = prometheus.NewDesc("starling_swarm_store_errors_total",
		"Swarm store calls that failed (Redis error, timeout, lost connection), by operation.", []string{"op"}, nil)
	storeRefusedDesc = prometheus.NewDesc("starling_swarm_store_refused_total",
		"Swarm store calls refused without asking Redis, by operation and reason: breaker (open, or not connected) or shed (too many in flight).", []string{"op", "reason"}, nil)
	storeLatencyDesc = prometheus.NewDesc("starling_swarm_store_latency_seconds",
		"Latency of the swarm store's calls to Redis, by operation.", []string{"op"}, nil)
)

// storeCollector exposes the Redis store's state, errors and latency.
type storeCollector struct{ s *redisswarm.Store }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeDegradedDesc
	ch <- storeErrorsDesc
	ch <- storeRefusedDesc
	ch <- storeLatencyDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	deg := 0.0
	if st.Degraded {
		deg = 1
	}
	ch <- prometheus.MustNewConstMetric(storeDegradedDesc, prometheus.GaugeValue, deg)
	for _, o := range st.Ops {
		ch <- prometheus.MustNewConstMetric(storeErrorsDesc, prometheus.CounterValue, float64(o.Errors), o.Op)
		ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(o.Refused), o.Op, "breaker")
		ch <- prometheus.MustNewConstMetric(storeRefusedDesc, prometheus.CounterValue, float64(o.Shed), o.Op, "shed")
		buckets := make(map[float64]uint64, len(redisswarm.Buckets))
		var cum uint64
		for i, b := range redisswarm.Buckets {
			cum += o.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(storeLatencyDesc, o.Calls, o.Sum.Seconds(), buckets, o.Op)
	}
}
