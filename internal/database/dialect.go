package database

import (
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Timeouts put into the connection settings unless the URL sets its own: a
// host that does not answer fails the dial instead of holding the caller, and
// a connection that goes silent mid-query is dropped by the driver.
const (
	connectTimeout = 5 * time.Second
	ioTimeout      = 30 * time.Second
)

// dialect is what differs between engines: the SQL text and how a unique
// violation looks.
type dialect struct {
	schema          []string // Torrust's CREATE TABLE IF NOT EXISTS statements
	loadKeys        string
	addKey          string
	putKey          string
	removeKey       string
	removeKeyArgs   int // how many times removeKey takes the key (0 = once)
	loadWhitelist   string
	addWhitelist    string
	removeWhitelist string
	loadCompleted   string
	// upsertHead + n × row tuples + upsertTail is an n-row upsert.
	upsertHead, upsertTail string
	placeholder            func(i int) string // 1-based
	upsertFull             string             // for batchRows rows, built once
	// upsertArrays, when set, upserts a whole batch as two array parameters
	// (hashes, counts): one statement however large the batch.
	upsertArrays string
	isUnique     func(error) bool
	migrations   []migration
}

func (d *dialect) upsertCompleted(n int) string {
	if n == batchRows && d.upsertFull != "" {
		return d.upsertFull
	}
	var b strings.Builder
	b.WriteString(d.upsertHead)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%s,%s)", d.placeholder(2*i+1), d.placeholder(2*i+2))
	}
	b.WriteString(d.upsertTail)
	return b.String()
}

func (d *dialect) build() *dialect {
	d.upsertFull = d.upsertCompleted(batchRows)
	return d
}

func question(int) string { return "?" }
func dollar(i int) string { return fmt.Sprintf("$%d", i) }
func sqliteErrCode(err error) int {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// The SQLite tables exactly as Torrust v3 creates them, so a file either
// program made opens in the other.
var sqliteDialect = (&dialect{
	schema: []string{
		`CREATE TABLE IF NOT EXISTS whitelist (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            info_hash TEXT NOT NULL UNIQUE
        )`,
		`CREATE TABLE IF NOT EXISTS keys (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            valid_until INTEGER
         )`,
		`CREATE TABLE IF NOT EXISTS torrents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            info_hash TEXT NOT NULL UNIQUE,
            completed INTEGER DEFAULT 0 NOT NULL
        )`,
	},
	loadKeys:        `SELECT key, valid_until FROM keys`,
	addKey:          `INSERT INTO keys (key, valid_until) VALUES (?, ?)`,
	putKey:          `INSERT INTO keys (key, valid_until) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET valid_until = excluded.valid_until`,
	removeKey:       `DELETE FROM keys WHERE key = ?`,
	loadWhitelist:   `SELECT info_hash FROM whitelist`,
	addWhitelist:    `INSERT INTO whitelist (info_hash) VALUES (?) ON CONFLICT(info_hash) DO NOTHING`,
	removeWhitelist: `DELETE FROM whitelist WHERE info_hash = ?`,
	loadCompleted:   `SELECT info_hash, completed FROM torrents`,
	upsertHead:      `INSERT INTO torrents (info_hash, completed) VALUES `,
	upsertTail:      ` ON CONFLICT(info_hash) DO UPDATE SET completed = MAX(completed, excluded.completed)`,
	placeholder:     question,
	isUnique: func(err error) bool {
		c := sqliteErrCode(err)
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	},
	migrations: sqliteMigrations,
}).build()

// The MySQL tables exactly as Torrust v3 creates them. Migration 1 widens
// the two integer columns (see migrate.go).
var mysqlDialect = (&dialect{
	schema: []string{
		`CREATE TABLE IF NOT EXISTS torrents (
            id integer PRIMARY KEY AUTO_INCREMENT,
            info_hash VARCHAR(40) NOT NULL UNIQUE,
            completed INTEGER DEFAULT 0 NOT NULL
        )`,
		"CREATE TABLE IF NOT EXISTS `keys` (\n" +
			"          `id` INT NOT NULL AUTO_INCREMENT,\n" +
			"          `key` VARCHAR(32) NOT NULL,\n" +
			"          `valid_until` INT(10),\n" +
			"          PRIMARY KEY (`id`),\n" +
			"          UNIQUE (`key`)\n" +
			"        )",
		`CREATE TABLE IF NOT EXISTS whitelist (
            id integer PRIMARY KEY AUTO_INCREMENT,
            info_hash VARCHAR(40) NOT NULL UNIQUE
        )`,
	},
	loadKeys: "SELECT `key`, valid_until FROM `keys`",
	addKey:   "INSERT INTO `keys` (`key`, valid_until) VALUES (?, ?)",
	putKey:   "INSERT INTO `keys` (`key`, valid_until) VALUES (?, ?) ON DUPLICATE KEY UPDATE valid_until = VALUES(valid_until)",
	// Keys are case-sensitive, MySQL's default collation is not: the index
	// finds the row, BINARY makes sure it is this key and not another case.
	removeKey:       "DELETE FROM `keys` WHERE `key` = ? AND BINARY `key` = ?",
	removeKeyArgs:   2,
	loadWhitelist:   `SELECT info_hash FROM whitelist`,
	addWhitelist:    `INSERT INTO whitelist (info_hash) VALUES (?) ON DUPLICATE KEY UPDATE info_hash = info_hash`,
	removeWhitelist: `DELETE FROM whitelist WHERE info_hash = ?`,
	loadCompleted:   `SELECT info_hash, completed FROM torrents`,
	upsertHead:      `INSERT INTO torrents (info_hash, completed) VALUES `,
	upsertTail:      ` ON DUPLICATE KEY UPDATE completed = GREATEST(completed, VALUES(completed))`,
	placeholder:     question,
	isUnique: func(err error) bool {
		var e *mysql.MySQLError
		return errors.As(err, &e) && e.Number == 1062 // ER_DUP_ENTRY
	},
	migrations: mysqlMigrations,
}).build()

// PostgreSQL gets Torrust's tables and columns with the types the values
// need: 64-bit expiry and counts, hashes and keys as text of fixed length.
var postgresDialect = (&dialect{
	schema: []string{
		`CREATE TABLE IF NOT EXISTS whitelist (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            info_hash VARCHAR(40) NOT NULL UNIQUE
        )`,
		`CREATE TABLE IF NOT EXISTS torrents (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            info_hash VARCHAR(40) NOT NULL UNIQUE,
            completed BIGINT DEFAULT 0 NOT NULL
        )`,
		`CREATE TABLE IF NOT EXISTS keys (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            key VARCHAR(32) NOT NULL UNIQUE,
            valid_until BIGINT
        )`,
	},
	loadKeys:        `SELECT key, valid_until FROM keys`,
	addKey:          `INSERT INTO keys (key, valid_until) VALUES ($1, $2)`,
	putKey:          `INSERT INTO keys (key, valid_until) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET valid_until = excluded.valid_until`,
	removeKey:       `DELETE FROM keys WHERE key = $1`,
	loadWhitelist:   `SELECT info_hash FROM whitelist`,
	addWhitelist:    `INSERT INTO whitelist (info_hash) VALUES ($1) ON CONFLICT (info_hash) DO NOTHING`,
	removeWhitelist: `DELETE FROM whitelist WHERE info_hash = $1`,
	loadCompleted:   `SELECT info_hash, completed FROM torrents`,
	upsertHead:      `INSERT INTO torrents (info_hash, completed) VALUES `,
	upsertTail:      ` ON CONFLICT (info_hash) DO UPDATE SET completed = GREATEST(torrents.completed, excluded.completed)`,
	upsertArrays: `INSERT INTO torrents (info_hash, completed)
        SELECT * FROM unnest($1::varchar[], $2::bigint[])
        ON CONFLICT (info_hash) DO UPDATE SET completed = GREATEST(torrents.completed, excluded.completed)`,
	placeholder: dollar,
	isUnique: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "23505" // unique_violation
	},
	migrations: postgresMigrations,
}).build()

func newDB(driver Driver, name, secret string, conn *sql.DB, d *dialect, log *slog.Logger) *DB {
	return &DB{driver: driver, name: name, secret: secret, sql: conn, d: d, log: log, timeout: DefaultTimeout}
}

// openSQLite opens (creating if needed) the SQLite file at path.
//
// Durability: WAL with synchronous=FULL, so a commit is on disk (WAL fsynced)
// when it returns: a key added through the API survives a SIGKILL or a power
// cut right after the 200. NORMAL would survive SIGKILL too (a committed
// transaction is in the WAL file, in the kernel's page cache, which outlives
// the process; only an OS crash or power loss before the next checkpoint's
// fsync could lose it); the writes here are rare (API calls, one batch a
// second), so the fsync is cheap insurance. TestSQLitePragmas checks both
// settings are in force on the connection.
func openSQLite(path string, log *slog.Logger) (*DB, error) {
	name := string(SQLite3) + " " + path
	if path == "" {
		return nil, errors.New("open sqlite3 database: [core.database] path is empty: set it to the database file, e.g. ./storage/tracker/lib/database/sqlite3.db")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("open database %s: the path contains '?', which the SQLite driver reads as options: rename the file", name)
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return openSQLiteDSN(name, path+"?"+sqliteOptions, log)
	}
	// Create the directory as the first-run config does, so a fresh path in
	// the config works; a path that cannot be created stops start-up here.
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open database %s: create its directory: %w", name, err)
		}
		log.Info("created the database directory", "dir", dir)
	case err != nil:
		return nil, fmt.Errorf("open database %s: %w", name, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open database %s: %s is not a directory: fix [core.database] path", name, dir)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open database %s: it is a directory: set [core.database] path to a file in it, e.g. %s", name, filepath.Join(path, "sqlite3.db"))
	}
	return openSQLiteDSN(name, path+"?"+sqliteOptions, log)
}

// sqliteOptions are the driver options of a database Starling writes to.
const sqliteOptions = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"

// openSQLiteSource opens the SQLite file at path to read from only: it
// must exist, and nothing in it (tables, journal mode) is changed.
func openSQLiteSource(path string, log *slog.Logger) (*DB, error) {
	name := string(SQLite3) + " " + path
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, fmt.Errorf("open database %s: %w", name, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("open database %s: not a file", name)
	}
	u := url.URL{Path: path}
	return openSQLiteDSN(name, "file:"+u.EscapedPath()+"?mode=ro&_pragma=busy_timeout(5000)", log)
}

func openSQLiteDSN(name, dsn string, log *slog.Logger) (*DB, error) {
	conn, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	// One connection: SQLite has one writer anyway, and a single connection
	// never meets SQLITE_BUSY from itself. Other processes (an import run)
	// are waited for by busy_timeout.
	conn.SetMaxOpenConns(1)
	conn.SetMaxIdleConns(1)
	conn.SetConnMaxLifetime(0)
	conn.SetConnMaxIdleTime(0)
	return newDB(SQLite3, name, "", conn, sqliteDialect, log), nil
}

// openMySQL opens mysql://user:pass@host:port/db as Torrust takes it. Query
// parameters are sqlx's (ssl-mode=REQUIRED) or go-sql-driver's (tls=true,
// timeout=10s, …); see mysqlOptions.
func openMySQL(raw string, log *slog.Logger) (*DB, error) {
	cfg, err := mysqlConfig(raw, log)
	if err != nil {
		return nil, err
	}
	name := Redact(raw)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	conn := sql.OpenDB(connector)
	pool(conn)
	return newDB(MySQL, name, cfg.Passwd, conn, mysqlDialect, log), nil
}

// mysqlConfig reads a mysql:// URL into the driver's settings, without
// connecting.
func mysqlConfig(raw string, log *slog.Logger) (*mysql.Config, error) {
	name := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" || u.Host == "" {
		return nil, fmt.Errorf("open database %s: [core.database] path must be a URL like mysql://user:password@host:3306/database", name)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		return nil, fmt.Errorf("open database %s: the URL names no database: add /<database> after the host", name)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3306")
	}
	opts, err := mysqlOptions(u.Query())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	// Parse only the parts without secrets as a DSN, so that a password with
	// '/' or '@' in it cannot confuse the DSN syntax.
	cfg, err := mysql.ParseDSN("tcp(" + host + ")/" + url.PathEscape(db) + "?" + opts.Encode())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", name, err)
	}
	cfg.DBName = db
	cfg.User = u.User.Username()
	pass, _ := u.User.Password()
	cfg.Passwd = pass
	q := u.Query()
	if !q.Has("timeout") {
		cfg.Timeout = connectTimeout
	}
	if !q.Has("readTimeout") {
		cfg.ReadTimeout = ioTimeout
	}
	if !q.Has("writeTimeout") {
		cfg.WriteTimeout = ioTimeout
	}
	// The driver would print broken-connection notices to stderr on every
	// retry; they go to debug, and outages are logged once by DB.done.
	cfg.Logger = mysqlLogger{log}
	return cfg, nil
}

// mysqlDriverOptions are go-sql-driver's own DSN parameters.
var mysqlDriverOptions = map[string]bool{
	"allowAllFiles": true, "allowCleartextPasswords": true, "allowFallbackToPlaintext": true,
	"allowNativePasswords": true, "allowOldPasswords": true, "charset": true, "checkConnLiveness": true,
	"clientFoundRows": true, "collation": true, "columnsWithAlias": true, "compress": true,
	"connectionAttributes": true, "interpolateParams": true, "loc": true, "maxAllowedPacket": true,
	"multiStatements": true, "parseTime": true, "readTimeout": true, "rejectReadOnly": true,
	"serverPubKey": true, "timeTruncate": true, "timeout": true, "tls": true, "writeTimeout": true,
}

// mysqlOptions turns a mysql:// URL's query into driver parameters. The
// driver sends any parameter it does not know as "SET name=value" on every
// new connection, so a URL written for Torrust (sqlx: ssl-mode=REQUIRED)
// or for PostgreSQL (sslmode=disable) failed at its first query, not at
// start. Here sqlx's options are translated, the driver's own are kept,
// and anything else stops start-up naming the option.
func mysqlOptions(q url.Values) (url.Values, error) {
	out := url.Values{}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch {
		case mysqlDriverOptions[k]:
			out.Set(k, v)
		case k == "ssl-mode":
			// sqlx's modes; VERIFY_CA and VERIFY_IDENTITY both verify
			// the certificate against the system roots here.
			switch strings.ToUpper(v) {
			case "DISABLED":
				out.Set("tls", "false")
			case "PREFERRED":
				out.Set("tls", "preferred")
			case "REQUIRED":
				out.Set("tls", "skip-verify")
			case "VERIFY_CA", "VERIFY_IDENTITY":
				out.Set("tls", "true")
			default:
				return nil, fmt.Errorf("ssl-mode=%q: use DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY", v)
			}
		case k == "statement-cache-capacity":
			// sqlx's prepared-statement cache: nothing to set here.
		default:
			return nil, fmt.Errorf("unknown MySQL URL option %q: use ssl-mode (DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY), charset, collation, timeout, readTimeout, writeTimeout or tls", k)
		}
	}
	return out, nil
}

type mysqlLogger struct{ log *slog.Logger }

func (l mysqlLogger) Print(v ...any) { l.log.Debug("mysql driver", "msg", fmt.Sprint(v...)) }

// openPostgres opens postgres:// or postgresql:// URLs (libpq syntax, any
// libpq parameter such as sslmode or search_path).
func openPostgres(raw string, log *slog.Logger) (*DB, error) {
	cfg, pass, err := postgresConfig(raw)
	if err != nil {
		return nil, err
	}
	conn := stdlib.OpenDB(*cfg)
	pool(conn)
	return newDB(PostgreSQL, Redact(raw), pass, conn, postgresDialect, log), nil
}

// postgresConfig reads a postgres:// URL into pgx's settings, without
// connecting, and returns its password (for redaction).
func postgresConfig(raw string) (*pgx.ConnConfig, string, error) {
	name := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, "", fmt.Errorf("open database %s: [core.database] path must be a URL like postgresql://user:password@host:5432/database", name)
	}
	pass, _ := u.User.Password()
	if pass == "" {
		pass = u.Query().Get("password")
	}
	// pgx takes a URL only by a lowercase scheme; url.Parse took any case,
	// and pgx read "postgRes://…" as key=value settings, quoting the whole
	// string, password included, in its error. (A fuzzer's find.)
	scheme, rest, _ := strings.Cut(raw, "://")
	if scheme != u.Scheme {
		raw = u.Scheme + "://" + rest
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		// pgx redacts the password of a URL it quotes; do it again for any
		// text it might quote otherwise.
		msg := strings.ReplaceAll(err.Error(), raw, name)
		if pass != "" {
			msg = strings.ReplaceAll(msg, pass, "xxxxx")
		}
		return nil, "", fmt.Errorf("open database %s: %w", name, scrubbed{msg: msg, err: err})
	}
	if !u.Query().Has("connect_timeout") {
		cfg.ConnectTimeout = connectTimeout
	}
	return cfg, pass, nil
}

// pool sizes a server engine's pool: the tracker writes little, so a few
// connections serve it; recycling them lets a restarted or failed-over
// server be picked up.
func pool(conn *sql.DB) {
	conn.SetMaxOpenConns(8)
	conn.SetMaxIdleConns(2)
	conn.SetConnMaxLifetime(30 * time.Minute)
	conn.SetConnMaxIdleTime(5 * time.Minute)
}

// Redact returns a URL with its password replaced by xxxxx, for logs and
// errors; a path without a scheme is returned as it is.
func Redact(urlOrPath string) string {
	if !strings.Contains(urlOrPath, "://") {
		return urlOrPath
	}
	u, err := url.Parse(urlOrPath)
	if err != nil {
		// Unparseable: keep the scheme and host side of the last '@' only.
		scheme, rest, _ := strings.Cut(urlOrPath, "://")
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			rest = "xxxxx" + rest[i:]
		}
		return scheme + "://" + rest
	}
	q := u.Query()
	if q.Has("password") { // libpq also takes the password as a parameter
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
