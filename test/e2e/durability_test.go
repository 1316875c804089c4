package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/tracker"
	"github.com/anacrolix/torrent/types/infohash"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" for the schema of each test

	"github.com/starling-tracker/starling/internal/database"
)

// dbTarget is where a durability test keeps its data: a SQLite file, and a
// fresh PostgreSQL schema or MySQL database when STARLING_TEST_POSTGRES_URL
// or STARLING_TEST_MYSQL_URL is set.
type dbTarget struct {
	driver, path string
}

func durabilityTargets(t *testing.T) map[string]func(t *testing.T, dir string) dbTarget {
	targets := map[string]func(t *testing.T, dir string) dbTarget{
		"sqlite3": func(t *testing.T, dir string) dbTarget {
			return dbTarget{"sqlite3", filepath.Join(dir, "storage", "sqlite3.db")}
		},
	}
	if base := os.Getenv("STARLING_TEST_POSTGRES_URL"); base != "" {
		targets["postgresql"] = func(t *testing.T, _ string) dbTarget {
			return dbTarget{"postgresql", freshSchema(t, base)}
		}
	}
	if base := os.Getenv("STARLING_TEST_MYSQL_URL"); base != "" {
		targets["mysql"] = func(t *testing.T, _ string) dbTarget {
			u, _ := freshMySQL(t, base)
			return dbTarget{"mysql", u}
		}
	}
	return targets
}

// freshSchema creates a schema for one test and returns base with it as
// search_path. A set URL whose server does not answer fails the test.
func freshSchema(t *testing.T, base string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	var b [6]byte
	rand.Read(b[:])
	name := "e2e_" + hex.EncodeToString(b[:])
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

func durabilityConfig(core, policy string, db dbTarget) string {
	return fmt.Sprintf(`[metadata]
schema_version = "2.0.0"

[logging]
threshold = "info"

[core]
%s

[core.tracker_policy]
%s

[core.database]
driver = %q
path = %q

[[udp_trackers]]
bind_address = "127.0.0.1:0"

[[http_trackers]]
bind_address = "127.0.0.1:0"

[http_api]
bind_address = "127.0.0.1:0"

[http_api.access_tokens]
admin = %q

[health_check_api]
bind_address = "127.0.0.1:0"
`, core, policy, db.driver, db.path, e2eToken)
}

func startWith(t *testing.T, dir, cfg string) *process {
	t.Helper()
	path := filepath.Join(dir, "tracker.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, dir, []string{"STARLING_CONFIG_TOML_PATH=" + path})
}

// announceErr announces over HTTP with anacrolix's client and returns its
// error (a tracker's failure reason is an error there).
func announceErr(url string, ih infohash.T, port uint16, left int64, event tracker.AnnounceEvent) (tracker.AnnounceResponse, error) {
	var pid [20]byte
	copy(pid[:], fmt.Sprintf("-AN0001-%012d", port))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tracker.Announce{
		TrackerUrl: url,
		Request:    tracker.AnnounceRequest{InfoHash: ih, PeerId: pid, Port: port, Left: left, NumWant: -1, Event: event},
		Context:    ctx,
	}.Do()
}

// TestDurabilitySIGKILL: a key and a whitelist entry added through the API
// are in the database the moment the API answers 200, so a SIGKILL right
// after loses neither.
func TestDurabilitySIGKILL(t *testing.T) {
	for name, target := range durabilityTargets(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := target(t, dir)
			cfg := durabilityConfig("private = true\nlisted = true", "", db)
			p := startWith(t, dir, cfg)
			ih := infohash.T{0xde, 0xad, 0xbe, 0xef}
			key := createKey(t, p.addr("api"))
			resp, err := http.Post(p.addr("api")+"/api/v1/whitelist/"+ih.HexString()+"?token="+e2eToken, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("POST whitelist: %s %s", resp.Status, body)
			}
			p.kill() // SIGKILL: nothing runs after the 200

			// What is on disk, read without the tracker.
			stored, err := database.Open(t.Context(), db.driver, db.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := stored.LoadKeys(t.Context())
			if err != nil || len(keys) != 1 || keys[0].Key.String() != key {
				t.Fatalf("keys in the database after SIGKILL: %v, %v", keys, err)
			}
			list, err := stored.LoadWhitelist(t.Context())
			if err != nil || len(list) != 1 || list[0].String() != ih.HexString() {
				t.Fatalf("whitelist in the database after SIGKILL: %v, %v", list, err)
			}
			stored.Close()

			// And the restarted tracker serves both.
			p = startWith(t, dir, cfg)
			announce := p.addr("http") + "/announce/" + key
			if _, err := announceErr(announce, ih, 7201, 1, tracker.Started); err != nil {
				t.Fatalf("announce with the key to the whitelisted torrent after restart: %v\n%s", err, p.Log())
			}
			if _, err := announceErr(announce, infohash.T{1}, 7202, 1, tracker.Started); err == nil || !strings.Contains(err.Error(), "not whitelisted") {
				t.Fatalf("announce to a torrent never whitelisted: %v", err)
			}
			if _, err := announceErr(p.addr("http")+"/announce/"+strings.Repeat("Z", 32), ih, 7203, 1, tracker.Started); err == nil {
				t.Fatal("announce with a key never created succeeded")
			}
		})
	}
}

// TestDurabilitySIGKILLUnderWrites: API writes run from several clients at
// once (whitelist adds and removes, keys generated and deleted) when the
// tracker is SIGKILLed in the middle of them. Every write the API answered
// 200 is in the database, read without the tracker, and the restarted
// tracker serves it; writes cut off by the kill may have gone either way.
func TestDurabilitySIGKILLUnderWrites(t *testing.T) {
	for name, target := range durabilityTargets(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := target(t, dir)
			cfg := durabilityConfig("private = true\nlisted = true", "", db)
			p := startWith(t, dir, cfg)
			api := p.addr("api")

			// What the API acknowledged, per writer: hashes listed and then
			// removed, keys made and then deleted. A removal asked for but
			// not acknowledged (cut off by the kill) may have gone either way.
			type acked struct {
				listed, removing, unlisted map[string]bool
				keys, deleting, deleted    map[string]bool
			}
			const writers = 4
			results := make([]acked, writers)
			var ackedTotal atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := range writers {
				r := &results[w]
				*r = acked{map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}}
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ih := fmt.Sprintf("%02x%038x", w, i)
						status, _, err := apiDo("POST", api+"/api/v1/whitelist/"+ih+"?token="+e2eToken, "")
						if err != nil {
							return // killed
						}
						if status == 200 {
							r.listed[ih] = true
							ackedTotal.Add(1)
						}
						if i%3 == 2 { // remove one in three again
							r.removing[ih] = true
							if status, _, err := apiDo("DELETE", api+"/api/v1/whitelist/"+ih+"?token="+e2eToken, ""); err == nil && status == 200 {
								r.unlisted[ih] = true
							}
						}
						status, body, err := apiDo("POST", api+"/api/v1/key/3600?token="+e2eToken, "")
						if err != nil {
							return
						}
						var k struct {
							Key string `json:"key"`
						}
						if status == 200 && json.Unmarshal([]byte(body), &k) == nil && len(k.Key) == 32 {
							r.keys[k.Key] = true
							ackedTotal.Add(1)
							if i%4 == 3 {
								r.deleting[k.Key] = true
								if status, _, err := apiDo("DELETE", api+"/api/v1/key/"+k.Key+"?token="+e2eToken, ""); err == nil && status == 200 {
									r.deleted[k.Key] = true
								}
							}
						}
					}
				})
			}
			waitFor(t, "200 acknowledged writes", func() bool { return ackedTotal.Load() >= 200 })
			p.kill() // SIGKILL with writes in flight
			close(stop)
			wg.Wait()

			stored, err := database.Open(t.Context(), db.driver, db.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := stored.LoadKeys(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			list, err := stored.LoadWhitelist(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			stored.Close()
			haveKey, haveHash := map[string]bool{}, map[string]bool{}
			for _, k := range keys {
				haveKey[k.Key.String()] = true
			}
			for _, h := range list {
				haveHash[h.String()] = true
			}
			var someKey, someHash string
			n := 0
			for _, r := range results {
				for ih := range r.listed {
					n++
					switch {
					case r.unlisted[ih] && haveHash[ih]:
						t.Errorf("whitelist %s: removal acknowledged, still in the database after SIGKILL", ih)
					case !r.removing[ih] && !haveHash[ih]:
						t.Errorf("whitelist %s: acknowledged, lost by SIGKILL", ih)
					case !r.removing[ih]:
						someHash = ih
					}
				}
				for k := range r.keys {
					n++
					switch {
					case r.deleted[k] && haveKey[k]:
						t.Errorf("key %s…: deletion acknowledged, still in the database after SIGKILL", k[:4])
					case !r.deleting[k] && !haveKey[k]:
						t.Errorf("key %s…: acknowledged, lost by SIGKILL", k[:4])
					case !r.deleting[k]:
						someKey = k
					}
				}
			}
			t.Logf("%d acknowledged writes checked; %d keys and %d whitelisted hashes in the database", n, len(keys), len(list))
			if someKey == "" || someHash == "" {
				t.Fatal("no key or hash left to announce with")
			}

			// The restarted tracker serves them.
			p = startWith(t, dir, cfg)
			ih, err := hex.DecodeString(someHash)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := announceErr(p.addr("http")+"/announce/"+someKey, infohash.T(ih), 7401, 1, tracker.Started); err != nil {
				t.Fatalf("announce with an acknowledged key to an acknowledged torrent after restart: %v", err)
			}
		})
	}
}

// TestDurabilitySIGTERM: with persistent_torrent_completed_stat, the latest
// completed counts are written on a graceful stop and loaded back at start.
func TestDurabilitySIGTERM(t *testing.T) {
	for name, target := range durabilityTargets(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			db := target(t, dir)
			cfg := durabilityConfig("", "persistent_torrent_completed_stat = true", db)
			p := startWith(t, dir, cfg)
			http := p.addr("http") + "/announce"
			ih := infohash.T{0xc0, 0xff, 0xee}
			steps := []struct {
				port  uint16
				left  int64
				event tracker.AnnounceEvent
			}{
				{7301, 100, tracker.Started},
				{7301, 0, tracker.Completed}, // counted
				{7302, 0, tracker.Completed}, // counted: its first announce
				{7303, 50, tracker.Started},
				{7303, 0, tracker.Completed}, // counted
			}
			for _, s := range steps {
				if _, err := announceErr(http, ih, s.port, s.left, s.event); err != nil {
					t.Fatalf("announce %+v: %v", s, err)
				}
			}
			if got := scrapeCompleted(t, p.addr("udp")+"/announce", ih); got != 3 {
				t.Fatalf("completed before the stop = %d, want 3", got)
			}
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.Log())
			}

			stored, err := database.Open(t.Context(), db.driver, db.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			counts, err := stored.LoadCompleted(t.Context())
			stored.Close()
			if err != nil || len(counts) != 1 || counts[0].Completed != 3 || counts[0].InfoHash.String() != ih.HexString() {
				t.Fatalf("counts in the database after SIGTERM: %+v, %v", counts, err)
			}

			p = startWith(t, dir, cfg)
			if got := scrapeCompleted(t, p.addr("udp")+"/announce", ih); got != 3 {
				t.Fatalf("completed after the restart = %d, want 3 (loaded back)\n%s", got, p.Log())
			}
		})
	}
}

func scrapeCompleted(t *testing.T, url string, ih infohash.T) int32 {
	t.Helper()
	c, err := tracker.NewClient(url, tracker.NewClientOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc, err := c.Scrape(ctx, []infohash.T{ih})
	if err != nil || len(sc) != 1 {
		t.Fatalf("scrape %s: %v, %v", url, sc, err)
	}
	return sc[0].Completed
}
