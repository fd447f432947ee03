package engine

import (
	"context"
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
		Which: which, Node: e.Node, Table: e.Schema() + "." + e.Name(), Pool: pool,
		Key: slices.Clone(e.Key), Cols: cols,
		ident: pgx.Identifier{e.Schema(), e.Name()}.Sanitize(),
	}
}

// check reads the table's columns and key from the node's catalog and fails
// naming the first mapped or key column that is missing: a column dropped
// under a running sync stops that sync, not the others.
func (s *side) check(ctx context.Context) error {
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

// keyOf returns the key part of a row's values.
func (s *side) keyOf(row Values) Values {
	k := make(Values, len(s.Key))
	for _, c := range s.Key {
		k[c] = row[c]
	}
	return k
}

func quoteLiteral(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// fetchRows reads the current rows of the given keys (canonical key ->
// row). Keys whose row is gone are absent.
func (s *side) fetchRows(ctx context.Context, q querier, keys []Values) (map[string]Values, error) {
	out := map[string]Values{}
	if len(keys) == 0 {
		return out, nil
	}
	sql := fmt.Sprintf(`SELECT to_jsonb(t) FROM jsonb_array_elements($1::jsonb) e
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, e) k
		JOIN %[1]s t ON %[2]s`, s.ident, s.keyJoin("t", "k"))
	rows, err := q.Query(ctx, sql, encodeJSON(keys))
	if err != nil {
		return nil, fmt.Errorf("node %s: reading rows of %s: %w", s.Node, s.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("node %s: reading rows of %s: %w", s.Node, s.Table, err)
		}
		row, err := decodeJSON(b)
		if err != nil {
			return nil, fmt.Errorf("node %s: decoding a row of %s: %w", s.Node, s.Table, err)
		}
		out[canonicalKey(s.keyOf(row))] = row
	}
	return out, rows.Err()
}

// findMatches reads rows whose match columns equal the given values
// (canonical match values -> row).
func (s *side) findMatches(ctx context.Context, cols []string, probes []Values) (map[string]Values, error) {
	out := map[string]Values{}
	if len(probes) == 0 {
		return out, nil
	}
	conds := make([]string, len(cols))
	for i, c := range cols {
		q := pgx.Identifier{c}.Sanitize()
		conds[i] = fmt.Sprintf("t.%s = m.%s", q, q)
	}
	sql := fmt.Sprintf(`SELECT to_jsonb(t) FROM jsonb_array_elements($1::jsonb) e
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%s, e) m
		JOIN %s t ON %s`, s.ident, s.ident, strings.Join(conds, " AND "))
	rows, err := s.Pool.Query(ctx, sql, encodeJSON(probes))
	if err != nil {
		return nil, fmt.Errorf("node %s: matching rows of %s: %w", s.Node, s.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, fmt.Errorf("node %s: matching rows of %s: %w", s.Node, s.Table, err)
		}
		row, err := decodeJSON(b)
		if err != nil {
			return nil, err
		}
		out[matchKey(cols, row)] = row
	}
	return out, rows.Err()
}

// matchKey renders the match columns of a row for lookups.
func matchKey(cols []string, row Values) string {
	k := make(Values, len(cols))
	for _, c := range cols {
		k[c] = row[c]
	}
	return canonicalKey(k)
}

// querier is what fetchRows needs: a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}
