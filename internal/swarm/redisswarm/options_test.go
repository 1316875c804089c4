package redisswarm

import (
	"errors"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

func TestClientOption(t *testing.T) {
	tests := []struct {
		url     string
		addrs   []string
		tls     bool
		wantErr string
	}{
		{"redis://127.0.0.1:6379/0", []string{"127.0.0.1:6379"}, false, ""},
		{"redis://u:p@h:7000/3?addr=h2:7001", []string{"h:7000", "h2:7001"}, false, ""},
		{"rediss://h", []string{"h:6379"}, true, ""},
		{"unix:///run/redis.sock", []string{"/run/redis.sock"}, false, ""},
		{"http://h:6379", nil, false, "scheme"},
		{"redis:///0", nil, false, "no host"},
		{"unix://", nil, false, "no socket path"},
		{"redis://h:6379/%zz", nil, false, "redis URL"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			opt, err := ClientOption(tc.url)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(opt.InitAddress, ",") != strings.Join(tc.addrs, ",") || (opt.TLSConfig != nil) != tc.tls {
				t.Fatalf("addresses %v TLS %v, want %v %v", opt.InitAddress, opt.TLSConfig != nil, tc.addrs, tc.tls)
			}
			if !opt.DisableCache || opt.ConnWriteTimeout == 0 {
				t.Fatal("client-side caching on or no connection timeout")
			}
		})
	}
}

func TestAddrRedacts(t *testing.T) {
	if got := Addr("redis://user:s3cret@h:6379/0"); strings.Contains(got, "s3cret") || !strings.Contains(got, "h:6379") {
		t.Fatalf("Addr = %q", got)
	}
}

// TestUnavailableIsClientError: the transports send it to the client as
// a tracker error (UDP error packet, HTTP failure reason).
func TestUnavailableIsClientError(t *testing.T) {
	var ce *bittorrent.ClientError
	if !errors.As(error(ErrUnavailable), &ce) || ce.Msg != "swarm store unavailable, try later" {
		t.Fatalf("ErrUnavailable is %#v", ErrUnavailable)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "ftp://h"},
		{URL: "redis://h", Prefix: "a{b}"},
		{URL: "redis://h", BucketBits: 17},
	} {
		if s, err := New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestBuckets(t *testing.T) {
	// The bucket is the hash's first bits, so buckets list hashes in order.
	s := &Store{bits: 12, width: 3, cfg: Config{Prefix: "p:"}}
	h := bittorrent.InfoHash{0xab, 0xcd}
	if got := string(s.tag(nil, &h)); got != "p:{abc}" {
		t.Fatalf("tag %q, want p:{abc}", got)
	}
	if got := string(s.bucketTag(nil, 0xabc)); got != "p:{abc}" {
		t.Fatalf("bucket tag %q, want p:{abc}", got)
	}
	s = &Store{bits: 4, width: 1, cfg: Config{Prefix: "p:"}}
	if got := string(s.tag(nil, &h)); got != "p:{a}" {
		t.Fatalf("tag %q, want p:{a}", got)
	}
}
