package storage_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshlens/meshlens/storage"
	"github.com/meshlens/meshlens/storage/storetest"
)

func openSQLite(tb testing.TB) storage.Store {
	tb.Helper()
	s, err := storage.OpenSQLite(context.Background(), tb.TempDir(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestSQLiteContract(t *testing.T) {
	storetest.Run(t, openSQLite)
}

// pgDSN returns a DSN of a PostgreSQL server: MESHLENS_POSTGRES_DSN when
// set, else a throwaway cluster started once for the package's tests.
// Without MESHLENS_INTEGRATION=1 the PostgreSQL tests are skipped.
func pgDSN(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv("MESHLENS_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	if os.Getenv("MESHLENS_INTEGRATION") != "1" {
		tb.Skip("PostgreSQL tests need MESHLENS_INTEGRATION=1 (make test) or MESHLENS_POSTGRES_DSN")
	}
	pgOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshlens-pg-")
		if err != nil {
			pgErr = err
			return
		}
		// The postgres user runs the server and must traverse the parent.
		if err := os.Chmod(dir, 0o711); err != nil {
			pgErr = err
			return
		}
		pgDir = filepath.Join(dir, "cluster")
		out, err := exec.Command("bash", "../scripts/postgres-start.sh", pgDir).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				err = &startErr{err, string(ee.Stderr)}
			}
			pgErr = err
			return
		}
		pgURL = strings.TrimSpace(string(out))
	})
	if pgErr != nil {
		tb.Fatalf("start PostgreSQL (scripts/postgres-start.sh; install with scripts/install-postgres.sh): %v", pgErr)
	}
	return pgURL
}

type startErr struct {
	err    error
	stderr string
}

func (e *startErr) Error() string { return e.err.Error() + ": " + e.stderr }

var (
	pgOnce sync.Once
	pgDir  string
	pgURL  string
	pgErr  error
	dbSeq  int
	dbMu   sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgDir != "" {
		_ = exec.Command("bash", "../scripts/postgres-stop.sh", pgDir).Run()
		_ = os.Remove(filepath.Dir(pgDir))
	}
	os.Exit(code)
}

// openPostgres gives each test its own fresh schema (a new database).
func openPostgres(tb testing.TB) storage.Store {
	tb.Helper()
	dsn := pgDSN(tb)
	dbMu.Lock()
	dbSeq++
	name := "meshlens_test_" + strings.ReplaceAll(strings.ToLower(tb.Name()), "/", "_")
	name = name[:min(len(name), 50)] + "_" + itoa(dbSeq)
	dbMu.Unlock()
	admin, err := storage.OpenPostgresAdmin(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(context.Background(), `CREATE DATABASE "`+name+`"`); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		a, err := storage.OpenPostgresAdmin(context.Background(), dsn)
		if err == nil {
			_, _ = a.ExecContext(context.Background(), `DROP DATABASE IF EXISTS "`+name+`" WITH (FORCE)`)
			a.Close()
		}
	})
	s, err := storage.OpenPostgres(context.Background(), storage.WithDB(dsn, name), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func itoa(n int) string {
	const d = "0123456789"
	if n < 10 {
		return d[n : n+1]
	}
	return itoa(n/10) + d[n%10:n%10+1]
}

func TestPostgresContract(t *testing.T) {
	pgDSN(t)
	storetest.Run(t, openPostgres)
}
