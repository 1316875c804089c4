// Package requestid makes and checks the x-request-id of HTTP answers, so an
// operator can match a client's complaint (or a proxy's log) with the
// tracker's log line about the same request.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// Header is the header's name.
const Header = "X-Request-Id"

// MaxLen is the longest client id kept; a longer one is replaced.
const MaxLen = 64

// Valid reports whether a client's id may be kept: 1 to MaxLen characters
// of [A-Za-z0-9._-]. Anything else (spaces, quotes, control characters)
// could forge or break a log line, and is replaced by a fresh id.
func Valid(id []byte) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for _, c := range id {
		if !safe[c] {
			return false
		}
	}
	return true
}

// ValidString is Valid for a string.
func ValidString(id string) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !safe[id[i]] {
			return false
		}
	}
	return true
}

var safe = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	t['.'], t['_'], t['-'] = true, true, true
	return t
}()

// Fresh ids are a random per-process prefix and a counter: unique within
// the process and, thanks to the prefix, across restarts and nodes, and made
// with an atomic add instead of a read from the system's random source on
// every request of the hot announce path.
var (
	prefix  = newPrefix()
	counter atomic.Uint64
)

func newPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]) + "-"
}

// AppendNew appends a fresh id (at most 33 bytes) to b.
func AppendNew(b []byte) []byte {
	b = append(b, prefix...)
	return strconv.AppendUint(b, counter.Add(1), 16)
}

// New returns a fresh id.
func New() string { return string(AppendNew(make([]byte, 0, 40))) }

// Keep returns the client's id when Valid, else a fresh one.
func Keep(client string) string {
	if ValidString(client) {
		return client
	}
	return New()
}
