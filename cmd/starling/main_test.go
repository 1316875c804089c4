package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUnknownSubcommands(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string // "" means success
	}{
		{[]string{"config", "chek"}, `unknown command "chek" for "starling config" (did you mean "check"?)`},
		{[]string{"db", "imprt"}, `unknown command "imprt" for "starling db" (did you mean "import"?)`},
		{[]string{"bench", "nosuch"}, `unknown command "nosuch" for "starling bench"`},
		{[]string{"nosuch"}, `unknown command "nosuch" for "starling"`},
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
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.wantErr == "" && !strings.Contains(out.String(), "Available Commands"):
				t.Fatalf("no help printed: %q", out.String())
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
