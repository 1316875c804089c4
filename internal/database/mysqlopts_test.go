package database

import (
	"net/url"
	"os"
	"strings"
	"testing"
)

// TestMySQLOptions: sqlx's options (Torrust's URLs) become driver
// parameters, the driver's own pass, and anything else is refused by name
// instead of reaching the server as SET name=value.
func TestMySQLOptions(t *testing.T) {
	tests := []struct {
		query   string
		want    string
		wantErr string
	}{
		{"", "", ""},
		{"ssl-mode=DISABLED", "tls=false", ""},
		{"ssl-mode=preferred", "tls=preferred", ""},
		{"ssl-mode=REQUIRED", "tls=skip-verify", ""},
		{"ssl-mode=VERIFY_IDENTITY&charset=utf8mb4", "charset=utf8mb4&tls=true", ""},
		{"statement-cache-capacity=100&timeout=3s", "timeout=3s", ""},
		{"tls=true&parseTime=true", "parseTime=true&tls=true", ""},
		{"ssl-mode=SOMETIMES", "", `ssl-mode="SOMETIMES"`},
		{"sslmode=disable", "", `unknown MySQL URL option "sslmode"`},
		{"sql_mode=ANSI", "", `unknown MySQL URL option "sql_mode"`},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			got, err := mysqlOptions(q)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Encode() != tt.want {
				t.Fatalf("got %q, %v; want %q", got.Encode(), err, tt.want)
			}
		})
	}
}

// TestMySQLURLOptionsLive: a Torrust-style URL with sqlx's options opens
// and works on a real server; a PostgreSQL-style option is refused at Open.
func TestMySQLURLOptionsLive(t *testing.T) {
	base := os.Getenv("STARLING_TEST_MYSQL_URL")
	if base == "" {
		t.Skip("STARLING_TEST_MYSQL_URL is not set")
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	db, err := Open(t.Context(), "mysql", base+sep+"ssl-mode=DISABLED&charset=utf8mb4&statement-cache-capacity=100", nil)
	if err != nil {
		t.Fatalf("Open with sqlx options: %v", err)
	}
	defer db.Close()
	if _, err := db.LoadWhitelist(t.Context()); err != nil {
		t.Fatalf("a query over that connection: %v", err)
	}
	if db, err := Open(t.Context(), "mysql", base+sep+"sslmode=disable", nil); err == nil {
		db.Close()
		t.Fatal("sslmode=disable was accepted")
	} else if !strings.Contains(err.Error(), `"sslmode"`) {
		t.Fatalf("error %v does not name the option", err)
	}
}
