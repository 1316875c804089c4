package bittorrent

import (
	"net/netip"
	"testing"
)

func TestParseInfoHash(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want string
	}{
		{"9c38422213e30bff212b30c360d26f9a02136422", true, "9c38422213e30bff212b30c360d26f9a02136422"},
		{"9C38422213E30BFF212B30C360D26F9A02136422", true, "9c38422213e30bff212b30c360d26f9a02136422"},
		{"9c38422213e30bff212b30c360d26f9a0213642", false, ""},
		{"9c38422213e30bff212b30c360d26f9a021364221", false, ""},
		{"zz38422213e30bff212b30c360d26f9a02136422", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		h, err := ParseInfoHash(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseInfoHash(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && h.String() != tt.want {
			t.Errorf("ParseInfoHash(%q) = %s, want %s", tt.in, h, tt.want)
		}
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		in  string
		err error
	}{
		{"YZSl4lMZupRuOpSRC3krIKR5BPB14nrJ", nil},
		{"YZSl4lMZupRuOpSRC3krIKR5BPB14nr", ErrKeyLength},
		{"YZSl4lMZupRuOpSRC3krIKR5BPB14nrJx", ErrKeyLength},
		{"YZSl4lMZupRuOpSRC3krIKR5BPB14nr-", ErrKeyChars},
		{"YZSl4lMZupRuOpSRC3krIKR5BPB14nré", ErrKeyLength},
	}
	for _, tt := range tests {
		k, err := ParseKey(tt.in)
		if err != tt.err {
			t.Errorf("ParseKey(%q) error %v, want %v", tt.in, err, tt.err)
		}
		_, ok := ParseKeyBytes([]byte(tt.in))
		if ok != (tt.err == nil) {
			t.Errorf("ParseKeyBytes(%q) ok=%v", tt.in, ok)
		}
		if err == nil && k.String() != tt.in {
			t.Errorf("round trip %q -> %q", tt.in, k)
		}
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"::ffff:1.2.3.4": "1.2.3.4",
		"1.2.3.4":        "1.2.3.4",
		"fe80::1%eth0":   "fe80::1",
		"2001:db8::1":    "2001:db8::1",
	} {
		got := NormalizeAddr(netip.MustParseAddr(in))
		if got.String() != want {
			t.Errorf("NormalizeAddr(%s) = %s, want %s", in, got, want)
		}
		if fam := FamilyOf(got); (fam == IPv4) != got.Is4() {
			t.Errorf("FamilyOf(%s) = %d", got, fam)
		}
	}
}

func TestEventString(t *testing.T) {
	for e, want := range map[Event]string{EventNone: "None", EventStarted: "Started", EventStopped: "Stopped", EventCompleted: "Completed"} {
		if e.String() != want {
			t.Errorf("%d.String() = %s", e, e)
		}
	}
}
