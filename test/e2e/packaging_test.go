package e2e

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

const repoRoot = "../.."

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// parseDockerfile reads instructions in order; it knows comments, blank
// lines and backslash continuations, which is all the Dockerfile uses.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start, n := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued instruction", path)
	}
	return out
}

// goVersion is the go directive of go.mod as major.minor.
func goVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	return string(m[1])
}

// TestDockerfile checks the image recipe without a Docker engine: the stages,
// a static build, a non-root user, the Torrust layout, ports and health check.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, filepath.Join(repoRoot, "Dockerfile"))
	args := map[string]string{}
	type stage struct {
		from, name string
		ins        []instruction
	}
	var stages []*stage
	for _, in := range ins {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			s := &stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case len(stages) == 0:
			t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime stage", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	find := func(s *stage, cmd string) []instruction {
		var r []instruction
		for _, in := range s.ins {
			if in.cmd == cmd {
				r = append(r, in)
			}
		}
		return r
	}

	t.Run("builder", func(t *testing.T) {
		from := strings.ReplaceAll(builder.from, "${GO_VERSION}", args["GO_VERSION"])
		if want := "golang:" + goVersion(t); !strings.HasPrefix(from, want) {
			t.Errorf("builder FROM %s, want %s (go.mod's version)", from, want)
		}
		var build string
		for _, in := range find(builder, "RUN") {
			if strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
		if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/starling") {
			t.Errorf("build step %q: want CGO_ENABLED=0 go build ./cmd/starling", build)
		}
		// Every file the builder copies out of the context exists.
		for _, in := range append(find(builder, "COPY"), find(builder, "RUN")...) {
			for _, f := range strings.Fields(in.args) {
				if strings.HasPrefix(f, "contrib/") || f == "go.mod" || f == "go.sum" {
					if _, err := os.Stat(filepath.Join(repoRoot, f)); err != nil {
						t.Errorf("line %d uses %s: %v", in.line, f, err)
					}
				}
			}
		}
	})

	t.Run("runtime", func(t *testing.T) {
		if !strings.Contains(final.from, "distroless/static") && !strings.HasPrefix(final.from, "alpine") {
			t.Errorf("runtime FROM %s, want distroless/static or alpine", final.from)
		}
		copied := false
		for _, in := range find(final, "COPY") {
			if strings.Contains(in.args, "--from="+builder.name) && strings.HasSuffix(in.args, " /usr/bin/starling") {
				copied = true
			}
		}
		if !copied {
			t.Error("the runtime stage does not copy the binary to /usr/bin/starling")
		}
		users := find(final, "USER")
		if len(users) == 0 {
			t.Fatal("no USER: the tracker would run as root")
		}
		uid, err := strconv.Atoi(strings.Split(users[len(users)-1].args, ":")[0])
		if err != nil || uid < 1000 {
			t.Errorf("USER %s: want a numeric uid of at least 1000", users[len(users)-1].args)
		}
		env := map[string]string{}
		for _, in := range find(final, "ENV") {
			k, v, _ := strings.Cut(in.args, "=")
			env[k] = v
		}
		if env["STARLING_CONFIG_TOML_PATH"] != "/etc/torrust/tracker/tracker.toml" {
			t.Errorf("STARLING_CONFIG_TOML_PATH=%q", env["STARLING_CONFIG_TOML_PATH"])
		}
		var ports []string
		for _, in := range find(final, "EXPOSE") {
			ports = append(ports, strings.Fields(in.args)...)
		}
		for _, p := range []string{"6969/udp", "7070", "1212", "1313"} {
			if !strings.Contains(" "+strings.Join(ports, " ")+" ", " "+p+" ") {
				t.Errorf("EXPOSE %v lacks %s", ports, p)
			}
		}
		hc := find(final, "HEALTHCHECK")
		if len(hc) != 1 {
			t.Fatalf("%d HEALTHCHECK instructions", len(hc))
		}
		_, cmdJSON, ok := strings.Cut(hc[0].args, "CMD ")
		var argv []string
		if !ok || json.Unmarshal([]byte(cmdJSON), &argv) != nil {
			t.Fatalf("HEALTHCHECK %q: want the exec form CMD [...]", hc[0].args)
		}
		want := []string{"/usr/bin/starling", "healthcheck", "http://localhost:1313/health_check"}
		if strings.Join(argv, " ") != strings.Join(want, " ") {
			t.Errorf("HEALTHCHECK CMD %v, want %v", argv, want)
		}
	})

	t.Run("container configuration", func(t *testing.T) {
		file := filepath.Join(repoRoot, "contrib/container/tracker.toml")
		out, errOut, code := tool(t, nil, "config", "check", mustAbs(t, file))
		if code != 0 {
			t.Fatalf("starling config check %s: exit %d\n%s%s", file, code, out, errOut)
		}
		var cfg struct {
			Core struct {
				Database struct{ Path string } `toml:"database"`
			} `toml:"core"`
			HTTPAPI struct {
				AccessTokens map[string]string `toml:"access_tokens"`
			} `toml:"http_api"`
			Health struct {
				BindAddress string `toml:"bind_address"`
			} `toml:"health_check_api"`
		}
		if _, err := toml.DecodeFile(file, &cfg); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cfg.Core.Database.Path, "/var/lib/torrust/tracker/") {
			t.Errorf("database %s is not on the data volume", cfg.Core.Database.Path)
		}
		if len(cfg.HTTPAPI.AccessTokens) != 0 {
			t.Errorf("the image ships API tokens %v: anyone who reads the image could use them", cfg.HTTPAPI.AccessTokens)
		}
		if !strings.HasSuffix(cfg.Health.BindAddress, ":1313") {
			t.Errorf("health check on %s, the HEALTHCHECK probes port 1313", cfg.Health.BindAddress)
		}
	})

	t.Run("dockerignore keeps the sources", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "contrib", "*.go", "**"} {
				if strings.TrimPrefix(line, "/") == needed {
					t.Errorf(".dockerignore excludes %s, which the build needs", needed)
				}
			}
		}
	})

	t.Run("static binary", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "starling")
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/starling")
		build.Dir = repoRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("CGO_ENABLED=0 build: %v\n%s", err, b)
		}
		f, err := elf.Open(out)
		if err != nil {
			t.Skipf("not an ELF platform: %v", err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the CGO_ENABLED=0 binary asks for a dynamic loader; distroless/static has none")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("the binary needs shared libraries %v", libs)
		}
	})
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSystemdUnit checks the unit's sandboxing and, where systemd-analyze
// exists, has systemd verify it and rate its exposure.
func TestSystemdUnit(t *testing.T) {
	path := filepath.Join(repoRoot, "contrib/systemd/starling.service")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{} // "Section.Key" -> values in order
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("line %q is not Key=Value", line)
			}
			unit[section+"."+k] = append(unit[section+"."+k], v)
		}
	}
	want := map[string]string{
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.CapabilityBoundingSet":   "",
		"Service.StateDirectory":          "starling",
		"Service.PrivateTmp":              "yes",
		"Service.ProtectHome":             "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Install.WantedBy":                "multi-user.target",
	}
	for k, v := range want {
		got, ok := unit[k]
		if !ok || got[len(got)-1] != v {
			t.Errorf("%s=%v, want %q", k, got, v)
		}
	}
	if unit["Service.DynamicUser"] == nil && unit["Service.User"] == nil {
		t.Error("neither DynamicUser= nor User=: the tracker would run as root")
	}
	exec0 := unit["Service.ExecStart"]
	if len(exec0) != 1 || !strings.HasSuffix(strings.Fields(exec0[0])[0], "/starling") || !strings.Contains(exec0[0], " serve") {
		t.Fatalf("ExecStart=%v, want /…/starling serve", exec0)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze: the unit was checked by parsing only")
	}
	// verify needs ExecStart's binary to exist: point it at the built one.
	dir := t.TempDir()
	test := filepath.Join(dir, "starling.service")
	text := strings.Replace(string(b), "ExecStart="+strings.Fields(exec0[0])[0], "ExecStart="+binary, 1)
	if err := os.WriteFile(test, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", test).CombinedOutput()
	if err != nil || strings.Contains(string(out), "starling.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec, err := exec.Command(analyze, "security", "--offline=yes", test).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for starling\.service: ([0-9.]+)`).FindSubmatch(sec)
	if err != nil || m == nil {
		t.Logf("systemd-analyze security --offline is not available here: %v", err)
		return
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security rates the unit's exposure %s; keep it at 2.0 or below", m[1])
	}
}
