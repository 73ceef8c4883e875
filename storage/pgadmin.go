package storage

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
)

// OpenPostgresAdmin opens a plain connection pool to dsn, for creating and
// dropping databases (tests, setup tools); it runs no migrations.
func OpenPostgresAdmin(ctx context.Context, dsn string) (*sql.DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres %s: %w", redactDSN(dsn), err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres %s: %w", redactDSN(dsn), err)
	}
	return db, nil
}

// withDB returns dsn pointing at database name.
func withDB(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Path = "/" + name
	return u.String()
}
