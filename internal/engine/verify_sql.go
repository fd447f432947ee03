package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// The queries of a verify, on the control database and on the nodes.

// linkCount is the number of the sync's links (what a verify walks first).
func (e *Engine) linkCount(ctx context.Context, syncID string) (int64, error) {
	var n int64
	err := e.Control.QueryRow(ctx, `SELECT count(*) FROM tandem.links WHERE sync_id = $1`, syncID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("control: counting links of sync %s: %w", syncID, err)
	}
	return n, nil
}

// linkPage is one chunk of links: the raw jsonb keys of each side, by
// mapping.Side, in source_key order.
type linkPage struct {
	keys [2][][]byte
}

// readLinks sends the sync's links a chunk at a time, in source_key order
// (keyset pagination on the links' primary key: no snapshot is held
// across chunks).
func (v *verifier) readLinks(ctx context.Context, send func(linkPage) bool) error {
	var after []byte
	for {
		p, err := v.linkPage(ctx, after)
		if err != nil {
			return err
		}
		n := len(p.keys[mapping.Source])
		if n == 0 || !send(p) || n < v.chunk {
			return nil
		}
		after = p.keys[mapping.Source][n-1]
	}
}

func (v *verifier) linkPage(ctx context.Context, after []byte) (linkPage, error) {
	sql := `SELECT source_key, target_key FROM tandem.links WHERE sync_id = $1 ORDER BY source_key LIMIT $2`
	args := []any{v.r.cfg.ID, v.chunk}
	if after != nil {
		sql = `SELECT source_key, target_key FROM tandem.links WHERE sync_id = $1 AND source_key > $3::jsonb
			ORDER BY source_key LIMIT $2`
		args = append(args, after)
	}
	var p linkPage
	rows, err := v.r.e.Control.Query(ctx, sql, args...)
	if err != nil {
		return p, fmt.Errorf("control: reading links: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sk, tk []byte
		if err := rows.Scan(&sk, &tk); err != nil {
			return p, fmt.Errorf("control: reading links: %w", err)
		}
		p.keys[mapping.Source] = append(p.keys[mapping.Source], sk)
		p.keys[mapping.Target] = append(p.keys[mapping.Target], tk)
	}
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("control: reading links: %w", err)
	}
	return p, nil
}

// unlinked returns the keys (raw jsonb) of side s that no link of the sync
// names.
func (e *Engine) unlinked(ctx context.Context, syncID string, s mapping.Side, keys [][]byte) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	col := "source_key"
	if s == mapping.Target {
		col = "target_key"
	}
	texts := make([]string, len(keys))
	for i, k := range keys {
		texts[i] = string(k)
	}
	rows, err := e.Control.Query(ctx, `SELECT u.k FROM unnest($2::jsonb[]) u(k)
		WHERE NOT EXISTS (SELECT 1 FROM tandem.links l WHERE l.sync_id = $1 AND l.`+col+` = u.k)`, syncID, texts)
	if err != nil {
		return nil, fmt.Errorf("control: looking up links of %s keys: %w", s, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("control: looking up links of %s keys: %w", s, err)
	}
	return out, nil
}

// bucketSum is one bucket's rows found and the md5 of their mapped values.
type bucketSum struct {
	rows int64
	sum  string
}

// checksumSQL is the query that checksums a chunk of keys ($1, a jsonb
// array) on side s: per bucket of verifyBucket keys, the rows found and the
// md5 of each row's place in the chunk and its values (exprs), in chunk
// order. The place keeps a row missing on one side and an equal row
// missing on the other from cancelling out.
func checksumSQL(s *side, exprs []string) string {
	vals := strings.Join(append([]string{"e.ord"}, exprs...), ", ")
	return fmt.Sprintf(`SELECT (e.ord - 1) / %[4]d, count(*), md5(string_agg(jsonb_build_array(%[3]s)::text, E'\n' ORDER BY e.ord))
		FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY e(k, ord)
		CROSS JOIN LATERAL jsonb_populate_record(NULL::%[1]s, e.k) k
		JOIN %[1]s t ON %[2]s
		GROUP BY 1`, s.ident, s.keyJoin("t", "k"), vals, verifyBucket)
}

// checksums runs a checksum query over keys and returns the sums by
// bucket; a bucket none of whose rows exist is absent. The engine's node
// sessions render values alike on every node (NodePoolConfig).
func (s *side) checksums(ctx context.Context, sql string, keys []byte) (map[int64]bucketSum, error) {
	out := map[int64]bucketSum{}
	rows, err := s.Pool.Query(ctx, sql, keys)
	if err != nil {
		return nil, fmt.Errorf("node %s: checksumming rows of %s: %w", s.Node, s.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var b int64
		var sum bucketSum
		if err := rows.Scan(&b, &sum.rows, &sum.sum); err != nil {
			return nil, fmt.Errorf("node %s: checksumming rows of %s: %w", s.Node, s.Table, err)
		}
		out[b] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("node %s: checksumming rows of %s: %w", s.Node, s.Table, err)
	}
	return out, nil
}

// numericColumns returns the table's columns of type numeric (or a domain
// over it).
func (s *side) numericColumns(ctx context.Context) (map[string]bool, error) {
	rows, err := s.Pool.Query(ctx, `SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
			AND coalesce(nullif(t.typbasetype, 0), a.atttypid) = 'numeric'::regtype`, s.ident)
	if err != nil {
		return nil, fmt.Errorf("node %s: reading column types of %s: %w", s.Node, s.Table, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("node %s: reading column types of %s: %w", s.Node, s.Table, err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// rowCount is the table's count(*).
func (s *side) rowCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.Pool.QueryRow(ctx, "SELECT count(*) FROM "+s.ident).Scan(&n); err != nil {
		return 0, fmt.Errorf("node %s: counting rows of %s: %w", s.Node, s.Table, err)
	}
	return n, nil
}

// keyPage returns up to n keys of the table (raw jsonb, as the engine
// renders keys) in key order, after the key after (nil: from the start).
func (s *side) keyPage(ctx context.Context, after []byte, n int) ([][]byte, error) {
	rows, err := s.Pool.Query(ctx, fmt.Sprintf(`SELECT %[1]s FROM %[2]s t WHERE %[3]s ORDER BY %[4]s LIMIT $1`,
		s.keyObject("t"), s.ident, s.afterKey("t", 2, after != nil), s.keyColumns("t")),
		n, after)
	if err != nil {
		return nil, fmt.Errorf("node %s: reading keys of %s: %w", s.Node, s.Table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("node %s: reading keys of %s: %w", s.Node, s.Table, err)
	}
	return out, nil
}

// jsonArray joins raw JSON values into a JSON array ([] for none).
func jsonArray(vals [][]byte) []byte {
	n := 2
	for _, v := range vals {
		n += len(v) + 1
	}
	if vals == nil {
		vals = [][]byte{}
	}
	return appendArray(make([]byte, 0, n), vals, func(b, v []byte) []byte { return append(b, v...) })
}
