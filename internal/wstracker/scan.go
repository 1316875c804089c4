package wstracker

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// A single-pass reader of the client's JSON message, in place of
// encoding/json, which a CPU profile under load showed taking a third of
// the tracker's time: it scans a message once to check it, once to decode
// it, and the offers (most of the bytes) once more each. This one checks
// the whole message as strictly as encoding/json (the offers and answers
// are relayed as sent, so what goes out must be JSON) while reading the
// few fields the tracker needs, and points into the message instead of
// copying. Keys match exactly (encoding/json folds case); the clients send
// them in lower case. A key given twice takes its last value, as in
// encoding/json. FuzzScanMatchesEncodingJSON checks it against
// encoding/json.

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

type scanner struct {
	b     []byte
	i     int
	depth int
	bad   bool // a known field had the wrong type
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value checks the value at s.i and moves past it, returning its bytes.
func (s *scanner) value() ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i >= len(s.b) {
		return nil, false
	}
	var ok bool
	switch c := s.b[s.i]; c {
	case '{':
		ok = s.object(nil)
	case '[':
		ok = s.array(nil)
	case '"':
		_, _, ok = s.str()
	case 't':
		ok = s.lit("true")
	case 'f':
		ok = s.lit("false")
	case 'n':
		ok = s.lit("null")
	default:
		ok = s.number()
	}
	return s.b[start:s.i], ok
}

func (s *scanner) lit(l string) bool {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return false
	}
	s.i += len(l)
	return true
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return true
}

// str checks the string at s.i (its opening quote) and returns its
// contents between the quotes and whether they hold escapes.
func (s *scanner) str() (raw []byte, esc, ok bool) {
	b := s.b
	i := s.i + 1
	start := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return b[start:i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return nil, false, false
				}
				i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			i++
			// SDPs are long runs of plain bytes: skip them eight at a time.
			for i+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[i:])) {
				i += 8
			}
		}
	}
	return nil, false, false
}

// plain8 reports whether none of eight bytes is '"', '\\' or below 0x20
// (each test is exact: "has a zero byte" on v^'"', v^'\\', and "has a byte
// below 0x20").
func plain8(v uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q, bs := v^(lo*'"'), v^(lo*'\\')
	return ((q-lo)&^q|(bs-lo)&^bs|(v-lo*0x20)&^v)&hi == 0
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote decodes a checked string's contents as encoding/json does (a
// lone surrogate becomes U+FFFD).
func unquote(raw []byte, esc bool) string {
	if !esc {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if d := utf16.DecodeRune(r, hex4(raw[i+2:])); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, raw[i+1])
		}
		i += 2
	}
	return string(out)
}

// object checks the object at s.i. For each member, field is called with
// the key's contents (s.i at the value) and must move past the value; nil
// skips every value.
func (s *scanner) object(field func(key []byte, esc bool) bool) bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		key, esc, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if field != nil {
			ok = field(key, esc)
		} else {
			_, ok = s.value()
		}
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// array checks the array at s.i; elem, when set, is called with s.i at
// each element and must move past it.
func (s *scanner) array(elem func() bool) bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		s.ws()
		var ok bool
		if elem != nil {
			ok = elem()
		} else {
			_, ok = s.value()
		}
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// optStr reads a string or null for a jstr field (null unsets it);
// another type is checked, skipped and marks the message bad, as
// encoding/json's type error does.
func (s *scanner) optStr(dst *jstr) bool {
	raw, ok := s.value()
	if !ok {
		return false
	}
	switch raw[0] {
	case '"':
		content := raw[1 : len(raw)-1]
		*dst = jstr{raw: content, esc: hasEscape(content), set: true}
	case 'n':
		*dst = jstr{}
	default:
		s.bad = true
	}
	return true
}

// laxStr is optStr for a message's own fields: a value of another type
// leaves the field unset instead of failing the message, so that the
// field's own check names it (invalid peer_id, ...) in a failure that
// names the info hash, and an event that is not a string is a regular
// announce, as any unknown event is.
func (s *scanner) laxStr(dst *jstr) bool {
	raw, ok := s.value()
	if !ok {
		return false
	}
	*dst = jstr{}
	if raw[0] == '"' {
		content := raw[1 : len(raw)-1]
		*dst = jstr{raw: content, esc: hasEscape(content), set: true}
	}
	return true
}

func hasEscape(quoted []byte) bool {
	for _, c := range quoted {
		if c == '\\' {
			return true
		}
	}
	return false
}

// keyIs compares a key's contents with name.
func keyIs(key []byte, esc bool, name string) bool {
	if !esc {
		return string(key) == name
	}
	return unquote(key, true) == name
}

// scanMessage reads msg into w. It reports false for a message that is not
// a JSON object, or whose known fields have the wrong type.
func scanMessage(msg []byte, w *wire) bool {
	s := scanner{b: msg}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	raw := func(dst *[]byte) bool {
		v, ok := s.value()
		*dst = v
		return ok
	}
	ok := s.object(func(key []byte, esc bool) bool {
		if esc {
			key = []byte(unquote(key, true))
		}
		switch string(key) { // compared, not allocated
		case "action":
			return s.laxStr(&w.Action)
		case "info_hash":
			return raw((*[]byte)(&w.InfoHash))
		case "peer_id":
			return s.laxStr(&w.PeerID)
		case "event":
			return s.laxStr(&w.Event)
		case "left":
			return raw((*[]byte)(&w.Left))
		case "numwant":
			return raw((*[]byte)(&w.NumWant))
		case "offers":
			return raw((*[]byte)(&w.Offers))
		case "answer":
			return raw((*[]byte)(&w.Answer))
		case "to_peer_id":
			return s.laxStr(&w.ToPeerID)
		case "offer_id":
			return s.laxStr(&w.OfferID)
		case "uploaded":
			return raw((*[]byte)(&w.Uploaded))
		case "downloaded":
			return raw((*[]byte)(&w.Downloaded))
		}
		_, ok := s.value()
		return ok
	})
	if !ok || s.bad {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

// scanOffers reads an offers array (already checked as part of the
// message); false when it is not an array of objects or an offer_id is
// not a string or null.
func scanOffers(raw []byte, out *[]wireOffer) bool {
	s := scanner{b: raw}
	if len(raw) == 0 || raw[0] != '[' {
		return false
	}
	ok := s.array(func() bool {
		if s.i >= len(s.b) || s.b[s.i] != '{' {
			s.bad = true
			_, ok := s.value()
			return ok
		}
		var o wireOffer
		ok := s.object(func(key []byte, esc bool) bool {
			switch {
			case keyIs(key, esc, "offer"):
				v, ok := s.value()
				o.Offer = v
				return ok
			case keyIs(key, esc, "offer_id"):
				return s.optStr(&o.OfferID)
			}
			_, ok := s.value()
			return ok
		})
		*out = append(*out, o)
		return ok
	})
	return ok && !s.bad
}
