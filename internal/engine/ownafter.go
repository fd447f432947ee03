package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// A window stops at its size, but an apply of the sync may have written a
// row of the side after the window's application writes to it: with a
// backlog on the side, the apply's marker comes after all of it. So for
// the entities the window's application changes wrote, the rows after the
// window up to the sync's last own row when it was cut (the application's
// and the sync's) are read, and for each column the window holds a value
// of (the application's, or the sync's in a row the window creates),
// taking, as collapse does, an own write of the value a column already
// holds for no write:
//
//   - an own write that comes first to a column holding the application's
//     value overwrote it: it is added to the window's changes, after them,
//     as the echo it is, exactly as if the window held it (a conflict the
//     apply won; the value is not sent on);
//   - when the last write to the column there is an own one, the side
//     holds the sync's value: it is added too, quietly (collapse records
//     no loss for it): the window does not send its own value on, and a
//     row it creates takes the sync's. If the application wrote the column
//     in between, the window holding that write records its loss.
//
// The same goes for the row: the window's insert or delete followed first
// by an own insert or delete is overwritten; followed last by one, it is
// no longer what the side holds. Nothing after the window is consumed:
// each row there is read again by the window that holds it.

// pendingWrite is what one entity's changes in a window leave that later
// rows may overwrite: columns, and the row itself if the application
// inserted or deleted it last.
type pendingWrite struct {
	cols map[string]*columnFate
	row  bool
	// existed and created as collapse has them at the window's end.
	existed, created  bool
	rowFirst, rowLast *change // the first and last later inserts or deletes
}

// columnFate is one column's value at the window's end (cur, app: the
// application's, or else the sync's) and what later rows did to it: the
// first and last writes that changed it (nil: none), and cur after them.
type columnFate struct {
	cur         any
	app         bool
	first, last *change
}

// pendingWrites folds a window's changes into what later rows may
// overwrite, per entity.
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
		case c.Origin == self && c.Op == opUpdate:
			p.existed = true
			for col, v := range c.New {
				f := p.cols[col]
				switch {
				case f == nil || mapping.Equal(v, f.cur):
				case p.created: // the row to create elsewhere is the row as it is here
					f.cur, f.app = v, false
				default: // overwritten: collapse records it
					delete(p.cols, col)
				}
			}
		case c.Origin == self:
			p.existed = p.existed || c.Op != opDelete
			clear(p.cols)
			p.row, p.created = false, false
		case c.Op == opUpdate:
			for col, v := range c.New {
				p.cols[col] = &columnFate{cur: v, app: true}
			}
		default: // an application's insert or delete
			clear(p.cols)
			for col, v := range c.New {
				p.cols[col] = &columnFate{cur: v, app: true}
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
	// Markers this window ends past are not read after a window again.
	r.e.markers.drop(s.Node, s.Table, r.cfg.ID, through)
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

// echoAdded is what of one own write after the window is added: of an
// update, the columns whose loss it records and the columns it sets
// quietly; an insert or delete is added whole, quietly unless it
// overwrote something of the window's.
type echoAdded struct {
	loud, quiet Values
	// An insert or delete comes first to the window's row itself
	// (wholeRow), or to loudCols of it; neither: it is added quietly.
	wholeRow bool
	loudCols map[string]bool
}

// settleLater returns the window's changes followed by the own writes of
// later (in capture order, of the entities in pending) that say what
// became of them.
func settleLater(changes []change, pending map[string]*pendingWrite, later []change, self string) []change {
	for i := range later {
		c := &later[i]
		p := pending[c.Key]
		if p == nil {
			continue
		}
		if c.Op != opUpdate {
			if p.rowFirst == nil {
				p.rowFirst = c
			}
			p.rowLast = c
		}
		for col, f := range p.cols {
			v, ok := c.New[col]
			if c.Op == opUpdate && (!ok || c.Origin == self && mapping.Equal(v, f.cur)) {
				continue // not written, or not changed: no write
			}
			if f.first == nil {
				f.first = c
			}
			f.last, f.cur = c, v
		}
	}
	added := map[*change]*echoAdded{}
	add := func(c *change, col string, loud bool) {
		a := added[c]
		if a == nil {
			a = &echoAdded{}
			added[c] = a
		}
		switch {
		case c.Op != opUpdate && loud && col == "":
			a.wholeRow = true
		case c.Op != opUpdate && loud:
			if a.loudCols == nil {
				a.loudCols = map[string]bool{}
			}
			a.loudCols[col] = true
		case c.Op != opUpdate:
		case loud:
			if a.loud == nil {
				a.loud = Values{}
			}
			a.loud[col] = c.New[col]
		default:
			if a.quiet == nil {
				a.quiet = Values{}
			}
			a.quiet[col] = c.New[col]
		}
	}
	for _, p := range pending {
		for col, f := range p.cols {
			loud := f.first != nil && f.first.Origin == self && f.app
			if loud {
				add(f.first, col, true)
			}
			if f.last != nil && f.last.Origin == self && (!loud || f.last != f.first) {
				add(f.last, col, false)
			}
		}
		switch {
		case !p.row || p.rowFirst == nil:
		case p.rowFirst.Origin == self:
			add(p.rowFirst, "", true)
		case p.rowLast.Origin == self:
			add(p.rowLast, "", false)
		}
	}
	for i := range later {
		c := later[i]
		a := added[&later[i]]
		switch {
		case a == nil:
		case c.Op != opUpdate:
			c.Quiet = !a.wholeRow && a.loudCols == nil
			if !a.wholeRow && a.loudCols != nil {
				c.LostOnly = slices.Sorted(maps.Keys(a.loudCols))
			}
			changes = append(changes, c)
		default:
			if a.loud != nil {
				c.New = a.loud
				changes = append(changes, c)
			}
			if a.quiet != nil {
				c.New, c.Quiet = a.quiet, true
				changes = append(changes, c)
			}
		}
	}
	return changes
}

// readLater reads side s's rows after its window, up to own, that may
// decide the fate of what pending holds: the sync's own writes to those
// entities that write one of its columns (or a whole row), a marker's each
// as the echo the trigger would have captured, then, for the entities
// some of them wrote and up to the last of them, the application's
// changes that do the same, all in capture order. An own write to columns
// the window's application did not write (the other side's fields of a
// two-sided backlog) reads no application row.
func (r *syncRun) readLater(ctx context.Context, s *side, pending map[string]*pendingWrite, through, own int64) (later []change, err error) {
	// One snapshot: the markers listed are the markers read.
	err = pgx.BeginTxFunc(ctx, r.e.Control, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		later, err = r.readLaterIn(ctx, tx, s, pending, through, own)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("control: reading changes of %s on node %s after the window: %w", s.Table, s.Node, err)
	}
	return later, nil
}

// readLaterIn is readLater in transaction q.
func (r *syncRun) readLaterIn(ctx context.Context, q pgx.Tx, s *side, pending map[string]*pendingWrite, through, own int64) ([]change, error) {
	keys := make([]string, 0, len(pending))
	colSet := map[string]bool{}
	for k, p := range pending {
		keys = append(keys, k)
		for col := range p.cols {
			colSet[col] = true
		}
	}
	cols := slices.Sorted(maps.Keys(colSet))
	perRow, err := scanLater(ctx, q, `SELECT c.id, 0, c.op, c.keys, c.new #>> '{}', c.captured_at, c.origin
		FROM tandem.change_log c JOIN unnest($6::jsonb[]) k(key) ON c.keys = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin = $5 AND c.id > $3 AND c.id <= $4 AND c.op <> 'applied'
		  AND (c.op <> 'update' OR c.new ?| $7)
		ORDER BY c.id`, s.Node, s.Table, through, own, r.cfg.ID, keys, cols)
	if err != nil {
		return nil, err
	}
	marked, err := r.markedLater(ctx, q, s, keys, cols, through, own)
	if err != nil {
		return nil, err
	}
	mine := append(perRow, marked...)
	if len(mine) == 0 {
		return nil, nil
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
	// This query joins the entities' keys to a range of change_log ids: as
	// a nested loop, which the planner's estimate of the keys' unnest may
	// pick, a scan of the range per key (7 s a window, with a backlog of
	// 400,000). A hash join reads the range once.
	if _, err := q.Exec(ctx, "SET LOCAL enable_nestloop = off"); err != nil {
		return nil, err
	}
	theirs, err := scanLater(ctx, q, `SELECT c.id, 0, c.op, c.keys, c.new #>> '{}', c.captured_at, coalesce(c.origin, '')
		FROM tandem.change_log c JOIN unnest($6::jsonb[]) k(key) ON c.keys = k.key
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin IS DISTINCT FROM $5 AND c.id > $3 AND c.id <= $4
		  AND c.op IN ('insert', 'update', 'delete') AND (c.op <> 'update' OR c.new ?| $7)
		ORDER BY c.id`, s.Node, s.Table, through, last, r.cfg.ID, keys, cols)
	if err != nil {
		return nil, err
	}
	// In capture order: no two rows share an id but a marker's writes,
	// which come in their order.
	out := append(mine, theirs...)
	slices.SortStableFunc(out, func(a, b change) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// scanLater runs a query of readLater and decodes its rows: id, position
// in a marker, op, key, values, capture time, origin.
func scanLater(ctx context.Context, q pgx.Tx, query string, args ...any) ([]change, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []change
	for rows.Next() {
		var c change
		var n int64
		var keyB, newB []byte
		if err := rows.Scan(&c.ID, &n, &c.Op, &keyB, &newB, &c.CapturedAt, &c.Origin); err != nil {
			return nil, err
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
