package config_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/starling-tracker/starling/internal/config"
)

func TestLogRedactsSecrets(t *testing.T) {
	full, err := config.Parse(readTestdata(t, "full.toml"))
	if err != nil {
		t.Fatal(err)
	}
	mysql, err := config.Parse(readTestdata(t, "torrust/tracker.container.mysql.toml"))
	if err != nil {
		t.Fatal(err)
	}
	firstRun, _, err := config.Load(config.LoadOptions{Dir: t.TempDir(), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	queryPassword := config.Default()
	queryPassword.Core.Database = config.Database{Driver: "postgresql", Path: "postgres://db.internal/tracker?user=u&password=QueryS3cret"}
	unparsable := config.Default()
	unparsable.Core.Database = config.Database{Driver: "mysql", Path: "mysql://u:Unp4rsable%zz@h/d"}

	tests := []struct {
		name    string
		cfg     *config.Config
		secrets []string
		shown   []string
	}{
		{"tokens and postgres password", full,
			[]string{"Adm1nTokenThatIsLongEnoughToGuessNot", "Ind3xTokenThatIsLongEnoughToGuessNot", "s3cretPassw0rd", "r3disPassw0rd"},
			[]string{"admin", "index server", "db.internal", "starling", "REDACTED", "private_listed", "[::]:6969", "localhost.crt", "redis.internal", "tracker1:"}},
		{"mysql password", mysql, []string{"db_user_secret_password"}, []string{"mysql:3306", "db_user"}},
		{"first-run token", firstRun, []string{firstRun.HTTPAPI.AccessTokens["admin"]}, []string{"admin", "127.0.0.1:1212", "sqlite3.db"}},
		{"password in the query", queryPassword, []string{"QueryS3cret"}, []string{"db.internal"}},
		{"URL that does not parse", unparsable, []string{"Unp4rsable"}, []string{"REDACTED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			logger.Info("configuration", "config", tt.cfg, "core", tt.cfg.Core, "api", tt.cfg.HTTPAPI, "database", tt.cfg.Core.Database)
			var decoded map[string]any
			if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
				t.Fatalf("log line is not JSON: %v\n%s", err, buf.String())
			}
			printed := map[string]string{
				"slog": buf.String(),
				"%v":   fmt.Sprintf("%v", tt.cfg),
				"%+v":  fmt.Sprintf("%+v", *tt.cfg),
				"%#v":  fmt.Sprintf("%#v", tt.cfg.HTTPAPI),
			}
			for how, out := range printed {
				for _, s := range tt.secrets {
					if s != "" && strings.Contains(out, s) {
						t.Errorf("%s output shows the secret %q:\n%s", how, s, out)
					}
				}
			}
			for _, s := range tt.shown {
				if !strings.Contains(buf.String(), s) {
					t.Errorf("log does not show %q:\n%s", s, buf.String())
				}
			}
		})
	}
}

func TestRedactedPath(t *testing.T) {
	tests := []struct {
		db   config.Database
		want string
	}{
		{config.Database{Driver: "sqlite3", Path: "./a/b.db"}, "./a/b.db"},
		{config.Database{Driver: "mysql", Path: "mysql://u:p@h:3306/d"}, "mysql://u:REDACTED@h:3306/d"},
		{config.Database{Driver: "mysql", Path: "mysql://u@h:3306/d"}, "mysql://u@h:3306/d"},
		{config.Database{Driver: "postgresql", Path: "postgresql://u:p@h/d?sslmode=require"}, "postgresql://u:REDACTED@h/d?sslmode=require"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.db.RedactedPath(); got != tt.want {
				t.Errorf("got %q", got)
			}
		})
	}
}
