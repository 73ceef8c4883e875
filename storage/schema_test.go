package storage

import (
	"context"
	"strings"
	"testing"
)

func TestRebindAndSplit(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"SELECT a FROM t WHERE x = ? AND y = ?", "SELECT a FROM t WHERE x = $1 AND y = $2"},
		{"INSERT INTO t VALUES (?, ?), (?, ?)", "INSERT INTO t VALUES ($1, $2), ($3, $4)"},
		{"SELECT 1", "SELECT 1"},
	} {
		if got := postgresDialect.rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := sqliteDialect.rebind(tc.in); got != tc.in {
			t.Errorf("sqlite rebind changed %q", tc.in)
		}
	}
	for _, d := range []*dialect{&sqliteDialect, &postgresDialect} {
		stmts := splitSQL(d.types.Replace(migrations[1].sql))
		if len(stmts) != 2 {
			t.Errorf("%s: audit migration split into %d statements, want 2:\n%s", d.name, len(stmts), strings.Join(stmts, "\n---\n"))
		}
	}
	if n := len(splitSQL(sqliteDialect.types.Replace(migrations[0].sql))); n != 15 {
		t.Errorf("initial schema split into %d statements, want 15", n)
	}
}

func TestAuditIsAppendOnlyAndSchemaVersioned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := OpenSQLite(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*sqlStore)
	if _, err := s.AppendAudit(ctx, AuditEntry{Principal: "alice", Action: "approve", Subject: "p1"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`UPDATE audit SET action = 'forged'`, `DELETE FROM audit`} {
		if _, err := s.db.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; want the append-only trigger to refuse", q, err)
		}
	}
	// A newer binary's schema is refused rather than misread.
	if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied) VALUES (99, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := OpenSQLite(ctx, dir, nil); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open with a newer schema: %v", err)
	}
}
