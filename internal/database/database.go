// Package database persists the peer keys, the whitelist and the completed
// counts in Torrust's tables (whitelist, torrents, keys) on SQLite, MySQL or
// MariaDB, and PostgreSQL. One DB type serves all three engines; the
// differences live in the dialect of each (dialect.go).
//
// Writes of keys and whitelist entries are committed before a method returns
// nil. Completed counts are written in batches by a Batcher, which the
// announce path feeds without ever waiting on the database.
//
// Durability: the API answers a write only after the method returned nil,
// so a SIGKILL of the tracker right after the answer loses nothing. On
// MySQL and PostgreSQL each write is a statement in autocommit (or a
// transaction committed) that the server acknowledged; whether it survives
// the server's own crash is the server's setting (innodb_flush_log_at_trx_commit
// = 1 and synchronous_commit = on, both defaults). SQLite commits in this
// process: see openSQLite for why synchronous=FULL.
//
// Every operation runs under a deadline (DefaultTimeout, or the caller's if
// earlier); one that fails because the database is down, cut off or too
// slow wraps access.ErrUnavailable, which the API answers with 503.
package database

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/starling-tracker/starling/internal/access"
	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm"
)

// Driver names an engine as [core.database] driver does.
type Driver string

// The engines. PostgreSQL is Starling's addition; Torrust knows the first two.
const (
	SQLite3    Driver = "sqlite3"
	MySQL      Driver = "mysql"
	PostgreSQL Driver = "postgresql"
)

// ErrExists is returned by AddKey for a key the database already holds.
var ErrExists = errors.New("already exists")

// DefaultTimeout bounds every operation whose context has no earlier
// deadline, so that a database that stops answering turns into an error for
// the caller (an API request, a flush) instead of a hang.
const DefaultTimeout = 5 * time.Second

// DB is an open database. It implements access.Store and the completed-count
// store the Batcher writes to. It is safe for concurrent use.
type DB struct {
	driver  Driver
	name    string // what logs and errors call it; passwords redacted
	secret  string // the password, scrubbed from logged error texts
	sql     *sql.DB
	d       *dialect
	log     *slog.Logger
	timeout time.Duration

	// failing is set by the first failed operation of an outage and cleared
	// by the first success after it, so each outage is logged once, not once
	// per retry.
	failing atomic.Bool
	logMu   sync.Mutex // orders the outage and recovery lines

	closeOnce sync.Once
	closeErr  error
}

var _ access.Store = (*DB)(nil)

// Open opens the database that [core.database] names: driver is sqlite3,
// mysql or postgresql; path is the SQLite file or a mysql:// or
// postgresql:// URL. It creates Torrust's tables when they are missing and
// applies Starling's migrations. An error says which database failed and why,
// with any password redacted.
func Open(ctx context.Context, driver, path string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		db  *DB
		err error
	)
	switch Driver(driver) {
	case SQLite3:
		db, err = openSQLite(path, log)
	case MySQL:
		db, err = openMySQL(path, log)
	case PostgreSQL, "postgres":
		db, err = openPostgres(path, log)
	default:
		return nil, fmt.Errorf("open database: unknown [core.database] driver %q: use sqlite3, mysql or postgresql", driver)
	}
	if err != nil {
		return nil, err
	}
	if err := db.init(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	return db, nil
}

// CheckPath reports what in a server database's URL would stop Open
// (its form, an unknown or bad option), without connecting: for
// `starling config check`. A SQLite path is checked when opened.
func CheckPath(driver, path string) error {
	var err error
	switch Driver(driver) {
	case MySQL:
		_, err = mysqlConfig(path, slog.New(slog.DiscardHandler))
	case PostgreSQL, "postgres":
		_, _, err = postgresConfig(path)
	}
	return err
}

// OpenURL opens a database named by a URL or a path alone, for tools that
// take no driver: mysql://… is MySQL, postgres://… or postgresql://… is
// PostgreSQL, and anything else without a scheme is a SQLite file.
func OpenURL(ctx context.Context, urlOrPath string, log *slog.Logger) (*DB, error) {
	driver, err := DriverOf(urlOrPath)
	if err != nil {
		return nil, err
	}
	return Open(ctx, string(driver), urlOrPath, log)
}

// OpenSource opens a database named by a URL or a path to read from, as
// `db import` reads its source: nothing in it is created or changed (a
// SQLite file is opened read-only and must exist; a server database gets
// no CREATE or ALTER), so a database Torrust still uses, or a user that
// may only SELECT, can be copied from.
func OpenSource(ctx context.Context, urlOrPath string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	driver, err := DriverOf(urlOrPath)
	if err != nil {
		return nil, err
	}
	var db *DB
	switch driver {
	case SQLite3:
		db, err = openSQLiteSource(urlOrPath, log)
	case MySQL:
		db, err = openMySQL(urlOrPath, log)
	default:
		db, err = openPostgres(urlOrPath, log)
	}
	if err != nil {
		return nil, err
	}
	if err := db.ping(ctx); err != nil {
		db.sql.Close()
		return nil, err
	}
	return db, nil
}

// DriverOf tells the engine from a URL's scheme, SQLite for a plain path.
func DriverOf(urlOrPath string) (Driver, error) {
	scheme, _, ok := strings.Cut(urlOrPath, "://")
	if !ok {
		return SQLite3, nil
	}
	switch strings.ToLower(scheme) {
	case "mysql":
		return MySQL, nil
	case "postgres", "postgresql":
		return PostgreSQL, nil
	}
	return "", fmt.Errorf("open database %s: unknown scheme %q: use a SQLite file path, mysql://… or postgresql://…", Redact(urlOrPath), scheme)
}

// MigrateTimeout bounds creating the tables and migrating them at start-up:
// a migration may rewrite a table of millions of rows, which takes far
// longer than an operation's DefaultTimeout.
const MigrateTimeout = 15 * time.Minute

// init checks the connection, creates the tables and migrates them.
func (db *DB) init(ctx context.Context) error {
	if err := db.ping(ctx); err != nil {
		return err
	}
	mctx, cancel := context.WithTimeout(ctx, MigrateTimeout)
	defer cancel()
	if err := db.migrate(mctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (after %v; a migration may still be running on the server)", err, MigrateTimeout)
		}
		return fmt.Errorf("open database %s: %w", db.name, db.scrub(err))
	}
	return nil
}

// ping checks the connection within one operation's timeout. Opening a
// SQLite connection sets its pragmas, and connections that open a new file
// at once (nodes started together) all switch it to WAL: SQLite then
// answers SQLITE_BUSY at once to all but one, without waiting out
// busy_timeout (waiting could deadlock), so the connection is opened again
// after a pause, within the timeout.
func (db *DB) ping(ctx context.Context) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	err := db.sql.PingContext(ctx)
	for sqliteBusy(err) && pause(ctx, time.Duration(5+rand.IntN(20))*time.Millisecond) {
		err = db.sql.PingContext(ctx)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v: %w (is the server reachable at that address?)", db.timeout, err)
		}
		return fmt.Errorf("open database %s: %w", db.name, db.scrub(err))
	}
	return nil
}

// pause waits d, or until ctx is done; it reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// Driver is the engine.
func (db *DB) Driver() Driver { return db.driver }

// String names the database for logs: "sqlite3 <path>", or the URL with its
// password redacted.
func (db *DB) String() string { return db.name }

// Failing reports whether the last operation failed and no later one has
// succeeded: the database is in an outage (for health checks and metrics).
func (db *DB) Failing() bool { return db.failing.Load() }

// SetTimeout changes the bound on each operation (DefaultTimeout). Call it
// before the DB is shared between goroutines.
func (db *DB) SetTimeout(d time.Duration) { db.timeout = d }

// Close closes the connection pool. Safe to call twice.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { db.closeErr = db.sql.Close() })
	return db.closeErr
}

func (db *DB) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.timeout)
}

// scrub removes the password from an error's text; drivers sometimes echo
// the connection settings back.
func (db *DB) scrub(err error) error {
	if err == nil || db.secret == "" {
		return err
	}
	msg := scrubSecret(err.Error(), db.secret)
	if msg == err.Error() {
		return err
	}
	return scrubbed{msg: msg, err: err}
}

// scrubSecret replaces each occurrence of secret in msg that is not part
// of a longer word: an echoed password sits between separators (user:pw@),
// while a short password such as "ro" also occurs inside words ("Error",
// a user name) that must stay readable.
func scrubSecret(msg, secret string) string {
	var b strings.Builder
	done := 0 // msg[:done] is written
	for from := 0; from < len(msg); {
		i := strings.Index(msg[from:], secret)
		if i < 0 {
			break
		}
		i += from
		end := i + len(secret)
		inWord := (i > 0 && isWordByte(msg[i-1]) && isWordByte(secret[0])) ||
			(end < len(msg) && isWordByte(msg[end]) && isWordByte(secret[len(secret)-1]))
		if inWord {
			from = i + 1
			continue
		}
		b.WriteString(msg[done:i])
		b.WriteString("xxxxx")
		done, from = end, end
	}
	b.WriteString(msg[done:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

type scrubbed struct {
	msg string
	err error
}

func (s scrubbed) Error() string { return s.msg }
func (s scrubbed) Unwrap() error { return s.err }

// done records the outcome of an operation against the database: the first
// failure of an outage is logged, the first success after it too. Errors that
// are answers (a duplicate key) are not failures and never reach here. It
// returns err wrapped with the operation's name.
func (db *DB) done(ctx context.Context, op string, err error) error {
	if err == nil {
		if db.failing.Load() {
			db.logMu.Lock()
			if db.failing.CompareAndSwap(true, false) {
				db.log.Info("database recovered", "database", db.name)
			}
			db.logMu.Unlock()
		}
		return nil
	}
	err = db.scrub(err)
	// A caller that gave up is no sign of an outage.
	if !(errors.Is(err, context.Canceled) && ctx.Err() != nil) && !db.failing.Load() {
		db.logMu.Lock()
		if db.failing.CompareAndSwap(false, true) {
			db.log.Error("database failing; further failures are not logged until it recovers",
				"database", db.name, "op", op, "err", err)
		}
		db.logMu.Unlock()
	}
	if unavailable(err) {
		return fmt.Errorf("%s in %s database: %w: %w", op, db.driver, access.ErrUnavailable, err)
	}
	return fmt.Errorf("%s in %s database: %w", op, db.driver, err)
}

// Ping checks that the database answers a query, within ctx and the
// operation timeout: the health check's probe. Like any operation it ends
// or starts an outage (Failing).
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	var one int
	return db.done(ctx, "ping", db.sql.QueryRowContext(ctx, "SELECT 1").Scan(&one))
}

// LoadKeys returns every key. Rows that are not valid keys are skipped and
// counted in a warning (never logged themselves: they may be secrets).
func (db *DB) LoadKeys(ctx context.Context) ([]access.KeyRecord, error) {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	out, bad, err := db.loadKeys(ctx)
	if err = db.done(ctx, "load keys", err); err != nil {
		return nil, err
	}
	if bad > 0 {
		db.log.Warn("skipped keys that are not 32 alphanumerics", "database", db.name, "table", "keys", "rows", bad)
	}
	return out, nil
}

func (db *DB) loadKeys(ctx context.Context) ([]access.KeyRecord, int, error) {
	rows, err := db.sql.QueryContext(ctx, db.d.loadKeys)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var (
		out []access.KeyRecord
		bad int
	)
	for rows.Next() {
		var (
			s     string
			until sql.NullInt64
		)
		if err := rows.Scan(&s, &until); err != nil {
			return nil, 0, err
		}
		k, err := bittorrent.ParseKey(s)
		if err != nil {
			bad++
			continue
		}
		out = append(out, access.KeyRecord{Key: k, ValidUntil: until.Int64, Permanent: !until.Valid})
	}
	return out, bad, rows.Err()
}

func nullUntil(r access.KeyRecord) sql.NullInt64 {
	if r.Permanent {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: r.ValidUntil, Valid: true}
}

// AddKey inserts a key, committed when it returns nil. A key that exists is
// an error wrapping ErrExists.
func (db *DB) AddKey(ctx context.Context, r access.KeyRecord) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	_, err := db.sql.ExecContext(ctx, db.d.addKey, r.Key.String(), nullUntil(r))
	if err != nil && db.d.isUnique(err) {
		db.done(ctx, "add key", nil) // the database answered
		return fmt.Errorf("add key: %w", ErrExists)
	}
	return db.done(ctx, "add key", err)
}

// RemoveKey deletes a key, committed when it returns nil. An unknown key is
// an error wrapping access.ErrNotFound.
func (db *DB) RemoveKey(ctx context.Context, k bittorrent.Key) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	args := []any{k.String()}
	if db.d.removeKeyArgs == 2 {
		args = append(args, k.String())
	}
	res, err := db.sql.ExecContext(ctx, db.d.removeKey, args...)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	if err := db.done(ctx, "remove key", err); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("remove key: %w", access.ErrNotFound)
	}
	return nil
}

// LoadWhitelist returns every whitelisted hash. Rows that are not 40 hex
// characters are skipped and counted in a warning.
func (db *DB) LoadWhitelist(ctx context.Context) ([]bittorrent.InfoHash, error) {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	var out []bittorrent.InfoHash
	bad := 0
	err := db.query(ctx, db.d.loadWhitelist, func(rows *sql.Rows) error {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		h, err := bittorrent.ParseInfoHash(s)
		if err != nil {
			bad++
			return nil
		}
		out = append(out, h)
		return nil
	})
	if err = db.done(ctx, "load whitelist", err); err != nil {
		return nil, err
	}
	if bad > 0 {
		db.log.Warn("skipped whitelist rows that are not 40 hex characters", "database", db.name, "table", "whitelist", "rows", bad)
	}
	return out, nil
}

// AddToWhitelist whitelists h, committed when it returns nil. Idempotent.
func (db *DB) AddToWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	_, err := db.sql.ExecContext(ctx, db.d.addWhitelist, h.String())
	return db.done(ctx, "add to whitelist", err)
}

// RemoveFromWhitelist removes h, committed when it returns nil. Idempotent.
func (db *DB) RemoveFromWhitelist(ctx context.Context, h bittorrent.InfoHash) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	_, err := db.sql.ExecContext(ctx, db.d.removeWhitelist, h.String())
	return db.done(ctx, "remove from whitelist", err)
}

// LoadCompleted returns every persisted completed count. Rows whose hash or
// count is out of range are skipped and counted in a warning.
func (db *DB) LoadCompleted(ctx context.Context) ([]swarm.CompletedCount, error) {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	var out []swarm.CompletedCount
	bad := 0
	err := db.query(ctx, db.d.loadCompleted, func(rows *sql.Rows) error {
		var (
			s string
			n int64
		)
		if err := rows.Scan(&s, &n); err != nil {
			return err
		}
		h, err := bittorrent.ParseInfoHash(s)
		if err != nil || n < 0 || n > 1<<32-1 {
			bad++
			return nil
		}
		out = append(out, swarm.CompletedCount{InfoHash: h, Completed: uint32(n)})
		return nil
	})
	if err = db.done(ctx, "load completed counts", err); err != nil {
		return nil, err
	}
	if bad > 0 {
		db.log.Warn("skipped torrents rows with a bad hash or count", "database", db.name, "table", "torrents", "rows", bad)
	}
	return out, nil
}

// batchRows is how many rows go into one multi-row statement: far below the
// placeholder limits of the three engines (32766, 65535, 65535).
const batchRows = 500

// SaveCompleted upserts counts in one transaction (PostgreSQL: one
// statement): all or none are written.
// When a hash appears twice the later count wins.
func (db *DB) SaveCompleted(ctx context.Context, counts []swarm.CompletedCount) error {
	if len(counts) == 0 {
		return nil
	}
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	counts = ordered(counts)
	if db.d.upsertArrays != "" {
		hashes := make([]string, len(counts))
		values := make([]int64, len(counts))
		for i, c := range counts {
			hashes[i], values[i] = c.InfoHash.String(), int64(c.Completed)
		}
		_, err := db.sql.ExecContext(ctx, db.d.upsertArrays, hashes, values)
		return db.done(ctx, "save completed counts", err)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		args := make([]any, 0, 2*batchRows)
		for len(counts) > 0 {
			n := min(len(counts), batchRows)
			args = args[:0]
			for _, c := range counts[:n] {
				args = append(args, c.InfoHash.String(), int64(c.Completed))
			}
			if _, err := tx.ExecContext(ctx, db.d.upsertCompleted(n), args...); err != nil {
				return err
			}
			counts = counts[n:]
		}
		return nil
	})
	return db.done(ctx, "save completed counts", err)
}

// ordered returns counts sorted by hash with earlier duplicates dropped:
// PostgreSQL refuses an upsert that touches one row twice, and writers that
// lock rows in one order cannot deadlock each other.
func ordered(counts []swarm.CompletedCount) []swarm.CompletedCount {
	out := slices.Clone(counts)
	slices.SortStableFunc(out, func(a, b swarm.CompletedCount) int { return bytes.Compare(a.InfoHash[:], b.InfoHash[:]) })
	w := 0
	for i, c := range out {
		if i+1 < len(out) && out[i+1].InfoHash == c.InfoHash {
			continue // a later count of the same hash follows
		}
		out[w] = c
		w++
	}
	return out[:w]
}

// PutKeys inserts or replaces keys in one transaction, for the import tool:
// a key that exists takes the expiry given here.
func (db *DB) PutKeys(ctx context.Context, recs []access.KeyRecord) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for _, r := range recs {
			if _, err := tx.ExecContext(ctx, db.d.putKey, r.Key.String(), nullUntil(r)); err != nil {
				return err
			}
		}
		return nil
	})
	return db.done(ctx, "put keys", err)
}

// PutWhitelist whitelists hashes in one transaction. Idempotent.
func (db *DB) PutWhitelist(ctx context.Context, hashes []bittorrent.InfoHash) error {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		for _, h := range hashes {
			if _, err := tx.ExecContext(ctx, db.d.addWhitelist, h.String()); err != nil {
				return err
			}
		}
		return nil
	})
	return db.done(ctx, "put whitelist", err)
}

func (db *DB) query(ctx context.Context, q string, row func(*sql.Rows) error) error {
	rows, err := db.sql.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
