// Package healthcheck is the health-check listener of Torrust Tracker v3
// ([health_check_api] bind_address): GET /health_check probes every running
// listener for real (a UDP connect, an HTTP GET) and answers Torrust's JSON
// report. It knows no transport: the daemon hands it targets, each with a
// Probe function.
package healthcheck

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/requestid"
)

// Target is one listener to probe.
type Target struct {
	// Binding is the listener's bound address ("127.0.0.1:6969").
	Binding string
	// Info says what is checked ("checking the udp tracker health check at: …").
	Info string
	// OK is the result text when the probe passes (default "Ok").
	OK string
	// Probe checks the listener; it must honour ctx's deadline.
	Probe func(ctx context.Context) error
	// Degraded, when set, is what the report's message says when this
	// target fails while every other passes: the status stays Ok, since
	// the tracker still answers (a database outage), and an orchestrator
	// should not restart it for that.
	Degraded string
}

// UDP is a UDP tracker's target, worded as Torrust words it; probe is
// typically udptracker.Probe bound to the listener's address.
func UDP(binding string, probe func(ctx context.Context) error) Target {
	return Target{Binding: binding, Info: "checking the udp tracker health check at: " + binding, OK: "Connected", Probe: probe}
}

// HTTP is an HTTP tracker's target; url is its base URL
// ("http://127.0.0.1:7070") and probe typically httptracker.Probe.
func HTTP(binding, url string, probe func(ctx context.Context) error) Target {
	return Target{Binding: binding, Info: "checking http tracker health check at: " + url + "/health_check", OK: "200 OK", Probe: probe}
}

// API is the REST API's target; url is its base URL and probe typically
// adminapi.Probe.
func API(binding, url string, probe func(ctx context.Context) error) Target {
	return Target{Binding: binding, Info: "checking api health check at: " + url + "/api/health_check", OK: "200 OK", Probe: probe}
}

// Database is the SQL database's target, a Starling addition (Torrust's
// report checks only listeners); name is the database as the log names it
// (password redacted), and probe typically asks it a query within a short
// deadline, so a database that is down or hung shows here as an Err. Its
// failure alone leaves the status Ok with a "degraded" message: announces
// are still answered from memory.
func Database(name string, probe func(ctx context.Context) error) Target {
	return Target{Binding: name, Info: "checking the database at: " + name, OK: "Connected", Probe: probe,
		Degraded: "degraded: database unavailable (announces are answered; API writes answer 503)"}
}

// Config are the health server's settings.
type Config struct {
	// ProbeTimeout bounds each probe (default 2 s).
	ProbeTimeout time.Duration
	// Timeout bounds a whole /health_check (default 10 s); probes not
	// started by then fail as timed out.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server answers the health checks. Safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	targets  atomic.Pointer[[]Target]
	draining atomic.Bool

	mu  sync.Mutex
	srv *http.Server
}

// New makes a health server over targets.
func New(cfg Config, targets []Target) *Server {
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.SetTargets(targets)
	return s
}

// SetTargets replaces the listeners to probe (after a reload).
func (s *Server) SetTargets(targets []Target) {
	t := append([]Target(nil), targets...)
	s.targets.Store(&t)
}

// BeginShutdown makes every later check report Error, so orchestrators and
// load balancers stop sending traffic while the listeners drain.
func (s *Server) BeginShutdown() { s.draining.Store(true) }

// Report is Torrust's health-check answer.
type Report struct {
	Status  string   `json:"status"` // Ok, Error or None
	Message string   `json:"message"`
	Details []Detail `json:"details"`
}

// Detail is one listener's result.
type Detail struct {
	Binding string `json:"binding"`
	Info    string `json:"info"`
	Result  Result `json:"result"`
}

// Result is Rust's Result as serde writes it: {"Ok": …} or {"Err": …}.
type Result struct {
	Ok  *string `json:"Ok,omitempty"`
	Err *string `json:"Err,omitempty"`
}

// Check probes every target, one after the other (no goroutine per
// request: a handful of loopback probes take microseconds when healthy,
// and each failing one is cut off at ProbeTimeout).
func (s *Server) Check(ctx context.Context) Report {
	if s.draining.Load() {
		return Report{Status: "Error", Message: "shutting down", Details: []Detail{}}
	}
	targets := *s.targets.Load()
	if len(targets) == 0 {
		return Report{Status: "None", Message: "", Details: []Detail{}}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	rep := Report{Status: "Ok", Details: make([]Detail, 0, len(targets))}
	for _, t := range targets {
		d := Detail{Binding: t.Binding, Info: t.Info}
		if err := s.probe(ctx, t); err != nil {
			msg := err.Error()
			d.Result.Err = &msg
			switch {
			case t.Degraded == "":
				rep.Status, rep.Message = "Error", "health check failed"
			case rep.Status == "Ok":
				rep.Message = t.Degraded
			}
			attrs := []any{"binding", t.Binding, "error", err}
			if id, ok := ctx.Value(requestIDKey{}).(string); ok {
				attrs = append(attrs, "request_id", id)
			}
			// A dependency with a degraded state (the database, the swarm
			// store) logs its failing and recovery once itself.
			level := slog.LevelWarn
			if t.Degraded != "" {
				level = slog.LevelDebug
			}
			s.log.Log(ctx, level, "health check failed", attrs...)
		} else {
			ok := t.OK
			if ok == "" {
				ok = "Ok"
			}
			d.Result.Ok = &ok
		}
		rep.Details = append(rep.Details, d)
	}
	return rep
}

func (s *Server) probe(ctx context.Context, t Target) error {
	if t.Probe == nil {
		return errNoProbe
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	return t.Probe(pctx)
}

type probeError string

func (e probeError) Error() string { return string(e) }

const errNoProbe = probeError("no probe configured for this listener")

// requestIDKey carries the x-request-id of the request a check runs for.
type requestIDKey struct{}

// ServeHTTP answers GET /health_check with the report and GET / with {}.
// The status stays 200 whatever the report says, as in Torrust; read the
// JSON (starling healthcheck does) to learn the result.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestid.Keep(r.Header.Get(requestid.Header))
	w.Header().Set(requestid.Header, id)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	var body []byte
	switch r.URL.Path {
	case "/health_check":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET,HEAD")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var err error
		if body, err = json.Marshal(s.Check(r.Context())); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	case "/":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET,HEAD")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body = []byte("{}")
	default:
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// Serve answers on ln (which the caller opened) until Shutdown; it then
// returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.srv == nil {
		s.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      s.cfg.Timeout + 5*time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
	}
	srv := s.srv
	s.mu.Unlock()
	return srv.Serve(ln)
}

// Shutdown reports unhealthy from now on, stops accepting, and waits for
// checks in flight (or returns ctx.Err()). Safe to call twice, and before Serve.
func (s *Server) Shutdown(ctx context.Context) error {
	s.BeginShutdown()
	s.mu.Lock()
	if s.srv == nil {
		s.srv = &http.Server{Handler: s}
	}
	srv := s.srv
	s.mu.Unlock()
	return srv.Shutdown(ctx)
}
