package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

// checkAccepted asserts what every accepted configuration must satisfy: it
// validates, and its encoding loads back to the same Config.
func checkAccepted(t *testing.T, c *config.Config) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("accepted config does not validate: %v", err)
	}
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := config.Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("encoding does not load: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip changed the config:\ngot  %#v\nwant %#v\n%s", back, c, buf.String())
	}
}

func checkRejected(t *testing.T, err error) {
	t.Helper()
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) == 0 {
		t.Fatalf("error %T %v is not a non-empty Problems", err, err)
	}
	for _, p := range ps {
		if p.Msg == "" {
			t.Fatalf("problem without a message: %+v", p)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"full.toml", "develop.toml"} {
		f.Add(readTestdataF(f, name))
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "torrust"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(readTestdataF(f, filepath.Join("torrust", e.Name())))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			checkRejected(t, err)
			if c != nil {
				t.Fatal("config returned with an error")
			}
			if got := config.Check(data); len(got) == 0 {
				t.Fatal("Check found nothing Parse rejected")
			}
			return
		}
		if len(config.Check(data)) != 0 {
			t.Fatal("Check rejects what Parse accepts")
		}
		checkAccepted(t, c)
	})
}

// FuzzOverride drives the environment override parser: any variable name and
// value give problems or a valid config, never a panic.
func FuzzOverride(f *testing.F) {
	f.Add("CORE__PRIVATE", "true")
	f.Add("CORE__ANNOUNCE_POLICY__INTERVAL", "300")
	f.Add("HTTP_API__ACCESS_TOKENS__ADMIN", "tok")
	f.Add("UDP_TRACKERS__0__BIND_ADDRESS", "127.0.0.1:0")
	f.Add("UDP_TRACKERS__1__COOKIE_LIFETIME", "{ secs = 5, nanos = 0 }")
	f.Add("HTTP_TRACKERS", `[{ bind_address = "[::1]:0" }]`)
	f.Add("HTTP_API__TSL_CONFIG", `{ ssl_cert_path = "c", ssl_key_path = "k" }`)
	f.Add("CORE__TRACKER_POLICY", "{ max_peer_timeout = 1 }")
	f.Add("CORE__SWARM__STORE", "redis")
	f.Add("CORE__SWARM__REDIS_URL", "redis://u:p@[::1]:6379/0?addr=h2:6379")
	f.Add("CORE__FULL_SCRAPE", "public")
	f.Add("CORE__FULL_SCRAPE_INTERVAL", "30")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, key, value string) {
		env := []string{"STARLING_CONFIG_TOML=[[udp_trackers]]\n[http_api]", "STARLING_CONFIG_OVERRIDE_" + key + "=" + value}
		c, src, err := config.Load(config.LoadOptions{Env: env, Dir: dir, ReadOnly: true})
		if src == nil {
			t.Fatal("no source")
		}
		if err != nil {
			checkRejected(t, err)
			return
		}
		checkAccepted(t, c)
	})
}

func readTestdataF(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}
