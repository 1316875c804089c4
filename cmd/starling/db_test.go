package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" for the admin connection

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/database"
	"github.com/starling-tracker/starling/internal/swarm"
)

func TestDBImportCommand(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	db, err := database.OpenURL(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := bittorrent.ParseKey("CommandLineImportKey000000000000")
	if err := db.AddKey(ctx, access.KeyRecord{Key: k, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	var h bittorrent.InfoHash
	h[0] = 1
	if err := db.AddToWhitelist(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveCompleted(ctx, []swarm.CompletedCount{{InfoHash: h, Completed: 9}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	dests := map[string]string{"sqlite3": filepath.Join(dir, "new", "dst.db")}
	if u := os.Getenv("STARLING_TEST_POSTGRES_URL"); u != "" {
		dests["postgresql"] = freshPostgresSchema(t, u)
	}
	for name, dst := range dests {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := newDBCmd()
			cmd.SetArgs([]string{"import", "--from", src, "--to", dst})
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			if err := cmd.ExecuteContext(ctx); err != nil {
				t.Fatalf("db import: %v\n%s", err, errOut.String())
			}
			want := "keys: 1 rows copied\nwhitelist: 1 rows copied\ntorrents: 1 rows copied\n"
			if out.String() != want {
				t.Fatalf("printed %q, want %q", out.String(), want)
			}
			got, err := database.OpenURL(ctx, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Close()
			keys, err := got.LoadKeys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range keys {
				found = found || (r.Key == k && r.Permanent)
			}
			if !found {
				t.Fatalf("the key was not copied: %v", keys)
			}
		})
	}
}

func TestDBImportCommandNeedsBoth(t *testing.T) {
	cmd := newDBCmd()
	cmd.SetArgs([]string{"import", "--from", filepath.Join(t.TempDir(), "x.db")})
	var errOut bytes.Buffer
	cmd.SetOut(&errOut)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(t.Context())
	if err == nil || !strings.Contains(err.Error(), "--to") {
		t.Fatalf("missing --to: %v", err)
	}
}

// freshPostgresSchema makes a schema of its own for the test and returns
// base with it as search_path; it fails when the server does not answer.
func freshPostgresSchema(t *testing.T, base string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("STARLING_TEST_POSTGRES_URL is set but PostgreSQL does not answer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}
