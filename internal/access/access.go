// Package access holds the whitelist and the peer keys in memory, where the
// announce path reads them without any lock, and writes every change
// through to a Store (the database) before it takes effect in memory.
package access

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"

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

// ErrUnavailable is wrapped by a Store's errors when it cannot be reached
// or does not answer in time (the database is down or slow): nothing was
// changed, and the same call may work later. The API answers it with 503.
var ErrUnavailable = errors.New("database unavailable")

// Store persists keys and the whitelist. The database package implements it;
// every method must have committed its change durably when it returns nil,
// and must return by ctx's deadline.
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

// shards spreads the maps so that a write copies only a slice of them.
const shards = 32

// Lists is the in-memory whitelist and key set. Readers (the announce path)
// do one atomic load and a map lookup, never a lock; writers, which are rare
// API calls, copy the shard they change and swap it in under l.write.
// The zero value is not usable; call New.
type Lists struct {
	store Store // nil: memory only
	// write is held by one writer at a time, a channel rather than a
	// mutex so that a writer queued behind one stuck on a slow database
	// gives up at its own deadline.
	write chan struct{}
	keys  [shards]atomic.Pointer[map[bittorrent.Key]KeyRecord]
	list  [shards]atomic.Pointer[map[bittorrent.InfoHash]struct{}]
}

// New makes empty lists written through to store (nil keeps them in memory only).
func New(store Store) *Lists {
	l := &Lists{store: store, write: make(chan struct{}, 1)}
	for i := range l.keys {
		km := make(map[bittorrent.Key]KeyRecord)
		lm := make(map[bittorrent.InfoHash]struct{})
		l.keys[i].Store(&km)
		l.list[i].Store(&lm)
	}
	return l
}

func keyShardOf(k bittorrent.Key) int       { return int(k[0]^k[31]) % shards }
func listShardOf(h bittorrent.InfoHash) int { return int(h[0]^h[19]) % shards }

// Whitelisted reports whether h is on the whitelist.
func (l *Lists) Whitelisted(h bittorrent.InfoHash) bool {
	_, ok := (*l.list[listShardOf(h)].Load())[h]
	return ok
}

// Key returns the record of k, if held.
func (l *Lists) Key(k bittorrent.Key) (KeyRecord, bool) {
	r, ok := (*l.keys[keyShardOf(k)].Load())[k]
	return r, ok
}

// lock takes l.write, or fails when ctx ends first: the write before this
// one is waiting on the store, which is then unavailable for this one too.
func (l *Lists) lock(ctx context.Context) error {
	select {
	case l.write <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for an earlier write: %w: %w", ErrUnavailable, ctx.Err())
	}
}

func (l *Lists) unlock() { <-l.write }

// setKey and the other mutators run under l.write.
func (l *Lists) setKey(r KeyRecord, remove bool) {
	p := &l.keys[keyShardOf(r.Key)]
	m := maps.Clone(*p.Load())
	if remove {
		delete(m, r.Key)
	} else {
		m[r.Key] = r
	}
	p.Store(&m)
}

func (l *Lists) setListed(h bittorrent.InfoHash, remove bool) {
	p := &l.list[listShardOf(h)]
	m := maps.Clone(*p.Load())
	if remove {
		delete(m, h)
	} else {
		m[h] = struct{}{}
	}
	p.Store(&m)
}

// AddKey stores r durably, then makes it valid. Adding a key that exists is an error.
func (l *Lists) AddKey(ctx context.Context, r KeyRecord) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if _, ok := l.Key(r.Key); ok {
		return fmt.Errorf("key %s already exists", r.Key)
	}
	if l.store != nil {
		if err := l.store.AddKey(ctx, r); err != nil {
			return err
		}
	}
	l.setKey(r, false)
	return nil
}

// RemoveKey removes k durably, then from memory. An unknown key is an error
// wrapping ErrNotFound.
func (l *Lists) RemoveKey(ctx context.Context, k bittorrent.Key) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if l.store != nil {
		if err := l.store.RemoveKey(ctx, k); err != nil {
			return err
		}
	} else if _, ok := l.Key(k); !ok {
		return fmt.Errorf("key %s: %w", k, ErrNotFound)
	}
	l.setKey(KeyRecord{Key: k}, true)
	return nil
}

// Keys returns every key held in memory.
func (l *Lists) Keys() []KeyRecord {
	var out []KeyRecord
	for i := range l.keys {
		for _, r := range *l.keys[i].Load() {
			out = append(out, r)
		}
	}
	return out
}

// AddToWhitelist stores h durably, then whitelists it. Idempotent.
func (l *Lists) AddToWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if l.store != nil {
		if err := l.store.AddToWhitelist(ctx, h); err != nil {
			return err
		}
	}
	l.setListed(h, false)
	return nil
}

// RemoveFromWhitelist removes h durably, then from memory. Idempotent.
func (l *Lists) RemoveFromWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
	if l.store != nil {
		if err := l.store.RemoveFromWhitelist(ctx, h); err != nil {
			return err
		}
	}
	l.setListed(h, true)
	return nil
}

// Whitelist returns every whitelisted hash held in memory.
func (l *Lists) Whitelist() []bittorrent.InfoHash {
	var out []bittorrent.InfoHash
	for i := range l.list {
		for h := range *l.list[i].Load() {
			out = append(out, h)
		}
	}
	return out
}

// ReloadKeys replaces the keys in memory with the store's. Without a store
// the keys in memory are kept.
func (l *Lists) ReloadKeys(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
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
		l.keys[i].Store(&fresh[i])
	}
	return nil
}

// ReloadWhitelist replaces the whitelist in memory with the store's.
func (l *Lists) ReloadWhitelist(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	if err := l.lock(ctx); err != nil {
		return err
	}
	defer l.unlock()
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
		l.list[i].Store(&fresh[i])
	}
	return nil
}
