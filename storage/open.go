package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

var (
	_ Store = (*sqlStore)(nil)
)

// DBFile is the SQLite database's name inside the data directory.
const DBFile = "meshlens.db"

// Open connects to the configured database and brings its schema up to
// date. It starts no goroutines; Close releases it.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (Store, error) {
	if p := cfg.Validate(); len(p) > 0 {
		return nil, fmt.Errorf("storage config: %s", strings.Join(p, "; "))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Driver {
	case DriverPostgres:
		dsn := os.Getenv(cfg.DSNEnv)
		if dsn == "" {
			return nil, fmt.Errorf("storage.driver postgres: environment variable %s is empty; set it to the PostgreSQL DSN", cfg.DSNEnv)
		}
		return OpenPostgres(ctx, dsn, log)
	default:
		dir := cfg.DataDir
		if dir == "" {
			dir = "./data"
		}
		return OpenSQLite(ctx, dir, log)
	}
}

// OpenSQLite opens (creating) dir/meshlens.db in WAL mode.
func OpenSQLite(ctx context.Context, dir string, log *slog.Logger) (Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("storage: create data dir %s: %w", dir, err)
	}
	if err := checkWritable(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, DBFile)
	// FULL makes every acknowledged commit survive power loss as well as a
	// killed process; history writes are batched, so the fsyncs are few.
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate") // writers take the lock at BEGIN: no upgrade deadlocks
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	// One writer at a time is SQLite's model; a few readers run beside it in WAL mode.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(0)
	return finishOpen(ctx, db, &sqliteDialect, path, log)
}

// OpenPostgres connects with a pgx DSN ("postgres://user@host:port/db?sslmode=disable").
func OpenPostgres(ctx context.Context, dsn string, log *slog.Logger) (Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("storage: open postgres: %w", err)
	}
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return finishOpen(ctx, db, &postgresDialect, redactDSN(dsn), log)
}

func finishOpen(ctx context.Context, db *sql.DB, d *dialect, where string, log *slog.Logger) (Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: connect to %s %s: %w", d.name, where, err)
	}
	v, err := migrate(pctx, db, d)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: %s %s: %w", d.name, where, err)
	}
	log.Info("storage open", "driver", d.name, "at", where, "schema", v)
	return newSQLStore(db, d), nil
}

// checkWritable fails early, with the directory named, when the data
// directory cannot take writes.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("storage: data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return errors.Join(os.Remove(name))
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(dsn)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.Redacted()
}
