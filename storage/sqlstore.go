package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/detect"
	"github.com/meshlens/meshlens/graph"
)

// sqlStore implements Store over database/sql for both dialects.
type sqlStore struct {
	db *sql.DB
	d  *dialect

	mu    sync.Mutex
	byKey map[string]int64 // edge key -> id
	byID  map[int64]*edgeInfo
}

type edgeInfo struct {
	src, dst   graph.Node
	proto      graph.Protocol
	principals []string
}

func newSQLStore(db *sql.DB, d *dialect) *sqlStore {
	return &sqlStore{db: db, d: d, byKey: map[string]int64{}, byID: map[int64]*edgeInfo{}}
}

func (s *sqlStore) Driver() string { return s.d.name }

func (s *sqlStore) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *sqlStore) Close() error { return s.db.Close() }

func (s *sqlStore) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.d.rebind(q), args...)
}

func (s *sqlStore) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.d.rebind(q), args...)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *sqlStore) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func resKey(res time.Duration) int64 { return int64(res / time.Second) }

func edgeKeyString(src, dst string, proto graph.Protocol) string {
	return src + "\x00" + dst + "\x00" + proto.String()
}

// ---- edge history ----

// edgeIDs resolves (creating when needed) the ids of the buckets' edges
// inside tx; new ids are returned for caching after commit.
func (s *sqlStore) edgeIDs(ctx context.Context, tx *sql.Tx, b []EdgeBucket) ([]int64, map[string]int64, error) {
	ids := make([]int64, len(b))
	fresh := map[string]int64{}
	for i := range b {
		src, dst := b[i].Source.ID(), b[i].Target.ID()
		k := edgeKeyString(src, dst, b[i].Protocol)
		s.mu.Lock()
		id, ok := s.byKey[k]
		var info *edgeInfo
		if ok {
			info = s.byID[id]
		}
		s.mu.Unlock()
		if !ok {
			id, ok = fresh[k]
		}
		if !ok {
			if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO edges (src, dst, proto, principals) VALUES (?, ?, ?, '') ON CONFLICT (src, dst, proto) DO NOTHING`),
				src, dst, int(b[i].Protocol)); err != nil {
				return nil, nil, fmt.Errorf("insert edge %s -> %s: %w", src, dst, err)
			}
			if err := tx.QueryRowContext(ctx, s.d.rebind(`SELECT id FROM edges WHERE src = ? AND dst = ? AND proto = ?`),
				src, dst, int(b[i].Protocol)).Scan(&id); err != nil {
				return nil, nil, fmt.Errorf("read edge id %s -> %s: %w", src, dst, err)
			}
			fresh[k] = id
		}
		ids[i] = id
		if len(b[i].Principals) > 0 && (info == nil || !subset(b[i].Principals, info.principals)) {
			var have []string
			if info != nil {
				have = info.principals
			}
			merged := mergePrincipals(have, b[i].Principals)
			if _, err := tx.ExecContext(ctx, s.d.rebind(`UPDATE edges SET principals = ? WHERE id = ?`), strings.Join(merged, "\n"), id); err != nil {
				return nil, nil, fmt.Errorf("update principals of edge %s -> %s: %w", src, dst, err)
			}
			if info != nil {
				s.mu.Lock()
				info.principals = merged
				s.mu.Unlock()
			}
		}
	}
	return ids, fresh, nil
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func mergePrincipals(a, b []string) []string {
	out := slices.Clone(a)
	for _, p := range b {
		if p != "" && !slices.Contains(out, p) && len(out) < 8 {
			out = append(out, p)
		}
	}
	return out
}

const rowsPerInsert = 200

func (s *sqlStore) WriteBuckets(ctx context.Context, res time.Duration, b []EdgeBucket) error {
	if len(b) == 0 {
		return nil
	}
	var fresh map[string]int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, f, err := s.edgeIDs(ctx, tx, b)
		if err != nil {
			return err
		}
		fresh = f
		return s.insertRows(ctx, tx, resKey(res), b, ids)
	})
	if err != nil {
		return fmt.Errorf("write %d edge buckets at %s: %w", len(b), res, err)
	}
	if len(fresh) > 0 {
		s.mu.Lock()
		for k, id := range fresh {
			s.byKey[k] = id
		}
		s.mu.Unlock()
	}
	return nil
}

// insertRows upserts rows in multi-row statements.
func (s *sqlStore) insertRows(ctx context.Context, tx *sql.Tx, res int64, b []EdgeBucket, ids []int64) error {
	var buf []byte
	args := make([]any, 0, 4*rowsPerInsert)
	var stmt *sql.Stmt
	defer func() {
		if stmt != nil {
			stmt.Close()
		}
	}()
	for lo := 0; lo < len(b); lo += rowsPerInsert {
		hi := min(lo+rowsPerInsert, len(b))
		args = args[:0]
		buf = buf[:0]
		for i := lo; i < hi; i++ {
			start := len(buf)
			buf = appendStats(buf, &b[i].Stats)
			args = append(args, res, b[i].Start.UnixNano(), ids[i], buf[start:len(buf):len(buf)])
		}
		q := s.d.rebind(`INSERT INTO edge_buckets (res, ts, edge, data) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?),", hi-lo), ",") +
			` ON CONFLICT (res, ts, edge) DO UPDATE SET data = excluded.data`)
		var err error
		if hi-lo == rowsPerInsert {
			if stmt == nil {
				if stmt, err = tx.PrepareContext(ctx, q); err != nil {
					return err
				}
			}
			_, err = stmt.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, q, args...)
		}
		if err != nil {
			return err
		}
		buf = nil // the args slices alias buf; start a fresh one
	}
	return nil
}

// edge returns the cached edge info, loading the edges table on a miss.
func (s *sqlStore) edge(ctx context.Context, id int64) (*edgeInfo, error) {
	s.mu.Lock()
	e := s.byID[id]
	s.mu.Unlock()
	if e != nil {
		return e, nil
	}
	rows, err := s.query(ctx, `SELECT id, src, dst, proto, principals FROM edges`)
	if err != nil {
		return nil, fmt.Errorf("load edges: %w", err)
	}
	defer rows.Close()
	loaded := map[int64]*edgeInfo{}
	keys := map[string]int64{}
	for rows.Next() {
		var eid int64
		var src, dst, pr string
		var proto int
		if err := rows.Scan(&eid, &src, &dst, &proto, &pr); err != nil {
			return nil, fmt.Errorf("load edges: %w", err)
		}
		sn, err := graph.ParseNodeID(src)
		if err != nil {
			return nil, fmt.Errorf("edge %d: %w", eid, err)
		}
		dn, err := graph.ParseNodeID(dst)
		if err != nil {
			return nil, fmt.Errorf("edge %d: %w", eid, err)
		}
		info := &edgeInfo{src: sn, dst: dn, proto: graph.Protocol(proto)}
		if pr != "" {
			info.principals = strings.Split(pr, "\n")
		}
		loaded[eid] = info
		keys[edgeKeyString(src, dst, graph.Protocol(proto))] = eid
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load edges: %w", err)
	}
	s.mu.Lock()
	for k, v := range loaded {
		if s.byID[k] == nil {
			s.byID[k] = v
		}
	}
	for k, v := range keys {
		s.byKey[k] = v
	}
	e = s.byID[id]
	s.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("edge %d: %w", id, ErrNotFound)
	}
	return e, nil
}

// scanBuckets streams rows of (ts, edge, data) in [from, to) ordered by ts.
func (s *sqlStore) scanBuckets(ctx context.Context, res time.Duration, from, to time.Time, fn func(ts, edge int64, data []byte) error) error {
	return s.scanPart(ctx, res, from, to, 1, 0, fn)
}

// scanPart is scanBuckets restricted to edges with id % parts == part, so
// several readers can share one range.
func (s *sqlStore) scanPart(ctx context.Context, res time.Duration, from, to time.Time, parts, part int, fn func(ts, edge int64, data []byte) error) error {
	q := `SELECT ts, edge, data FROM edge_buckets WHERE res = ? AND ts >= ? AND ts < ?`
	args := []any{resKey(res), from.UnixNano(), to.UnixNano()}
	if parts > 1 {
		q += ` AND edge % ? = ?`
		args = append(args, parts, part)
	}
	rows, err := s.query(ctx, q+` ORDER BY ts, edge`, args...)
	if err != nil {
		return fmt.Errorf("read %s edge buckets: %w", res, err)
	}
	defer rows.Close()
	var data sql.RawBytes
	for rows.Next() {
		var ts, edge int64
		if err := rows.Scan(&ts, &edge, &data); err != nil {
			return fmt.Errorf("read %s edge buckets: %w", res, err)
		}
		if err := fn(ts, edge, data); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s edge buckets: %w", res, err)
	}
	return nil
}

func (s *sqlStore) ReadBuckets(ctx context.Context, res time.Duration, from, to time.Time) ([]EdgeBucket, error) {
	var out []EdgeBucket
	err := s.scanBuckets(ctx, res, from, to, func(ts, id int64, data []byte) error {
		e, err := s.edge(ctx, id)
		if err != nil {
			return err
		}
		b := EdgeBucket{Start: fromNS(ts), Source: e.src, Target: e.dst, Protocol: e.proto, Principals: e.principals}
		if err := mergeStats(data, &b.Stats); err != nil {
			return fmt.Errorf("edge bucket %d at %s: %w", id, fromNS(ts), err)
		}
		out = append(out, b)
		return nil
	})
	return out, err
}

// sumParts is how many readers SumBuckets runs: decoding and merging
// sketches is most of a replay's time and splits cleanly by edge.
var sumParts = min(runtime.GOMAXPROCS(0), 4)

func (s *sqlStore) SumBuckets(ctx context.Context, res time.Duration, from, to time.Time) ([]EdgeTotal, error) {
	return s.sumSpans(ctx, []sumSpan{{res: res, from: from, to: to}})
}

// sumSpan is one tier's share of a summed range. shift moves each row's
// LastSeen to the last finer bucket the row covers.
type sumSpan struct {
	res      time.Duration
	from, to time.Time
	shift    time.Duration
}

// sumSpans sums rows of several tiers per edge in one pass: each reader
// folds every span's rows for its edges straight into one total per edge,
// so stitched ranges decode each row once and never re-merge totals.
func (s *sqlStore) sumSpans(ctx context.Context, spans []sumSpan) ([]EdgeTotal, error) {
	s.mu.Lock()
	nEdges := len(s.byID)
	s.mu.Unlock()
	if nEdges == 0 { // load the edge cache once, before the readers share it
		if _, err := s.edge(ctx, -1); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		s.mu.Lock()
		nEdges = len(s.byID)
		s.mu.Unlock()
	}
	parts := sumParts
	outs := make([][]EdgeTotal, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	for p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Sized for every known edge so neither grows mid-scan.
			idx := make(map[int64]int32, nEdges/parts+1)
			out := make([]EdgeTotal, 0, nEdges/parts+1)
			for _, sp := range spans {
				err := s.scanPart(ctx, sp.res, sp.from, sp.to, parts, p, func(ts, id int64, data []byte) error {
					first, last := fromNS(ts), fromNS(ts).Add(sp.shift)
					i, ok := idx[id]
					if !ok {
						e, err := s.edge(ctx, id)
						if err != nil {
							return err
						}
						i = int32(len(out))
						idx[id] = i
						out = append(out, EdgeTotal{Source: e.src, Target: e.dst, Protocol: e.proto, Principals: e.principals, FirstSeen: first, LastSeen: last})
					}
					t := &out[i]
					if first.Before(t.FirstSeen) {
						t.FirstSeen = first
					}
					if last.After(t.LastSeen) {
						t.LastSeen = last
					}
					if err := mergeStats(data, &t.Stats); err != nil {
						return fmt.Errorf("edge bucket %d at %s: %w", id, fromNS(ts), err)
					}
					return nil
				})
				if err != nil {
					errs[p] = err
					return
				}
			}
			outs[p] = out
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := 0
	for _, o := range outs {
		n += len(o)
	}
	all := make([]EdgeTotal, 0, n)
	for _, o := range outs {
		all = append(all, o...)
	}
	return all, nil
}

func (s *sqlStore) LastBucket(ctx context.Context, res time.Duration) (time.Time, error) {
	var n sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT MAX(ts) FROM edge_buckets WHERE res = ?`), resKey(res)).Scan(&n); err != nil {
		return time.Time{}, fmt.Errorf("newest %s bucket: %w", res, err)
	}
	if !n.Valid {
		return time.Time{}, nil
	}
	return fromNS(n.Int64), nil
}

func rollupKey(res time.Duration) string { return fmt.Sprintf("rollup:%d", resKey(res)) }

func (s *sqlStore) RolledUpTo(ctx context.Context, res time.Duration) (time.Time, error) {
	v, ok, err := s.Blob(ctx, rollupKey(res))
	if err != nil || !ok {
		return time.Time{}, err
	}
	var n int64
	if _, err := fmt.Sscan(string(v), &n); err != nil {
		return time.Time{}, fmt.Errorf("rollup watermark %s: %w", res, err)
	}
	return fromNS(n), nil
}

// rollupChunk bounds how much of the finer tier one transaction folds.
func rollupChunk(to time.Duration) time.Duration {
	if to >= time.Hour {
		return 24 * time.Hour
	}
	return 30 * time.Minute
}

func (s *sqlStore) Rollup(ctx context.Context, raw time.Duration, upTo, now time.Time, r Retention) (RollupResult, error) {
	var res RollupResult
	limit := upTo
	for _, step := range [][2]time.Duration{{raw, Res1m}, {Res1m, Res1h}} {
		from, to := step[0], step[1]
		if from >= to || to%from != 0 {
			continue
		}
		n, done, err := s.rollupStep(ctx, from, to, limit)
		res.Written += n
		if err != nil {
			return res, err
		}
		limit = done
	}
	for _, tier := range []time.Duration{raw, Res1m, Res1h} {
		cut := now.Add(-r.of(tier))
		rs, err := s.exec(ctx, `DELETE FROM edge_buckets WHERE res = ? AND ts < ?`, resKey(tier), cut.UnixNano())
		if err != nil {
			return res, fmt.Errorf("retention of %s buckets: %w", tier, err)
		}
		n, _ := rs.RowsAffected()
		res.Deleted += n
	}
	if _, err := s.exec(ctx, `DELETE FROM topology WHERE ts < ?`, now.Add(-r.Hour).UnixNano()); err != nil {
		return res, fmt.Errorf("retention of topology snapshots: %w", err)
	}
	return res, nil
}

// rollupStep folds whole `to` buckets of tier `from` ending at or before
// limit, and returns rows written and the new watermark.
func (s *sqlStore) rollupStep(ctx context.Context, from, to time.Duration, limit time.Time) (int64, time.Time, error) {
	wm, err := s.RolledUpTo(ctx, to)
	if err != nil {
		return 0, wm, err
	}
	if wm.IsZero() {
		var n sql.NullInt64
		if err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT MIN(ts) FROM edge_buckets WHERE res = ?`), resKey(from)).Scan(&n); err != nil {
			return 0, wm, fmt.Errorf("oldest %s bucket: %w", from, err)
		}
		if !n.Valid {
			return 0, wm, nil
		}
		wm = fromNS(n.Int64).Truncate(to)
	}
	end := limit.Truncate(to)
	var written int64
	for wm.Before(end) {
		chunkEnd := wm.Add(rollupChunk(to))
		if chunkEnd.After(end) {
			chunkEnd = end
		}
		var out []EdgeBucket
		var ids []int64
		cur := int64(-1)
		acc := map[int64]*graph.Stats{}
		order := []int64{}
		flush := func() {
			for _, id := range order {
				out = append(out, EdgeBucket{Start: fromNS(cur), Stats: *acc[id]})
				ids = append(ids, id)
			}
			clear(acc)
			order = order[:0]
		}
		err := s.scanBuckets(ctx, from, wm, chunkEnd, func(ts, id int64, data []byte) error {
			b := ts - ts%int64(to)
			if b != cur {
				flush()
				cur = b
			}
			st := acc[id]
			if st == nil {
				st = &graph.Stats{}
				acc[id] = st
				order = append(order, id)
			}
			return mergeStats(data, st)
		})
		if err != nil {
			return written, wm, fmt.Errorf("rollup %s -> %s at %s: %w", from, to, wm, err)
		}
		flush()
		err = s.inTx(ctx, func(tx *sql.Tx) error {
			if err := s.insertRows(ctx, tx, resKey(to), out, ids); err != nil {
				return err
			}
			return s.putBlob(ctx, tx, rollupKey(to), []byte(fmt.Sprint(chunkEnd.UnixNano())))
		})
		if err != nil {
			return written, wm, fmt.Errorf("rollup %s -> %s at %s: %w", from, to, wm, err)
		}
		written += int64(len(out))
		wm = chunkEnd
	}
	return written, wm, nil
}

func (s *sqlStore) PutTopology(ctx context.Context, t Topology) error {
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode topology at %s: %w", t.At, err)
	}
	if _, err := s.exec(ctx, `INSERT INTO topology (ts, data) VALUES (?, ?) ON CONFLICT (ts) DO UPDATE SET data = excluded.data`, t.At.UnixNano(), string(data)); err != nil {
		return fmt.Errorf("write topology at %s: %w", t.At, err)
	}
	return nil
}

func (s *sqlStore) TopologyAt(ctx context.Context, at time.Time) (Topology, bool, error) {
	var data string
	err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT data FROM topology WHERE ts <= ? ORDER BY ts DESC LIMIT 1`), at.UnixNano()).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return Topology{}, false, nil
	}
	if err != nil {
		return Topology{}, false, fmt.Errorf("read topology at %s: %w", at, err)
	}
	var t Topology
	if err := json.Unmarshal([]byte(data), &t); err != nil {
		return Topology{}, false, fmt.Errorf("decode topology at %s: %w", at, err)
	}
	return t, true, nil
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

func (s *sqlStore) putBlob(ctx context.Context, ex execer, key string, val []byte) error {
	_, err := ex.ExecContext(ctx, s.d.rebind(`INSERT INTO blobs (k, v, updated) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v, updated = excluded.updated`),
		key, val, time.Now().UnixNano())
	if err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func (s *sqlStore) PutBlob(ctx context.Context, key string, val []byte) error {
	return s.putBlob(ctx, s.db, key, val)
}

func (s *sqlStore) Blob(ctx context.Context, key string) ([]byte, bool, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, s.d.rebind(`SELECT v FROM blobs WHERE k = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return v, true, nil
}

// ---- anomalies and incidents ----

func (s *sqlStore) RecordChanges(ctx context.Context, at time.Time, changes []detect.Change) error {
	if len(changes) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, c := range changes {
			var kind, id, state string
			switch {
			case c.Anomaly != nil:
				a := c.Anomaly
				data, err := json.Marshal(a)
				if err != nil {
					return fmt.Errorf("encode anomaly %s: %w", a.ID, err)
				}
				if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO anomalies (id, type, state, since, updated, incident, data) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated = excluded.updated, incident = excluded.incident, data = excluded.data`),
					a.ID, a.Type, a.State, ns(a.Since), ns(a.UpdatedAt), a.IncidentID, string(data)); err != nil {
					return fmt.Errorf("write anomaly %s: %w", a.ID, err)
				}
				kind, id, state = "anomaly", a.ID, a.State
			case c.Incident != nil:
				in := c.Incident
				data, err := json.Marshal(in)
				if err != nil {
					return fmt.Errorf("encode incident %s: %w", in.ID, err)
				}
				if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO incidents (id, state, start, updated, data) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated = excluded.updated, data = excluded.data`),
					in.ID, in.State, ns(in.Start), ns(in.UpdatedAt), string(data)); err != nil {
					return fmt.Errorf("write incident %s: %w", in.ID, err)
				}
				kind, id, state = "incident", in.ID, in.State
			default:
				continue
			}
			if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO state_changes (at, kind, id, action, state) VALUES (?, ?, ?, ?, ?)`),
				at.UnixNano(), kind, id, c.Action, state); err != nil {
				return fmt.Errorf("write state change of %s %s: %w", kind, id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d detector changes: %w", len(changes), err)
	}
	return nil
}

// eventWhere builds the filter shared by anomalies and incidents.
func eventWhere(q EventQuery) (string, []any) {
	var conds []string
	var args []any
	if q.State != "" {
		conds = append(conds, "state = ?")
		args = append(args, q.State)
	}
	if !q.Since.IsZero() {
		conds = append(conds, "updated >= ?")
		args = append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		conds = append(conds, "updated < ?")
		args = append(args, q.Until.UnixNano())
	}
	if len(conds) == 0 {
		return "", args
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func queryJSON[T any](ctx context.Context, s *sqlStore, what, q string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("read %s: %w", what, err)
		}
		var v T
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return out, nil
}

func (s *sqlStore) Anomalies(ctx context.Context, q EventQuery) ([]detect.Anomaly, error) {
	where, args := eventWhere(q)
	args = append(args, limitOf(q.Limit))
	return queryJSON[detect.Anomaly](ctx, s, "anomalies", `SELECT data FROM anomalies`+where+` ORDER BY since DESC, id LIMIT ?`, args...)
}

func (s *sqlStore) Incidents(ctx context.Context, q EventQuery) ([]detect.Incident, error) {
	where, args := eventWhere(q)
	args = append(args, limitOf(q.Limit))
	return queryJSON[detect.Incident](ctx, s, "incidents", `SELECT data FROM incidents`+where+` ORDER BY start DESC, id LIMIT ?`, args...)
}

func (s *sqlStore) StateChanges(ctx context.Context, id string) ([]StateChange, error) {
	rows, err := s.query(ctx, `SELECT seq, at, kind, id, action, state FROM state_changes WHERE id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("read state changes of %s: %w", id, err)
	}
	defer rows.Close()
	var out []StateChange
	for rows.Next() {
		var c StateChange
		var at int64
		if err := rows.Scan(&c.Seq, &at, &c.Kind, &c.ID, &c.Action, &c.State); err != nil {
			return nil, fmt.Errorf("read state changes of %s: %w", id, err)
		}
		c.At = fromNS(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// ---- proposals, approvals, audit, chat ----

func payloadText(p json.RawMessage) string {
	if len(p) == 0 {
		return "null"
	}
	return string(p)
}

func rawPayload(s string) json.RawMessage {
	if s == "null" || s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func checkRecord(r Record) error {
	if r.ID == "" {
		return errors.New("record without id")
	}
	if len(r.Payload) > 0 && !json.Valid(r.Payload) {
		return fmt.Errorf("record %s: payload is not valid JSON", r.ID)
	}
	return nil
}

func (s *sqlStore) CreateProposal(ctx context.Context, r Record, audit ...AuditEntry) error {
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("create proposal: %w", err)
	}
	if r.Updated.IsZero() {
		r.Updated = r.Created
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO proposals (id, created, updated, state, principal, payload) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
			r.ID, ns(r.Created), ns(r.Updated), r.State, r.Principal, payloadText(r.Payload))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrExists
		}
		for _, e := range audit {
			if e.At.IsZero() {
				e.At = r.Created
			}
			if _, err := s.appendAudit(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create proposal %s: %w", r.ID, err)
	}
	return nil
}

const recordCols = `id, created, updated, state, principal, payload`

func scanRecord(sc interface{ Scan(...any) error }) (Record, error) {
	var r Record
	var c, u int64
	var p string
	if err := sc.Scan(&r.ID, &c, &u, &r.State, &r.Principal, &p); err != nil {
		return r, err
	}
	r.Created, r.Updated, r.Payload = fromNS(c), fromNS(u), rawPayload(p)
	return r, nil
}

func (s *sqlStore) getRecord(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, table, id string) (Record, error) {
	r, err := scanRecord(q.QueryRowContext(ctx, s.d.rebind(`SELECT `+recordCols+` FROM `+table+` WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%s %s: %w", strings.TrimSuffix(table, "s"), id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read %s %s: %w", strings.TrimSuffix(table, "s"), id, err)
	}
	return r, nil
}

func (s *sqlStore) TransitionProposal(ctx context.Context, t Transition) (Record, error) {
	var out Record
	if t.At.IsZero() {
		t.At = time.Now()
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if t.Payload != nil {
			if !json.Valid(t.Payload) {
				return errors.New("payload is not valid JSON")
			}
			res, err = tx.ExecContext(ctx, s.d.rebind(`UPDATE proposals SET state = ?, updated = ?, payload = ? WHERE id = ? AND state = ?`),
				t.To, t.At.UnixNano(), string(t.Payload), t.ID, t.From)
		} else {
			res, err = tx.ExecContext(ctx, s.d.rebind(`UPDATE proposals SET state = ?, updated = ? WHERE id = ? AND state = ?`), t.To, t.At.UnixNano(), t.ID, t.From)
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			cur, err := s.getRecord(ctx, tx, "proposals", t.ID)
			if err != nil {
				return err
			}
			return fmt.Errorf("proposal %s is %s, not %s: %w", t.ID, cur.State, t.From, ErrConflict)
		}
		if a := t.Approval; a != nil {
			if a.Created.IsZero() {
				a.Created = t.At
			}
			if _, err := tx.ExecContext(ctx, s.d.rebind(`INSERT INTO approvals (id, proposal, created, principal, decision, payload) VALUES (?, ?, ?, ?, ?, ?)`),
				a.ID, t.ID, ns(a.Created), a.Principal, a.Decision, payloadText(a.Payload)); err != nil {
				return fmt.Errorf("write approval %s: %w", a.ID, err)
			}
		}
		if e := t.Audit; e != nil {
			if e.At.IsZero() {
				e.At = t.At
			}
			if _, err := s.appendAudit(ctx, tx, *e); err != nil {
				return err
			}
		}
		out, err = s.getRecord(ctx, tx, "proposals", t.ID)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("proposal %s %s -> %s: %w", t.ID, t.From, t.To, err)
	}
	return out, nil
}

func (s *sqlStore) Proposal(ctx context.Context, id string) (Record, error) {
	return s.getRecord(ctx, s.db, "proposals", id)
}

func (s *sqlStore) records(ctx context.Context, table string, q RecordQuery) ([]Record, error) {
	var conds []string
	var args []any
	if q.State != "" {
		conds = append(conds, "state = ?")
		args = append(args, q.State)
	}
	if q.Principal != "" {
		conds = append(conds, "principal = ?")
		args = append(args, q.Principal)
	}
	if !q.Since.IsZero() {
		conds = append(conds, "updated >= ?")
		args = append(args, q.Since.UnixNano())
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, limitOf(q.Limit))
	rows, err := s.query(ctx, `SELECT `+recordCols+` FROM `+table+where+` ORDER BY updated DESC, id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *sqlStore) Proposals(ctx context.Context, q RecordQuery) ([]Record, error) {
	return s.records(ctx, "proposals", q)
}

func (s *sqlStore) Approvals(ctx context.Context, proposalID string) ([]Approval, error) {
	rows, err := s.query(ctx, `SELECT id, proposal, created, principal, decision, payload FROM approvals WHERE proposal = ? ORDER BY created, id`, proposalID)
	if err != nil {
		return nil, fmt.Errorf("read approvals of %s: %w", proposalID, err)
	}
	defer rows.Close()
	var out []Approval
	for rows.Next() {
		var a Approval
		var c int64
		var p string
		if err := rows.Scan(&a.ID, &a.ProposalID, &c, &a.Principal, &a.Decision, &p); err != nil {
			return nil, fmt.Errorf("read approvals of %s: %w", proposalID, err)
		}
		a.Created, a.Payload = fromNS(c), rawPayload(p)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *sqlStore) appendAudit(ctx context.Context, tx *sql.Tx, e AuditEntry) (int64, error) {
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		return 0, fmt.Errorf("audit %s %s: payload is not valid JSON", e.Action, e.Subject)
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	var seq int64
	err := tx.QueryRowContext(ctx, s.d.rebind(`INSERT INTO audit (at, principal, action, subject, payload) VALUES (?, ?, ?, ?, ?) RETURNING seq`),
		e.At.UnixNano(), e.Principal, e.Action, e.Subject, payloadText(e.Payload)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append audit %s %s: %w", e.Action, e.Subject, err)
	}
	return seq, nil
}

func (s *sqlStore) AppendAudit(ctx context.Context, e AuditEntry) (int64, error) {
	var seq int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		seq, err = s.appendAudit(ctx, tx, e)
		return err
	})
	return seq, err
}

func (s *sqlStore) Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	conds := []string{"seq > ?"}
	args := []any{q.AfterSeq}
	if !q.Since.IsZero() {
		conds = append(conds, "at >= ?")
		args = append(args, q.Since.UnixNano())
	}
	if q.Principal != "" {
		conds = append(conds, "principal = ?")
		args = append(args, q.Principal)
	}
	if q.Subject != "" {
		conds = append(conds, "subject = ?")
		args = append(args, q.Subject)
	}
	args = append(args, limitOf(q.Limit))
	rows, err := s.query(ctx, `SELECT seq, at, principal, action, subject, payload FROM audit WHERE `+strings.Join(conds, " AND ")+` ORDER BY seq LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		var p string
		if err := rows.Scan(&e.Seq, &at, &e.Principal, &e.Action, &e.Subject, &p); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		e.At, e.Payload = fromNS(at), rawPayload(p)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *sqlStore) PutChatSession(ctx context.Context, r Record) error {
	if err := checkRecord(r); err != nil {
		return fmt.Errorf("put chat session: %w", err)
	}
	if r.Updated.IsZero() {
		r.Updated = time.Now()
	}
	_, err := s.exec(ctx, `INSERT INTO chat_sessions (id, created, updated, state, principal, payload) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, state = excluded.state, principal = excluded.principal, payload = excluded.payload`,
		r.ID, ns(r.Created), ns(r.Updated), r.State, r.Principal, payloadText(r.Payload))
	if err != nil {
		return fmt.Errorf("put chat session %s: %w", r.ID, err)
	}
	return nil
}

func (s *sqlStore) ChatSession(ctx context.Context, id string) (Record, error) {
	r, err := s.getRecord(ctx, s.db, "chat_sessions", id)
	return r, err
}

func (s *sqlStore) ChatSessions(ctx context.Context, q RecordQuery) ([]Record, error) {
	return s.records(ctx, "chat_sessions", q)
}
