package access

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// TestWriteQueuedBehindHungStore: every writer takes the lists' write lock,
// and one stuck on a hung database holds it (here, a goroutine holding the
// lock); the writers queued behind give up at their own deadline with
// ErrUnavailable instead of waiting it out.
func TestWriteQueuedBehindHungStore(t *testing.T) {
	l := New(newMemStore())
	stuck, cancel := context.WithCancel(t.Context())
	defer cancel()
	holding := make(chan struct{})
	go func() {
		l.write <- struct{}{} // the stuck writer's lock, taken before it waits
		close(holding)
		<-stuck.Done()
		<-l.write
	}()
	<-holding
	for _, write := range []func(context.Context) error{
		func(ctx context.Context) error { return l.AddToWhitelist(ctx, bittorrent.InfoHash{1}) },
		func(ctx context.Context) error { return l.RemoveKey(ctx, bittorrent.Key{}) },
		l.ReloadKeys,
		l.ReloadWhitelist,
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		start := time.Now()
		err := write(ctx)
		cancel()
		if !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
			t.Fatalf("queued write: %v after %v, want ErrUnavailable at its deadline", err, time.Since(start))
		}
	}
}
