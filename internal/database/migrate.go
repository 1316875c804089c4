package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// migration is one numbered change Starling makes on top of Torrust's
// tables. Versions are the same on every engine (a change one engine does not
// need is a no-op there), so starling_schema_migrations reads alike
// everywhere. apply must be idempotent: MySQL cannot roll DDL back, so a
// start-up that dies between apply and the version row repeats apply.
type migration struct {
	version int
	name    string
	apply   func(ctx context.Context, db *DB) error // nil: nothing to do on this engine
}

// migrationsTable records the applied versions. Torrust ignores tables it
// does not know, so the database stays usable by Torrust.
const migrationsTable = `CREATE TABLE IF NOT EXISTS starling_schema_migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    applied_at BIGINT NOT NULL
)`

// Migration 1 brings databases made by Torrust before v3 (keys.valid_until
// NOT NULL, Torrust's own manual migration 20240730183500) to the v3 shape in
// which NULL means a permanent key. On MySQL it also widens valid_until and
// completed to BIGINT: Torrust's INT(10) ends in January 2038 and cannot hold
// every u32 count. Torrust reads both columns as 64-bit integers already.
var (
	sqliteMigrations = []migration{
		{1, "keys_valid_until_nullable", sqliteKeysNullable},
	}
	mysqlMigrations = []migration{
		{1, "keys_valid_until_nullable", mysqlWiden},
	}
	postgresMigrations = []migration{
		{1, "keys_valid_until_nullable", nil}, // created nullable and 64-bit
	}
)

func sqliteKeysNullable(ctx context.Context, db *DB) error {
	conn := db.sql
	var notNull int
	err := conn.QueryRowContext(ctx, `SELECT "notnull" FROM pragma_table_info('keys') WHERE name = 'valid_until'`).Scan(&notNull)
	if err != nil {
		return fmt.Errorf("inspect keys.valid_until: %w", err)
	}
	if notNull == 0 {
		return nil
	}
	// SQLite cannot drop a NOT NULL constraint in place: copy into a table of
	// the v3 shape and swap, in one transaction.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range []string{
		`CREATE TABLE keys_v3 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            valid_until INTEGER
         )`,
		`INSERT INTO keys_v3 (id, key, valid_until) SELECT id, key, valid_until FROM keys`,
		`DROP TABLE keys`,
		`ALTER TABLE keys_v3 RENAME TO keys`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// mysqlWiden alters only the columns that need it, so that a database
// already in shape (made by Starling, or widened by hand) opens with a user
// that may not ALTER tables, as Torrust's own user may not. The ALTERs
// rewrite a table: on millions of rows that takes a while, hence the log
// line before each.
func mysqlWiden(ctx context.Context, db *DB) error {
	for _, c := range []struct {
		table, name string
		nullable    bool // the v3 shape: NULL is a permanent key
		alter       string
	}{
		{"keys", "valid_until", true, "ALTER TABLE `keys` MODIFY `valid_until` BIGINT NULL"},
		{"torrents", "completed", false, "ALTER TABLE torrents MODIFY completed BIGINT DEFAULT 0 NOT NULL"},
	} {
		var dataType, nullable string
		err := db.sql.QueryRowContext(ctx, `SELECT DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?`, c.table, c.name).Scan(&dataType, &nullable)
		if err != nil {
			return fmt.Errorf("inspect %s.%s: %w", c.table, c.name, err)
		}
		if strings.EqualFold(dataType, "bigint") && strings.EqualFold(nullable, "YES") == c.nullable {
			continue
		}
		db.log.Info("altering a column to BIGINT; on a large table this takes a while",
			"database", db.name, "table", c.table, "column", c.name, "type", dataType, "nullable", nullable)
		if _, err := db.sql.ExecContext(ctx, c.alter); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == mysqlTableAccessDenied {
				return migrationDenied{err}
			}
			return err
		}
	}
	return nil
}

// mysqlTableAccessDenied is ER_TABLEACCESS_DENIED_ERROR: the user lacks a
// privilege (here ALTER) on the table.
const mysqlTableAccessDenied = 1142

// migrationDenied is a migration the database user is not allowed to run.
// Start-up goes on without it (it is retried at the next start); what it
// would have fixed stays as Torrust has it.
type migrationDenied struct{ err error }

func (m migrationDenied) Error() string { return m.err.Error() }
func (m migrationDenied) Unwrap() error { return m.err }

// migrate creates Torrust's tables when missing and applies the migrations
// not yet recorded.
func (db *DB) migrate(ctx context.Context) error {
	for _, q := range db.d.schema {
		if err := db.create(ctx, q); err != nil {
			return fmt.Errorf("create tables: %w", err)
		}
	}
	if err := db.create(ctx, migrationsTable); err != nil {
		return fmt.Errorf("create starling_schema_migrations: %w", err)
	}
	applied := make(map[int]bool)
	err := db.query(ctx, `SELECT version FROM starling_schema_migrations`, func(rows *sql.Rows) error {
		var v int
		if err := rows.Scan(&v); err != nil {
			return err
		}
		applied[v] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("read starling_schema_migrations: %w", err)
	}
	record := fmt.Sprintf(`INSERT INTO starling_schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)`,
		db.d.placeholder(1), db.d.placeholder(2), db.d.placeholder(3))
	for _, m := range db.d.migrations {
		if applied[m.version] {
			continue
		}
		if m.apply != nil {
			err := m.apply(ctx, db)
			var denied migrationDenied
			if errors.As(err, &denied) {
				db.log.Warn("database migration skipped: the database user may not alter the tables; "+
					"Starling runs, but until it is applied keys valid past January 2038 and completed counts above 2^31 cannot be stored "+
					"(a pre-v3 Torrust database also refuses permanent keys); grant ALTER and restart to apply it",
					"database", db.name, "version", m.version, "name", m.name, "error", db.scrub(err).Error())
				continue
			}
			if err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		_, err := db.sql.ExecContext(ctx, record, m.version, m.name, time.Now().Unix())
		if err != nil && !db.d.isUnique(err) { // unique: another instance recorded it first
			return fmt.Errorf("record migration %d: %w", m.version, err)
		}
		db.log.Info("applied database migration", "database", db.name, "version", m.version, "name", m.name)
	}
	return nil
}

// create runs one CREATE ... IF NOT EXISTS. Nodes that start together on
// a new PostgreSQL database race in it: the loser's statement fails with a
// unique violation in the catalog (pg_type, pg_class) instead of finding
// the table. Run again once the winner committed, it finds the table.
func (db *DB) create(ctx context.Context, q string) error {
	for try := 0; ; try++ {
		_, err := db.sql.ExecContext(ctx, q)
		if err == nil || !(db.d.isUnique(err) || pgDuplicate(err)) || try == 10 ||
			!pause(ctx, time.Duration(10+rand.IntN(40))*time.Millisecond) {
			return err
		}
	}
}

// pgDuplicate is PostgreSQL's other answer to the race: the relation or
// one of its objects already exists (42P07 duplicate_table, 42710
// duplicate_object).
func pgDuplicate(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && (e.Code == "42P07" || e.Code == "42710")
}

// Migrations lists the versions recorded as applied, for tests and tools.
func (db *DB) Migrations(ctx context.Context) ([]int, error) {
	ctx, cancel := db.opContext(ctx)
	defer cancel()
	var out []int
	err := db.query(ctx, `SELECT version FROM starling_schema_migrations ORDER BY version`, func(rows *sql.Rows) error {
		var v int
		if err := rows.Scan(&v); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, db.done(ctx, "read migrations", err)
}
