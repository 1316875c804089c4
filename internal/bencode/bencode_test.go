package bencode

import (
	"math"
	"reflect"
	"sort"
	"testing"

	anabencode "github.com/anacrolix/torrent/bencode"
)

func TestAppend(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"int zero", AppendInt(nil, 0), "i0e"},
		{"int negative", AppendInt(nil, -42), "i-42e"},
		{"int min", AppendInt(nil, math.MinInt64), "i-9223372036854775808e"},
		{"uint max", AppendUint(nil, math.MaxUint64), "i18446744073709551615e"},
		{"empty string", AppendString(nil, ""), "0:"},
		{"string", AppendString(nil, "spam"), "4:spam"},
		{"binary bytes", AppendBytes(nil, []byte{0, 'e', ':'}), "3:\x00e:"},
		{"header", AppendStringHeader([]byte("x"), 120), "x120:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.got) != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		b = append(b, DictStart)
		b = AppendString(b, "complete")
		b = AppendInt(b, 12345)
		b = AppendString(b, "peers")
		b = AppendBytes(b, []byte("abcdef"))
		b = append(b, End)
		buf = b
	})
	if allocs != 0 {
		t.Fatalf("allocs per run = %v, want 0", allocs)
	}
}

// value builds a bencode value tree from fuzz input, so the fuzzer explores
// nesting, binary strings and extreme integers. It consumes data and returns
// the rest.
func value(data []byte, depth int) (any, []byte) {
	if len(data) == 0 {
		return int64(0), data
	}
	op, data := data[0], data[1:]
	switch {
	case op%4 == 0 || depth > 4:
		var v int64
		for i := 0; i < 8 && len(data) > 0; i++ {
			v = v<<8 | int64(data[0])
			data = data[1:]
		}
		return v, data
	case op%4 == 1:
		n := int(op>>2) % 40
		if n > len(data) {
			n = len(data)
		}
		return string(data[:n]), data[n:]
	case op%4 == 2:
		n := int(op>>2) % 5
		l := make([]any, 0, n)
		for i := 0; i < n; i++ {
			var v any
			v, data = value(data, depth+1)
			l = append(l, v)
		}
		return l, data
	default:
		n := int(op>>2) % 5
		m := make(map[string]any, n)
		for i := 0; i < n; i++ {
			// Keys are strings cut from the input, at any depth.
			kn := min(i+1, len(data))
			k := string(data[:kn])
			var v any
			v, data = value(data[kn:], depth+1)
			m[k] = v
		}
		return m, data
	}
}

// encode writes v with this package's functions, the way the tracker does.
func encode(dst []byte, v any) []byte {
	switch v := v.(type) {
	case int64:
		return AppendInt(dst, v)
	case string:
		return AppendString(dst, v)
	case []any:
		dst = append(dst, ListStart)
		for _, e := range v {
			dst = encode(dst, e)
		}
		return append(dst, End)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, DictStart)
		for _, k := range keys {
			dst = AppendBytes(dst, []byte(k))
			dst = encode(dst, v[k])
		}
		return append(dst, End)
	}
	panic("unexpected type")
}

// FuzzRoundTrip checks the encoder against anacrolix's independent codec:
// what we write must decode to the value we wrote, and be byte-identical to
// anacrolix's own encoding of that value.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3})
	f.Add([]byte{3 | 2<<2, 'a', 'b', 0, 0xff, 2 | 3<<2, 1 | 4<<2, 'x', 0, 0, 'e', ':'})
	f.Add([]byte{0, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, _ := value(data, 0)
		ours := encode(nil, v)
		theirs, err := anabencode.Marshal(v)
		if err != nil {
			t.Fatalf("anacrolix marshal: %v", err)
		}
		if string(ours) != string(theirs) {
			t.Fatalf("encoding differs:\nours   %q\ntheirs %q", ours, theirs)
		}
		var back any
		if err := anabencode.Unmarshal(ours, &back); err != nil {
			t.Fatalf("anacrolix cannot decode %q: %v", ours, err)
		}
		if !reflect.DeepEqual(normalise(back), v) {
			t.Fatalf("round trip: got %#v, want %#v", back, v)
		}
	})
}

// normalise maps anacrolix's decoded types onto the ones value builds.
func normalise(v any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalise(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalise(e)
		}
		return out
	}
	return v
}

func BenchmarkAppendAnnounceShape(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	peers := make([]byte, 6*50)
	for b.Loop() {
		d := buf[:0]
		d = append(d, DictStart)
		d = AppendString(d, "complete")
		d = AppendUint(d, 10)
		d = AppendString(d, "incomplete")
		d = AppendUint(d, 40)
		d = AppendString(d, "interval")
		d = AppendUint(d, 120)
		d = AppendString(d, "peers")
		d = AppendBytes(d, peers)
		buf = append(d, End)
	}
}
