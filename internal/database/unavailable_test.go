package database

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestUnavailable: what the API answers with 503 (the database cannot
// answer now) and what stays a 500 (an answer, or a fault a retry will not
// mend).
func TestUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"operation timeout", context.DeadlineExceeded, true},
		{"caller gone", context.Canceled, false},
		{"bad pooled connection", driver.ErrBadConn, true},
		{"dial refused", refused, true},
		{"refused, wrapped", fmt.Errorf("add key: %w", syscall.ECONNREFUSED), true},
		{"reset", syscall.ECONNRESET, true},
		{"cut mid-answer", io.ErrUnexpectedEOF, true},
		{"mysql invalid connection", mysql.ErrInvalidConn, true},
		{"mysql too many connections", &mysql.MySQLError{Number: 1040}, true},
		{"mysql lock wait timeout", &mysql.MySQLError{Number: 1205}, true},
		{"mysql missing table", &mysql.MySQLError{Number: 1146}, false},
		{"mysql duplicate", &mysql.MySQLError{Number: 1062}, false},
		{"postgres connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"postgres admin shutdown", &pgconn.PgError{Code: "57P01"}, true},
		{"postgres cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"postgres too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"postgres unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"postgres missing table", &pgconn.PgError{Code: "42P01"}, false},
		{"postgres permission", &pgconn.PgError{Code: "42501"}, false},
		{"anything else", errors.New("syntax error"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unavailable(tt.err); got != tt.want {
				t.Errorf("unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
