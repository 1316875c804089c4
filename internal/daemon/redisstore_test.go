package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/config"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/redisswarm"
)

// TestRedisStoreStartsDegraded: a node whose Redis is down starts, its
// health target and metric say degraded, and it stops cleanly.
func TestRedisStoreStartsDegraded(t *testing.T) {
	sw := config.Swarm{Store: config.StoreRedis, RedisURL: "redis://:secret@127.0.0.1:1/0", RedisKeyPrefix: "t:"}
	counts := []swarm.CompletedCount{{Completed: 3}}
	load := func(context.Context) ([]swarm.CompletedCount, error) { return counts, nil }
	r, err := newRedisStore(t.Context(), sw, swarm.Options{}, counts, load, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	target := r.healthTarget()
	if err := target.Probe(t.Context()); err == nil {
		t.Fatal("the health probe passes with Redis down")
	}
	if target.Degraded == "" || strings.Contains(target.Binding, "secret") {
		t.Fatalf("target %+v: want a degraded message and no password", target)
	}
	reg := metrics.NewRegistry(nil, nil, nil, nil)
	reg.RegisterSwarmStore(r.stats)
	mfs, err := reg.Gather(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var degraded float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "starling_swarm_store_degraded" {
			degraded = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if degraded != 1 {
		t.Fatalf("starling_swarm_store_degraded = %v, want 1", degraded)
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while Redis is down")
	}
}

// TestDaemonOnRedis builds a daemon with store = "redis" on the test Redis
// and announces through its tracker.
func TestDaemonOnRedis(t *testing.T) {
	u := os.Getenv("STARLING_TEST_REDIS_URL")
	if u == "" {
		t.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	cfg := config.Default()
	dir := t.TempDir()
	cfg.Core.Database.Path = filepath.Join(dir, "db.sqlite3")
	cfg.Core.Swarm = config.Swarm{Store: config.StoreRedis, RedisURL: u, RedisKeyPrefix: "daemontest:" + filepath.Base(dir) + ":",
		SnapshotPath: filepath.Join(dir, "swarms.snapshot")}
	d, err := New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.closeStorage(context.Background())
	s, ok := d.store.(*redisswarm.Store)
	if !ok {
		t.Fatalf("store is %T, want the Redis store", d.store)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store is not healthy: %v", s.Health())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d.snap != nil {
		t.Fatal("snapshots are on with the Redis store")
	}
	if _, err := d.store.Totals(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestRedisStoreReloadsCounts: a Redis that loses its data while the node
// runs (restarted empty, flushed) gets the persisted completed counts
// back from the database within a few checks.
func TestRedisStoreReloadsCounts(t *testing.T) {
	u := os.Getenv("STARLING_TEST_REDIS_URL")
	if u == "" {
		t.Skip("STARLING_TEST_REDIS_URL is not set")
	}
	prefix := fmt.Sprintf("reloadtest:%d:", time.Now().UnixNano())
	sw := config.Swarm{Store: config.StoreRedis, RedisURL: u, RedisKeyPrefix: prefix}
	h := bittorrent.InfoHash{0x5a, 0x11}
	var mu sync.Mutex
	inDB := uint32(5)
	load := func(context.Context) ([]swarm.CompletedCount, error) {
		mu.Lock()
		defer mu.Unlock()
		return []swarm.CompletedCount{{InfoHash: h, Completed: inDB}}, nil
	}
	start, _ := load(t.Context())
	r, err := newRedisStore(t.Context(), sw, swarm.Options{KeepCompleted: true}, start, load, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	completed := func() uint32 {
		st, err := r.store.Scrape(t.Context(), []bittorrent.InfoHash{h}, nil)
		if err != nil || len(st) != 1 {
			return 0
		}
		return st[0].Completed
	}
	waitCompleted := func(want uint32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for completed() != want {
			if time.Now().After(deadline) {
				t.Fatalf("completed = %d, want %d", completed(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitCompleted(5)

	// The database has moved on; Redis loses everything under the prefix.
	mu.Lock()
	inDB = 9
	mu.Unlock()
	c, err := rueidis.NewClient(must(redisswarm.ClientOption(u)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	del := "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1"
	if err := c.Do(t.Context(), c.B().Eval().Script(del).Numkeys(0).Arg(prefix+"*").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	waitCompleted(9)
	r.Close()
	_ = c.Do(context.Background(), c.B().Eval().Script(del).Numkeys(0).Arg(prefix+"*").Build()).Error()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
