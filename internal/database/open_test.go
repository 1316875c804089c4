package database_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/database"
)

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"mysql://root:secret@127.0.0.1:3306/torrust", "mysql://root:xxxxx@127.0.0.1:3306/torrust"},
		{"mysql://root@127.0.0.1/torrust", "mysql://root@127.0.0.1/torrust"},
		{"postgresql://u:p%40ss@db/x?sslmode=disable", "postgresql://u:xxxxx@db/x?sslmode=disable"},
		{"postgres://db/x?password=hunter2", "postgres://db/x?password=xxxxx"},
		{"./storage/tracker/lib/database/sqlite3.db", "./storage/tracker/lib/database/sqlite3.db"},
		{"mysql://u:pa%zzss@host/db", "mysql://xxxxx@host/db"}, // unparseable: userinfo dropped
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			if got := database.Redact(c.in); got != c.want {
				t.Fatalf("Redact(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestDriverOf(t *testing.T) {
	cases := []struct {
		in      string
		want    database.Driver
		wantErr bool
	}{
		{"sqlite3.db", database.SQLite3, false},
		{"/var/lib/torrust/tracker/database/sqlite3.db", database.SQLite3, false},
		{"mysql://u@h/db", database.MySQL, false},
		{"MySQL://u@h/db", database.MySQL, false},
		{"postgres://u@h/db", database.PostgreSQL, false},
		{"postgresql://u@h/db", database.PostgreSQL, false},
		{"redis://h:6379", "", true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := database.DriverOf(c.in)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("DriverOf(%q) = %q, %v", c.in, got, err)
			}
		})
	}
}

// TestOpenFails: start-up stops with the database named and the reason.
func TestOpenFails(t *testing.T) {
	dir := t.TempDir()
	aFile := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(aFile, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a SQLite database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, driver, path string
		want               []string
	}{
		{"unknown driver", "oracle", "x", []string{`"oracle"`, "sqlite3, mysql or postgresql"}},
		{"empty path", "sqlite3", "", []string{"path is empty"}},
		{"parent is a file", "sqlite3", filepath.Join(aFile, "sqlite3.db"), []string{aFile, "not a directory"}},
		{"a directory", "sqlite3", dir, []string{dir, "is a directory"}},
		{"not a database", "sqlite3", garbage, []string{garbage, "not a database"}},
		{"mysql without URL", "mysql", "root@localhost", []string{"mysql://user:password@host:3306/database"}},
		{"mysql without database", "mysql", "mysql://root:pw@127.0.0.1:1", []string{"names no database"}},
		{"postgres without URL", "postgresql", "host=x", []string{"postgresql://user:password@host:5432/database"}},
		// Nothing listens on port 1: a refused connection, named without the password.
		{"mysql refused", "mysql", "mysql://root:hunter22@127.0.0.1:1/db", []string{"127.0.0.1:1", "xxxxx"}},
		{"postgres refused", "postgresql", "postgresql://u:hunter22@127.0.0.1:1/db", []string{"127.0.0.1:1", "xxxxx"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, err := database.Open(t.Context(), c.driver, c.path, nil)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%s, %s) succeeded", c.driver, c.path)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

// TestOpenCreatesDirectory: a fresh path in the config works, as on first run.
func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "storage", "tracker", "lib", "database", "sqlite3.db")
	db := openDB(t, path, nil)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not created: %v", err)
	}
	if db.Driver() != database.SQLite3 || !strings.Contains(db.String(), path) {
		t.Fatalf("db = %s (%s)", db, db.Driver())
	}
}

// TestOpenTogether: nodes that start at once on a new database all open
// it (PostgreSQL's CREATE TABLE IF NOT EXISTS races in its catalog;
// SQLite answers SQLITE_BUSY at once to connections that switch a new
// file to WAL together, which failed about one start in eight).
func TestOpenTogether(t *testing.T) {
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			starts := 1
			if e.name == "sqlite3" {
				starts = 20 // a new file each: cheap, and the race needs several tries
			}
			for range starts {
				url := e.fresh(t)
				driver, err := database.DriverOf(url)
				if err != nil {
					t.Fatal(err)
				}
				const nodes = 4
				errs := make(chan error, nodes)
				for range nodes {
					go func() {
						db, err := database.Open(t.Context(), string(driver), url, nil)
						if err == nil {
							db.Close()
						}
						errs <- err
					}()
				}
				for range nodes {
					if err := <-errs; err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
}
