package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// A window stops at its size, but an apply of the sync may have written a
// row of the side after the window's application writes to it: with a
// backlog on the side, the apply's marker comes after all of it. So for
// the entities the window's application changes wrote, the rows after the
// window up to the sync's last own row when it was cut (the application's
// and the sync's) are read, and for each column the window's application
// wrote (and its own writes did not overwrite), taking, as collapse does,
// an own write of the value the column already held for no write:
//
//   - an own write that comes first to it overwrote it: that write is added
//     to the window's changes, after them, as the echo it is, exactly as if
//     the window held it (a conflict the apply won; not sent on);
//   - if the application wrote it again first, its later write is the one
//     an own write may have overwritten, and the window that holds that
//     write records it; but if the last write to the column there is an
//     own one, the side holds the sync's value, not the window's: the
//     window does not send its value on (a row it creates takes the
//     sync's value), and records nothing.
//
// Nothing after the window is consumed: each row there is read again by
// the window that holds it.

// pendingWrite is what the window's application changes wrote to one
// entity and the window's own writes did not overwrite: columns, and
// whether the row itself was created or deleted.
type pendingWrite struct {
	cols map[string]*columnFate
	row  bool // the application's last insert or delete of it
	// existed and created as collapse has them at the window's end.
	existed, created bool
	rowOwn           *change // the first later row write, if the sync's: an insert or delete
	rowSeen          bool
}

// columnFate is what later rows did to one column a window's application
// wrote: its value as last written (nil once deleted), and the first and
// last later writes that changed it (nil: none).
type columnFate struct {
	cur         any
	first, last *change
	since       int // the first of the window's changes that wrote the value
}

// pendingWrites folds a window's changes into what its application changes
// wrote and the window's own writes have not overwritten yet, per entity.
func pendingWrites(changes []change, self string) map[string]*pendingWrite {
	out := map[string]*pendingWrite{}
	for i := range changes {
		c := &changes[i]
		if c.Op == opTruncate {
			continue
		}
		p := out[c.Key]
		if p == nil {
			p = &pendingWrite{cols: map[string]*columnFate{}, existed: c.Op != opInsert}
			out[c.Key] = p
		}
		switch {
		case c.Origin == self:
			p.existed = p.existed || c.Op != opDelete
			if c.Op == opUpdate {
				for col, v := range c.New {
					if f := p.cols[col]; f != nil && !mapping.Equal(v, f.cur) {
						delete(p.cols, col) // overwritten: collapse records it
					}
				}
				break
			}
			clear(p.cols)
			p.row, p.created = false, false
		case c.Op == opUpdate:
			for col, v := range c.New {
				if f := p.cols[col]; f != nil {
					f.cur = v
				} else {
					p.cols[col] = &columnFate{cur: v, since: i}
				}
			}
		default: // an application's insert or delete
			clear(p.cols)
			for col, v := range c.New {
				p.cols[col] = &columnFate{cur: v, since: i}
			}
			p.row, p.created = true, c.Op == opInsert && !p.existed
		}
	}
	for k, p := range out {
		if len(p.cols) == 0 && !p.row {
			delete(out, k)
		}
	}
	return out
}

// withOwnAfter returns side s's window changes (through its last id
// through) with what the rows after it, up to the sync's last own row
// own, say about them (see above).
func (r *syncRun) withOwnAfter(ctx context.Context, s *side, changes []change, through, own int64) ([]change, error) {
	if own <= through {
		return changes, nil
	}
	pending := pendingWrites(changes, r.cfg.ID)
	if len(pending) == 0 {
		return changes, nil
	}
	later, err := r.readLater(ctx, s, pending, through, own)
	if err != nil {
		return nil, err
	}
	r.e.test.readAfter.Add(1)
	return settleLater(changes, pending, later, r.cfg.ID), nil
}

// settleLater returns the window's changes with what the later rows (in
// capture order, of the entities in pending) say about them.
func settleLater(changes []change, pending map[string]*pendingWrite, later []change, self string) []change {
	for i := range later {
		c := &later[i]
		p := pending[c.Key]
		if p == nil {
			continue
		}
		if c.Op != opUpdate && !p.rowSeen {
			p.rowSeen = true
			if p.row && c.Origin == self {
				p.rowOwn = c
			}
		}
		for col, f := range p.cols {
			v, ok := c.New[col]
			switch {
			case c.Op == opUpdate && !ok:
				continue
			case c.Op == opUpdate && c.Origin == self && mapping.Equal(v, f.cur):
				continue // no change to it: no write
			}
			if f.first == nil {
				f.first = c
			}
			f.last, f.cur = c, v
		}
	}
	// The own writes to add, each with the columns it comes first to, in
	// their order; the columns whose value the window does not send on.
	add := map[*change]Values{}
	fix := map[string]Values{} // by key: column, the sync's value there
	for k, p := range pending {
		if p.rowOwn != nil {
			add[p.rowOwn] = nil
		}
		for col, f := range p.cols {
			switch {
			case f.first == nil:
			case f.first.Origin == self:
				addColumn(add, f.first, col)
			case f.last.Origin == self:
				if fix[k] == nil {
					fix[k] = Values{}
				}
				fix[k][col] = f.cur
			}
		}
	}
	if len(fix) > 0 {
		changes = fixColumns(changes, pending, fix, self)
	}
	for i := range later {
		c := &later[i]
		vals, ok := add[c]
		if !ok {
			continue
		}
		if c.Op == opUpdate {
			c.New = vals
		}
		changes = append(changes, *c)
	}
	return changes
}

// addColumn adds column col of own write c to what is added.
func addColumn(add map[*change]Values, c *change, col string) {
	if c.Op != opUpdate {
		add[c] = nil // an insert or delete is added whole
		return
	}
	if add[c] == nil {
		add[c] = Values{}
	}
	add[c][col] = c.New[col]
}

// fixColumns returns changes with the application's writes to the
// columns fix names per key, since the window's last own write that
// changed them, taken out (an update left writing nothing is dropped), or,
// in the insert of a row the window creates, set to the sync's value
// there. Earlier writes stay: an own write in the window overwrote them, a
// conflict it records.
func fixColumns(changes []change, pending map[string]*pendingWrite, fix map[string]Values, self string) []change {
	out := changes[:0:0]
	for i, c := range changes {
		vals := fix[c.Key]
		if vals == nil || c.Origin == self || c.Op == opDelete || c.Op == opTruncate {
			out = append(out, c)
			continue
		}
		p := pending[c.Key]
		c.New, c.Old = maps.Clone(c.New), maps.Clone(c.Old)
		for col, v := range vals {
			if i < p.cols[col].since {
				continue
			}
			if c.Op == opInsert && p.created && v != nil {
				c.New[col] = v // the row to create elsewhere is the row as it is here
				continue
			}
			delete(c.New, col)
			delete(c.Old, col)
		}
		if c.Op != opUpdate || len(c.New) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// readLater reads side s's rows after its window, up to own, that may
// decide the fate of what pending holds: the sync's own writes to those
// entities that write one of its columns (or a whole row), a marker's each
// as the echo the trigger would have captured, then, for the entities
// some of them wrote and up to the last of them, the application's
// changes that do the same, all in capture order. An own write to columns the window's
// application did not write (the other side's fields of a two-sided
// backlog) reads no application row.
func (r *syncRun) readLater(ctx context.Context, s *side, pending map[string]*pendingWrite, through, own int64) ([]change, error) {
	keys := make([]string, 0, len(pending))
	colSet := map[string]bool{}
	for k, p := range pending {
		keys = append(keys, k)
		for col := range p.cols {
			colSet[col] = true
		}
	}
	cols := slices.Sorted(maps.Keys(colSet))
	// A marker's list is the text of a JSON string (earlier versions: an
	// object); its writes are in the order they were made. Its summary
	// (old; none from earlier versions) says whether it may write a column
	// of cols or a whole row, without parsing the list.
	mine, err := r.scanLater(ctx, s, `SELECT c.id, 0 AS n, c.op, c.keys, c.new #>> '{}', c.captured_at, c.origin
		FROM tandem.change_log c JOIN unnest($6::jsonb[]) k(key) ON c.keys = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin = $5 AND c.id > $3 AND c.id <= $4 AND c.op <> 'applied'
		  AND (c.op <> 'update' OR c.new ?| $7)
		UNION ALL
		SELECT c.id, w.n, w.value ->> 'op', w.value -> 'key', (w.value -> 'vals')::text, c.captured_at, c.origin
		FROM tandem.change_log c
		CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(c.new) = 'string' THEN (c.new #>> '{}')::jsonb ELSE c.new END -> 'writes')
			WITH ORDINALITY w(value, n)
		JOIN unnest($6::jsonb[]) k(key) ON w.value -> 'key' = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin = $5 AND c.op = 'applied' AND c.id > $3 AND c.id <= $4
		  AND (c.old IS NULL OR (c.old ->> 'rows')::boolean OR c.old -> 'cols' ?| $7)
		  AND (w.value ->> 'op' <> 'update' OR w.value -> 'vals' ?| $7)
		ORDER BY 1, 2`, s.Node, s.Table, through, own, r.cfg.ID, keys, cols)
	if err != nil || len(mine) == 0 {
		return nil, err
	}
	written := map[string]bool{}
	keys, last := keys[:0], through
	for _, c := range mine {
		if !written[c.Key] {
			written[c.Key] = true
			keys = append(keys, c.Key)
		}
		last = max(last, c.ID)
	}
	theirs, err := r.scanLater(ctx, s, `SELECT c.id, 0, c.op, c.keys, c.new #>> '{}', c.captured_at, coalesce(c.origin, '')
		FROM tandem.change_log c JOIN unnest($6::jsonb[]) k(key) ON c.keys = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin IS DISTINCT FROM $5 AND c.id > $3 AND c.id <= $4
		  AND c.op IN ('insert', 'update', 'delete') AND (c.op <> 'update' OR c.new ?| $7)
		ORDER BY c.id`, s.Node, s.Table, through, last, r.cfg.ID, keys, cols)
	if err != nil {
		return nil, err
	}
	// Both in capture order; an application row and an own one never
	// share an id.
	out := make([]change, 0, len(mine)+len(theirs))
	for len(mine) > 0 || len(theirs) > 0 {
		if len(theirs) == 0 || len(mine) > 0 && mine[0].ID < theirs[0].ID {
			out, mine = append(out, mine[0]), mine[1:]
		} else {
			out, theirs = append(out, theirs[0]), theirs[1:]
		}
	}
	return out, nil
}

// scanLater runs a query of readLater and decodes its rows: id, position
// in a marker, op, key, values (own rows), names of the columns an update
// wrote (application rows), capture time, origin.
func (r *syncRun) scanLater(ctx context.Context, s *side, query string, args ...any) ([]change, error) {
	rows, err := r.e.Control.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("control: reading changes of %s on node %s after the window: %w", s.Table, s.Node, err)
	}
	defer rows.Close()
	var out []change
	for rows.Next() {
		var c change
		var n int64
		var keyB, newB []byte
		if err := rows.Scan(&c.ID, &n, &c.Op, &keyB, &newB, &c.CapturedAt, &c.Origin); err != nil {
			return nil, fmt.Errorf("control: reading changes of %s on node %s after the window: %w", s.Table, s.Node, err)
		}
		if c.KeyVals, c.Key, err = decodeKey(keyB); err != nil {
			return nil, fmt.Errorf("change_log %d: keys: %w", c.ID, err)
		}
		if c.New, err = decodeFlat(newB); err != nil {
			return nil, fmt.Errorf("change_log %d: new: %w", c.ID, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
