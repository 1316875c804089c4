package requestid

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"abc-123", true},
		{"A.b_c-9", true},
		{strings.Repeat("a", MaxLen), true},
		{strings.Repeat("a", MaxLen+1), false},
		{"", false},
		{"has space", false},
		{"quote\"", false},
		{"new\nline", false},
		{"ünï", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			if got := Valid([]byte(tt.id)); got != tt.want {
				t.Fatalf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
			}
			if got := ValidString(tt.id); got != tt.want {
				t.Fatalf("ValidString(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestNewIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := New()
		if !ValidString(id) || seen[id] {
			t.Fatalf("id %q invalid or repeated", id)
		}
		seen[id] = true
	}
	if Keep("mine-1") != "mine-1" || Keep("not mine") == "not mine" {
		t.Fatal("Keep")
	}
}

func TestAppendNewAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = AppendNew(buf[:0]) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
