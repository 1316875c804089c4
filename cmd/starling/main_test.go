package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUnknownSubcommands(t *testing.T) {
	tests := []struct {
		args []string
		want string // on stderr, with exit status 2; "" means help and success
	}{
		{[]string{"config", "chek"}, `unknown command "chek" for "starling config" (did you mean "check"?)`},
		{[]string{"db", "imprt"}, `unknown command "imprt" for "starling db" (did you mean "import"?)`},
		{[]string{"bench", "nosuch"}, `unknown command "nosuch" for "starling bench"`},
		{[]string{"nosuch"}, `unknown command "nosuch" for "starling"`},
		{[]string{"sevre"}, `unknown command "sevre" for "starling" (did you mean "serve"?)`},
		{[]string{"config"}, ""},
		{[]string{"db"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			err := root.Execute()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want == "" && !strings.Contains(out.String(), "Available Commands"):
				t.Fatalf("no help printed: %q", out.String())
			case tt.want != "" && exitCode(err) != 2:
				t.Fatalf("error %v (exit status %d), want exit status 2", err, exitCode(err))
			case tt.want != "" && !strings.Contains(out.String(), tt.want):
				t.Fatalf("printed %q, want %q", out.String(), tt.want)
			}
		})
	}
}
