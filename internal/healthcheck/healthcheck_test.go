package healthcheck_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/healthcheck"
	"github.com/starling-tracker/starling/internal/swarm"
	"github.com/starling-tracker/starling/internal/swarm/memswarm"
)

// serve runs h on 127.0.0.1:0 and returns its base URL; cleanup shuts it down.
func serve(t *testing.T, s interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// runningAPI starts a real REST API to probe.
func runningAPI(t *testing.T) (string, *adminapi.API) {
	t.Helper()
	api, err := adminapi.New(adminapi.Config{AccessTokens: map[string]string{"admin": "MyAccessToken"}, Logger: slog.New(slog.DiscardHandler)},
		adminapi.Deps{Store: memswarm.New(swarm.Options{}), Lists: access.New(nil)})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, api), api
}

// deadAddr is a loopback TCP address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func get(t *testing.T, url string) (int, string, any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("GET %s: not JSON: %q", url, b)
		}
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), v
}

func jsonOf(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestHealthCheck(t *testing.T) {
	apiURL, _ := runningAPI(t)
	apiBinding := apiURL[len("http://"):]
	dead := deadAddr(t)
	probe := func(url string) func(context.Context) error {
		return func(ctx context.Context) error { return adminapi.Probe(ctx, url) }
	}

	t.Run("all healthy", func(t *testing.T) {
		hc := healthcheck.New(healthcheck.Config{Logger: slog.New(slog.DiscardHandler)}, []healthcheck.Target{
			healthcheck.API(apiBinding, apiURL, probe(apiURL)),
		})
		url := serve(t, hc)
		status, ctype, got := get(t, url+"/health_check")
		want := jsonOf(t, `{"status":"Ok","message":"","details":[{"binding":"`+apiBinding+`",
			"info":"checking api health check at: `+apiURL+`/api/health_check","result":{"Ok":"200 OK"}}]}`)
		if status != 200 || ctype != "application/json" || !reflect.DeepEqual(got, want) {
			t.Fatalf("%d %q\n got %v\nwant %v", status, ctype, got, want)
		}
	})

	t.Run("one listener down", func(t *testing.T) {
		hc := healthcheck.New(healthcheck.Config{Logger: slog.New(slog.DiscardHandler)}, []healthcheck.Target{
			healthcheck.API(apiBinding, apiURL, probe(apiURL)),
			healthcheck.HTTP(dead, "http://"+dead, probe("http://"+dead)),
		})
		url := serve(t, hc)
		_, _, got := get(t, url+"/health_check")
		rep := got.(map[string]any)
		if rep["status"] != "Error" || rep["message"] != "health check failed" {
			t.Fatalf("report %v", rep)
		}
		details := rep["details"].([]any)
		if len(details) != 2 {
			t.Fatalf("details %v", details)
		}
		first, second := details[0].(map[string]any), details[1].(map[string]any)
		if !reflect.DeepEqual(first["result"], map[string]any{"Ok": "200 OK"}) {
			t.Errorf("healthy listener: %v", first)
		}
		res := second["result"].(map[string]any)
		if _, isErr := res["Err"].(string); !isErr || len(res) != 1 || second["binding"] != dead {
			t.Errorf("dead listener: %v", second)
		}
		if second["info"] != "checking http tracker health check at: http://"+dead+"/health_check" {
			t.Errorf("info %q", second["info"])
		}
	})

	t.Run("no listeners", func(t *testing.T) {
		url := serve(t, healthcheck.New(healthcheck.Config{}, nil))
		_, _, got := get(t, url+"/health_check")
		if want := jsonOf(t, `{"status":"None","message":"","details":[]}`); !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})

	t.Run("root and unknown paths", func(t *testing.T) {
		url := serve(t, healthcheck.New(healthcheck.Config{}, nil))
		if status, _, got := get(t, url+"/"); status != 200 || !reflect.DeepEqual(got, map[string]any{}) {
			t.Fatalf("GET /: %d %v", status, got)
		}
		if status, _, got := get(t, url+"/nothing"); status != 404 || got != nil {
			t.Fatalf("GET /nothing: %d %v", status, got)
		}
		resp, err := http.Post(url+"/health_check", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Fatalf("POST /health_check: %d", resp.StatusCode)
		}
	})
}

func TestProbeTimeout(t *testing.T) {
	blocked := healthcheck.Target{Binding: "x", Info: "blocks", Probe: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	var calls int
	counted := healthcheck.Target{Binding: "y", Info: "counts", OK: "fine", Probe: func(ctx context.Context) error {
		calls++
		return nil
	}}
	hc := healthcheck.New(healthcheck.Config{ProbeTimeout: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		[]healthcheck.Target{blocked, counted, {Binding: "z", Info: "no probe"}})
	start := time.Now()
	rep := hc.Check(context.Background())
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("check took %v", took)
	}
	if rep.Status != "Error" || len(rep.Details) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Details[0].Result.Err == nil || *rep.Details[0].Result.Err != context.DeadlineExceeded.Error() {
		t.Errorf("blocked probe: %+v", rep.Details[0].Result)
	}
	if rep.Details[1].Result.Ok == nil || *rep.Details[1].Result.Ok != "fine" || calls != 1 {
		t.Errorf("second probe: %+v, %d calls", rep.Details[1].Result, calls)
	}
	if rep.Details[2].Result.Err == nil {
		t.Errorf("target without probe passed")
	}
}

func TestShuttingDown(t *testing.T) {
	apiURL, _ := runningAPI(t)
	hc := healthcheck.New(healthcheck.Config{}, []healthcheck.Target{
		healthcheck.API(apiURL[len("http://"):], apiURL, func(ctx context.Context) error { return adminapi.Probe(ctx, apiURL) }),
	})
	url := serve(t, hc)
	if _, _, got := get(t, url+"/health_check"); got.(map[string]any)["status"] != "Ok" {
		t.Fatalf("before shutdown: %v", got)
	}
	hc.BeginShutdown()
	_, _, got := get(t, url+"/health_check")
	if want := jsonOf(t, `{"status":"Error","message":"shutting down","details":[]}`); !reflect.DeepEqual(got, want) {
		t.Fatalf("while shutting down: %v", got)
	}
}

func TestTargetsSwap(t *testing.T) {
	hc := healthcheck.New(healthcheck.Config{}, nil)
	if rep := hc.Check(context.Background()); rep.Status != "None" {
		t.Fatalf("status %s", rep.Status)
	}
	hc.SetTargets([]healthcheck.Target{healthcheck.UDP("127.0.0.1:6969", func(context.Context) error { return nil })})
	rep := hc.Check(context.Background())
	if rep.Status != "Ok" || rep.Details[0].Info != "checking the udp tracker health check at: 127.0.0.1:6969" || *rep.Details[0].Result.Ok != "Connected" {
		t.Fatalf("report %+v", rep)
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	hc := healthcheck.New(healthcheck.Config{}, nil)
	if err := hc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := hc.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := hc.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}
