package database_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver for the admin connection

	"github.com/starling-tracker/starling/internal/database"
)

// engine makes fresh, empty databases of one kind for a test.
type engine struct {
	name string
	// fresh returns the location (path or URL) of a new empty database,
	// dropped when the test ends.
	fresh func(t testing.TB) string
	// rawDriver and rawDSN open the same database with database/sql
	// directly, to check what is really stored.
	raw func(t testing.TB, location string) *sql.DB
}

// engines are SQLite always, and MySQL and PostgreSQL when their URLs are
// set. When set, the server must answer: the test fails, never skips.
func engines(t testing.TB) []engine {
	t.Helper()
	es := []engine{{name: "sqlite3", fresh: freshSQLite, raw: rawSQLite}}
	if u := os.Getenv("STARLING_TEST_MYSQL_URL"); u != "" {
		es = append(es, engine{name: "mysql", fresh: func(t testing.TB) string { return freshMySQL(t, u) }, raw: rawMySQL})
	}
	if u := os.Getenv("STARLING_TEST_POSTGRES_URL"); u != "" {
		es = append(es, engine{name: "postgresql", fresh: func(t testing.TB) string { return freshPostgres(t, u) }, raw: rawPostgres})
	}
	return es
}

func randomName(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "test_" + hex.EncodeToString(b[:])
}

func freshSQLite(t testing.TB) string {
	return filepath.Join(t.TempDir(), "sqlite3.db")
}

func rawSQLite(t testing.TB, path string) *sql.DB {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mysqlConfig(t testing.TB, raw string) *mysql.Config {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" {
		t.Fatalf("STARLING_TEST_MYSQL_URL %q: want mysql://user[:pass]@host:port/db", database.Redact(raw))
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.Timeout = 5 * time.Second
	return cfg
}

func openMySQLRaw(t testing.TB, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// freshMySQL creates a database test_<random> on the server of base.
func freshMySQL(t testing.TB, base string) string {
	t.Helper()
	cfg := mysqlConfig(t, base)
	cfg.DBName = ""
	admin := openMySQLRaw(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("STARLING_TEST_MYSQL_URL is set but MySQL does not answer: %v", err)
	}
	name := randomName(t)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

func rawMySQL(t testing.TB, location string) *sql.DB {
	return openMySQLRaw(t, mysqlConfig(t, location))
}

// freshPostgres creates a schema test_<random> and returns base with that
// schema as its search_path.
func freshPostgres(t testing.TB, base string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("STARLING_TEST_POSTGRES_URL %q: %v", database.Redact(base), err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("STARLING_TEST_POSTGRES_URL is set but PostgreSQL does not answer: %v", err)
	}
	name := randomName(t)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+name+" CASCADE")
	})
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

func rawPostgres(t testing.TB, location string) *sql.DB {
	db, err := sql.Open("pgx", location)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// openDB opens location with Starling and closes it when the test ends.
func openDB(t testing.TB, location string, log *slog.Logger) *database.DB {
	t.Helper()
	db, err := database.OpenURL(t.Context(), location, log)
	if err != nil {
		t.Fatalf("open %s: %v", database.Redact(location), err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// logBuffer is a slog sink whose text the test reads; safe for concurrent
// writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLog(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
