package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// MaxFileSize bounds the configuration text. Real files are a few hundred
// bytes; the bound keeps a wrong path (a disk image, /dev/zero) from being
// read into memory.
const MaxFileSize = 1 << 20

// Problem is one thing wrong with the configuration.
type Problem struct {
	// Key is the dotted path of the key, with [i] for list entries, e.g.
	// "udp_trackers[0].bind_address"; empty for the document as a whole.
	Key string
	// Env names the environment variable that set the value, if one did.
	Env string
	// Msg says what is wrong and what to do.
	Msg string
	// deps are other keys the problem depends on: if one of them could not
	// be read, the problem is an artefact of its default and is not shown.
	deps []string
}

func (p *Problem) Error() string {
	var b strings.Builder
	if p.Key != "" {
		b.WriteString(p.Key)
		if p.Env != "" {
			b.WriteString(" (set by ")
			b.WriteString(p.Env)
			b.WriteString(")")
		}
		b.WriteString(": ")
	} else if p.Env != "" {
		b.WriteString(p.Env)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one configuration. As an error it lists
// them one per line.
type Problems []*Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}

// Err is nil when there is no problem, else ps as an error.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Parse reads a configuration file's text. Keys the text leaves out get
// their defaults, as do [[udp_trackers]], [[http_trackers]] and [http_api]
// entries that are present; absent listener sections mean no such listener,
// as in Torrust. The error, if any, is Problems.
func Parse(data []byte) (*Config, error) {
	cfg, ps := parse(data, true, nil)
	if len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}

// Check reports every problem in a configuration file's text; none means
// Parse accepts it.
func Check(data []byte) Problems {
	_, ps := parse(data, true, nil)
	return ps
}

// parse decodes data (on top of base()), applies the overrides and
// validates. Without TOML (haveTOML false) Default() is the base.
func parse(data []byte, haveTOML bool, ovs []override) (*Config, Problems) {
	b := &binder{env: map[string]string{}}
	cfg := base()
	tree := map[string]any{}
	if haveTOML {
		t, p := decodeTOML(data)
		if p != nil {
			return nil, Problems{p}
		}
		tree = t
	} else {
		cfg = Default()
	}
	for _, o := range ovs {
		b.apply(tree, o)
	}
	b.bindStruct("", tree, reflect.ValueOf(cfg).Elem())
	// Values are checked even when some keys could not be read, so one run
	// reports everything; a check that involves an unreadable key is left
	// out, as it would only judge that key's default.
	read := b.problems
	for _, p := range cfg.validate() {
		if involves(read, p) {
			continue
		}
		p.Env = b.envFor(p.Key)
		b.problems = append(b.problems, p)
	}
	if len(b.problems) > 0 {
		return nil, b.problems
	}
	return cfg, nil
}

// involves reports whether p is about a key (or depends on one) that one of
// the problems in read is about, inside or around it.
func involves(read Problems, p *Problem) bool {
	keys := append([]string{p.Key}, p.deps...)
	for _, q := range read {
		for _, k := range keys {
			if within(q.Key, k) || within(k, q.Key) {
				return true
			}
		}
	}
	return false
}

// within reports whether key is path or inside it.
func within(key, path string) bool {
	if path == "" {
		return false
	}
	return key == path || strings.HasPrefix(key, path+".") || strings.HasPrefix(key, path+"[")
}

// decodeTOML parses the text into a tree of TOML values.
func decodeTOML(data []byte) (tree map[string]any, prob *Problem) {
	if len(data) > MaxFileSize {
		return nil, &Problem{Msg: fmt.Sprintf("configuration is %d bytes, more than the %d a tracker.toml can be; is this the right file?", len(data), MaxFileSize)}
	}
	if !utf8.Valid(data) {
		return nil, &Problem{Msg: "configuration is not UTF-8 text; is this the right file?"}
	}
	// The TOML parser is third-party code fed untrusted bytes; a panic in
	// it must become an error, not stop the tracker.
	defer func() {
		if r := recover(); r != nil {
			tree, prob = nil, &Problem{Msg: fmt.Sprintf("TOML syntax: the parser failed (%v)", r)}
		}
	}()
	tree = map[string]any{}
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Problem{Msg: fmt.Sprintf("TOML syntax error on line %d: %s", pe.Position.Line, pe.Message)}
		}
		return nil, &Problem{Msg: "TOML syntax error: " + err.Error()}
	}
	return tree, nil
}

// binder copies a TOML tree into the typed structs, collecting every
// problem instead of stopping at the first.
type binder struct {
	problems Problems
	// env maps a key path set by an environment override to the variable.
	env map[string]string
}

func (b *binder) add(path, format string, args ...any) {
	b.problems = append(b.problems, &Problem{Key: path, Env: b.envFor(path), Msg: fmt.Sprintf(format, args...)})
}

// envFor names the override that set path, a table containing it or,
// failing those, a key inside it (a section an override brought into being).
func (b *binder) envFor(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if e, ok := b.env[p]; ok {
			return e
		}
	}
	if path == "" {
		return ""
	}
	best := ""
	for p, e := range b.env {
		if strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[") {
			if best == "" || e < best {
				best = e
			}
		}
	}
	return best
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexKey(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

var (
	typeAddr     = reflect.TypeFor[netip.Addr]()
	typeAddrPort = reflect.TypeFor[netip.AddrPort]()
	typeSeconds  = reflect.TypeFor[Seconds]()
)

// field is a struct field and its TOML names.
type field struct {
	name, alias string
	index       int
}

func fieldsOf(t reflect.Type) []field {
	fs := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		name := sf.Tag.Get("toml")
		if name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{name: name, alias: sf.Tag.Get("alias"), index: i})
	}
	return fs
}

func lookupField(t reflect.Type, key string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == key || (f.alias != "" && f.alias == key) {
			return f, true
		}
	}
	return field{}, false
}

// bindStruct binds a TOML table into a struct, leaving absent keys as they
// are (the defaults).
func (b *binder) bindStruct(path string, src any, dst reflect.Value) {
	m, ok := src.(map[string]any)
	if !ok {
		b.add(path, "expected a table, got %s", tomlType(src))
		return
	}
	t := dst.Type()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := lookupField(t, k)
		if !ok {
			b.add(joinKey(path, k), "unknown key%s", hint(t, path, k))
			continue
		}
		if f.alias != "" && k == f.alias {
			if _, both := m[f.name]; both {
				b.add(joinKey(path, k), "%s and %s are the same setting (%s is Torrust's spelling); keep one", f.name, f.alias, f.alias)
				continue
			}
		}
		b.bindValue(joinKey(path, k), m[k], dst.Field(f.index))
		if t, ok := dst.Field(f.index).Interface().(*TLSConfig); ok && t != nil && k == f.alias {
			t.Spelling = k
		}
	}
}

func (b *binder) bindValue(path string, src any, dst reflect.Value) {
	switch dst.Type() {
	case typeAddr:
		s, ok := src.(string)
		if !ok {
			b.add(path, "expected an IP address as a string, such as \"203.0.113.7\", got %s", tomlType(src))
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			b.add(path, "%q is not an IP address; write it like \"203.0.113.7\" or \"2001:db8::7\"", s)
			return
		}
		dst.Set(reflect.ValueOf(a))
		return
	case typeAddrPort:
		s, ok := src.(string)
		if !ok {
			b.add(path, "expected an ip:port string, such as \"0.0.0.0:6969\", got %s", tomlType(src))
			return
		}
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			b.add(path, "%q is not an ip:port socket address; write it like \"0.0.0.0:6969\" or \"[::]:6969\" (port 0 picks a free port)", s)
			return
		}
		dst.Set(reflect.ValueOf(ap))
		return
	case typeSeconds:
		b.bindSeconds(path, src, dst)
		return
	}
	switch dst.Kind() {
	case reflect.Bool:
		v, ok := src.(bool)
		if !ok {
			b.add(path, "expected true or false, got %s", tomlType(src))
			return
		}
		dst.SetBool(v)
	case reflect.String:
		v, ok := src.(string)
		if !ok {
			b.add(path, "expected a string, got %s", tomlType(src))
			return
		}
		dst.SetString(v)
	case reflect.Int, reflect.Uint32, reflect.Uint64:
		v, ok := src.(int64)
		if !ok {
			b.add(path, "expected a whole number, got %s", tomlType(src))
			return
		}
		if v < 0 {
			b.add(path, "must not be negative, got %d", v)
			return
		}
		if dst.Kind() == reflect.Uint32 && v > math.MaxUint32 || dst.Kind() == reflect.Int && dst.OverflowInt(v) {
			b.add(path, "%d is out of range", v)
			return
		}
		if dst.Kind() == reflect.Int {
			dst.SetInt(v)
		} else {
			dst.SetUint(uint64(v))
		}
	case reflect.Struct:
		b.bindStruct(path, src, dst)
	case reflect.Pointer:
		// A section that is present starts from its defaults, so a file
		// can say only what differs.
		if dst.IsNil() {
			dst.Set(defaultsFor(dst.Type().Elem()))
		}
		b.bindValue(path, src, dst.Elem())
	case reflect.Slice:
		b.bindSlice(path, src, dst)
	case reflect.Map:
		m, ok := src.(map[string]any)
		if !ok {
			b.add(path, "expected a table of label = \"value\" pairs, got %s", tomlType(src))
			return
		}
		out := reflect.MakeMapWithSize(dst.Type(), len(m))
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				// The value may be a secret: name its type, never echo it.
				b.add(joinKey(path, quoteKeyIfNeeded(k)), "expected a string, got %s", tomlType(v))
				continue
			}
			out.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
		}
		dst.Set(out)
	default:
		// Only reachable if a field of a new type is added without a
		// binding; TestEncodeRoundTrip covers every field.
		b.add(path, "internal error: Starling cannot read a %s; please report this", dst.Type())
	}
}

// bindSeconds takes whole seconds, or the { secs, nanos } table that newer
// Torrust writes for durations.
func (b *binder) bindSeconds(path string, src any, dst reflect.Value) {
	var secs int64
	switch v := src.(type) {
	case int64:
		secs = v
	case map[string]any:
		s, ok := v["secs"].(int64)
		if !ok {
			b.add(path, "expected whole seconds or { secs = N, nanos = 0 }, got a table without an integer secs")
			return
		}
		for k, x := range v {
			switch k {
			case "secs":
			case "nanos":
				if n, ok := x.(int64); !ok || n != 0 {
					b.add(joinKey(path, "nanos"), "Starling counts %s in whole seconds; set nanos = 0", path)
					return
				}
			default:
				b.add(joinKey(path, k), "unknown key (a duration has only secs and nanos)")
				return
			}
		}
		secs = s
	default:
		b.add(path, "expected a number of seconds, got %s", tomlType(src))
		return
	}
	if secs < 0 || secs > math.MaxUint32 {
		b.add(path, "%d seconds is out of range (0 to %d)", secs, uint32(math.MaxUint32))
		return
	}
	dst.SetUint(uint64(secs))
}

func (b *binder) bindSlice(path string, src any, dst reflect.Value) {
	var items []any
	switch v := src.(type) {
	case []map[string]any:
		items = make([]any, len(v))
		for i := range v {
			items[i] = v[i]
		}
	case []any:
		items = v
	default:
		b.add(path, "expected a list of tables ([[%s]] sections), got %s", lastKey(path), tomlType(src))
		return
	}
	if len(items) == 0 {
		dst.Set(reflect.Zero(dst.Type()))
		return
	}
	out := reflect.MakeSlice(dst.Type(), len(items), len(items))
	for i, it := range items {
		out.Index(i).Set(defaultsFor(dst.Type().Elem()).Elem())
		b.bindValue(indexKey(path, i), it, out.Index(i))
	}
	dst.Set(out)
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// defaultsFor is a pointer to a fresh section with its defaults.
func defaultsFor(t reflect.Type) reflect.Value {
	switch t {
	case reflect.TypeFor[UDPTracker]():
		v := DefaultUDPTracker()
		return reflect.ValueOf(&v)
	case reflect.TypeFor[HTTPTracker]():
		v := DefaultHTTPTracker()
		return reflect.ValueOf(&v)
	case reflect.TypeFor[WebSocketTracker]():
		v := DefaultWebSocketTracker()
		return reflect.ValueOf(&v)
	case reflect.TypeFor[HTTPAPI]():
		v := DefaultHTTPAPI()
		return reflect.ValueOf(&v)
	case reflect.TypeFor[PrivateMode]():
		return reflect.ValueOf(&PrivateMode{CheckKeysExpiration: true})
	}
	return reflect.New(t)
}

// tomlType names the TOML type of a decoded value for messages. It never
// shows the value, which may be a secret.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any, []any:
		return "a list"
	case time.Time:
		return "a date-time"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// schemaV1Keys maps top-level keys of Torrust's older schema to where
// schema 2.0.0 keeps them; naming the place saves an operator a trip to
// the changelog.
var schemaV1Keys = map[string]string{
	"log_level":                         "[logging] threshold",
	"mode":                              "[core] private and listed (two booleans)",
	"db_driver":                         "[core.database] driver",
	"db_path":                           "[core.database] path",
	"announce_interval":                 "[core.announce_policy] interval",
	"min_announce_interval":             "[core.announce_policy] interval_min",
	"max_peer_timeout":                  "[core.tracker_policy] max_peer_timeout",
	"persistent_torrent_completed_stat": "[core.tracker_policy] persistent_torrent_completed_stat",
	"remove_peerless_torrents":          "[core.tracker_policy] remove_peerless_torrents",
	"on_reverse_proxy":                  "[core.net] on_reverse_proxy",
	"external_ip":                       "[core.net] external_ip",
	"tracker_usage_statistics":          "[core] tracker_usage_statistics",
	"inactive_peer_cleanup_interval":    "[core] inactive_peer_cleanup_interval",
}

// hint suggests what an unknown key was meant to be.
func hint(t reflect.Type, path, key string) string {
	if to, ok := schemaV1Keys[key]; ok && path == "" {
		return "; this is a Torrust schema 1 key: Starling reads schema 2.0.0, where it is " + to + " (see the Torrust v3 upgrade notes)"
	}
	best, bestD := "", 3
	for _, f := range fieldsOf(t) {
		if d := editDistance(key, f.name); d < bestD {
			best, bestD = f.name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	names := make([]string, 0, 8)
	for _, f := range fieldsOf(t) {
		names = append(names, f.name)
	}
	return "; known keys here: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance, for short key names only.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
