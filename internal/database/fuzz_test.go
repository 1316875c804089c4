package database

import (
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// FuzzRedact: any text is redacted without panicking, and a URL's password
// never survives redaction (beyond copies of it elsewhere in the URL).
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"mysql://root:secretpw@127.0.0.1:3306/torrust",
		"postgresql://u:p%40ss%2Fword@db:5432/x?sslmode=disable",
		"postgres://db/x?password=hunter22&user=u",
		"mysql://user:pa@ss@host/db",
		"./storage/tracker/lib/database/sqlite3.db",
		"mysql://[::1",
		"://:@",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := Redact(raw)
		u, err := url.Parse(raw)
		if err != nil || !strings.Contains(raw, "://") {
			return
		}
		var secrets []string
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p)
		}
		if p := u.Query().Get("password"); p != "" {
			secrets = append(secrets, p)
		}
		// The URL without its secrets: copies there may stay.
		bare := *u
		bare.User = nil
		bare.RawQuery = ""
		for _, p := range secrets {
			if len(p) < 6 || strings.Contains("xxxxx", p) {
				continue // too short to tell from other text
			}
			if strings.Count(out, p) > strings.Count(bare.String(), p) {
				t.Fatalf("Redact(%q) = %q keeps the password %q", raw, out, p)
			}
		}
	})
}

// FuzzOpenURL: reading a server URL into driver settings never panics, and
// errors never show the password. Nothing is dialled: a pool connects on
// first use only, and SQLite paths are skipped (they would create files).
func FuzzOpenURL(f *testing.F) {
	for _, s := range []string{
		"mysql://root:secretpw@127.0.0.1:3306/torrust",
		"mysql://root@127.0.0.1/torrust?tls=true&timeout=1s",
		"mysql://h/db?readTimeout=bad",
		"mysql://h",
		"postgresql://postgres@127.0.0.1:5432/test?search_path=x",
		"postgres://u:pw@h/db?connect_timeout=-1",
		"postgres://u:pw@[::1]:5432,h2:5433/db",
		"postgresql://%zz",
	} {
		f.Add(s)
	}
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, raw string) {
		driver, err := DriverOf(raw)
		if err != nil || driver == SQLite3 {
			return
		}
		var db *DB
		if driver == MySQL {
			db, err = openMySQL(raw, log)
		} else {
			db, err = openPostgres(raw, log)
		}
		if err != nil {
			if u, perr := url.Parse(raw); perr == nil {
				// The user name, host and path may be shown; a password that is
				// part of one of them proves nothing.
				if p, ok := u.User.Password(); ok && len(p) >= 6 && strings.Contains(err.Error(), p) &&
					!strings.Contains(u.User.Username()+"\x00"+u.Host+"\x00"+u.Path, p) {
					t.Fatalf("error %q shows the password", err)
				}
			}
			return
		}
		db.sql.Close()
	})
}
