package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/mapping"
)

// side is one end of a sync, checked against its node's catalog.
type side struct {
	Which mapping.Side
	Node  string
	Table string // schema.name, as change rows name it
	Pool  *pgxpool.Pool
	Key   []string // key columns: configured, or the primary key
	Cols  []string // mapped columns of this side
	ident string   // quoted schema.name
	// shared: another sync of the config reads this node table too, so it
	// needs the engine's writes here captured row by row.
	shared bool
	// marked: applies here write one marker row instead of having every
	// row they write captured (capture version 3, table not shared).
	marked bool
	// wal: the node is captured from its WAL; tandem's writes there name
	// their origin with a logical message at the start of the transaction.
	wal bool
	// checked: check found the table as the sync maps it, in this run.
	checked bool
}

// originSQL is the select-list item that names the sync ($1) as the origin
// of the transaction's writes: the tandem.origin setting, which trigger
// capture reads, and on a wal node a transactional logical message, which
// the WAL stream reads before the transaction's changes.
func (s *side) originSQL() string {
	if s.wal {
		return `set_config('tandem.origin', $1, true), pg_logical_emit_message(true, '` + capture.OriginPrefix + `', $1)`
	}
	return `set_config('tandem.origin', $1, true)`
}

func newSide(which mapping.Side, e config.Endpoint, pool *pgxpool.Pool, cols []string) *side {
	return &side{
		Which: which, Node: e.Node, Table: e.Qualified(), Pool: pool,
		Key: slices.Clone(e.Key), Cols: cols,
		ident: pgx.Identifier{e.Schema(), e.Name()}.Sanitize(),
	}
}

// check reads the table's columns and key from the node's catalog and fails
// naming the first mapped or key column that is missing: a column dropped
// under a running sync stops that sync, not the others. A side is checked
// once per run (planning an initial sync's chunk needs its key already).
func (s *side) check(ctx context.Context) error {
	if s.checked {
		return nil
	}
	rows, err := s.Pool.Query(ctx, `SELECT a.attname, coalesce(a.attnum = ANY (i.indkey), false)
		FROM pg_attribute a
		LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY array_position(i.indkey::int2[], a.attnum), a.attnum`, s.ident)
	if err != nil {
		return fmt.Errorf("node %s: reading columns of %s: %w", s.Node, s.Table, err)
	}
	have := map[string]bool{}
	var pk []string
	for rows.Next() {
		var name string
		var inKey bool
		if err := rows.Scan(&name, &inKey); err != nil {
			return fmt.Errorf("node %s: reading columns of %s: %w", s.Node, s.Table, err)
		}
		have[name] = true
		if inKey {
			pk = append(pk, name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("node %s: reading columns of %s: %w", s.Node, s.Table, err)
	}
	if len(have) == 0 {
		return fmt.Errorf("node %s: table %s does not exist", s.Node, s.Table)
	}
	if len(s.Key) == 0 {
		if len(pk) == 0 {
			return fmt.Errorf("node %s: table %s has no primary key and the sync gives no key", s.Node, s.Table)
		}
		s.Key = pk
	}
	for _, c := range append(slices.Clone(s.Key), s.Cols...) {
		if !have[c] {
			return fmt.Errorf("node %s: column %q of %s is mapped by the sync but does not exist (dropped?)", s.Node, c, s.Table)
		}
	}
	s.checked = true
	return nil
}

// markerVersion is the capture version whose trigger leaves a marked
// apply's rows to the marker.
const markerVersion = 3

// hasMarkers reports whether a node's capture leaves marked applies to
// their marker row. Only a yes is remembered: a node upgraded while the
// daemon runs is seen at its next run, and capture is never downgraded.
func (e *Engine) hasMarkers(ctx context.Context, s *side) (bool, error) {
	e.markedMu.Lock()
	defer e.markedMu.Unlock()
	if e.marked[s.Node] {
		return true, nil
	}
	var version int
	if err := s.Pool.QueryRow(ctx, `SELECT version FROM tandem.capture_info`).Scan(&version); err != nil {
		return false, fmt.Errorf("node %s: reading capture version (run `tandem install %s`?): %w", s.Node, s.Node, err)
	}
	if version < markerVersion {
		return false, nil
	}
	if e.marked == nil {
		e.marked = map[string]bool{}
	}
	e.marked[s.Node] = true
	return true, nil
}

// keyJoin is the condition that matches rows of t to the typed key in k,
// where k is jsonb_populate_record(NULL::table, key).
func (s *side) keyJoin(t, k string) string {
	conds := make([]string, len(s.Key))
	for i, c := range s.Key {
		q := pgx.Identifier{c}.Sanitize()
		conds[i] = fmt.Sprintf("%s.%s = %s.%s", t, q, k, q)
	}
	return strings.Join(conds, " AND ")
}

// keyObject is SQL that builds the jsonb key of row t.
func (s *side) keyObject(t string) string {
	parts := make([]string, len(s.Key))
	for i, c := range s.Key {
		parts[i] = fmt.Sprintf("%s, %s.%s", quoteLiteral(c), t, pgx.Identifier{c}.Sanitize())
	}
	return "jsonb_build_object(" + strings.Join(parts, ", ") + ")"
}

// keyText is canonicalKey(s.keyOf(row)), without building the key.
func (s *side) keyText(row Values) string {
	if len(s.Key) != 1 {
		return canonicalKey(s.keyOf(row))
	}
	b := appendJSONString(append(make([]byte, 0, 32), '{'), s.Key[0])
	return string(append(appendJSON(append(b, ':'), row[s.Key[0]]), '}'))
}

// keyOf returns the key part of a row's values.
func (s *side) keyOf(row Values) Values {
	k := make(Values, len(s.Key))
	for _, c := range s.Key {
		k[c] = row[c]
	}
	return k
}

func quoteLiteral(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// fetchRows reads the current rows of the given keys, by the canonical
// text of the key given. Keys whose row is gone are absent.
func (s *side) fetchRows(ctx context.Context, q querier, keys []Values) (map[string]Values, error) {
	rows, err := s.rowsAt(ctx, q, keys)
	if err != nil {
		return nil, fmt.Errorf("node %s: reading rows of %s: %w", s.Node, s.Table, err)
	}
	out := make(map[string]Values, len(keys))
	for i, row := range rows {
		if row != nil {
			out[canonicalKey(keys[i])] = row
		}
	}
	return out, nil
}

// rowsAt reads the rows of keys through q, in their order; nil where a row
// is gone. Its callers name the node and table in its errors. The rows are matched to the keys by place, not by their key as
// the row renders it, which a key given in another rendering would miss.
func (s *side) rowsAt(ctx context.Context, q querier, keys []Values) ([]Values, error) {
	out := make([]Values, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	sql := fmt.Sprintf(`SELECT e.ord, to_jsonb(t) FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY e(k, ord)
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, e.k) k
		JOIN %[1]s t ON %[2]s`, s.ident, s.keyJoin("t", "k"))
	rows, err := q.Query(ctx, sql, encodeJSON(keys))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var ord int64
		var b []byte
		if err := rows.Scan(&ord, &b); err != nil {
			return nil, err
		}
		if out[ord-1], err = decodeFlat(b); err != nil {
			return nil, fmt.Errorf("decoding a row: %w", err)
		}
	}
	return out, rows.Err()
}

// querier is what fetchRows needs: a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// keyColumns is the key columns of row t, in key order, as a list.
func (s *side) keyColumns(t string) string { return strings.Join(columnRefs(t, s.Key), ", ") }

// keyColumnsDesc is keyColumns for ORDER BY, each descending.
func (s *side) keyColumnsDesc(t string) string {
	return strings.Join(columnRefs(t, s.Key), " DESC, ") + " DESC"
}

// columnRefs quotes columns as columns of the table alias t.
func columnRefs(t string, cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = t + "." + pgx.Identifier{c}.Sanitize()
	}
	return out
}

// afterKey is the condition that row t's key comes after the key in
// jsonb parameter $param; when there is no such key (has is false and
// $param NULL), a condition that holds.
func (s *side) afterKey(t string, param int, has bool) string {
	if !has {
		return fmt.Sprintf("$%d::jsonb IS NULL", param)
	}
	return s.keyBound(t, ">", param)
}

// keyBound compares row t's key with the key in jsonb parameter $param: a
// row comparison with a sub-select, which becomes an index condition on the
// key. (Joined as a function scan instead, the bound is unknown when the
// plan is made: the planner walked the whole index or sorted every row.)
func (s *side) keyBound(t, op string, param int) string {
	return fmt.Sprintf("(%s) %s (SELECT %s FROM jsonb_populate_record(NULL::%s, $%d::jsonb) b)",
		s.keyColumns(t), op, s.keyColumns("b"), s.ident, param)
}

// chunkEnd returns the key of the n-th row after key after (all rows when
// after is nil) and up to key until, in key order, or the last key when
// fewer rows follow; nil when none does.
func (s *side) chunkEnd(ctx context.Context, after, until Values, n int) (Values, error) {
	where := fmt.Sprintf(`FROM %s t WHERE %s AND %s`, s.ident, s.afterKey("t", 1, after != nil), s.keyBound("t", "<=", 2))
	var b []byte
	// The n-th row, an index-only walk; else the last one, when fewer follow.
	// The key is built in the outer query: a target list under OFFSET is
	// computed for every row skipped (jsonb_build_object 10,000 times).
	err := s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s FROM (SELECT %s %s ORDER BY %s OFFSET $3 LIMIT 1) k`,
		s.keyObject("k"), s.keyColumns("t"), where, s.keyColumns("t")),
		keyParam(after), keyParam(until), n-1).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s %s ORDER BY %s LIMIT 1`, s.keyObject("t"), where, s.keyColumnsDesc("t")),
			keyParam(after), keyParam(until)).Scan(&b)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: reading keys of %s: %w", s.Node, s.Table, err)
	}
	return decodeJSON(b)
}

// keyParam renders a key for a jsonb parameter; nil as NULL.
func keyParam(k Values) any {
	if k == nil {
		return nil
	}
	return encodeJSON(k)
}

// lastKey returns the greatest key of the table; nil when it is empty.
func (s *side) lastKey(ctx context.Context) (Values, error) {
	var b []byte
	err := s.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s FROM %s t ORDER BY %s LIMIT 1`,
		s.keyObject("t"), s.ident, s.keyColumnsDesc("t"))).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: reading keys of %s: %w", s.Node, s.Table, err)
	}
	return decodeJSON(b)
}

func quotedAll(cols []string) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = pgx.Identifier{c}.Sanitize()
	}
	return out
}

// rowsIn reads the rows with keys in (after, upto], in key order, and the
// snapshot they were read in (pg_current_snapshot as text).
func (s *side) rowsIn(ctx context.Context, after, upto Values) (out []Values, snapshot string, err error) {
	sql := fmt.Sprintf(`SELECT to_jsonb(t) FROM %s t WHERE %s AND %s ORDER BY %s`,
		s.ident, s.afterKey("t", 1, after != nil), s.keyBound("t", "<=", 2), s.keyColumns("t"))
	err = s.readSnapshot(ctx, func(tx pgx.Tx, snap string) error {
		snapshot = snap
		rows, err := tx.Query(ctx, sql, keyParam(after), keyParam(upto))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			row, err := decodeFlat(b)
			if err != nil {
				return fmt.Errorf("decoding a row: %w", err)
			}
			out = append(out, row)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, "", fmt.Errorf("node %s: reading rows of %s: %w", s.Node, s.Table, err)
	}
	return out, snapshot, nil
}

// readSnapshot runs f in a read-only REPEATABLE READ transaction on the
// node, with the transaction's snapshot: what f reads is exactly what
// committed before it.
func (s *side) readSnapshot(ctx context.Context, f func(tx pgx.Tx, snapshot string) error) error {
	return pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var snap string
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snap); err != nil {
			return err
		}
		return f(tx, snap)
	})
}

// pairRows finds, for each probe (natural key values by this side's
// columns, normalised as pairValue does), the rows whose natural key is the
// same, normalised here by pairSQL. An index on the normalised expression
// (lower(email), say) makes each probe an index lookup.
func (s *side) pairRows(ctx context.Context, q querier, fields []*mapping.Field, probes []Values) ([][]Values, error) {
	out := make([][]Values, len(probes))
	if len(probes) == 0 {
		return out, nil
	}
	conds := make([]string, len(fields))
	for i, f := range fields {
		c := f.Columns(s.Which)[0]
		conds[i] = fmt.Sprintf("%s = m.%s", pairSQL(f, c, "t"), pgx.Identifier{c}.Sanitize())
	}
	sql := fmt.Sprintf(`SELECT e.i, to_jsonb(t) FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY e(v, i)
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, e.v) m
		JOIN %[1]s t ON %[2]s`, s.ident, strings.Join(conds, " AND "))
	rows, err := q.Query(ctx, sql, encodeJSON(probes))
	if err != nil {
		return nil, fmt.Errorf("node %s: matching rows of %s: %w", s.Node, s.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var i int
		var b []byte
		if err := rows.Scan(&i, &b); err != nil {
			return nil, fmt.Errorf("node %s: matching rows of %s: %w", s.Node, s.Table, err)
		}
		row, err := decodeJSON(b)
		if err != nil {
			return nil, err
		}
		out[i-1] = append(out[i-1], row)
	}
	return out, rows.Err()
}
