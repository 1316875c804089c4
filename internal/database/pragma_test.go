package database

import (
	"path/filepath"
	"testing"
)

// TestSQLitePragmas: the connection Starling writes through runs in WAL
// with synchronous=FULL (2), which is what makes an acknowledged API write
// survive a SIGKILL or a power cut (see openSQLite).
func TestSQLitePragmas(t *testing.T) {
	db, err := Open(t.Context(), "sqlite3", filepath.Join(t.TempDir(), "tracker.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		pragma, want string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"},
		{"busy_timeout", "5000"},
	}
	for _, tt := range tests {
		var got string
		if err := db.sql.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
}
