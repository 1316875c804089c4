package handoff

import (
	"bufio"
	"strings"
	"testing"
)

func TestDecodeMessage(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
	}{
		{"prepared", `{"state":"prepared","pid":12}`, true},
		{"manifest", `{"manifest":{"listeners":[{"name":"udp_trackers[0]","network":"udp","addr":"0.0.0.0:6969","files":[0,1]},{"name":"http_api","network":"tcp","addr":"127.0.0.1:1212","files":[2]}],"old_pid":7}}`, true},
		{"not json", `{"state":`, false},
		{"unknown network", `{"manifest":{"listeners":[{"name":"x","network":"unix","files":[0]}]}}`, false},
		{"negative index", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[-1]}]}}`, false},
		{"index too large", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[4096]}]}}`, false},
		{"index twice", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[0]},{"name":"y","network":"tcp","files":[0]}]}}`, false},
		{"swarms pipe", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[0]}],"swarms_pipe":1}}`, true},
		{"swarms pipe on a listener's", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[0]}],"swarms_pipe":0}}`, false},
		{"swarms pipe out of range", `{"manifest":{"swarms_pipe":-1}}`, false},
		{"prepared, taking the pipe", `{"state":"prepared","pid":12,"swarms":"pipe"}`, true},
		{"late pipe", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[0]}],"swarms_pipe":1,"late_pipe":2}}`, true},
		{"late pipe on the swarms pipe", `{"manifest":{"swarms_pipe":1,"late_pipe":1}}`, false},
		{"late pipe on a listener's", `{"manifest":{"listeners":[{"name":"x","network":"udp","files":[2]}],"late_pipe":2}}`, false},
		{"late pipe out of range", `{"manifest":{"late_pipe":4096}}`, false},
		{"prepared, taking the late pipe", `{"state":"prepared","pid":12,"swarms":"pipe","late":true}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeMessage([]byte(tc.line))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeMessage(%s): %v, want ok=%v", tc.line, err, tc.ok)
			}
		})
	}
}

func TestReadMessageBounded(t *testing.T) {
	long := `{"error":"` + strings.Repeat("x", maxMessage) + `"}` + "\n"
	if _, err := readMessage(bufio.NewReader(strings.NewReader(long))); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a message over %d bytes: %v", maxMessage, err)
	}
	m, err := readMessage(bufio.NewReader(strings.NewReader(`{"go":true,"snapshot":"/s"}` + "\n")))
	if err != nil || !m.Go || m.Snapshot != "/s" {
		t.Fatalf("go message: %+v, %v", m, err)
	}
}

// FuzzDecodeMessage: any line decodes to a message or an error, never a
// panic, and a decoded manifest's descriptors are in range and distinct.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"state":"ready","pid":1}`))
	f.Add([]byte(`{"manifest":{"listeners":[{"name":"udp_trackers[0]","network":"udp","addr":"0.0.0.0:6969","files":[0,1]}],"secrets":{"udp_trackers[0]":"AAEC"},"old_pid":7}}`))
	f.Add([]byte(`{"manifest":{"listeners":[{"files":[99999999999]}]}}`))
	f.Add([]byte(`{"manifest":{"listeners":[{"network":"tcp","files":[1]}],"swarms_pipe":1}}`))
	f.Add([]byte(`{"manifest":{"listeners":[{"network":"tcp","files":[1]}],"swarms_pipe":2,"late_pipe":3}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := decodeMessage(line)
		if err != nil || m.Manifest == nil {
			return
		}
		seen := map[int]bool{}
		for _, i := range []*int{m.Manifest.SwarmsPipe, m.Manifest.LatePipe} {
			if i == nil {
				continue
			}
			if *i < 0 || *i >= maxFiles || seen[*i] {
				t.Fatalf("pipe index %d accepted", *i)
			}
			seen[*i] = true
		}
		for _, l := range m.Manifest.Listeners {
			for _, i := range l.Files {
				if i < 0 || i >= maxFiles || seen[i] {
					t.Fatalf("descriptor index %d accepted", i)
				}
				seen[i] = true
			}
		}
	})
}
