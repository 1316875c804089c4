package config

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Environment variables. Each STARLING_ name has a TORRUST_TRACKER_ alias so
// existing deployments work unchanged; when both are set, STARLING_ wins.
const (
	EnvTOML            = "STARLING_CONFIG_TOML"
	EnvTOMLPath        = "STARLING_CONFIG_TOML_PATH"
	EnvOverridePrefix  = "STARLING_CONFIG_OVERRIDE_"
	TorrustTOML        = "TORRUST_TRACKER_CONFIG_TOML"
	TorrustTOMLPath    = "TORRUST_TRACKER_CONFIG_TOML_PATH"
	TorrustOverPrefix  = "TORRUST_TRACKER_CONFIG_OVERRIDE_"
	overrideSeparator  = "__"
	DefaultFileName    = "tracker.toml"
	firstRunFileMode   = 0o600
	storageDirMode     = 0o750
	adminTokenLength   = 32
	adminTokenAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// LoadOptions says where Load looks. Nothing is read from the process
// itself, so tests control everything.
type LoadOptions struct {
	// Env is the environment as os.Environ returns it ("NAME=value"); nil
	// means an empty environment. The daemon passes os.Environ().
	Env []string
	// Dir is the working directory: ./tracker.toml is looked up and written
	// there, and relative paths from the environment and the first run's
	// storage directories are resolved against it. Empty means ".".
	Dir string
	// ReadOnly stops the first run from writing tracker.toml or creating
	// directories (for `starling config check`); the defaults are returned
	// as they would be written.
	ReadOnly bool
}

// SourceKind says where the configuration text came from.
type SourceKind int

// Where the configuration text came from.
const (
	// FromDefaults: no TOML anywhere; the built-in defaults (plus any
	// overrides) were used.
	FromDefaults SourceKind = iota
	// FromFile: a file, named by an environment variable or ./tracker.toml.
	FromFile
	// FromEnvTOML: the whole text in STARLING_CONFIG_TOML or its alias.
	FromEnvTOML
)

func (k SourceKind) String() string {
	switch k {
	case FromFile:
		return "file"
	case FromEnvTOML:
		return "environment"
	default:
		return "defaults"
	}
}

// Source reports how the configuration was assembled, for the start-up log.
// It holds names and paths only, never a value from the environment.
type Source struct {
	Kind SourceKind
	// Path is the file read (FromFile).
	Path string
	// EnvVar names the variable that gave the text or the path, if any.
	EnvVar string
	// Overrides names the override variables applied, in order.
	Overrides []string
	// FirstRun is true when there was no configuration at all: the defaults
	// got a fresh random admin token and, unless ReadOnly, were written.
	FirstRun bool
	// Written is the file the first run wrote ("" if none).
	Written string
	// CreatedDirs are the storage directories the first run created.
	CreatedDirs []string
	// Warnings are settings that are valid but probably unwanted.
	Warnings []string
}

// Load assembles the configuration: defaults < TOML < environment overrides.
//
// The TOML is STARLING_CONFIG_TOML (the text) if set, else the file named by
// STARLING_CONFIG_TOML_PATH (a missing file is an error), else ./tracker.toml
// in opts.Dir if it exists; the TORRUST_TRACKER_ names stand in for unset
// STARLING_ ones, and an empty variable counts as unset. Then every
// STARLING_CONFIG_OVERRIDE_<SECTION>__<KEY> (or TORRUST_TRACKER_CONFIG_OVERRIDE_)
// variable sets one key; its value is typed by the schema: strings are taken
// as they are, anything else is read as a TOML value (true, 120, a table
// { ... } or a list [ ... ]). List entries are addressed by index, e.g.
// UDP_TRACKERS__0__BIND_ADDRESS; the index may be at most the number of
// entries in the file (equal appends one).
//
// With no TOML and no override at all it is the first run: Default() with a
// fresh random admin token, written to opts.Dir/tracker.toml (mode 0600),
// and the SQLite file's directory is created. The error is Problems when the
// configuration itself is wrong.
func Load(opts LoadOptions) (*Config, *Source, error) {
	dir := opts.Dir
	if dir == "" {
		dir = "."
	}
	env := envMap(opts.Env)
	src := &Source{}

	var data []byte
	haveTOML := true
	if name, text, ok := pick(env, EnvTOML, TorrustTOML); ok {
		src.Kind, src.EnvVar, data = FromEnvTOML, name, []byte(text)
	} else if name, p, ok := pick(env, EnvTOMLPath, TorrustTOMLPath); ok {
		path := resolve(dir, p)
		b, err := readFile(path)
		if err != nil {
			return nil, src, fmt.Errorf("read configuration file %s named by %s: %w", path, name, err)
		}
		src.Kind, src.EnvVar, src.Path, data = FromFile, name, path, b
	} else {
		path := filepath.Join(dir, DefaultFileName)
		b, err := readFile(path)
		switch {
		case err == nil:
			src.Kind, src.Path, data = FromFile, path, b
		case errors.Is(err, fs.ErrNotExist):
			haveTOML = false
		default:
			return nil, src, fmt.Errorf("read configuration file %s: %w", path, err)
		}
	}

	ovs, unresolved := overrides(opts.Env)
	for _, o := range ovs {
		src.Overrides = append(src.Overrides, o.env)
	}
	src.FirstRun = !haveTOML && len(ovs) == 0 && len(unresolved) == 0

	cfg, ps := parse(data, haveTOML, ovs)
	if ps = append(unresolved, ps...); len(ps) > 0 {
		return nil, src, fmt.Errorf("configuration from %s: %w", src.describe(), ps)
	}
	if src.FirstRun {
		if err := firstRun(cfg, src, dir, opts.ReadOnly); err != nil {
			return nil, src, err
		}
	}
	src.Warnings = cfg.Warnings()
	return cfg, src, nil
}

// describe names where the configuration came from, for errors.
func (s *Source) describe() string {
	var d string
	switch s.Kind {
	case FromFile:
		d = "file " + s.Path
	case FromEnvTOML:
		d = "the TOML in " + s.EnvVar
	default:
		d = "the defaults"
	}
	if len(s.Overrides) > 0 {
		d += " with environment overrides"
	}
	return d
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// pick returns the first of names that is set and not empty.
func pick(env map[string]string, names ...string) (name, value string, ok bool) {
	for _, n := range names {
		if v := env[n]; v != "" {
			return n, v, true
		}
	}
	return "", "", false
}

func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes; is this the right file?", MaxFileSize)
	}
	return b, nil
}

// override is one environment override, resolved against the schema.
type override struct {
	env   string
	rank  int      // 0 for TORRUST_, 1 for STARLING_: applied later, so it wins
	segs  []string // canonical TOML names and list indexes
	path  string   // the key path as problems name it
	leaf  reflect.Type
	value string
}

// overrides collects the override variables, resolved and sorted so that a
// whole table is applied before keys inside it and STARLING_ after
// TORRUST_.
func overrides(environ []string) ([]override, Problems) {
	var ovs []override
	var ps Problems
	seen := map[string]bool{}
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		rank := -1
		var rest string
		if r, ok := strings.CutPrefix(name, EnvOverridePrefix); ok {
			rank, rest = 1, r
		} else if r, ok := strings.CutPrefix(name, TorrustOverPrefix); ok {
			rank, rest = 0, r
		}
		if rank < 0 || seen[name] {
			continue
		}
		seen[name] = true
		o, p := resolveOverride(name, rest, value)
		if p != nil {
			ps = append(ps, p)
			continue
		}
		o.rank = rank
		ovs = append(ovs, o)
	}
	slices.SortStableFunc(ovs, func(a, b override) int {
		if c := compareSegs(a.segs, b.segs); c != 0 {
			return c
		}
		return cmp.Compare(a.rank, b.rank)
	})
	slices.SortStableFunc(ps, func(a, b *Problem) int { return strings.Compare(a.Env, b.Env) })
	return ovs, ps
}

// compareSegs orders paths segment by segment, numbers numerically, and a
// path before the paths inside it.
func compareSegs(a, b []string) int {
	for i := range min(len(a), len(b)) {
		x, errX := strconv.Atoi(a[i])
		y, errY := strconv.Atoi(b[i])
		if errX == nil && errY == nil {
			if c := cmp.Compare(x, y); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// resolveOverride maps NAME's key part (e.g. CORE__DATABASE__DRIVER) to the
// schema, so unknown keys fail before anything is applied.
func resolveOverride(name, rest, value string) (override, *Problem) {
	o := override{env: name, value: value}
	if rest == "" {
		return o, &Problem{Env: name, Msg: "names no key; write the key path after the prefix, sections joined with __, e.g. CORE__ANNOUNCE_POLICY__INTERVAL"}
	}
	t := reflect.TypeFor[Config]()
	for _, raw := range strings.Split(rest, overrideSeparator) {
		seg := strings.ToLower(raw)
		if seg == "" {
			return o, &Problem{Key: o.path, Env: name, Msg: "has an empty key segment (three or more underscores in a row?)"}
		}
		switch t.Kind() {
		case reflect.Struct:
			if t == typeAddr || t == typeAddrPort || t == typeSeconds {
				return o, &Problem{Key: o.path, Env: name, Msg: "is a single value; it has no key " + strconv.Quote(seg)}
			}
			f, ok := lookupField(t, seg)
			if !ok {
				p := joinKey(o.path, seg)
				return o, &Problem{Key: p, Env: name, Msg: "unknown key" + hint(t, o.path, seg)}
			}
			o.segs = append(o.segs, f.name)
			o.path = joinKey(o.path, f.name)
			t = t.Field(f.index).Type
			if t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
		case reflect.Slice:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n > 1000 {
				return o, &Problem{Key: o.path, Env: name, Msg: fmt.Sprintf("is a list; the next key segment must be an entry index such as 0, not %q", seg)}
			}
			o.segs = append(o.segs, seg)
			o.path = indexKey(o.path, n)
			t = t.Elem()
		case reflect.Map:
			// Labels come lowercased, as in Torrust's environment provider.
			o.segs = append(o.segs, seg)
			o.path = joinKey(o.path, quoteKeyIfNeeded(seg))
			t = t.Elem()
		default:
			return o, &Problem{Key: o.path, Env: name, Msg: "is a single value; it has no key " + strconv.Quote(seg)}
		}
	}
	o.leaf = t
	return o, nil
}

// apply sets one override in the TOML tree, in the spelling the file
// already uses (tsl_config or tls_config), creating tables and list entries
// on the way.
func (b *binder) apply(tree map[string]any, o override) {
	v, p := overrideValue(o)
	if p != nil {
		b.problems = append(b.problems, p)
		return
	}
	b.env[o.path] = o.env
	add := func(path, format string, args ...any) {
		b.problems = append(b.problems, &Problem{Key: path, Env: o.env, Msg: fmt.Sprintf(format, args...)})
	}
	t := reflect.TypeFor[Config]()
	var node any = tree
	// set stores a replacement for node in its parent: a list that grew or
	// changed representation must be written back.
	set := func(any) {}
	path := ""
	for i, seg := range o.segs {
		last := i == len(o.segs)-1
		switch t.Kind() {
		case reflect.Struct:
			m, ok := node.(map[string]any)
			if !ok {
				add(path, "cannot set %s: this is %s, not a table", o.path, tomlType(node))
				return
			}
			f, _ := lookupField(t, seg)
			key := f.name
			if _, ok := m[key]; !ok && f.alias != "" {
				if _, ok := m[f.alias]; ok {
					key = f.alias
				}
			}
			path = joinKey(path, key)
			t = t.Field(f.index).Type
			if t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if last {
				m[key] = v
				return
			}
			child, ok := m[key]
			if !ok {
				child = emptyFor(t)
				m[key] = child
			}
			node = child
			set = func(x any) { m[key] = x }
		case reflect.Slice:
			n, _ := strconv.Atoi(seg)
			list, ok := asList(node)
			if !ok {
				add(path, "cannot set %s: this is %s, not a list", o.path, tomlType(node))
				return
			}
			if n > len(list) {
				add(indexKey(path, n), "entry %d does not exist: the list has %d entries, so the index may be at most %d (which appends one)", n, len(list), len(list))
				return
			}
			if n == len(list) {
				list = append(list, map[string]any{})
			}
			set(list)
			path = indexKey(path, n)
			t = t.Elem()
			if last {
				list[n] = v
				return
			}
			node = list[n]
			set = func(x any) { list[n] = x }
		case reflect.Map:
			m, ok := node.(map[string]any)
			if !ok {
				add(path, "cannot set %s: this is %s, not a table", o.path, tomlType(node))
				return
			}
			m[seg] = v
			return
		}
	}
}

// asList views a decoded TOML list as []any; the caller stores the result
// back, as an array of tables decodes as []map[string]any.
func asList(node any) ([]any, bool) {
	switch v := node.(type) {
	case []any:
		return v, true
	case []map[string]any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = v[i]
		}
		return out, true
	}
	return nil, false
}

func emptyFor(t reflect.Type) any {
	if t.Kind() == reflect.Slice {
		return []any{}
	}
	return map[string]any{}
}

// overrideValue types an override's text by the schema: strings (and
// addresses) as they are, everything else as a TOML value.
func overrideValue(o override) (any, *Problem) {
	if !utf8.ValidString(o.value) {
		return nil, &Problem{Key: o.path, Env: o.env, Msg: "value is not UTF-8 text"}
	}
	if o.leaf.Kind() == reflect.String || o.leaf == typeAddr || o.leaf == typeAddrPort {
		// Torrust's overrides go through figment, which reads "…" as a
		// quoted string: deployments quote a token of digits that way.
		if v := o.value; len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			var m map[string]any
			if _, err := toml.Decode("v = "+v, &m); err == nil {
				if s, ok := m["v"].(string); ok {
					return s, nil
				}
			}
		}
		return o.value, nil
	}
	var m map[string]any
	if _, err := toml.Decode("v = "+o.value, &m); err != nil || len(m) != 1 {
		want := "a TOML value"
		switch o.leaf.Kind() {
		case reflect.Bool:
			want = "true or false"
		case reflect.Int, reflect.Uint32:
			want = "a whole number"
		case reflect.Slice:
			want = "a TOML list of inline tables, like [{ bind_address = \"0.0.0.0:6969\" }]"
		case reflect.Struct, reflect.Map:
			want = "a TOML inline table, like { key = \"value\" }"
		}
		if o.leaf == typeSeconds {
			want = "a whole number of seconds"
		}
		return nil, &Problem{Key: o.path, Env: o.env, Msg: "value is not " + want}
	}
	return m["v"], nil
}

// firstRun gives the defaults a random admin token, writes them to
// dir/tracker.toml and creates the SQLite file's directory.
func firstRun(cfg *Config, src *Source, dir string, readOnly bool) error {
	token := newToken()
	cfg.HTTPAPI.AccessTokens["admin"] = token
	if readOnly {
		return nil
	}
	if cfg.Core.Database.Driver == DriverSQLite3 {
		created, err := mkdirAll(resolve(dir, filepath.Dir(cfg.Core.Database.Path)))
		if err != nil {
			return fmt.Errorf("first run: create the database directory: %w (make %s writable or set core.database.path)", err, dir)
		}
		src.CreatedDirs = created
	}
	path := filepath.Join(dir, DefaultFileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, firstRunFileMode)
	if err != nil {
		return fmt.Errorf("first run: write the configuration: %w (make %s writable, or give a configuration with %s)", err, dir, EnvTOMLPath)
	}
	if err := cfg.Encode(f); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("first run: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("first run: write %s: %w", path, err)
	}
	src.Written = path
	return nil
}

// mkdirAll is os.MkdirAll that reports the directories it created.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, storageDirMode); err != nil {
		return nil, err
	}
	slices.Reverse(missing)
	return missing, nil
}

// newToken is 32 random alphanumerics, as Torrust's keys are.
func newToken() string {
	var out [adminTokenLength]byte
	var buf [64]byte
	n := 0
	for n < len(out) {
		rand.Read(buf[:]) // never fails (crypto/rand panics on failure)
		for _, c := range buf {
			// 248 = 4*62: rejecting the rest keeps every character equally
			// likely.
			if c < 248 && n < len(out) {
				out[n] = adminTokenAlphabet[int(c)%len(adminTokenAlphabet)]
				n++
			}
		}
	}
	return string(out[:])
}
