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
		for _, p := range secrets {
			if len(p) < 6 || strings.Contains("xxxxx", p) {
				continue // too short to tell from other text
			}
			if leaks(out, p, u) {
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
				if p, ok := u.User.Password(); ok && len(p) >= 6 && !strings.Contains("xxxxx", p) && leaks(err.Error(), p, u) {
					t.Fatalf("error %q shows the password", err)
				}
			}
			return
		}
		db.sql.Close()
	})
}

// leaks reports whether text shows password p, of URL u, where
// credentials are written more often than u without its secrets does: in
// a URL's user info (":p@") or as a password parameter of a query or a
// key=value DSN ("password=p"), also URL-encoded. Looking for p anywhere
// was wrong in ways the fuzzer found: a password may also be part of the
// scheme ("stgres" of postgres://), of the parameter's name ("asswor"), or
// be copied in parts of the URL that are shown on purpose (a fragment).
func leaks(text, p string, u *url.URL) bool {
	bare := *u
	bare.User = url.User(u.User.Username())
	if q := u.Query(); q.Has("password") {
		q.Del("password")
		bare.RawQuery = q.Encode()
	}
	return credentialCount(text, p) > credentialCount(bare.String(), p)
}

func credentialCount(text, p string) int {
	n := 0
	seen := map[string]bool{}
	for _, q := range []string{p, url.QueryEscape(p), url.PathEscape(p)} {
		if !seen[q] {
			seen[q] = true
			n += strings.Count(text, ":"+q+"@") + strings.Count(text, "password="+q)
		}
	}
	return n
}

// TestOpenPostgresAnyCaseScheme: a PostgreSQL URL whose scheme is not in
// lowercase (which url.Parse and DriverOf take) is read as a URL too, not
// handed to pgx's key=value parser, whose error quoted the password.
func TestOpenPostgresAnyCaseScheme(t *testing.T) {
	for _, raw := range []string{"PostgreSQL://u:s3cretpw@h:5432/db", "postgRes://u:s3cretpw@h/db"} {
		db, err := openPostgres(raw, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if strings.Contains(db.String(), "s3cretpw") {
			t.Fatalf("%s is named %q", raw, db.String())
		}
		db.sql.Close()
	}
}
