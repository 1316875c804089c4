package adminapi

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

// benchAPI is an API over a store of n torrents with one peer each.
func benchAPI(b *testing.B, n int) *API {
	store := memswarm.New(swarm.Options{})
	for i := range n {
		var h bittorrent.InfoHash
		h[0], h[1], h[2] = byte(i>>16), byte(i>>8), byte(i)
		a := swarm.Announce{InfoHash: h, Addr: netip.MustParseAddrPort("10.0.0.1:6881"), Left: 1, Now: 1, NumWant: 0, Families: bittorrent.BothFamilies}
		var resp bittorrent.AnnounceResponse
		if _, err := store.Announce(context.Background(), &a, &resp); err != nil {
			b.Fatal(err)
		}
	}
	api, err := New(Config{AccessTokens: map[string]string{"admin": "MyAccessToken"}, Logger: slog.New(slog.DiscardHandler)},
		Deps{Store: store, Lists: access.New(nil)})
	if err != nil {
		b.Fatal(err)
	}
	return api
}

func benchGet(b *testing.B, api *API, target string) {
	b.ReportAllocs()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

func BenchmarkStats(b *testing.B) {
	benchGet(b, benchAPI(b, 10000), "/api/v1/stats?token=MyAccessToken")
}

func BenchmarkTorrentsPage(b *testing.B) {
	benchGet(b, benchAPI(b, 10000), "/api/v1/torrents?token=MyAccessToken&offset=5000&limit=100")
}

func BenchmarkAuthRejected(b *testing.B) {
	api := benchAPI(b, 0)
	b.ReportAllocs()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/stats?token=WrongToken", nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
