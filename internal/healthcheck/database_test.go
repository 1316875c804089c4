package healthcheck_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/healthcheck"
)

// TestDatabaseTarget: a database that fails its probe shows as an Err in
// the details; alone, it leaves the status Ok with a "degraded" message (the
// tracker still answers, so an orchestrator must not restart it), and with
// a listener failing too the report is Error as in Torrust. A hung
// database is cut off at the probe's deadline.
func TestDatabaseTarget(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error {
		return errors.New("ping in mysql database: database unavailable: connection refused")
	}
	hung := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name         string
		listener, db func(context.Context) error
		wantStatus   string
		wantDegraded bool
	}{
		{"all up", ok, ok, "Ok", false},
		{"database down", ok, down, "Ok", true},
		{"database hung", ok, hung, "Ok", true},
		{"listener and database down", down, down, "Error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc := healthcheck.New(healthcheck.Config{ProbeTimeout: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
				[]healthcheck.Target{
					healthcheck.UDP("127.0.0.1:6969", tt.listener),
					healthcheck.Database("mysql://root@127.0.0.1:3306/test", tt.db),
				})
			start := time.Now()
			rep := hc.Check(t.Context())
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("check took %v", d)
			}
			if rep.Status != tt.wantStatus || len(rep.Details) != 2 {
				t.Fatalf("report %+v, want status %s", rep, tt.wantStatus)
			}
			db := rep.Details[1]
			if db.Binding != "mysql://root@127.0.0.1:3306/test" || db.Info != "checking the database at: mysql://root@127.0.0.1:3306/test" {
				t.Errorf("database detail %+v", db)
			}
			dbDown := db.Result.Err != nil
			if wantDown := tt.wantDegraded || tt.wantStatus == "Error"; dbDown != wantDown {
				t.Errorf("database result %+v", db.Result)
			}
			if !dbDown && (db.Result.Ok == nil || *db.Result.Ok != "Connected") {
				t.Errorf("database result %+v, want Ok: Connected", db.Result)
			}
			switch {
			case tt.wantDegraded && rep.Message != "degraded: database unavailable (announces are answered; API writes answer 503)",
				tt.wantStatus == "Error" && rep.Message != "health check failed",
				tt.wantStatus == "Ok" && !tt.wantDegraded && rep.Message != "":
				t.Errorf("message %q", rep.Message)
			}
		})
	}
}
