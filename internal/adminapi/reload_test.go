package adminapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
)

// TestReloadEndpoint: POST /api/v1/reload runs the daemon's reload with the
// token, reports what changed, and a failed reload is a 400 with its
// reason (503 when the database is unavailable); without a reload function
// the route is 404.
func TestReloadEndpoint(t *testing.T) {
	calls := 0
	fail, dbDown := false, false
	e := newEnv(t, func(_ *adminapi.Config, d *adminapi.Deps) {
		d.Reload = func(context.Context) (adminapi.ReloadResult, error) {
			calls++
			if dbDown {
				return adminapi.ReloadResult{}, fmt.Errorf("reload peer keys: load keys in mysql database: %w: connection refused", access.ErrUnavailable)
			}
			if fail {
				return adminapi.ReloadResult{}, errors.New("core.private: expected true or false")
			}
			return adminapi.ReloadResult{Changed: []string{"core.announce_policy"}, NeedsRestart: []string{"udp_trackers[0]"}}, nil
		}
	})
	if a := e.do("POST", "/api/v1/reload", ""); a.status != 500 || calls != 0 {
		t.Fatalf("without a token: %d %s, %d calls", a.status, a.body, calls)
	}
	if a := e.do("GET", "/api/v1/reload?token="+token, ""); a.status != 405 || calls != 0 {
		t.Fatalf("GET: %d %s", a.status, a.body)
	}
	a := e.do("POST", "/api/v1/reload?token="+token, "")
	if a.status != 200 || a.body != `{"status":"ok","changed":["core.announce_policy"],"needs_restart":["udp_trackers[0]"]}` || calls != 1 {
		t.Fatalf("reload: %d %s", a.status, a.body)
	}
	fail = true
	a = e.do("POST", "/api/v1/reload", "", "Authorization", "Bearer "+token)
	if a.status != 400 || a.body != `{"error":"core.private: expected true or false","status":"failed"}` {
		t.Fatalf("failed reload: %d %s", a.status, a.body)
	}
	dbDown = true // the lists cannot be read: nothing changed, try later
	a = e.do("POST", "/api/v1/reload?token="+token, "")
	if a.status != 503 || a.body != `{"error":"reload peer keys: load keys in mysql database: database unavailable: connection refused","status":"failed"}` {
		t.Fatalf("reload with the database down: %d %s", a.status, a.body)
	}
	if a := newEnv(t).do("POST", "/api/v1/reload?token="+token, ""); a.status != 404 {
		t.Fatalf("no reload function: %d %s", a.status, a.body)
	}
}

// TestSetAccessTokens: a reload's new tokens replace the old ones at once.
func TestSetAccessTokens(t *testing.T) {
	e := newEnv(t)
	e.api.SetAccessTokens(map[string]string{"admin": "NewToken"})
	if a := e.do("GET", "/api/v1/stats?token="+token, ""); a.status != 500 {
		t.Fatalf("old token after the change: %d %s", a.status, a.body)
	}
	if a := e.do("GET", "/api/v1/stats?token=NewToken", ""); a.status != 200 {
		t.Fatalf("new token: %d %s", a.status, a.body)
	}
}
