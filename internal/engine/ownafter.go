package engine

import (
	"context"
	"fmt"
	"maps"
)

// A window stops at its size, but an apply of the sync may have written a
// row of the side after the window's application writes to it: with a
// backlog on the side, the apply's marker comes after all of it. So for
// the entities the window's application changes wrote, the rows after the
// window up to the sync's last own row when it was cut (the application's
// and the sync's) are read, and for each column the window's application
// wrote (and its own writes did not overwrite):
//
//   - an own write that comes first to it overwrote it: that write is added
//     to the window's changes, after them, as the echo it is, exactly as if
//     the window held it (a conflict the apply won; not sent on);
//   - if the application wrote it again first, its later write is the one
//     an own write may have overwritten, and the window that holds that
//     write records it; but if the last write to the column there is an
//     own one, the side holds the sync's value, not the window's: the
//     window does not send its value on (a created row takes the sync's).
//
// Nothing after the window is consumed: each row there is read again by
// the window that holds it.

// pendingWrite is what the window's application changes wrote to one
// entity and the window's own writes did not overwrite: columns, and
// whether the row itself was created or deleted.
type pendingWrite struct {
	cols    map[string]*columnFate
	row     bool
	created bool
	rowOwn  *change // the first later row write, if the sync's: an insert or delete
	rowSeen bool
}

// columnFate is what later rows did to one column a window's application
// wrote.
type columnFate struct {
	first, last *change // the first and last later writes to it (nil: none)
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
			p = &pendingWrite{cols: map[string]*columnFate{}}
			out[c.Key] = p
		}
		switch {
		case c.Origin == self && c.Op == opUpdate:
			for col := range c.New {
				delete(p.cols, col)
			}
		case c.Origin == self:
			clear(p.cols)
			p.row, p.created = false, false
		case c.Op == opUpdate:
			for col := range c.New {
				p.cols[col] = &columnFate{}
			}
		default: // an application's insert or delete
			clear(p.cols)
			for col := range c.New {
				p.cols[col] = &columnFate{}
			}
			p.row, p.created = true, c.Op == opInsert
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
	keys := make([]string, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	later, err := r.readLater(ctx, s, keys, through, own)
	if err != nil {
		return nil, err
	}
	r.e.test.readAfter.Add(1)
	for i := range later {
		c := &later[i]
		p := pending[c.Key]
		if p == nil {
			continue
		}
		if c.Op != opUpdate && !p.rowSeen {
			p.rowSeen = true
			if p.row && c.Origin == r.cfg.ID {
				p.rowOwn = c
			}
		}
		for col, f := range p.cols {
			if _, ok := c.New[col]; ok || c.Op != opUpdate {
				if f.first == nil {
					f.first = c
				}
				f.last = c
			}
		}
	}
	// The own writes to add, each with the columns it comes first to (or
	// last to, for a row created), in their order.
	add := map[*change]Values{}
	drop := map[string][]string{} // key: columns the window does not send on
	for k, p := range pending {
		if p.rowOwn != nil {
			add[p.rowOwn] = nil
		}
		for col, f := range p.cols {
			switch {
			case f.first == nil:
			case f.first.Origin == r.cfg.ID:
				addColumn(add, f.first, col)
			case f.last.Origin != r.cfg.ID:
			case p.created:
				addColumn(add, f.last, col)
			default:
				drop[k] = append(drop[k], col)
			}
		}
	}
	if len(drop) > 0 {
		changes = dropColumns(changes, drop, r.cfg.ID)
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
	return changes, nil
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

// dropColumns returns changes without the application's updates to the
// columns drop names per key after the window's last own write to them
// (an update left writing nothing is dropped). Earlier updates stay: an
// own write in the window overwrote them, a conflict it records.
func dropColumns(changes []change, drop map[string][]string, self string) []change {
	active := make(map[string]map[string]bool, len(drop))
	for k, cols := range drop {
		active[k] = make(map[string]bool, len(cols))
		for _, col := range cols {
			active[k][col] = true
		}
	}
	keep := make([]bool, len(changes))
	for i := len(changes) - 1; i >= 0; i-- {
		c := &changes[i]
		keep[i] = true
		cols := active[c.Key]
		if len(cols) == 0 {
			continue
		}
		switch {
		case c.Origin == self && c.Op == opUpdate:
			for col := range c.New {
				delete(cols, col)
			}
		case c.Op != opUpdate: // an own insert or delete, or the application's
			clear(cols)
		default:
			c.New, c.Old = maps.Clone(c.New), maps.Clone(c.Old)
			for col := range cols {
				delete(c.New, col)
				delete(c.Old, col)
			}
			keep[i] = len(c.New) > 0
		}
	}
	out := changes[:0:0]
	for i, c := range changes {
		if keep[i] {
			out = append(out, c)
		}
	}
	return out
}

// readLater reads side s's changes of the entities keys (key texts) in
// change_log ids (through, own], in order: the application's (with only
// the names of the columns an update wrote) and the sync's own, a
// marker's writes to those entities each as the echo the trigger would
// have captured.
func (r *syncRun) readLater(ctx context.Context, s *side, keys []string, through, own int64) ([]change, error) {
	// A marker's list is the text of a JSON string (earlier versions: an
	// object); its writes are in the order they were made.
	rows, err := r.e.Control.Query(ctx, `SELECT c.id, 0 AS n, c.op, c.keys,
			CASE WHEN c.origin = $5 THEN c.new #>> '{}' END,
			CASE WHEN c.origin IS DISTINCT FROM $5 AND c.op = 'update' THEN ARRAY(SELECT jsonb_object_keys(c.new)) END,
			c.captured_at, coalesce(c.origin, '')
		FROM tandem.change_log c JOIN unnest($6::jsonb[]) k(key) ON c.keys = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.id > $3 AND c.id <= $4 AND c.op <> 'applied'
		UNION ALL
		SELECT c.id, w.n, w.value ->> 'op', w.value -> 'key', (w.value -> 'vals')::text, NULL, c.captured_at, c.origin
		FROM tandem.change_log c
		CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(c.new) = 'string' THEN (c.new #>> '{}')::jsonb ELSE c.new END -> 'writes')
			WITH ORDINALITY w(value, n)
		JOIN unnest($6::jsonb[]) k(key) ON w.value -> 'key' = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin = $5 AND c.op = 'applied' AND c.id > $3 AND c.id <= $4
		ORDER BY 1, 2`, s.Node, s.Table, through, own, r.cfg.ID, keys)
	if err != nil {
		return nil, fmt.Errorf("control: reading changes of %s on node %s after the window: %w", s.Table, s.Node, err)
	}
	defer rows.Close()
	var out []change
	for rows.Next() {
		var c change
		var n int64
		var keyB, newB []byte
		var cols []string
		if err := rows.Scan(&c.ID, &n, &c.Op, &keyB, &newB, &cols, &c.CapturedAt, &c.Origin); err != nil {
			return nil, fmt.Errorf("control: reading changes of %s on node %s after the window: %w", s.Table, s.Node, err)
		}
		if c.KeyVals, c.Key, err = decodeKey(keyB); err != nil {
			return nil, fmt.Errorf("change_log %d: keys: %w", c.ID, err)
		}
		if c.Origin == r.cfg.ID {
			if c.New, err = decodeFlat(newB); err != nil {
				return nil, fmt.Errorf("change_log %d: new: %w", c.ID, err)
			}
		} else if cols != nil {
			c.New = make(Values, len(cols))
			for _, col := range cols {
				c.New[col] = nil // only the names matter
			}
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
