package access

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// memStore is an access.Store in memory that can be told to fail, to check
// that the lists only change after the store accepted the change.
type memStore struct {
	mu    sync.Mutex
	keys  map[bittorrent.Key]KeyRecord
	list  map[bittorrent.InfoHash]bool
	fail  error
	calls int
}

func newMemStore() *memStore {
	return &memStore{keys: map[bittorrent.Key]KeyRecord{}, list: map[bittorrent.InfoHash]bool{}}
}

func (m *memStore) LoadKeys(context.Context) ([]KeyRecord, error) {
	var out []KeyRecord
	for _, r := range m.keys {
		out = append(out, r)
	}
	return out, m.fail
}
func (m *memStore) AddKey(_ context.Context, r KeyRecord) error {
	m.calls++
	if m.fail != nil {
		return m.fail
	}
	m.keys[r.Key] = r
	return nil
}
func (m *memStore) RemoveKey(_ context.Context, k bittorrent.Key) error {
	if m.fail != nil {
		return m.fail
	}
	if _, ok := m.keys[k]; !ok {
		return ErrNotFound
	}
	delete(m.keys, k)
	return nil
}
func (m *memStore) LoadWhitelist(context.Context) ([]bittorrent.InfoHash, error) {
	var out []bittorrent.InfoHash
	for h := range m.list {
		out = append(out, h)
	}
	return out, m.fail
}
func (m *memStore) AddToWhitelist(_ context.Context, h bittorrent.InfoHash) error {
	if m.fail != nil {
		return m.fail
	}
	m.list[h] = true
	return nil
}
func (m *memStore) RemoveFromWhitelist(_ context.Context, h bittorrent.InfoHash) error {
	if m.fail != nil {
		return m.fail
	}
	delete(m.list, h)
	return nil
}

var k1, _ = bittorrent.ParseKey("YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ")

func TestWriteThrough(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	l := New(st)
	h := bittorrent.InfoHash{1}

	st.fail = errors.New("database down")
	if err := l.AddKey(ctx, KeyRecord{Key: k1, Permanent: true}); err == nil {
		t.Fatal("AddKey succeeded with a failing store")
	}
	if _, ok := l.Key(k1); ok {
		t.Fatal("key is valid although the store refused it")
	}
	if err := l.AddToWhitelist(ctx, h); err == nil || l.Whitelisted(h) {
		t.Fatal("whitelist changed although the store refused it")
	}

	st.fail = nil
	if err := l.AddKey(ctx, KeyRecord{Key: k1, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if err := l.AddKey(ctx, KeyRecord{Key: k1, Permanent: true}); err == nil {
		t.Fatal("duplicate key accepted")
	}
	if err := l.AddToWhitelist(ctx, h); err != nil || !l.Whitelisted(h) {
		t.Fatal("whitelist add failed")
	}
	if err := l.AddToWhitelist(ctx, h); err != nil {
		t.Fatal("whitelist add is not idempotent")
	}

	// Reload drops what only memory had and picks up what only the store had.
	h2 := bittorrent.InfoHash{2}
	st.list[h2] = true
	delete(st.list, h)
	if err := l.ReloadWhitelist(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Whitelisted(h) || !l.Whitelisted(h2) {
		t.Fatal("reload did not replace the whitelist")
	}
	delete(st.keys, k1)
	if err := l.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Key(k1); ok {
		t.Fatal("reload kept a key the store no longer has")
	}
	if err := l.RemoveKey(ctx, k1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing an unknown key: %v", err)
	}
}

func TestMemoryOnly(t *testing.T) {
	ctx := context.Background()
	l := New(nil)
	if err := l.RemoveKey(ctx, k1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing an unknown key: %v", err)
	}
	if err := l.AddKey(ctx, KeyRecord{Key: k1, ValidUntil: 100}); err != nil {
		t.Fatal(err)
	}
	r, ok := l.Key(k1)
	if !ok || r.Expired(100) || !r.Expired(101) {
		t.Fatalf("key %+v: expiry boundary wrong", r)
	}
	if len(l.Keys()) != 1 {
		t.Fatal("Keys() lost the key")
	}
	if err := l.RemoveKey(ctx, k1); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	l := New(nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h := bittorrent.InfoHash{byte(g), byte(i), byte(i >> 8)}
				_ = l.AddToWhitelist(ctx, h)
				if !l.Whitelisted(h) {
					t.Error("lost a whitelist entry")
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if n := len(l.Whitelist()); n != 4000 {
		t.Fatalf("whitelist has %d entries, want 4000", n)
	}
}
