package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// insertBulk inserts rows that all set the same columns in one statement
// (one trigger call, one round trip), when the new rows' keys are known
// before the insert: each key column is either written, or drawn from its
// sequence (serial, identity) here first. Otherwise it reports false and
// leaves the rows to the row-by-row batch. When the keys are drawn here,
// known (if set) hears the result with the rows created before the insert
// runs: the insert either creates them all under those keys or fails.
func (s *side) insertBulk(ctx context.Context, tx pgx.Tx, ins []*write, res *applyResult, known func(*applyResult)) (bool, error) {
	cols := slices.Sorted(maps.Keys(ins[0].Vals))
	for _, w := range ins[1:] {
		if len(w.Vals) != len(cols) || !hasAll(w.Vals, cols) {
			return false, nil
		}
	}
	var drawn []string // key columns the rows do not set: drawn from their sequences
	for _, k := range s.Key {
		if !slices.Contains(cols, k) {
			drawn = append(drawn, k)
		}
	}
	// Each drawn column's next values from its sequence (serial, identity);
	// a column without one leaves the rows to the row-by-row batch. The
	// sequence is looked up once (MATERIALIZED): in the target list,
	// pg_get_serial_sequence ran a catalog scan per row, 7 times the draw.
	keys := make([][]json.Number, len(drawn))
	for i, c := range drawn {
		rows, err := tx.Query(ctx, `WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence($1, $2)::regclass AS seq)
			SELECT nextval(s.seq)::text FROM s, generate_series(1, $3)`,
			s.ident, c, len(ins))
		if err != nil {
			return false, fmt.Errorf("drawing keys of %s.%s: %w", s.Table, c, err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[*string])
		if err != nil {
			return false, fmt.Errorf("drawing keys of %s.%s: %w", s.Table, c, err)
		}
		for _, v := range vals {
			if v == nil {
				return false, nil
			}
			keys[i] = append(keys[i], json.Number(*v))
		}
	}
	all := slices.Concat(cols, drawn)
	// The rows as a JSON array of objects, each with the columns of all in
	// that order: written here, with no map per row and no sorting.
	names := make([][]byte, len(all))
	for j, c := range all {
		names[j] = append(appendJSONString(nil, c), ':')
	}
	canon := make([]string, len(ins))
	key := make(Values, len(s.Key))
	rows := append(make([]byte, 0, 64*len(ins)), '[')
	for i, w := range ins {
		if i > 0 {
			rows = append(rows, ',')
		}
		rows = append(rows, '{')
		for j, c := range all {
			if j > 0 {
				rows = append(rows, ',')
			}
			var v any
			if j < len(cols) {
				v = w.Vals[c]
			} else {
				v = keys[j-len(cols)][i]
			}
			rows = appendJSON(append(rows, names[j]...), v)
		}
		rows = append(rows, '}')
		for _, k := range s.Key {
			if v, ok := w.Vals[k]; ok {
				key[k] = v
			}
		}
		for j, k := range drawn {
			key[k] = keys[j][i]
		}
		canon[i] = s.keyText(key)
	}
	rows = append(rows, ']')
	sql := fmt.Sprintf(`INSERT INTO %[1]s AS t (%[2]s) OVERRIDING SYSTEM VALUE
		SELECT %[3]s FROM jsonb_populate_recordset(NULL::%[1]s, $1::jsonb) r`,
		s.ident, strings.Join(quotedAll(all), ", "), strings.Join(columnRefs("r", all), ", "))
	if len(drawn) == len(s.Key) {
		// Every key column drawn here, as integers: the new keys are known.
		created := func(res *applyResult) {
			res.grow(len(ins))
			for i, w := range ins {
				res.createdKey(w.Ref, canon[i])
			}
		}
		var pre *applyResult
		if known != nil {
			pre = res.clone()
			created(pre)
			known(pre)
		}
		if _, err := tx.Exec(ctx, sql, rows); err != nil {
			return false, err
		}
		if pre != nil {
			*res = *pre // what known heard, now so: not built twice (nor compared item by item)
		} else {
			created(res)
		}
		return true, nil
	}
	want := make(map[string]string, len(ins)) // canonical key -> ref
	for i, w := range ins {
		want[canon[i]] = w.Ref
	}
	// A savepoint first, in the same round trip: a node that stores a
	// written key otherwise than it was given (a padded char, a rounded
	// numeric) leaves the new rows' refs unknown, and the statement is
	// rolled back for the row-by-row inserts.
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT tandem_insert")
	var created [][]byte
	b.Queue(sql+" RETURNING "+s.keyObject("t"), rows).Query(func(rows pgx.Rows) error {
		var err error
		created, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return false, err
	}
	refs := make([][2]string, 0, len(created)) // ref, key text
	for _, k := range created {
		_, kt, err := decodeKey(k)
		if err != nil {
			return false, err
		}
		ref, ok := want[kt]
		if !ok {
			_, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT tandem_insert")
			return false, err
		}
		refs = append(refs, [2]string{ref, kt})
	}
	for _, r := range refs {
		res.createdKey(r[0], r[1])
	}
	return true, nil
}

func hasAll(v Values, cols []string) bool {
	for _, c := range cols {
		if _, ok := v[c]; !ok {
			return false
		}
	}
	return true
}
