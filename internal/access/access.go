// Package access holds the whitelist and the peer keys in memory, where the
// announce path reads them without a shared lock, and writes every change
// through to a Store (the database) before it takes effect in memory.
package access

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// KeyRecord is a peer key and its expiry.
type KeyRecord struct {
	Key bittorrent.Key
	// ValidUntil is the expiry in unix seconds; ignored when Permanent.
	ValidUntil int64
	Permanent  bool
}

// Expired reports whether the key is no longer valid at now (unix seconds).
// A key is still valid during its last second, as in Torrust.
func (r KeyRecord) Expired(now int64) bool { return !r.Permanent && r.ValidUntil < now }

// ErrNotFound is returned by a Store asked to remove a row it does not hold.
var ErrNotFound = errors.New("not found")

// Store persists keys and the whitelist. The database package implements it;
// every method must have committed its change durably when it returns nil.
type Store interface {
	LoadKeys(ctx context.Context) ([]KeyRecord, error)
	AddKey(ctx context.Context, r KeyRecord) error
	// RemoveKey returns an error wrapping ErrNotFound for an unknown key.
	RemoveKey(ctx context.Context, k bittorrent.Key) error
	LoadWhitelist(ctx context.Context) ([]bittorrent.InfoHash, error)
	// AddToWhitelist is idempotent.
	AddToWhitelist(ctx context.Context, h bittorrent.InfoHash) error
	// RemoveFromWhitelist is idempotent.
	RemoveFromWhitelist(ctx context.Context, h bittorrent.InfoHash) error
}

// shards spreads the maps over several locks so that readers on different
// cores rarely touch the same lock word.
const shards = 32

type keyShard struct {
	mu sync.RWMutex
	m  map[bittorrent.Key]KeyRecord
	_  [64]byte // keep shards on separate cache lines
}

type listShard struct {
	mu sync.RWMutex
	m  map[bittorrent.InfoHash]struct{}
	_  [64]byte
}

// Lists is the in-memory whitelist and key set. The zero value is not usable;
// call New.
type Lists struct {
	store Store // nil: memory only
	write sync.Mutex
	keys  [shards]keyShard
	list  [shards]listShard
}

// New makes empty lists written through to store (nil keeps them in memory only).
func New(store Store) *Lists {
	l := &Lists{store: store}
	for i := range l.keys {
		l.keys[i].m = make(map[bittorrent.Key]KeyRecord)
		l.list[i].m = make(map[bittorrent.InfoHash]struct{})
	}
	return l
}

func keyShardOf(k bittorrent.Key) int       { return int(k[0]^k[31]) % shards }
func listShardOf(h bittorrent.InfoHash) int { return int(h[0]) % shards }

// Whitelisted reports whether h is on the whitelist.
func (l *Lists) Whitelisted(h bittorrent.InfoHash) bool {
	s := &l.list[listShardOf(h)]
	s.mu.RLock()
	_, ok := s.m[h]
	s.mu.RUnlock()
	return ok
}

// Key returns the record of k, if held.
func (l *Lists) Key(k bittorrent.Key) (KeyRecord, bool) {
	s := &l.keys[keyShardOf(k)]
	s.mu.RLock()
	r, ok := s.m[k]
	s.mu.RUnlock()
	return r, ok
}

// AddKey stores r durably, then makes it valid. Adding a key that exists is an error.
func (l *Lists) AddKey(ctx context.Context, r KeyRecord) error {
	l.write.Lock()
	defer l.write.Unlock()
	if _, ok := l.Key(r.Key); ok {
		return fmt.Errorf("key %s already exists", r.Key)
	}
	if l.store != nil {
		if err := l.store.AddKey(ctx, r); err != nil {
			return err
		}
	}
	s := &l.keys[keyShardOf(r.Key)]
	s.mu.Lock()
	s.m[r.Key] = r
	s.mu.Unlock()
	return nil
}

// RemoveKey removes k durably, then from memory. An unknown key is an error
// wrapping ErrNotFound.
func (l *Lists) RemoveKey(ctx context.Context, k bittorrent.Key) error {
	l.write.Lock()
	defer l.write.Unlock()
	if l.store != nil {
		if err := l.store.RemoveKey(ctx, k); err != nil {
			return err
		}
	} else if _, ok := l.Key(k); !ok {
		return fmt.Errorf("key %s: %w", k, ErrNotFound)
	}
	s := &l.keys[keyShardOf(k)]
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
	return nil
}

// Keys returns every key held in memory.
func (l *Lists) Keys() []KeyRecord {
	var out []KeyRecord
	for i := range l.keys {
		s := &l.keys[i]
		s.mu.RLock()
		for _, r := range s.m {
			out = append(out, r)
		}
		s.mu.RUnlock()
	}
	return out
}

// AddToWhitelist stores h durably, then whitelists it. Idempotent.
func (l *Lists) AddToWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	l.write.Lock()
	defer l.write.Unlock()
	if l.store != nil {
		if err := l.store.AddToWhitelist(ctx, h); err != nil {
			return err
		}
	}
	s := &l.list[listShardOf(h)]
	s.mu.Lock()
	s.m[h] = struct{}{}
	s.mu.Unlock()
	return nil
}

// RemoveFromWhitelist removes h durably, then from memory. Idempotent.
func (l *Lists) RemoveFromWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	l.write.Lock()
	defer l.write.Unlock()
	if l.store != nil {
		if err := l.store.RemoveFromWhitelist(ctx, h); err != nil {
			return err
		}
	}
	s := &l.list[listShardOf(h)]
	s.mu.Lock()
	delete(s.m, h)
	s.mu.Unlock()
	return nil
}

// Whitelist returns every whitelisted hash held in memory.
func (l *Lists) Whitelist() []bittorrent.InfoHash {
	var out []bittorrent.InfoHash
	for i := range l.list {
		s := &l.list[i]
		s.mu.RLock()
		for h := range s.m {
			out = append(out, h)
		}
		s.mu.RUnlock()
	}
	return out
}

// ReloadKeys replaces the keys in memory with the store's. Without a store
// the keys in memory are kept.
func (l *Lists) ReloadKeys(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	l.write.Lock()
	defer l.write.Unlock()
	recs, err := l.store.LoadKeys(ctx)
	if err != nil {
		return err
	}
	var fresh [shards]map[bittorrent.Key]KeyRecord
	for i := range fresh {
		fresh[i] = make(map[bittorrent.Key]KeyRecord)
	}
	for _, r := range recs {
		fresh[keyShardOf(r.Key)][r.Key] = r
	}
	for i := range l.keys {
		l.keys[i].mu.Lock()
		l.keys[i].m = fresh[i]
		l.keys[i].mu.Unlock()
	}
	return nil
}

// ReloadWhitelist replaces the whitelist in memory with the store's.
func (l *Lists) ReloadWhitelist(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	l.write.Lock()
	defer l.write.Unlock()
	hashes, err := l.store.LoadWhitelist(ctx)
	if err != nil {
		return err
	}
	var fresh [shards]map[bittorrent.InfoHash]struct{}
	for i := range fresh {
		fresh[i] = make(map[bittorrent.InfoHash]struct{})
	}
	for _, h := range hashes {
		fresh[listShardOf(h)][h] = struct{}{}
	}
	for i := range l.list {
		l.list[i].mu.Lock()
		l.list[i].m = fresh[i]
		l.list[i].mu.Unlock()
	}
	return nil
}
