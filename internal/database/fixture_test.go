package database_test

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/database"
)

// The DDL Torrust v3.0.0 runs on SQLite (src/core/databases/sqlite.rs,
// create_database_tables), in its order, and the pre-v3 keys table that
// Torrust's manual migration 20240730183500 makes nullable.
var (
	torrustSQLiteV3 = []string{
		`
        CREATE TABLE IF NOT EXISTS whitelist (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            info_hash TEXT NOT NULL UNIQUE
        );`,
		`
        CREATE TABLE IF NOT EXISTS keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            valid_until INTEGER
         );`,
		`
        CREATE TABLE IF NOT EXISTS torrents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            info_hash TEXT NOT NULL UNIQUE,
            completed INTEGER DEFAULT 0 NOT NULL
        );`,
	}
	torrustSQLiteV2Keys = `
        CREATE TABLE IF NOT EXISTS keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            valid_until INTEGER NOT NULL
         );`

	// Torrust v3.0.0 on MySQL (src/core/databases/mysql.rs).
	torrustMySQLV3 = []string{
		`
        CREATE TABLE IF NOT EXISTS torrents (
            id integer PRIMARY KEY AUTO_INCREMENT,
            info_hash VARCHAR(40) NOT NULL UNIQUE,
            completed INTEGER DEFAULT 0 NOT NULL
        );`,
		"\n        CREATE TABLE IF NOT EXISTS `keys` (\n          `id` INT NOT NULL AUTO_INCREMENT,\n          `key` VARCHAR(32) NOT NULL,\n          `valid_until` INT(10),\n          PRIMARY KEY (`id`),\n          UNIQUE (`key`)\n        );",
		`
        CREATE TABLE IF NOT EXISTS whitelist (
            id integer PRIMARY KEY AUTO_INCREMENT,
            info_hash VARCHAR(40) NOT NULL UNIQUE
        );`,
	}
)

const (
	fixturePermanent = "YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ"
	fixtureExpiring  = "4d5c0b17Ab2e4F7c9D1a3B5e7F9c1A3e"
	fixtureExpiry    = 1_726_000_000 // 2024-09-10
	fixtureHash1     = "9c38422213e30bff212b30c360d26f9a02136422"
	fixtureHash2     = "443c7602b4fde83d1154d6d9da48808418b181b6"
)

// fixtureRows are the rows Torrust itself would have written: lowercase hex,
// unix seconds, NULL for a permanent key.
func fillFixture(t *testing.T, db *sql.DB, keysTable string, permanentUntil any) {
	t.Helper()
	ctx := t.Context()
	stmts := []struct {
		q    string
		args []any
	}{
		{"INSERT INTO " + keysTable + " (`key`, valid_until) VALUES (?, ?)", []any{fixturePermanent, permanentUntil}},
		{"INSERT INTO " + keysTable + " (`key`, valid_until) VALUES (?, ?)", []any{fixtureExpiring, fixtureExpiry}},
		{"INSERT INTO whitelist (info_hash) VALUES (?)", []any{fixtureHash1}},
		{"INSERT INTO whitelist (info_hash) VALUES (?)", []any{fixtureHash2}},
		{"INSERT INTO torrents (info_hash, completed) VALUES (?, ?)", []any{fixtureHash1, 12}},
		{"INSERT INTO torrents (info_hash, completed) VALUES (?, ?)", []any{fixtureHash2, 0}},
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s.q, s.args...); err != nil {
			t.Fatalf("fixture %q: %v", s.q, err)
		}
	}
}

// checkFixture opens the database with Starling, as the daemon does, and
// checks that the lists serve the keys and whitelist and that counts load.
func checkFixture(t *testing.T, loc string, wantPermanent bool) *database.DB {
	t.Helper()
	ctx := t.Context()
	db := openDB(t, loc, nil)
	lists := access.New(db)
	if err := lists.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lists.ReloadWhitelist(ctx); err != nil {
		t.Fatal(err)
	}
	perm, _ := bittorrent.ParseKey(fixturePermanent)
	exp, _ := bittorrent.ParseKey(fixtureExpiring)
	r, ok := lists.Key(perm)
	if !ok || r.Permanent != wantPermanent {
		t.Fatalf("permanent key: %+v, found %v; want Permanent=%v", r, ok, wantPermanent)
	}
	if wantPermanent && r.Expired(1<<40) {
		t.Fatal("a permanent key expires")
	}
	r, ok = lists.Key(exp)
	if !ok || r.Permanent || r.ValidUntil != fixtureExpiry {
		t.Fatalf("expiring key: %+v, found %v", r, ok)
	}
	if r.Expired(fixtureExpiry) || !r.Expired(fixtureExpiry+1) {
		t.Fatal("the expiring key's last valid second is wrong")
	}
	h1, _ := bittorrent.ParseInfoHash(fixtureHash1)
	h2, _ := bittorrent.ParseInfoHash(fixtureHash2)
	if !lists.Whitelisted(h1) || !lists.Whitelisted(h2) {
		t.Fatal("whitelisted hashes not served")
	}
	counts, err := db.LoadCompleted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, counts, map[bittorrent.InfoHash]uint32{h1: 12, h2: 0})
	return db
}

func TestTorrustSQLiteFixture(t *testing.T) {
	cases := []struct {
		name          string
		keysDDL       string
		permanent     any
		wantPermanent bool
	}{
		// v3: a NULL valid_until is a permanent key.
		{"v3", torrustSQLiteV3[1], nil, true},
		// Before v3 every key expired; Starling makes the column nullable
		// (migration 1) so that permanent keys can be added afterwards.
		{"pre-v3", torrustSQLiteV2Keys, int64(1_900_000_000), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "sqlite3.db")
			raw := rawSQLite(t, path)
			for _, q := range []string{torrustSQLiteV3[0], c.keysDDL, torrustSQLiteV3[2]} {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			fillFixture(t, raw, "keys", c.permanent)
			schemaBefore := sqliteSchema(t, raw, "whitelist", "torrents")

			db := checkFixture(t, path, c.wantPermanent)

			// Starling's writes are what Torrust reads: NULL for permanent,
			// lowercase hex, the same tables.
			k, err := bittorrent.ParseKey("NewPermanentKey0000000000000000a")
			if err != nil {
				t.Fatal(err)
			}
			if err := db.AddKey(ctx, access.KeyRecord{Key: k, Permanent: true}); err != nil {
				t.Fatalf("add a permanent key: %v", err)
			}
			var until sql.NullInt64
			if err := raw.QueryRowContext(ctx, "SELECT valid_until FROM keys WHERE key = ?", k.String()).Scan(&until); err != nil {
				t.Fatal(err)
			}
			if until.Valid {
				t.Fatalf("permanent key stored with valid_until %d", until.Int64)
			}
			if got := sqliteSchema(t, raw, "whitelist", "torrents"); !slices.Equal(got, schemaBefore) {
				t.Fatalf("Torrust's tables changed:\n%q\n%q", got, schemaBefore)
			}
			if c.name == "v3" {
				// A v3 keys table is left exactly as Torrust made it.
				got := sqliteSchema(t, raw, "keys")
				if len(got) != 1 || !strings.Contains(got[0], "valid_until INTEGER\n") {
					t.Fatalf("keys table changed: %q", got)
				}
			}
		})
	}
}

func sqliteSchema(t *testing.T, db *sql.DB, tables ...string) []string {
	t.Helper()
	var out []string
	for _, name := range tables {
		var s string
		if err := db.QueryRowContext(t.Context(), "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&s); err != nil {
			t.Fatalf("schema of %s: %v", name, err)
		}
		out = append(out, s)
	}
	return out
}

func TestTorrustMySQLFixture(t *testing.T) {
	base := os.Getenv("STARLING_TEST_MYSQL_URL")
	if base == "" {
		t.Skip("STARLING_TEST_MYSQL_URL is not set")
	}
	cases := []struct {
		name          string
		keysDDL       string
		permanent     any
		wantPermanent bool
	}{
		{"v3", torrustMySQLV3[1], nil, true},
		{"pre-v3", strings.Replace(torrustMySQLV3[1], "`valid_until` INT(10),", "`valid_until` INT(10) NOT NULL,", 1), int64(1_900_000_000), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			loc := freshMySQL(t, base)
			raw := rawMySQL(t, loc)
			for _, q := range []string{torrustMySQLV3[0], c.keysDDL, torrustMySQLV3[2]} {
				if _, err := raw.ExecContext(t.Context(), q); err != nil {
					t.Fatal(err)
				}
			}
			fillFixture(t, raw, "`keys`", c.permanent)
			db := checkFixture(t, loc, c.wantPermanent)
			// After migration 1 a permanent key and an expiry past 2038 fit.
			for _, r := range []access.KeyRecord{
				{Key: key(t, "After2038"), ValidUntil: 1 << 32},
				{Key: key(t, "PermanentAfterMigration"), Permanent: true},
			} {
				if err := db.AddKey(t.Context(), r); err != nil {
					t.Fatalf("AddKey(%+v): %v", r, err)
				}
			}
		})
	}
}

// TestMySQLWithoutAlterPrivilege: Torrust's database user needs no ALTER.
// Starling opens a Torrust database with such a user, warns that the
// widening migration is left for later, and applies nothing it need not:
// once the columns are in shape (altered by an administrator), the same
// user opens it silently and the migration is recorded.
func TestMySQLWithoutAlterPrivilege(t *testing.T) {
	ctx := t.Context()
	raw, restricted := torrustMySQLWithUser(t, "SELECT, INSERT, UPDATE, DELETE, CREATE", "torrust-pw")

	var logged logBuffer
	db := openDB(t, restricted, newLog(&logged))
	if !strings.Contains(logged.String(), "database migration skipped") || strings.Contains(logged.String(), "torrust-pw") {
		t.Fatalf("log: %s", logged.String())
	}
	if v, err := db.Migrations(ctx); err != nil || len(v) != 0 {
		t.Fatalf("migrations recorded %v (%v), want none", v, err)
	}
	lists := access.New(db)
	if err := lists.ReloadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	perm, _ := bittorrent.ParseKey(fixturePermanent)
	if r, ok := lists.Key(perm); !ok || !r.Permanent {
		t.Fatalf("the permanent key: %+v, found %v", r, ok)
	}
	db.Close()

	for _, q := range []string{"ALTER TABLE `keys` MODIFY `valid_until` BIGINT NULL", "ALTER TABLE torrents MODIFY completed BIGINT DEFAULT 0 NOT NULL"} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var again logBuffer
	db = openDB(t, restricted, newLog(&again))
	if strings.Contains(again.String(), "skipped") || strings.Contains(again.String(), "altering") {
		t.Fatalf("columns already in shape, yet: %s", again.String())
	}
	if v, err := db.Migrations(ctx); err != nil || len(v) != 1 || v[0] != 1 {
		t.Fatalf("migrations recorded %v (%v), want [1]", v, err)
	}
}

// torrustMySQLWithUser makes a fresh MySQL database with Torrust v3's tables
// and fixture rows, and a user holding only privileges on it, on the server
// of STARLING_TEST_MYSQL_URL (the test skips without it). It returns an
// administrator's connection and the database's URL with that user.
func torrustMySQLWithUser(t *testing.T, privileges, password string) (*sql.DB, string) {
	t.Helper()
	base := os.Getenv("STARLING_TEST_MYSQL_URL")
	if base == "" {
		t.Skip("STARLING_TEST_MYSQL_URL is not set")
	}
	ctx := t.Context()
	loc := freshMySQL(t, base)
	raw := rawMySQL(t, loc)
	for _, q := range torrustMySQLV3 {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	fillFixture(t, raw, "`keys`", nil)
	u, _ := url.Parse(loc)
	user := randomName(t)
	if _, err := raw.ExecContext(ctx, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+password+"'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.ExecContext(context.Background(), "DROP USER IF EXISTS '"+user+"'@'%'") })
	if _, err := raw.ExecContext(ctx, "GRANT "+privileges+" ON "+strings.TrimPrefix(u.Path, "/")+".* TO '"+user+"'@'%'"); err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(user, password)
	return raw, u.String()
}
