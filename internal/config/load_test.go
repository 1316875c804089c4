package config_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

const devFile = "testdata/torrust/tracker.development.sqlite3.toml"

// workdir is a temporary working directory holding the given files.
func workdir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadSources(t *testing.T) {
	dev := string(readTestdata(t, "torrust/tracker.development.sqlite3.toml"))
	const (
		a = "[logging]\nthreshold = \"error\"\n"
		b = "[logging]\nthreshold = \"debug\"\n"
		c = "[logging]\nthreshold = \"warn\"\n"
	)
	tests := []struct {
		name      string
		files     map[string]string
		env       []string
		threshold string
		kind      config.SourceKind
		envVar    string
		path      string // relative to the working directory
	}{
		{"whole TOML", nil, []string{"STARLING_CONFIG_TOML=" + a}, "error", config.FromEnvTOML, "STARLING_CONFIG_TOML", ""},
		{"whole TOML, Torrust name", nil, []string{"TORRUST_TRACKER_CONFIG_TOML=" + a}, "error", config.FromEnvTOML, "TORRUST_TRACKER_CONFIG_TOML", ""},
		{"whole TOML, both names", nil, []string{"TORRUST_TRACKER_CONFIG_TOML=" + a, "STARLING_CONFIG_TOML=" + b}, "debug", config.FromEnvTOML, "STARLING_CONFIG_TOML", ""},
		{"empty variable counts as unset", nil, []string{"STARLING_CONFIG_TOML=", "TORRUST_TRACKER_CONFIG_TOML=" + a}, "error", config.FromEnvTOML, "TORRUST_TRACKER_CONFIG_TOML", ""},
		{"path", map[string]string{"etc/t.toml": a}, []string{"STARLING_CONFIG_TOML_PATH=etc/t.toml"}, "error", config.FromFile, "STARLING_CONFIG_TOML_PATH", "etc/t.toml"},
		{"path, Torrust name", map[string]string{"etc/t.toml": a}, []string{"TORRUST_TRACKER_CONFIG_TOML_PATH=etc/t.toml"}, "error", config.FromFile, "TORRUST_TRACKER_CONFIG_TOML_PATH", "etc/t.toml"},
		{"path, both names", map[string]string{"a.toml": a, "b.toml": b}, []string{"STARLING_CONFIG_TOML_PATH=b.toml", "TORRUST_TRACKER_CONFIG_TOML_PATH=a.toml"}, "debug", config.FromFile, "STARLING_CONFIG_TOML_PATH", "b.toml"},
		{"text beats path", nil, []string{"STARLING_CONFIG_TOML_PATH=missing.toml", "STARLING_CONFIG_TOML=" + b}, "debug", config.FromEnvTOML, "STARLING_CONFIG_TOML", ""},
		{"Torrust text beats Starling path", nil, []string{"STARLING_CONFIG_TOML_PATH=missing.toml", "TORRUST_TRACKER_CONFIG_TOML=" + b}, "debug", config.FromEnvTOML, "TORRUST_TRACKER_CONFIG_TOML", ""},
		{"./tracker.toml", map[string]string{"tracker.toml": c}, nil, "warn", config.FromFile, "", "tracker.toml"},
		{"path beats ./tracker.toml", map[string]string{"tracker.toml": c, "x.toml": a}, []string{"STARLING_CONFIG_TOML_PATH=x.toml"}, "error", config.FromFile, "STARLING_CONFIG_TOML_PATH", "x.toml"},
		{"Torrust development file", map[string]string{"tracker.toml": dev}, []string{"UNRELATED=1"}, "info", config.FromFile, "", "tracker.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := workdir(t, tt.files)
			cfg, src, err := config.Load(config.LoadOptions{Env: tt.env, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Logging.Threshold != tt.threshold {
				t.Errorf("threshold %q, want %q", cfg.Logging.Threshold, tt.threshold)
			}
			want := &config.Source{Kind: tt.kind, EnvVar: tt.envVar}
			if tt.path != "" {
				want.Path = filepath.Join(dir, tt.path)
			}
			want.Warnings = cfg.Warnings()
			if !reflect.DeepEqual(src, want) {
				t.Errorf("source %+v, want %+v", src, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "storage")); err == nil {
				t.Error("a load with a configuration created storage directories")
			}
		})
	}
}

func TestLoadMissingPath(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"STARLING_CONFIG_TOML_PATH", "TORRUST_TRACKER_CONFIG_TOML_PATH"} {
		t.Run(name, func(t *testing.T) {
			_, _, err := config.Load(config.LoadOptions{Env: []string{name + "=conf/none.toml"}, Dir: dir})
			if err == nil {
				t.Fatal("no error for a missing file")
			}
			want := filepath.Join(dir, "conf/none.toml")
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), name) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not name %s and %s", err, want, name)
			}
		})
	}
}

func TestLoadOverrides(t *testing.T) {
	dev := string(readTestdata(t, "torrust/tracker.development.sqlite3.toml"))
	noAPI := "[core]\nprivate = false\n"
	tlsFile := "[http_api]\n[http_api.tsl_config]\nssl_cert_path = \"c.pem\"\nssl_key_path = \"k.pem\"\n"
	twoUDP := "[[udp_trackers]]\nbind_address = \"0.0.0.0:6969\"\n[[udp_trackers]]\nbind_address = \"[::]:6969\"\n"
	tests := []struct {
		name  string
		file  string // as STARLING_CONFIG_TOML; "" = no file
		env   []string
		check func(t *testing.T, c *config.Config)
	}{
		{"bool", dev, []string{"STARLING_CONFIG_OVERRIDE_CORE__PRIVATE=true"}, func(t *testing.T, c *config.Config) {
			if !c.Core.Private {
				t.Error("private not set")
			}
		}},
		{"int", dev, []string{"STARLING_CONFIG_OVERRIDE_CORE__ANNOUNCE_POLICY__INTERVAL=300"}, func(t *testing.T, c *config.Config) {
			if c.Core.AnnouncePolicy.Interval != 300 || c.Core.AnnouncePolicy.IntervalMin != 120 {
				t.Errorf("announce policy %+v", c.Core.AnnouncePolicy)
			}
		}},
		{"strings", dev, []string{
			"STARLING_CONFIG_OVERRIDE_CORE__DATABASE__DRIVER=mysql",
			"STARLING_CONFIG_OVERRIDE_CORE__DATABASE__PATH=mysql://u:p@db:3306/tracker",
			"STARLING_CONFIG_OVERRIDE_CORE__NET__EXTERNAL_IP=2001:db8::1",
		}, func(t *testing.T, c *config.Config) {
			if c.Core.Database != (config.Database{Driver: "mysql", Path: "mysql://u:p@db:3306/tracker"}) || c.Core.Net.ExternalIP != netip.MustParseAddr("2001:db8::1") {
				t.Errorf("core %+v", c.Core)
			}
		}},
		{"map entry replaces", dev, []string{"STARLING_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=NewToken"}, func(t *testing.T, c *config.Config) {
			if !reflect.DeepEqual(c.HTTPAPI.AccessTokens, config.AccessTokens{"admin": "NewToken"}) || c.HTTPAPI.BindAddress != ap("0.0.0.0:1212") {
				t.Errorf("api %+v", c.HTTPAPI)
			}
		}},
		{"map entry creates the section", noAPI, []string{"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__INDEX=tok"}, func(t *testing.T, c *config.Config) {
			want := config.DefaultHTTPAPI()
			want.AccessTokens["index"] = "tok"
			if !reflect.DeepEqual(*c.HTTPAPI, want) {
				t.Errorf("api %+v", c.HTTPAPI)
			}
		}},
		{"Torrust alias", dev, []string{"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__LISTED=true"}, func(t *testing.T, c *config.Config) {
			if !c.Core.Listed {
				t.Error("listed not set")
			}
		}},
		{"a quoted string is unquoted, as figment reads it", dev, []string{
			`TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN="123456789012345678901234"`,
			`STARLING_CONFIG_OVERRIDE_LOGGING__THRESHOLD="debug"`,
			`STARLING_CONFIG_OVERRIDE_CORE__DATABASE__PATH="./q \"x\".db"`,
			`STARLING_CONFIG_OVERRIDE_CORE__NET__EXTERNAL_IP="203.0.113.9"`,
		}, func(t *testing.T, c *config.Config) {
			if tok := c.HTTPAPI.AccessTokens["admin"]; tok != "123456789012345678901234" {
				t.Errorf("token %q", tok)
			}
			if c.Logging.Threshold != "debug" {
				t.Errorf("threshold %q", c.Logging.Threshold)
			}
			if c.Core.Database.Path != `./q "x".db` {
				t.Errorf("path %q", c.Core.Database.Path)
			}
			if c.Core.Net.ExternalIP.String() != "203.0.113.9" {
				t.Errorf("external_ip %v", c.Core.Net.ExternalIP)
			}
		}},
		{"Starling beats Torrust", dev, []string{
			"STARLING_CONFIG_OVERRIDE_LOGGING__THRESHOLD=debug",
			"TORRUST_TRACKER_CONFIG_OVERRIDE_LOGGING__THRESHOLD=error",
		}, func(t *testing.T, c *config.Config) {
			if c.Logging.Threshold != "debug" {
				t.Errorf("threshold %q", c.Logging.Threshold)
			}
		}},
		{"Starling beats Torrust, either spelling of tls", tlsFile, []string{
			"STARLING_CONFIG_OVERRIDE_HTTP_API__TLS_CONFIG__SSL_KEY_PATH=new.pem",
			"TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP_API__TSL_CONFIG__SSL_KEY_PATH=old.pem",
		}, func(t *testing.T, c *config.Config) {
			if *c.HTTPAPI.TLS != (config.TLSConfig{SSLCertPath: "c.pem", SSLKeyPath: "new.pem", Spelling: "tsl_config"}) {
				t.Errorf("tls %+v", c.HTTPAPI.TLS)
			}
		}},
		{"list entry", twoUDP, []string{
			"STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__1__COOKIE_LIFETIME=60",
			"STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__0__BIND_ADDRESS=127.0.0.1:0",
		}, func(t *testing.T, c *config.Config) {
			if len(c.UDPTrackers) != 2 || c.UDPTrackers[0].BindAddress != ap("127.0.0.1:0") || c.UDPTrackers[1].CookieLifetime != 60 ||
				c.UDPTrackers[1].BindAddress != ap("[::]:6969") {
				t.Errorf("udp %+v", c.UDPTrackers)
			}
		}},
		{"list entry appended, indexes in numeric order", twoUDP, []string{
			"STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__3__BIND_ADDRESS=127.0.0.1:4",
			"STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__2__BIND_ADDRESS=127.0.0.1:3",
		}, func(t *testing.T, c *config.Config) {
			if len(c.UDPTrackers) != 4 || c.UDPTrackers[2].BindAddress != ap("127.0.0.1:3") || c.UDPTrackers[3].BindAddress != ap("127.0.0.1:4") ||
				c.UDPTrackers[3].CookieLifetime != 120 {
				t.Errorf("udp %+v", c.UDPTrackers)
			}
		}},
		{"whole list as TOML", dev, []string{
			`STARLING_CONFIG_OVERRIDE_HTTP_TRACKERS=[{ bind_address = "127.0.0.1:0" }, { bind_address = "[::1]:0", max_scrape_torrents = 5 }]`,
		}, func(t *testing.T, c *config.Config) {
			want := []config.HTTPTracker{{BindAddress: ap("127.0.0.1:0"), MaxScrapeTorrents: 74, MaxConnectionsPerIP: 256}, {BindAddress: ap("[::1]:0"), MaxScrapeTorrents: 5, MaxConnectionsPerIP: 256}}
			if !reflect.DeepEqual(c.HTTPTrackers, want) {
				t.Errorf("http %+v", c.HTTPTrackers)
			}
		}},
		{"whole table as TOML", dev, []string{
			`STARLING_CONFIG_OVERRIDE_CORE__TRACKER_POLICY={ max_peer_timeout = 60 }`,
		}, func(t *testing.T, c *config.Config) {
			if c.Core.TrackerPolicy != (config.TrackerPolicy{MaxPeerTimeout: 60, RemovePeerlessTorrents: true}) {
				t.Errorf("policy %+v", c.Core.TrackerPolicy)
			}
		}},
		{"duration as table", dev, []string{`STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__0__COOKIE_LIFETIME={ secs = 30, nanos = 0 }`}, func(t *testing.T, c *config.Config) {
			if c.UDPTrackers[0].CookieLifetime != 30 {
				t.Errorf("cookie lifetime %d", c.UDPTrackers[0].CookieLifetime)
			}
		}},
		{"private mode switched on with its section", noAPI, []string{
			"STARLING_CONFIG_OVERRIDE_CORE__PRIVATE=true",
			"STARLING_CONFIG_OVERRIDE_CORE__PRIVATE_MODE__CHECK_KEYS_EXPIRATION=false",
		}, func(t *testing.T, c *config.Config) {
			if !c.Core.Private || c.Core.CheckKeysExpiration() {
				t.Errorf("core %+v", c.Core)
			}
		}},
		{"no file: defaults and overrides, nothing written", "", []string{"STARLING_CONFIG_OVERRIDE_CORE__LISTED=true"}, func(t *testing.T, c *config.Config) {
			want := config.Default()
			want.Core.Listed = true
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := tt.env
			if tt.file != "" {
				env = append([]string{"STARLING_CONFIG_TOML=" + tt.file}, env...)
			}
			cfg, src, err := config.Load(config.LoadOptions{Env: env, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
			if src.FirstRun || src.Written != "" {
				t.Errorf("overrides made a first run: %+v", src)
			}
			if len(src.Overrides) != len(tt.env) {
				t.Errorf("overrides reported %v", src.Overrides)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("load wrote %v", entries)
			}
		})
	}
}

func TestLoadOverrideProblems(t *testing.T) {
	dev := string(readTestdata(t, "torrust/tracker.development.sqlite3.toml"))
	tests := []struct {
		name string
		env  string
		key  string
		msg  string
	}{
		{"unknown key", "STARLING_CONFIG_OVERRIDE_CORE__PRIVAT=true", "core.privat", `unknown key (did you mean "private"?)`},
		{"unknown section", "TORRUST_TRACKER_CONFIG_OVERRIDE_HTTP__BIND_ADDRESS=x", "http", "unknown key"},
		{"bad bool", "STARLING_CONFIG_OVERRIDE_CORE__PRIVATE=yes", "core.private", "true or false"},
		{"bad int", "STARLING_CONFIG_OVERRIDE_CORE__ANNOUNCE_POLICY__MAX_PEERS_PER_ANNOUNCE=lots", "core.announce_policy.max_peers_per_announce", "whole number"},
		{"bad seconds", "STARLING_CONFIG_OVERRIDE_CORE__ANNOUNCE_POLICY__INTERVAL=2m", "core.announce_policy.interval", "whole number of seconds"},
		{"value injects a key", "STARLING_CONFIG_OVERRIDE_CORE__PRIVATE=true\nlisted = true", "core.private", "true or false"},
		{"key under a value", "STARLING_CONFIG_OVERRIDE_CORE__PRIVATE__X=1", "core.private", "single value"},
		{"key under an address", "STARLING_CONFIG_OVERRIDE_HEALTH_CHECK_API__BIND_ADDRESS__PORT=1", "health_check_api.bind_address", "single value"},
		{"list needs an index", "STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__BIND_ADDRESS=1.2.3.4:5", "udp_trackers", "entry index"},
		{"index gap", "STARLING_CONFIG_OVERRIDE_UDP_TRACKERS__5__BIND_ADDRESS=1.2.3.4:5", "udp_trackers[5]", "at most 1"},
		{"no key", "STARLING_CONFIG_OVERRIDE_=1", "", "names no key"},
		{"empty segment", "STARLING_CONFIG_OVERRIDE_CORE____PRIVATE=true", "core", "empty key segment"},
		{"bad address", "STARLING_CONFIG_OVERRIDE_HTTP_API__BIND_ADDRESS=localhost:1212", "http_api.bind_address", "not an ip:port"},
		{"valid type, invalid value", "STARLING_CONFIG_OVERRIDE_CORE__ANNOUNCE_POLICY__INTERVAL=0", "core.announce_policy.interval", "at least 1 second"},
		{"private mode while public", "STARLING_CONFIG_OVERRIDE_CORE__PRIVATE_MODE__CHECK_KEYS_EXPIRATION=true", "core.private_mode", "private mode"},
		{"inside a TOML value", `STARLING_CONFIG_OVERRIDE_UDP_TRACKERS=[{ bind_address = "x" }]`, "udp_trackers[0].bind_address", "not an ip:port"},
		{"full scrape", "STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE=everyone", "core.full_scrape", `"everyone" is not a full-scrape setting`},
		{"full scrape interval", "STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE_INTERVAL=0", "core.full_scrape_interval", "between 1 and"},
		{"not UTF-8", "STARLING_CONFIG_OVERRIDE_LOGGING__THRESHOLD=\xff", "logging.threshold", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envName, _, _ := strings.Cut(tt.env, "=")
			_, _, err := config.Load(config.LoadOptions{Env: []string{"STARLING_CONFIG_TOML=" + dev, tt.env}, Dir: t.TempDir()})
			var ps config.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %v is not Problems", err)
			}
			for _, p := range ps {
				if p.Key == tt.key && p.Env == envName && strings.Contains(p.Msg, tt.msg) {
					if !strings.Contains(err.Error(), envName) {
						t.Errorf("error text does not name %s: %v", envName, err)
					}
					return
				}
			}
			t.Errorf("no problem with key %q, variable %s and %q in:\n%v", tt.key, envName, tt.msg, err)
		})
	}
}

func TestLoadReportsEveryOverrideProblem(t *testing.T) {
	env := []string{
		"STARLING_CONFIG_OVERRIDE_CORE__NOPE=1",
		"STARLING_CONFIG_OVERRIDE_CORE__PRIVATE=maybe",
		"STARLING_CONFIG_OVERRIDE_LOGGING__THRESHOLD=loud",
	}
	_, _, err := config.Load(config.LoadOptions{Env: env, Dir: t.TempDir()})
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	if len(ps) != 3 || !hasKey(ps, "core.nope") || !hasKey(ps, "core.private") || !hasKey(ps, "logging.threshold") {
		t.Errorf("problems:\n%v", err)
	}
}

var tokenRE = regexp.MustCompile(`^[0-9A-Za-z]{32}$`)

func TestFirstRun(t *testing.T) {
	dir := t.TempDir()
	cfg, src, err := config.Load(config.LoadOptions{Dir: dir, Env: []string{"HOME=/root"}})
	if err != nil {
		t.Fatal(err)
	}
	token := cfg.HTTPAPI.AccessTokens["admin"]
	if !tokenRE.MatchString(token) || len(cfg.HTTPAPI.AccessTokens) != 1 {
		t.Fatalf("tokens %d, admin token %q is not 32 alphanumerics", len(cfg.HTTPAPI.AccessTokens), token)
	}
	want := config.Default()
	want.HTTPAPI.AccessTokens = config.AccessTokens{"admin": token}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("first run config %+v", cfg)
	}
	path := filepath.Join(dir, "tracker.toml")
	db := filepath.Join(dir, "storage/tracker/lib/database")
	if !src.FirstRun || src.Kind != config.FromDefaults || src.Written != path {
		t.Errorf("source %+v", src)
	}
	wantDirs := []string{filepath.Join(dir, "storage"), filepath.Join(dir, "storage/tracker"), filepath.Join(dir, "storage/tracker/lib"), db}
	if !reflect.DeepEqual(src.CreatedDirs, wantDirs) {
		t.Errorf("created %v, want %v", src.CreatedDirs, wantDirs)
	}
	if fi, err := os.Stat(db); err != nil || !fi.IsDir() {
		t.Errorf("database directory: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("tracker.toml mode %v, want 0600", fi.Mode().Perm())
	}
	for _, w := range src.Warnings {
		if strings.Contains(w, token) {
			t.Errorf("warning shows the token: %s", w)
		}
	}

	// The next start reads the file it wrote and gets the same config.
	again, src2, err := config.Load(config.LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if src2.FirstRun || src2.Kind != config.FromFile || src2.Path != path || src2.Written != "" {
		t.Errorf("second source %+v", src2)
	}
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("reloaded %+v, want %+v", again, cfg)
	}

	// Another first run elsewhere gets another token.
	other, _, err := config.Load(config.LoadOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if other.HTTPAPI.AccessTokens["admin"] == token {
		t.Error("two first runs got the same token")
	}
}

func TestFirstRunReadOnly(t *testing.T) {
	dir := t.TempDir()
	cfg, src, err := config.Load(config.LoadOptions{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !src.FirstRun || src.Written != "" || src.CreatedDirs != nil || !tokenRE.MatchString(cfg.HTTPAPI.AccessTokens["admin"]) {
		t.Errorf("source %+v tokens %d", src, len(cfg.HTTPAPI.AccessTokens))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("read-only first run wrote %v", entries)
	}
}

func TestFirstRunUnwritable(t *testing.T) {
	// A regular file where the storage directory should go: it cannot be
	// created, whoever runs the test (root included).
	dir := workdir(t, map[string]string{"storage": ""})
	_, _, err := config.Load(config.LoadOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "first run: create the database directory") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tracker.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tracker.toml written although the start failed: %v", err)
	}
}

func TestLoadWorkdirNotADirectory(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := config.Load(config.LoadOptions{Dir: notDir})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(notDir, "tracker.toml")) {
		t.Fatalf("error %v", err)
	}
}

func TestDefaultTOMLLoadsBack(t *testing.T) {
	// What `starling config default` prints is a valid file of the defaults.
	var buf bytes.Buffer
	if err := config.Default().Encode(&buf); err != nil {
		t.Fatal(err)
	}
	dir := workdir(t, map[string]string{"tracker.toml": buf.String()})
	cfg, src, err := config.Load(config.LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if src.FirstRun || !reflect.DeepEqual(cfg, config.Default()) {
		t.Errorf("got %+v from\n%s", cfg, buf.String())
	}
	if len(src.Warnings) != 1 || !strings.Contains(src.Warnings[0], "no access_tokens") {
		t.Errorf("warnings %q", src.Warnings)
	}
}

// TestIntervalMinAboveInterval: Torrust starts when interval_min exceeds
// interval (lowering interval alone does it, the defaults being 120 and
// 120), so Starling starts too, keeps both values and warns.
func TestIntervalMinAboveInterval(t *testing.T) {
	for _, tt := range []struct {
		name, toml   string
		min, iv      config.Seconds
		wantWarnings int
	}{
		{"interval lowered alone", "[core.announce_policy]\ninterval = 60\n", 120, 60, 1},
		{"both set", "[core.announce_policy]\ninterval = 30\ninterval_min = 300\n", 300, 30, 1},
		{"equal", "[core.announce_policy]\ninterval = 60\ninterval_min = 60\n", 60, 60, 0},
		{"below", "[core.announce_policy]\ninterval = 1800\ninterval_min = 900\n", 900, 1800, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := workdir(t, map[string]string{"tracker.toml": tt.toml})
			cfg, src, err := config.Load(config.LoadOptions{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			ap := cfg.Core.AnnouncePolicy
			if ap.Interval != tt.iv || ap.IntervalMin != tt.min {
				t.Errorf("interval %d, interval_min %d; want %d, %d", ap.Interval, ap.IntervalMin, tt.iv, tt.min)
			}
			var got []string
			for _, w := range src.Warnings {
				if strings.Contains(w, "interval_min") {
					got = append(got, w)
				}
			}
			if len(got) != tt.wantWarnings {
				t.Errorf("interval warnings %q, want %d", got, tt.wantWarnings)
			}
		})
	}
}

func TestLoadEmptyFile(t *testing.T) {
	// An empty tracker.toml is a file that says nothing: defaults, no
	// listener, and no first run.
	dir := workdir(t, map[string]string{"tracker.toml": ""})
	cfg, src, err := config.Load(config.LoadOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if src.FirstRun || src.Kind != config.FromFile || cfg.UDPTrackers != nil || cfg.HTTPTrackers != nil || cfg.HTTPAPI != nil {
		t.Errorf("source %+v config %+v", src, cfg)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("load wrote %v", entries)
	}
}

// TestFullScrapeSettings: the defaults, the env overrides, and the warning
// for "api" without a token.
func TestFullScrapeSettings(t *testing.T) {
	tests := []struct {
		name         string
		env          []string
		wantMode     string
		wantInterval config.Seconds
		wantWarning  bool
	}{
		{"defaults", nil, "off", 60, false},
		{"public from env", []string{"STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE=public"}, "public", 60, false},
		{"torrust alias", []string{"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__FULL_SCRAPE=api", "STARLING_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=t0k"}, "api", 60, false},
		{"interval from env", []string{"STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE_INTERVAL=300"}, "off", 300, false},
		{"api without a token", []string{"STARLING_CONFIG_OVERRIDE_CORE__FULL_SCRAPE=api"}, "api", 60, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"STARLING_CONFIG_TOML=[http_api]"}, tt.env...)
			c, src, err := config.Load(config.LoadOptions{Env: env, Dir: t.TempDir(), ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if c.Core.FullScrape != tt.wantMode || c.Core.FullScrapeInterval != tt.wantInterval {
				t.Fatalf("full_scrape %q every %d s, want %q every %d s", c.Core.FullScrape, c.Core.FullScrapeInterval, tt.wantMode, tt.wantInterval)
			}
			warned := false
			for _, w := range src.Warnings {
				warned = warned || strings.Contains(w, "core.full_scrape")
			}
			if warned != tt.wantWarning {
				t.Fatalf("warnings %q, want a full_scrape warning: %v", src.Warnings, tt.wantWarning)
			}
		})
	}
}

// TestSnapshotSettings: [core.swarm]'s defaults, and both keys from the
// environment ("" turns snapshots off).
func TestSnapshotSettings(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		wantPath string
		wantInt  config.Seconds
	}{
		{"defaults", nil, config.DefaultSnapshotPath, 300},
		{"off", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__SNAPSHOT_PATH="}, "", 300},
		{"elsewhere, only on stop", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__SNAPSHOT_PATH=/var/lib/s/swarms", "STARLING_CONFIG_OVERRIDE_CORE__SWARM__SNAPSHOT_INTERVAL=0"}, "/var/lib/s/swarms", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"STARLING_CONFIG_TOML=[core]"}, tt.env...)
			c, _, err := config.Load(config.LoadOptions{Env: env, Dir: t.TempDir(), ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if c.Core.Swarm.SnapshotPath != tt.wantPath || c.Core.Swarm.SnapshotInterval != tt.wantInt {
				t.Fatalf("snapshot %q every %d s, want %q every %d s", c.Core.Swarm.SnapshotPath, c.Core.Swarm.SnapshotInterval, tt.wantPath, tt.wantInt)
			}
		})
	}
}

// TestSwarmStoreSettings: [core.swarm]'s store keys, their defaults and
// the environment overrides an operator switches a node to Redis with.
func TestSwarmStoreSettings(t *testing.T) {
	tests := []struct {
		name              string
		env               []string
		store, url, prefx string
		detail            bool
		wantErr           string
	}{
		{"defaults", nil, "memory", "", "starling:", false, ""},
		{"redis from the environment", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__STORE=redis",
			"STARLING_CONFIG_OVERRIDE_CORE__SWARM__REDIS_URL=rediss://u:p@r.example:6380/2",
			"STARLING_CONFIG_OVERRIDE_CORE__SWARM__REDIS_KEY_PREFIX=node-a:",
			"STARLING_CONFIG_OVERRIDE_CORE__SWARM__REDIS_PEER_DETAIL=true"}, "redis", "rediss://u:p@r.example:6380/2", "node-a:", true, ""},
		{"unix socket", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__STORE=redis",
			"STARLING_CONFIG_OVERRIDE_CORE__SWARM__REDIS_URL=unix:///run/redis.sock"}, "redis", "unix:///run/redis.sock", "starling:", false, ""},
		{"Torrust alias", []string{"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__SWARM__STORE=redis",
			"TORRUST_TRACKER_CONFIG_OVERRIDE_CORE__SWARM__REDIS_URL=redis://r:6379"}, "redis", "redis://r:6379", "starling:", false, ""},
		{"redis without a URL", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__STORE=redis"}, "", "", "", false, "core.swarm.redis_url"},
		{"unknown store", []string{"STARLING_CONFIG_OVERRIDE_CORE__SWARM__STORE=Redis"}, "", "", "", false, "core.swarm.store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"STARLING_CONFIG_TOML=[core]"}, tt.env...)
			c, _, err := config.Load(config.LoadOptions{Env: env, Dir: t.TempDir(), ReadOnly: true})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(strings.ToUpper(err.Error()), strings.ToUpper(tt.wantErr)) {
					t.Fatalf("error %v, want one about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sw := c.Core.Swarm; sw.Store != tt.store || sw.RedisURL != tt.url || sw.RedisKeyPrefix != tt.prefx || sw.RedisPeerDetail != tt.detail {
				t.Fatalf("store %q url %q prefix %q, want %q %q %q", sw.Store, sw.RedisURL, sw.RedisKeyPrefix, tt.store, tt.url, tt.prefx)
			}
		})
	}
}
