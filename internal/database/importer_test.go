package database_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/database"
	"github.com/starling-tracker/starling/internal/swarm"
)

// fill writes keys, whitelist and counts through Starling.
func fill(t *testing.T, db *database.DB, nKeys, nList, nCounts int) (keys []access.KeyRecord, list []bittorrent.InfoHash, counts map[bittorrent.InfoHash]uint32) {
	t.Helper()
	ctx := t.Context()
	for i := range nKeys {
		r := access.KeyRecord{Key: key(t, "Imp"+string(rune('a'+i%26))+strings.Repeat("x", i/26)), ValidUntil: int64(1_800_000_000 + i), Permanent: i%3 == 0}
		if r.Permanent {
			r.ValidUntil = 0
		}
		if err := db.AddKey(ctx, r); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, r)
	}
	for i := range nList {
		h := hash(1_000_000 + i)
		if err := db.AddToWhitelist(ctx, h); err != nil {
			t.Fatal(err)
		}
		list = append(list, h)
	}
	counts = make(map[bittorrent.InfoHash]uint32)
	var batch []swarm.CompletedCount
	for i := range nCounts {
		batch = append(batch, swarm.CompletedCount{InfoHash: hash(i), Completed: uint32(i + 1)})
		counts[hash(i)] = uint32(i + 1)
	}
	if err := db.SaveCompleted(ctx, batch); err != nil {
		t.Fatal(err)
	}
	return keys, list, counts
}

func checkSame(t *testing.T, db *database.DB, keys []access.KeyRecord, list []bittorrent.InfoHash, counts map[bittorrent.InfoHash]uint32) {
	t.Helper()
	ctx := t.Context()
	gotKeys, err := db.LoadKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sortKeys(gotKeys)
	keys = slices.Clone(keys)
	sortKeys(keys)
	if !slices.Equal(gotKeys, keys) {
		t.Fatalf("keys:\n got %+v\nwant %+v", gotKeys, keys)
	}
	gotList, err := db.LoadWhitelist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cmp := func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) }
	slices.SortFunc(gotList, cmp)
	list = slices.Clone(list)
	slices.SortFunc(list, cmp)
	if !slices.Equal(gotList, list) {
		t.Fatalf("whitelist: got %d hashes, want %d", len(gotList), len(list))
	}
	gotCounts, err := db.LoadCompleted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, gotCounts, counts)
}

// TestImport copies SQLite to every other engine and back into a new SQLite
// file, checking the rows and the printed counts at each step.
func TestImport(t *testing.T) {
	for _, e := range engines(t) {
		t.Run("sqlite3-to-"+e.name+"-and-back", func(t *testing.T) {
			ctx := t.Context()
			src := freshSQLite(t)
			db := openDB(t, src, nil)
			keys, list, counts := fill(t, db, 30, 20, 2500)
			db.Close()

			mid := e.fresh(t)
			if e.name == "sqlite3" {
				mid = freshSQLite(t)
			}
			var out bytes.Buffer
			if err := database.Import(ctx, src, mid, &out, nil); err != nil {
				t.Fatalf("import %s: %v", e.name, err)
			}
			want := "keys: 30 rows copied\nwhitelist: 20 rows copied\ntorrents: 2500 rows copied\n"
			if out.String() != want {
				t.Fatalf("import printed %q, want %q", out.String(), want)
			}
			checkSame(t, openDB(t, mid, nil), keys, list, counts)

			// Again into the same destination: rows are replaced, not doubled.
			out.Reset()
			if err := database.Import(ctx, src, mid, &out, nil); err != nil {
				t.Fatalf("second import: %v", err)
			}
			checkSame(t, openDB(t, mid, nil), keys, list, counts)

			back := freshSQLite(t)
			out.Reset()
			if err := database.Import(ctx, mid, back, &out, nil); err != nil {
				t.Fatalf("import back: %v", err)
			}
			if out.String() != want {
				t.Fatalf("import back printed %q, want %q", out.String(), want)
			}
			checkSame(t, openDB(t, back, nil), keys, list, counts)
		})
	}
}

func TestImportErrors(t *testing.T) {
	dir := t.TempDir()
	openDB(t, dir+"/a.db", nil).Close()
	cases := []struct {
		name, from, to, want string
	}{
		{"same database", dir + "/a.db", dir + "/a.db", "same database"},
		{"unknown scheme", "redis://127.0.0.1:6379/0", dir + "/b.db", `unknown scheme "redis"`},
		{"password redacted", "ftp://user:hunter2@host/x", dir + "/b.db", "xxxxx"},
		{"missing source", dir + "/typo/nonexist.db", dir + "/b.db", "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := database.Import(t.Context(), c.from, c.to, &out, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Import(%s, %s) = %v, want an error containing %q", c.from, c.to, err, c.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); err == nil {
		t.Fatal("importing from a missing file created its directory")
	}
}

func TestImportLeavesTheSourceAlone(t *testing.T) {
	// A pre-v3 Torrust file (keys.valid_until NOT NULL, rollback journal),
	// which opening it as a tracker database would migrate: as an import's
	// source it is only read.
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "torrust.db")
	raw := rawSQLite(t, src)
	for _, q := range []string{torrustSQLiteV3[0], torrustSQLiteV2Keys, torrustSQLiteV3[2]} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	fillFixture(t, raw, "keys", int64(1_900_000_000))
	raw.Close()
	before, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := database.Import(ctx, src, filepath.Join(dir, "starling.db"), &out, nil); err != nil {
		t.Fatal(err)
	}
	if want := "keys: 2 rows copied\nwhitelist: 2 rows copied\ntorrents: 2 rows copied\n"; out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	after, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the source file changed")
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(src + suffix); err == nil {
			t.Fatalf("the import left %s beside the source", filepath.Base(src+suffix))
		}
	}
}

// TestImportFromReadOnlyMySQLUser: a user that may only SELECT can be
// copied from.
func TestImportFromReadOnlyMySQLUser(t *testing.T) {
	ctx := t.Context()
	_, reader := torrustMySQLWithUser(t, "SELECT", "reader-pw")
	var out bytes.Buffer
	if err := database.Import(ctx, reader, filepath.Join(t.TempDir(), "starling.db"), &out, nil); err != nil {
		t.Fatal(err)
	}
	if want := "keys: 2 rows copied\nwhitelist: 2 rows copied\ntorrents: 2 rows copied\n"; out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
}
