package adminapi_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/adminapi"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/metrics"
	"github.com/starling-tracker/starling/internal/swarm"
)

const (
	textPlain = "text/plain; charset=utf-8"
	appJSON   = "application/json"
	ok        = `{"status":"ok"}`
)

func rejection(reason string) string {
	return `Unhandled rejection: Err { reason: "` + reason + `" }`
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name       string
		path       string
		hdr        []string
		wantStatus int
		wantBody   string
	}{
		{"no token", "/api/v1/stats", nil, 500, rejection("unauthorized")},
		{"wrong token", "/api/v1/stats?token=WrongToken", nil, 500, rejection("token not valid")},
		{"empty token", "/api/v1/stats?token=", nil, 500, rejection("token not valid")},
		{"token is case sensitive", "/api/v1/stats?token=myaccesstoken", nil, 500, rejection("token not valid")},
		{"token prefix", "/api/v1/stats?token=MyAccess", nil, 500, rejection("token not valid")},
		{"token in any position", "/api/v1/torrents?limit=1&token=MyAccessToken&offset=0", nil, 200, "[]"},
		{"second configured token", "/api/v1/torrents?token=AnotherToken", nil, 200, "[]"},
		{"bearer", "/api/v1/torrents", []string{"Authorization", "Bearer MyAccessToken"}, 200, "[]"},
		{"bearer scheme in lower case", "/api/v1/torrents", []string{"Authorization", "bearer MyAccessToken"}, 200, "[]"},
		{"empty bearer", "/api/v1/torrents?token=MyAccessToken", []string{"Authorization", "Bearer "}, 500, rejection("token not valid")},
		{"wrong bearer", "/api/v1/torrents", []string{"Authorization", "Bearer WrongToken"}, 500, rejection("token not valid")},
		{"header beats query", "/api/v1/torrents?token=MyAccessToken", []string{"Authorization", "Bearer WrongToken"}, 500, rejection("token not valid")},
		{"proxy's basic credentials beside the query token", "/api/v1/torrents?token=MyAccessToken", []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 200, "[]"},
		{"basic credentials and a wrong query token", "/api/v1/torrents?token=WrongToken", []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 500, rejection("token not valid")},
		{"basic credentials alone", "/api/v1/torrents", []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 500, rejection("unknown token provided")},
		{"bearer without a space", "/api/v1/torrents", []string{"Authorization", "BearerMyAccessToken"}, 500, rejection("unknown token provided")},
		{"duplicate token", "/api/v1/torrents?token=MyAccessToken&token=MyAccessToken", nil, 400, "Failed to deserialize query string: duplicate field `token`"},
		{"escaped token", "/api/v1/torrents?token=My%41ccessToken", nil, 200, "[]"},
		{"unknown route without token", "/api/v1/nothing", nil, 500, rejection("unauthorized")},
		{"unknown route with token", "/api/v1/nothing?token=MyAccessToken", nil, 404, ""},
		{"root with token", "/?token=MyAccessToken", nil, 404, ""},
		{"trailing slash", "/api/v1/stats/?token=MyAccessToken", nil, 404, ""},
		{"health check needs no token", "/api/health_check", nil, 200, `{"status":"Ok"}`},
		{"open metrics need no token", "/metrics", nil, 200, ""},
		{"v1 metrics need the token", "/api/v1/metrics", nil, 500, rejection("unauthorized")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do("GET", tt.path, "", tt.hdr...)
			if a.status != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", a.status, tt.wantStatus, a.body)
			}
			if tt.path == "/metrics" {
				if !strings.Contains(a.body, "starling_requests_total") {
					t.Fatalf("metrics body lacks starling_requests_total")
				}
				return
			}
			if a.body != tt.wantBody {
				t.Fatalf("body %q, want %q", a.body, tt.wantBody)
			}
			if tt.wantStatus == 500 && a.header.Get("Content-Type") != textPlain {
				t.Errorf("content type %q, want %q", a.header.Get("Content-Type"), textPlain)
			}
		})
	}
}

func TestNoTokensConfigured(t *testing.T) {
	e := newEnv(t, func(c *adminapi.Config, _ *adminapi.Deps) { c.AccessTokens = map[string]string{"admin": ""} })
	if a := e.do("GET", "/api/v1/stats?token=", ""); a.status != 500 || a.body != rejection("token not valid") {
		t.Fatalf("empty configured token granted access: %d %q", a.status, a.body)
	}
}

func TestMetricsNeedToken(t *testing.T) {
	e := newEnv(t, func(c *adminapi.Config, _ *adminapi.Deps) { c.MetricsNeedToken = true })
	if a := e.do("GET", "/metrics", ""); a.status != 500 || a.body != rejection("unauthorized") {
		t.Fatalf("/metrics without token: %d %q", a.status, a.body)
	}
	if a := e.do("GET", "/metrics", "", "Authorization", "Bearer "+token); a.status != 200 || !strings.Contains(a.body, "starling_torrents") {
		t.Fatalf("/metrics with bearer: %d", a.status)
	}
	if a := e.do("GET", "/api/v1/metrics?token="+token, ""); a.status != 200 || !strings.Contains(a.body, "starling_torrents") {
		t.Fatalf("/api/v1/metrics with token: %d", a.status)
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t, func(_ *adminapi.Config, d *adminapi.Deps) {
		d.Limits = swarm.Limits{MaxTorrents: 1000, MaxPeers: 5000, MaxPeersPerTorrent: 50}
	})
	e.announce(hash(1), "-qB4250-000000000001", "10.0.0.1:6881", 0, bittorrent.EventCompleted)
	e.announce(hash(1), "-TR3000-000000000002", "10.0.0.2:6881", 100, bittorrent.EventStarted)
	e.announce(hash(2), "-TR3000-000000000003", "[2001:db8::1]:6881", 100, bittorrent.EventStarted)
	s := e.counters.Stripe()
	for c, n := range map[metrics.Counter]int{
		metrics.TCP4Connections: 1, metrics.TCP4Announces: 2, metrics.TCP4Scrapes: 3,
		metrics.TCP6Connections: 4, metrics.TCP6Announces: 5, metrics.TCP6Scrapes: 6,
		metrics.UDP4Connections: 7, metrics.UDP4Announces: 8, metrics.UDP4Scrapes: 9,
		metrics.UDP6Connections: 10, metrics.UDP6Announces: 11, metrics.UDP6Scrapes: 12,
	} {
		for range n {
			s.Inc(c)
		}
	}

	a := e.do("GET", "/api/v1/stats?token="+token, "")
	if a.status != 200 || a.header.Get("Content-Type") != appJSON {
		t.Fatalf("status %d, content type %q", a.status, a.header.Get("Content-Type"))
	}
	want := `{"torrents":2,"seeders":1,"completed":1,"leechers":2,` +
		`"tcp4_connections_handled":1,"tcp4_announces_handled":2,"tcp4_scrapes_handled":3,` +
		`"tcp6_connections_handled":4,"tcp6_announces_handled":5,"tcp6_scrapes_handled":6,` +
		`"udp4_connections_handled":7,"udp4_announces_handled":8,"udp4_scrapes_handled":9,` +
		`"udp6_connections_handled":10,"udp6_announces_handled":11,"udp6_scrapes_handled":12,` +
		`"peers":3,"max_torrents":1000,"max_peers":5000,"max_peers_per_torrent":50}`
	if a.body != want {
		t.Fatalf("stats\n got %s\nwant %s", a.body, want)
	}

	a = e.do("GET", "/api/v1/stats?format=prometheus&token="+token, "")
	wantLines := "torrents 2\nseeders 1\ncompleted 1\nleechers 2\n" +
		"tcp4_connections_handled 1\ntcp4_announces_handled 2\ntcp4_scrapes_handled 3\n" +
		"tcp6_connections_handled 4\ntcp6_announces_handled 5\ntcp6_scrapes_handled 6\n" +
		"udp4_connections_handled 7\nudp4_announces_handled 8\nudp4_scrapes_handled 9\n" +
		"udp6_connections_handled 10\nudp6_announces_handled 11\nudp6_scrapes_handled 12\n"
	if a.status != 200 || a.body != wantLines || a.header.Get("Content-Type") != textPlain {
		t.Fatalf("prometheus stats: %d %q %q", a.status, a.header.Get("Content-Type"), a.body)
	}
}

func TestTorrent(t *testing.T) {
	e := newEnv(t)
	h := hash(0xab)
	e.announce(h, "-qB4250-000000000001", "10.0.0.1:6881", 0, bittorrent.EventCompleted)
	e.announce(h, "xxxxxxxxxxxxxxxxxxxx", "[2001:db8::1]:51413", 5, bittorrent.EventStarted)
	ms := fixedNow.Unix() * 1000

	t.Run("known, all peers", func(t *testing.T) {
		a := e.do("GET", "/api/v1/torrent/"+strings.ToUpper(h.String())+"?token="+token, "")
		if a.status != 200 || a.header.Get("Content-Type") != appJSON {
			t.Fatalf("status %d ctype %q body %s", a.status, a.header.Get("Content-Type"), a.body)
		}
		got := decodeJSON(t, a.body)
		want := decodeJSON(t, `{"info_hash":"`+h.String()+`","seeders":1,"completed":1,"leechers":1,"peers":[
			{"peer_id":{"id":"0x2d7142343235302d303030303030303030303031","client":"qBittorrent"},
			 "peer_addr":"10.0.0.1:6881","updated":`+itoa(ms)+`,"updated_milliseconds_ago":`+itoa(ms)+`,
			 "uploaded":11,"downloaded":22,"left":0,"event":"Completed"},
			{"peer_id":{"id":"0x7878787878787878787878787878787878787878","client":null},
			 "peer_addr":"[2001:db8::1]:51413","updated":`+itoa(ms)+`,"updated_milliseconds_ago":`+itoa(ms)+`,
			 "uploaded":11,"downloaded":22,"left":5,"event":"Started"}]}`)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("torrent\n got %v\nwant %v", got, want)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		a := e.do("GET", "/api/v1/torrent/"+hash(1).String()+"?token="+token, "")
		if a.status != 200 || a.body != `"torrent not known"` || a.header.Get("Content-Type") != appJSON {
			t.Fatalf("%d %q %q", a.status, a.header.Get("Content-Type"), a.body)
		}
	})
	for _, bad := range []string{"abc", strings.Repeat("g", 40), strings.Repeat("a", 41), "%20" + strings.Repeat("a", 39)} {
		t.Run("bad info hash "+bad, func(t *testing.T) {
			a := e.do("GET", "/api/v1/torrent/"+bad+"?token="+token, "")
			shown := strings.ReplaceAll(bad, "%20", " ")
			want := `Invalid URL: invalid infohash param: string "` + shown + `", expected a 40 character long string`
			if a.status != 400 || a.body != want || a.header.Get("Content-Type") != textPlain {
				t.Fatalf("%d %q, want 400 %q", a.status, a.body, want)
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestTorrents(t *testing.T) {
	e := newEnv(t)
	for _, b := range []byte{3, 1, 2} {
		e.announce(hash(b), "-TR3000-000000000001", "10.0.0.1:6881", 1, bittorrent.EventStarted)
	}
	e.announce(hash(2), "-TR3000-000000000002", "10.0.0.2:6881", 0, bittorrent.EventCompleted)
	item := func(b byte, seeders, completed, leechers int) string {
		return `{"info_hash":"` + hash(b).String() + `","seeders":` + itoa(int64(seeders)) +
			`,"completed":` + itoa(int64(completed)) + `,"leechers":` + itoa(int64(leechers)) + `}`
	}
	t1, t2, t3 := item(1, 0, 0, 1), item(2, 1, 1, 1), item(3, 0, 0, 1)
	tests := []struct {
		name, query string
		status      int
		body        string
	}{
		{"all, sorted by hash", "", 200, "[" + t1 + "," + t2 + "," + t3 + "]"},
		{"offset skips items", "&offset=1", 200, "[" + t2 + "," + t3 + "]"},
		{"limit", "&limit=2", 200, "[" + t1 + "," + t2 + "]"},
		{"offset and limit", "&offset=1&limit=1", 200, "[" + t2 + "]"},
		{"offset past the end", "&offset=10", 200, "[]"},
		{"limit 0", "&limit=0", 200, "[]"},
		{"empty values are absent", "&offset=&limit=", 200, "[" + t1 + "," + t2 + "," + t3 + "]"},
		{"plus sign like Rust", "&offset=%2B1&limit=1", 200, "[" + t2 + "]"},
		{"garbage offset", "&offset=abc", 400, "Failed to deserialize query string: invalid digit found in string"},
		{"negative limit", "&limit=-1", 400, "Failed to deserialize query string: invalid digit found in string"},
		{"limit above u32", "&limit=4294967296", 400, "Failed to deserialize query string: number too large to fit in target type"},
		{"filter, request order, unknown left out", "&info_hash=" + hash(3).String() + "&info_hash=" + hash(9).String() + "&info_hash=" + hash(1).String(), 200, "[" + t3 + "," + t1 + "]"},
		{"filter ignores pagination", "&offset=5&limit=0&info_hash=" + hash(2).String(), 200, "[" + t2 + "]"},
		{"filter with a bad hash", "&info_hash=zz", 400, `Invalid URL: invalid infohash param: string "zz", expected a 40 character long string`},
		{"filter of unknown only", "&info_hash=" + hash(9).String(), 200, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.do("GET", "/api/v1/torrents?token="+token+tt.query, "")
			if a.status != tt.status || a.body != tt.body {
				t.Fatalf("got %d %s\nwant %d %s", a.status, a.body, tt.status, tt.body)
			}
		})
	}
}

func TestWhitelist(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := hash(0x42)
	path := "/api/v1/whitelist/" + h.String() + "?token=" + token

	for i := range 2 { // idempotent
		if a := e.do("POST", path, ""); a.status != 200 || a.body != ok {
			t.Fatalf("POST #%d: %d %q", i, a.status, a.body)
		}
	}
	if !e.lists.Whitelisted(h) {
		t.Fatal("not whitelisted in memory after POST")
	}
	if got, err := e.db.LoadWhitelist(ctx); err != nil || len(got) != 1 || got[0] != h {
		t.Fatalf("database whitelist after POST: %v %v", got, err)
	}
	for i := range 2 {
		if a := e.do("DELETE", path, ""); a.status != 200 || a.body != ok {
			t.Fatalf("DELETE #%d: %d %q", i, a.status, a.body)
		}
	}
	if e.lists.Whitelisted(h) {
		t.Fatal("still whitelisted after DELETE")
	}
	if got, _ := e.db.LoadWhitelist(ctx); len(got) != 0 {
		t.Fatalf("database still holds %v", got)
	}

	// Reload picks up what another process wrote to the database.
	other := hash(0x43)
	if err := e.db.AddToWhitelist(ctx, other); err != nil {
		t.Fatal(err)
	}
	if a := e.do("GET", "/api/v1/whitelist/reload?token="+token, ""); a.status != 200 || a.body != ok {
		t.Fatalf("reload: %d %q", a.status, a.body)
	}
	if !e.lists.Whitelisted(other) {
		t.Fatal("reload did not load the database's whitelist")
	}

	for _, m := range []string{"POST", "DELETE"} {
		a := e.do(m, "/api/v1/whitelist/nothex?token="+token, "")
		if a.status != 400 || a.body != `Invalid URL: invalid infohash param: string "nothex", expected a 40 character long string` {
			t.Fatalf("%s bad hash: %d %q", m, a.status, a.body)
		}
	}
	if a := e.do("PUT", path, ""); a.status != 405 || a.body != "" || a.header.Get("Allow") != "POST,DELETE" {
		t.Fatalf("PUT: %d %q allow %q", a.status, a.body, a.header.Get("Allow"))
	}
	if a := e.do("DELETE", "/api/v1/whitelist/reload?token="+token, ""); a.status != 405 {
		t.Fatalf("DELETE whitelist/reload: %d", a.status)
	}
}

var expiryRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{9} UTC$`)

func TestAddKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	post := func(body string, hdr ...string) answer {
		if hdr == nil {
			hdr = []string{"Content-Type", "application/json"}
		}
		return e.do("POST", "/api/v1/keys?token="+token, body, hdr...)
	}

	t.Run("given key with expiry", func(t *testing.T) {
		a := post(`{"key":"` + knownKey + `","seconds_valid":7200}`)
		want := `{"key":"` + knownKey + `","valid_until":` + itoa(fixedNow.Unix()+7200) + `,"expiry_time":"2023-03-28 15:25:00.058085050 UTC"}`
		if a.status != 200 || a.body != want || a.header.Get("Content-Type") != appJSON {
			t.Fatalf("got %d %s\nwant %s", a.status, a.body, want)
		}
		k, _ := bittorrent.ParseKey(knownKey)
		rec, found := e.lists.Key(k)
		if !found || rec.Permanent || rec.ValidUntil != fixedNow.Unix()+7200 {
			t.Fatalf("key in memory: %+v %v", rec, found)
		}
		keys, err := e.db.LoadKeys(ctx)
		if err != nil || len(keys) != 1 || keys[0] != rec {
			t.Fatalf("key in database: %+v %v", keys, err)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		a := post(`{"key":"` + knownKey + `","seconds_valid":60}`)
		if a.status != 500 || !strings.HasPrefix(a.body, `Unhandled rejection: Err { reason: "failed to generate key: `) {
			t.Fatalf("%d %q", a.status, a.body)
		}
	})
	t.Run("random permanent", func(t *testing.T) {
		for _, body := range []string{`{}`, `{"key":null,"seconds_valid":null}`, `{"other":1}`} {
			a := post(body)
			var got struct {
				Key        string
				ValidUntil *int64  `json:"valid_until"`
				ExpiryTime *string `json:"expiry_time"`
			}
			if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
				t.Fatalf("%s: %d %q %v", body, a.status, a.body, err)
			}
			if !strings.Contains(a.body, `"valid_until":null`) || !strings.Contains(a.body, `"expiry_time":null`) {
				t.Fatalf("%s: permanent key must show nulls: %s", body, a.body)
			}
			k, err := bittorrent.ParseKey(got.Key)
			if err != nil {
				t.Fatalf("random key %q: %v", got.Key, err)
			}
			if rec, found := e.lists.Key(k); !found || !rec.Permanent {
				t.Fatalf("random key not stored as permanent: %+v %v", rec, found)
			}
		}
	})
	t.Run("random with expiry", func(t *testing.T) {
		a := post(`{"seconds_valid":0}`)
		var got struct {
			ValidUntil int64  `json:"valid_until"`
			ExpiryTime string `json:"expiry_time"`
		}
		if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
			t.Fatalf("%d %q %v", a.status, a.body, err)
		}
		if got.ValidUntil != fixedNow.Unix() || got.ExpiryTime != "2023-03-28 13:25:00.058085050 UTC" || !expiryRE.MatchString(got.ExpiryTime) {
			t.Fatalf("got %+v", got)
		}
	})

	const deser = "Failed to deserialize the JSON body into the target type: "
	errTests := []struct {
		name, body string
		hdr        []string
		status     int
		want       string // exact, or a prefix when it ends in "…"
	}{
		{"short key", `{"key":"abc"}`, nil, 400, `Invalid URL: invalid auth key: string "abc", Invalid key length. Key must be have 32 chars`},
		{"bad key chars", `{"key":"YZSl4lMZupRuOpSRC3krIKR5BPB14nr!"}`, nil, 400, `Invalid URL: invalid auth key: string "YZSl4lMZupRuOpSRC3krIKR5BPB14nr!", Invalid chars for key. Key can only alphanumeric chars (0-9, a-z, A-Z)`},
		{"key of wrong type", `{"key":5}`, nil, 422, deser + "key: invalid type: integer `5`, expected a string"},
		{"seconds as string", `{"seconds_valid":"60"}`, nil, 422, deser + `seconds_valid: invalid type: string "60", expected u64`},
		{"negative seconds", `{"seconds_valid":-1}`, nil, 422, deser + "seconds_valid: invalid value: integer `-1`, expected u64"},
		{"fractional seconds", `{"seconds_valid":1.5}`, nil, 422, deser + "seconds_valid: invalid type: floating point `1.5`, expected u64"},
		{"seconds above u64", `{"seconds_valid":18446744073709551616}`, nil, 422, deser + "seconds_valid: invalid type: floating point `18446744073709551616`, expected u64"},
		{"not an object", `[1]`, nil, 422, deser + "invalid type: sequence, expected struct AddKeyForm"},
		{"duration overflow", `{"seconds_valid":18446744073709551615}`, nil, 400, `Invalid URL: invalid auth key duration: "18446744073709551615"`},
		{"expiry past year 9999", `{"seconds_valid":300000000000}`, nil, 400, `Invalid URL: invalid auth key duration: "300000000000"`},
		{"not JSON", `{"key":`, nil, 400, "Failed to parse the request body as JSON: …"},
		{"trailing garbage", `{} x`, nil, 400, "Failed to parse the request body as JSON: …"},
		{"empty body", ``, nil, 400, "Failed to parse the request body as JSON: …"},
		{"no content type", `{}`, []string{"X-None", "1"}, 415, "Expected request with `Content-Type: application/json`"},
		{"text content type", `{}`, []string{"Content-Type", "text/plain"}, 415, "Expected request with `Content-Type: application/json`"},
		{"body too large", `{"key":"` + strings.Repeat("a", 70<<10) + `"}`, nil, 413, "Failed to buffer the request body: length limit exceeded"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(tt.body, tt.hdr...)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d (%q)", a.status, tt.status, a.body)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(a.body, prefix) {
					t.Fatalf("body %q, want prefix %q", a.body, prefix)
				}
			} else if a.body != tt.want {
				t.Fatalf("body %q\nwant %q", a.body, tt.want)
			}
		})
	}
	if a := e.do("GET", "/api/v1/keys?token="+token, ""); a.status != 405 || a.header.Get("Allow") != "POST" {
		t.Fatalf("GET /keys: %d allow %q", a.status, a.header.Get("Allow"))
	}
}

func TestGenerateAndDeleteKey(t *testing.T) {
	e := newEnv(t)
	a := e.do("POST", "/api/v1/key/120?token="+token, "")
	var got struct {
		Key        string `json:"key"`
		ValidUntil int64  `json:"valid_until"`
		ExpiryTime string `json:"expiry_time"`
	}
	if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != 200 {
		t.Fatalf("POST /key/120: %d %q %v", a.status, a.body, err)
	}
	if got.ValidUntil != fixedNow.Unix()+120 || got.ExpiryTime != "2023-03-28 13:27:00.058085050 UTC" {
		t.Fatalf("got %+v", got)
	}
	k, err := bittorrent.ParseKey(got.Key)
	if err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"abc", "-1", "1.5", "18446744073709551616"} {
		a := e.do("POST", "/api/v1/key/"+bad+"?token="+token, "")
		want := `Invalid URL: Cannot parse "` + bad + "\" to a `u64`"
		if a.status != 400 || a.body != want {
			t.Fatalf("POST /key/%s: %d %q, want %q", bad, a.status, a.body, want)
		}
	}

	if a := e.do("DELETE", "/api/v1/key/"+got.Key+"?token="+token, ""); a.status != 200 || a.body != ok {
		t.Fatalf("DELETE: %d %q", a.status, a.body)
	}
	if _, found := e.lists.Key(k); found {
		t.Fatal("key still valid after DELETE")
	}
	a = e.do("DELETE", "/api/v1/key/"+got.Key+"?token="+token, "")
	if a.status != 500 || !strings.HasPrefix(a.body, `Unhandled rejection: Err { reason: "failed to delete key: Failed to remove record from `) {
		t.Fatalf("DELETE unknown key: %d %q", a.status, a.body)
	}
	if strings.Contains(a.body, got.Key) {
		t.Errorf("answer quotes the key: %q", a.body)
	}
	for _, bad := range []string{"short", strings.Repeat("!", 32)} {
		a := e.do("DELETE", "/api/v1/key/"+bad+"?token="+token, "")
		if a.status != 400 || a.body != `Invalid auth key id param "`+bad+`"` {
			t.Fatalf("DELETE /key/%s: %d %q", bad, a.status, a.body)
		}
	}
}

func TestReloadKeys(t *testing.T) {
	e := newEnv(t)
	k, _ := bittorrent.ParseKey(knownKey)
	if err := e.db.AddKey(context.Background(), access.KeyRecord{Key: k, Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if _, found := e.lists.Key(k); found {
		t.Fatal("key valid before reload")
	}
	if a := e.do("GET", "/api/v1/keys/reload?token="+token, ""); a.status != 200 || a.body != ok {
		t.Fatalf("reload: %d %q", a.status, a.body)
	}
	if _, found := e.lists.Key(k); !found {
		t.Fatal("reload did not load the database's keys")
	}
}

// TestDatabaseFailures closes the database under the API: every write and
// reload must answer Torrust's 500 with the operation's prefix.
func TestDatabaseFailures(t *testing.T) {
	e := newEnv(t)
	e.db.Close()
	tests := []struct{ method, path, body, prefix string }{
		{"POST", "/api/v1/whitelist/" + hash(1).String(), "", "failed to whitelist torrent: "},
		{"DELETE", "/api/v1/whitelist/" + hash(1).String(), "", "failed to remove torrent from whitelist: "},
		{"GET", "/api/v1/whitelist/reload", "", "failed to reload whitelist: "},
		{"POST", "/api/v1/keys", `{}`, "failed to generate key: "},
		{"POST", "/api/v1/key/60", "", "failed to generate key: "},
		{"DELETE", "/api/v1/key/" + knownKey, "", "failed to delete key: "},
		{"GET", "/api/v1/keys/reload", "", "failed to reload keys: "},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := e.do(tt.method, tt.path+"?token="+token, tt.body, "Content-Type", "application/json")
			if a.status != 500 || !strings.HasPrefix(a.body, `Unhandled rejection: Err { reason: "`+tt.prefix) {
				t.Fatalf("%d %q, want 500 with %q", a.status, a.body, tt.prefix)
			}
		})
	}
}

// slowStore blocks Totals until the request's context ends.
type slowStore struct{ swarm.Store }

func (s slowStore) Totals(ctx context.Context) (swarm.Totals, error) {
	<-ctx.Done()
	return swarm.Totals{}, ctx.Err()
}

func TestHandlerTimeout(t *testing.T) {
	e := newEnv(t, func(c *adminapi.Config, d *adminapi.Deps) {
		c.HandlerTimeout = 50 * time.Millisecond
		d.Store = slowStore{d.Store}
	})
	start := time.Now()
	a := e.do("GET", "/api/v1/stats?token="+token, "")
	if a.status != 408 || a.body != "" {
		t.Fatalf("%d %q, want 408 with an empty body", a.status, a.body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %v", took)
	}
	// Other routes are unaffected.
	if a := e.do("GET", "/api/v1/torrents?token="+token, ""); a.status != 200 {
		t.Fatalf("torrents: %d", a.status)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for _, path := range []string{"/api/health_check", "/api/v1/stats", "/nothing?token=" + token, "/api/v1/stats?token=" + token} {
		a := e.do("GET", path, "")
		id := a.header.Get("X-Request-Id")
		if !uuidRE.MatchString(id) || seen[id] {
			t.Fatalf("%s: x-request-id %q (seen before: %v)", path, id, seen[id])
		}
		seen[id] = true
	}
	if a := e.do("GET", "/api/health_check", "", "X-Request-Id", "abc-123"); a.header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("client's id not kept: %q", a.header.Get("X-Request-Id"))
	}
}

func TestGzip(t *testing.T) {
	e := newEnv(t)
	for b := range byte(5) {
		e.announce(hash(b), "-TR3000-000000000001", "10.0.0.1:6881", 1, bittorrent.EventStarted)
	}
	plain := e.do("GET", "/api/v1/torrents?token="+token, "")
	tests := []struct {
		accept string
		gzip   bool
	}{
		{"gzip", true},
		{"br;q=1.0, gzip;q=0.5", true},
		{"*", true},
		{"gzip;q=0", false},
		{"identity", false},
	}
	for _, tt := range tests {
		t.Run(tt.accept, func(t *testing.T) {
			a := e.do("GET", "/api/v1/torrents?token="+token, "", "Accept-Encoding", tt.accept)
			if got := a.header.Get("Content-Encoding") == "gzip"; got != tt.gzip {
				t.Fatalf("gzipped %v, want %v", got, tt.gzip)
			}
			body := a.body
			if tt.gzip {
				zr, err := gzip.NewReader(strings.NewReader(a.body))
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(zr)
				if err != nil {
					t.Fatal(err)
				}
				body = string(b)
			}
			if body != plain.body {
				t.Fatalf("body %q, want %q", body, plain.body)
			}
		})
	}
	// Small bodies are not worth compressing.
	if a := e.do("GET", "/api/health_check", "", "Accept-Encoding", "gzip"); a.header.Get("Content-Encoding") != "" {
		t.Fatal("tiny body was gzipped")
	}
}

func TestShutdownTwice(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.api.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// newEnv's cleanup calls Shutdown again and checks Serve's result.
	if _, err := e.client.Get(e.url + "/api/health_check"); err == nil {
		t.Fatal("server still answers after Shutdown")
	}
}

func TestProbe(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := adminapi.Probe(ctx, e.url); err != nil {
		t.Fatalf("probe of a running API: %v", err)
	}
	if err := adminapi.Probe(ctx, e.url+"/api/v1"); err == nil {
		t.Fatal("probe of a wrong base URL succeeded")
	}
	_ = e.api.Shutdown(ctx)
	if err := adminapi.Probe(ctx, e.url); err == nil {
		t.Fatal("probe of a stopped API succeeded")
	}
}

func TestNewNeedsDeps(t *testing.T) {
	if _, err := adminapi.New(adminapi.Config{}, adminapi.Deps{}); err == nil {
		t.Fatal("New without store and lists succeeded")
	}
}

// panicStore panics on Torrents, standing in for a bug in a store.
type panicStore struct{ swarm.Store }

func (panicStore) Torrents(context.Context, int, int) ([]swarm.TorrentSummary, error) {
	panic("store bug")
}

func TestPanicRecovered(t *testing.T) {
	e := newEnv(t, func(_ *adminapi.Config, d *adminapi.Deps) { d.Store = panicStore{d.Store} })
	a := e.do("GET", "/api/v1/torrents?token="+token, "")
	if a.status != 500 || a.body != rejection("internal error") {
		t.Fatalf("%d %q", a.status, a.body)
	}
	if n := e.counters.Value(metrics.Panics); n != 1 {
		t.Fatalf("panics counted %d, want 1", n)
	}
	if !strings.Contains(e.logs.String(), "api handler panicked") {
		t.Fatal("panic not logged")
	}
	if a := e.do("GET", "/api/v1/stats?token="+token, ""); a.status != 200 {
		t.Fatalf("API broken after a panic: %d", a.status)
	}
}

func TestHead(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		path   string
		status int
	}{
		{"/api/health_check", 200},
		{"/api/v1/stats?token=" + token, 200},
		{"/api/v1/keys?token=" + token, 405},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			a := e.do("HEAD", tt.path, "")
			if a.status != tt.status || a.body != "" {
				t.Fatalf("%d %q, want %d and no body", a.status, a.body, tt.status)
			}
		})
	}
}
