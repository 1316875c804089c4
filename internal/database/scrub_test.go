package database

import "testing"

func TestScrubSecret(t *testing.T) {
	tests := []struct{ msg, secret, want string }{
		{"Error 1142: denied to user 'rev4ro'@'host'", "ro", "Error 1142: denied to user 'rev4ro'@'host'"},
		{"dial mysql://u:ro@host:3306/db", "ro", "dial mysql://u:xxxxx@host:3306/db"},
		{"password=hunter2 host=x", "hunter2", "password=xxxxx host=x"},
		{"hunter2", "hunter2", "xxxxx"},
		{"a hunter2hunter2 b", "hunter2", "a hunter2hunter2 b"},
		{"p@ss/w:rd in url u:p@ss/w:rd@h", "p@ss/w:rd", "xxxxx in url u:xxxxx@h"},
		{"x:@pw@@h", "@pw@", "x:xxxxx@h"},
		{"aaaa", "aa", "aaaa"},
		{"nothing here", "secret", "nothing here"},
	}
	for _, tt := range tests {
		if got := scrubSecret(tt.msg, tt.secret); got != tt.want {
			t.Errorf("scrubSecret(%q, %q) = %q, want %q", tt.msg, tt.secret, got, tt.want)
		}
	}
}
