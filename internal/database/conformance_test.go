package database_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/database"
	"github.com/starling-tracker/starling/internal/swarm"
)

func key(t *testing.T, s string) bittorrent.Key {
	t.Helper()
	s = (s + strings.Repeat("0", 32))[:32]
	k, err := bittorrent.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hash(i int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	h[0] = 0xAB // upper nibble set, so case matters in the hex form
	h[16], h[17], h[18], h[19] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return h
}

func sortKeys(r []access.KeyRecord) {
	slices.SortFunc(r, func(a, b access.KeyRecord) int { return strings.Compare(a.Key.String(), b.Key.String()) })
}

// TestConformance runs one suite against every engine; each case gets a new
// empty database.
func TestConformance(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					loc := e.fresh(t)
					c.run(t, e, loc, openDB(t, loc, nil))
				})
			}
		})
	}
}

var conformanceCases = []struct {
	name string
	run  func(t *testing.T, e engine, loc string, db *database.DB)
}{
	{"keys/add-load-remove", func(t *testing.T, _ engine, _ string, db *database.DB) {
		ctx := t.Context()
		perm := access.KeyRecord{Key: key(t, "Permanent"), Permanent: true}
		exp := access.KeyRecord{Key: key(t, "Expiring"), ValidUntil: 1_900_000_000}
		for _, r := range []access.KeyRecord{perm, exp} {
			if err := db.AddKey(ctx, r); err != nil {
				t.Fatalf("AddKey(%s): %v", r.Key, err)
			}
		}
		got, err := db.LoadKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []access.KeyRecord{exp, perm}
		sortKeys(got)
		if !slices.Equal(got, want) {
			t.Fatalf("LoadKeys = %+v, want %+v", got, want)
		}
		if err := db.RemoveKey(ctx, perm.Key); err != nil {
			t.Fatalf("RemoveKey: %v", err)
		}
		got, err = db.LoadKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []access.KeyRecord{exp}) {
			t.Fatalf("after remove LoadKeys = %+v", got)
		}
	}},
	{"keys/duplicate", func(t *testing.T, _ engine, _ string, db *database.DB) {
		ctx := t.Context()
		r := access.KeyRecord{Key: key(t, "Dup"), ValidUntil: 100}
		if err := db.AddKey(ctx, r); err != nil {
			t.Fatal(err)
		}
		err := db.AddKey(ctx, access.KeyRecord{Key: r.Key, Permanent: true})
		if !errors.Is(err, database.ErrExists) {
			t.Fatalf("second AddKey = %v, want ErrExists", err)
		}
		got, _ := db.LoadKeys(ctx)
		if !slices.Equal(got, []access.KeyRecord{r}) {
			t.Fatalf("the duplicate changed the key: %+v", got)
		}
	}},
	{"keys/remove-unknown", func(t *testing.T, _ engine, _ string, db *database.DB) {
		err := db.RemoveKey(t.Context(), key(t, "Unknown"))
		if !errors.Is(err, access.ErrNotFound) {
			t.Fatalf("RemoveKey(unknown) = %v, want access.ErrNotFound", err)
		}
	}},
	{"keys/case-sensitive", func(t *testing.T, _ engine, _ string, db *database.DB) {
		// Keys are case-sensitive; MySQL's default collation is not. Removing
		// a key by another case must not remove the key (the in-memory lists
		// would then disagree with the database).
		ctx := t.Context()
		upper := key(t, "CASEKEY")
		lower := key(t, "casekey")
		if err := db.AddKey(ctx, access.KeyRecord{Key: upper, Permanent: true}); err != nil {
			t.Fatal(err)
		}
		if err := db.RemoveKey(ctx, lower); !errors.Is(err, access.ErrNotFound) {
			t.Fatalf("RemoveKey(other case) = %v, want ErrNotFound", err)
		}
		got, err := db.LoadKeys(ctx)
		if err != nil || len(got) != 1 || got[0].Key != upper {
			t.Fatalf("keys after removing another case: %+v, %v", got, err)
		}
	}},
	{"keys/expiry-boundaries", func(t *testing.T, _ engine, _ string, db *database.DB) {
		ctx := t.Context()
		// The edges of 32-bit signed and unsigned seconds (2038, 2106) and of
		// int64, which Torrust's MySQL INT(10) could not hold.
		values := []int64{0, 1, -1, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, math.MinInt64}
		var want []access.KeyRecord
		for i, v := range values {
			r := access.KeyRecord{Key: key(t, fmt.Sprintf("B%02d", i)), ValidUntil: v}
			if err := db.AddKey(ctx, r); err != nil {
				t.Fatalf("AddKey(valid_until=%d): %v", v, err)
			}
			want = append(want, r)
		}
		got, err := db.LoadKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sortKeys(got)
		if !slices.Equal(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}},
	{"keys/stored-as-torrust", func(t *testing.T, e engine, loc string, db *database.DB) {
		ctx := t.Context()
		k := key(t, "AbCdEfGhIjKlMnOpQrStUvWxYz012345")
		if err := db.AddKey(ctx, access.KeyRecord{Key: k, Permanent: true}); err != nil {
			t.Fatal(err)
		}
		q := "SELECT valid_until FROM keys WHERE key = ?"
		switch e.name {
		case "mysql":
			q = "SELECT valid_until FROM `keys` WHERE `key` = ?"
		case "postgresql":
			q = "SELECT valid_until FROM keys WHERE key = $1"
		}
		var until *int64
		if err := e.raw(t, loc).QueryRowContext(ctx, q, k.String()).Scan(&until); err != nil {
			t.Fatal(err)
		}
		if until != nil {
			t.Fatalf("a permanent key has valid_until %d, want NULL", *until)
		}
	}},
	{"whitelist/add-twice-remove", func(t *testing.T, e engine, loc string, db *database.DB) {
		ctx := t.Context()
		h := hash(1)
		for range 2 {
			if err := db.AddToWhitelist(ctx, h); err != nil {
				t.Fatalf("AddToWhitelist: %v", err)
			}
		}
		got, err := db.LoadWhitelist(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []bittorrent.InfoHash{h}) {
			t.Fatalf("LoadWhitelist = %v", got)
		}
		// Torrust stores lowercase hex.
		var stored string
		if err := e.raw(t, loc).QueryRowContext(ctx, "SELECT info_hash FROM whitelist").Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if stored != h.String() || stored != strings.ToLower(stored) {
			t.Fatalf("stored %q, want lowercase %q", stored, h.String())
		}
		for range 2 {
			if err := db.RemoveFromWhitelist(ctx, h); err != nil {
				t.Fatalf("RemoveFromWhitelist: %v", err)
			}
		}
		got, err = db.LoadWhitelist(ctx)
		if err != nil || len(got) != 0 {
			t.Fatalf("after remove LoadWhitelist = %v, %v", got, err)
		}
	}},
	{"whitelist/remove-unknown", func(t *testing.T, _ engine, _ string, db *database.DB) {
		if err := db.RemoveFromWhitelist(t.Context(), hash(99)); err != nil {
			t.Fatalf("RemoveFromWhitelist(unknown) = %v, want nil", err)
		}
	}},
	{"counts/upsert", func(t *testing.T, _ engine, _ string, db *database.DB) {
		ctx := t.Context()
		steps := [][]swarm.CompletedCount{
			{{InfoHash: hash(1), Completed: 1}, {InfoHash: hash(2), Completed: 2}},
			{{InfoHash: hash(1), Completed: 5}},
			// A hash twice in one batch: the later count wins.
			{{InfoHash: hash(3), Completed: 7}, {InfoHash: hash(3), Completed: 8}},
			{{InfoHash: hash(4), Completed: math.MaxUint32}},
			// A lower count (a slower node of a Redis cluster writing
			// what it read before another's completion) never lowers.
			{{InfoHash: hash(1), Completed: 3}, {InfoHash: hash(4), Completed: 0}},
		}
		for _, s := range steps {
			if err := db.SaveCompleted(ctx, s); err != nil {
				t.Fatalf("SaveCompleted(%v): %v", s, err)
			}
		}
		got, err := db.LoadCompleted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[bittorrent.InfoHash]uint32{hash(1): 5, hash(2): 2, hash(3): 8, hash(4): math.MaxUint32}
		checkCounts(t, got, want)
	}},
	{"counts/batch-10000-reload", func(t *testing.T, _ engine, loc string, db *database.DB) {
		ctx := t.Context()
		const n = 10_000
		batch := make([]swarm.CompletedCount, n)
		want := make(map[bittorrent.InfoHash]uint32, n)
		for i := range batch {
			batch[i] = swarm.CompletedCount{InfoHash: hash(i), Completed: uint32(i * 3)}
			want[hash(i)] = uint32(i * 3)
		}
		if err := db.SaveCompleted(ctx, batch); err != nil {
			t.Fatalf("SaveCompleted(10000): %v", err)
		}
		// Half of them again with new counts: an upsert, not new rows.
		for i := range batch[:n/2] {
			batch[i].Completed++
			want[batch[i].InfoHash]++
		}
		if err := db.SaveCompleted(ctx, batch[:n/2]); err != nil {
			t.Fatalf("SaveCompleted(5000 again): %v", err)
		}
		// Reload through a new connection, as a restart would.
		db.Close()
		again := openDB(t, loc, nil)
		got, err := again.LoadCompleted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, got, want)
	}},
	{"migrations/idempotent", func(t *testing.T, _ engine, loc string, db *database.DB) {
		ctx := t.Context()
		if err := db.AddKey(ctx, access.KeyRecord{Key: key(t, "Kept"), Permanent: true}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		for range 2 {
			again := openDB(t, loc, nil)
			v, err := again.Migrations(ctx)
			if err != nil || !slices.Equal(v, []int{1}) {
				t.Fatalf("migrations = %v, %v; want [1]", v, err)
			}
			keys, err := again.LoadKeys(ctx)
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys after reopen = %v, %v", keys, err)
			}
			again.Close()
		}
	}},
	{"concurrent-writes", func(t *testing.T, _ engine, _ string, db *database.DB) {
		// API writes and batch flushes at once: no lock errors (SQLite's one
		// writer, MySQL's gap locks), nothing lost.
		ctx := t.Context()
		const workers, each = 6, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers*each*3)
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					n := w*each + i
					errs <- db.AddKey(ctx, access.KeyRecord{Key: key(t, fmt.Sprintf("C%04d", n)), ValidUntil: int64(n)})
					errs <- db.AddToWhitelist(ctx, hash(n))
					errs <- db.SaveCompleted(ctx, []swarm.CompletedCount{{InfoHash: hash(n), Completed: uint32(n)}, {InfoHash: hash(1 << 20), Completed: uint32(n)}})
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		keys, err := db.LoadKeys(ctx)
		if err != nil || len(keys) != workers*each {
			t.Fatalf("keys: %d, %v", len(keys), err)
		}
		list, err := db.LoadWhitelist(ctx)
		if err != nil || len(list) != workers*each {
			t.Fatalf("whitelist: %d, %v", len(list), err)
		}
		counts, err := db.LoadCompleted(ctx)
		if err != nil || len(counts) != workers*each+1 {
			t.Fatalf("counts: %d, %v", len(counts), err)
		}
	}},
	{"batcher-writes-through", func(t *testing.T, _ engine, loc string, db *database.DB) {
		b := database.StartBatcher(db, 10*time.Millisecond, 0, nil)
		want := make(map[bittorrent.InfoHash]uint32)
		for i := range 20_000 {
			b.Completed(hash(i%3000), uint32(i))
			want[hash(i%3000)] = uint32(i)
		}
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		got, err := openDB(t, loc, nil).LoadCompleted(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkCounts(t, got, want)
	}},
	{"access-lists/write-through", func(t *testing.T, _ engine, loc string, db *database.DB) {
		ctx := t.Context()
		lists := access.New(db)
		k := key(t, "Through")
		if err := lists.AddKey(ctx, access.KeyRecord{Key: k, ValidUntil: 42}); err != nil {
			t.Fatal(err)
		}
		if err := lists.AddToWhitelist(ctx, hash(7)); err != nil {
			t.Fatal(err)
		}
		fresh := access.New(openDB(t, loc, nil))
		if err := fresh.ReloadKeys(ctx); err != nil {
			t.Fatal(err)
		}
		if err := fresh.ReloadWhitelist(ctx); err != nil {
			t.Fatal(err)
		}
		if r, ok := fresh.Key(k); !ok || r.ValidUntil != 42 {
			t.Fatalf("reloaded key = %+v, %v", r, ok)
		}
		if !fresh.Whitelisted(hash(7)) {
			t.Fatal("reloaded whitelist misses the hash")
		}
		if err := fresh.RemoveKey(ctx, key(t, "Never")); !errors.Is(err, access.ErrNotFound) {
			t.Fatalf("Lists.RemoveKey(unknown) = %v, want ErrNotFound", err)
		}
	}},
}

func checkCounts(t *testing.T, got []swarm.CompletedCount, want map[bittorrent.InfoHash]uint32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("LoadCompleted returned %d rows, want %d", len(got), len(want))
	}
	for _, c := range got {
		if w, ok := want[c.InfoHash]; !ok || w != c.Completed {
			t.Fatalf("count of %s = %d, want %d (known %v)", c.InfoHash, c.Completed, w, ok)
		}
	}
}
