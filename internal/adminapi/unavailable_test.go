package adminapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/bittorrent"
)

// brokenStore is a database that fails every operation: down (refused at
// once), hung (no answer until the caller's deadline), or with a fault
// that is not an outage.
type brokenStore struct{ mode string }

func (s brokenStore) fail(ctx context.Context, op string) error {
	switch s.mode {
	case "down":
		return fmt.Errorf("%s in mysql database: %w: dial tcp 127.0.0.1:3306: connect: connection refused", op, access.ErrUnavailable)
	case "hung":
		<-ctx.Done()
		return fmt.Errorf("%s in mysql database: %w: %w", op, access.ErrUnavailable, ctx.Err())
	}
	return fmt.Errorf("%s in mysql database: Error 1146: Table 'keys' doesn't exist", op)
}

func (s brokenStore) LoadKeys(ctx context.Context) ([]access.KeyRecord, error) {
	return nil, s.fail(ctx, "load keys")
}
func (s brokenStore) AddKey(ctx context.Context, _ access.KeyRecord) error {
	return s.fail(ctx, "add key")
}
func (s brokenStore) RemoveKey(ctx context.Context, _ bittorrent.Key) error {
	return s.fail(ctx, "remove key")
}
func (s brokenStore) LoadWhitelist(ctx context.Context) ([]bittorrent.InfoHash, error) {
	return nil, s.fail(ctx, "load whitelist")
}
func (s brokenStore) AddToWhitelist(ctx context.Context, _ bittorrent.InfoHash) error {
	return s.fail(ctx, "add to whitelist")
}
func (s brokenStore) RemoveFromWhitelist(ctx context.Context, _ bittorrent.InfoHash) error {
	return s.fail(ctx, "remove from whitelist")
}

// TestDatabaseUnavailable: every API write answers 503 with Torrust's
// rejection body naming the unavailable database when the database is down
// or hung (within the handler's time, even for writes queued behind a hung
// one), and Torrust's 500 for a fault that is not an outage.
func TestDatabaseUnavailable(t *testing.T) {
	hex := strings.Repeat("ab", 20)
	key := strings.Repeat("K", 32)
	writes := []struct {
		method, path, body, prefix string
	}{
		{"POST", "/api/v1/whitelist/" + hex, "", "failed to whitelist torrent"},
		{"DELETE", "/api/v1/whitelist/" + hex, "", "failed to remove torrent from whitelist"},
		{"GET", "/api/v1/whitelist/reload", "", "failed to reload whitelist"},
		{"POST", "/api/v1/keys", `{"key":null,"seconds_valid":60}`, "failed to generate key"},
		{"POST", "/api/v1/key/60", "", "failed to generate key"},
		{"DELETE", "/api/v1/key/" + key, "", "failed to delete key"},
		{"GET", "/api/v1/keys/reload", "", "failed to reload keys"},
	}
	const handlerTimeout = 300 * time.Millisecond
	for _, mode := range []string{"down", "hung", "fault"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, func(c *adminapi.Config, d *adminapi.Deps) {
				c.HandlerTimeout = handlerTimeout
				d.Lists = access.New(brokenStore{mode})
			})
			for _, w := range writes {
				// Three at once: the second and third wait behind the
				// first for the lists' write lock, and must give up at
				// their own deadline too.
				var wg sync.WaitGroup
				answers := make([]answer, 3)
				took := make([]time.Duration, 3)
				for i := range answers {
					wg.Go(func() {
						start := time.Now()
						answers[i] = e.do(w.method, w.path+"?token="+token, w.body, "Content-Type", "application/json")
						took[i] = time.Since(start)
					})
				}
				wg.Wait()
				for i, a := range answers {
					wantStatus, wantText := 503, "database unavailable"
					if mode == "fault" {
						wantStatus, wantText = 500, "Table 'keys' doesn't exist"
					}
					if a.status != wantStatus || !strings.HasPrefix(a.body, `Unhandled rejection: Err { reason: "`+w.prefix+": ") ||
						!strings.Contains(a.body, wantText) {
						t.Errorf("%s %s (%d of 3): %d %q, want %d with %q", w.method, w.path, i+1, a.status, a.body, wantStatus, wantText)
					}
					if wantStatus == 503 && a.header.Get("Retry-After") == "" {
						t.Errorf("%s %s: 503 without Retry-After", w.method, w.path)
					}
					if took[i] > handlerTimeout+2*time.Second {
						t.Errorf("%s %s took %v; the handler's time is %v", w.method, w.path, took[i], handlerTimeout)
					}
				}
			}
		})
	}
}
