package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OpenSQLiteRaw opens a SQLite database file with no migrations, for
// measurement and checks (integrity, sizes).
func OpenSQLiteRaw(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// CompactSize checkpoints the WAL, vacuums and returns the file's bytes.
func CompactSize(ctx context.Context, db *sql.DB) (int64, error) {
	if _, err := db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := db.ExecContext(ctx, `VACUUM`); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	var pages, size int64
	if err := db.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, err
	}
	if err := db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return 0, err
	}
	return pages * size, nil
}

// DropTier deletes every edge bucket of resolution res (measurement only).
func DropTier(ctx context.Context, path string, res time.Duration) error {
	db, err := OpenSQLiteRaw(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DELETE FROM edge_buckets WHERE res = ?`, resKey(res)); err != nil {
		return fmt.Errorf("drop %s tier: %w", res, err)
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns its findings ("ok" when sound).
func IntegrityCheck(ctx context.Context, path string) (string, error) {
	db, err := OpenSQLiteRaw(ctx, path)
	if err != nil {
		return "", err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return "", fmt.Errorf("integrity check of %s: %w", path, err)
	}
	return res, nil
}
