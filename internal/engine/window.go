package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// window is the part of each side's change_log a run consumes: ids in
// (From, Through], on the side's node and table.
type window struct {
	RunID                     int64
	SourceFrom, SourceThrough int64
	TargetFrom, TargetThrough int64
	// SourceOwn, TargetOwn: each side's last row of the sync's own when the
	// window was cut. Past Through, the own rows up to it are read for the
	// window's entities (withOwnAfter), not consumed.
	SourceOwn, TargetOwn int64
	Redo                 bool // a run cut off before it finished: same window again
	// Band: each side's last change_log id when its initial sync was done
	// (nil: none); changes up to it may have been read by it (filterSeen).
	Band [2]*int64
	// Seed: the run is a chunk of the initial sync; the change_log windows
	// are empty (they wait until the initial sync is done).
	Seed *seed
}

// bounds returns side s's ids (from, through].
func (w window) bounds(s mapping.Side) (from, through int64) {
	if s == mapping.Target {
		return w.TargetFrom, w.TargetThrough
	}
	return w.SourceFrom, w.SourceThrough
}

// own returns side s's last own row when the window was cut.
func (w window) own(s mapping.Side) int64 {
	if s == mapping.Target {
		return w.TargetOwn
	}
	return w.SourceOwn
}

// full reports whether a side's window took as many changes as a window
// of size may (give or take other nodes' ids among them): more may follow.
func (w window) full(size int) bool {
	return w.SourceThrough-w.SourceFrom >= int64(size)/2 || w.TargetThrough-w.TargetFrom >= int64(size)/2
}

func (w window) empty() bool {
	return w.SourceFrom == w.SourceThrough && w.TargetFrom == w.TargetThrough
}

// planWindow returns the window of the sync's next run. A pending window (a
// run cut off) comes back as it was; otherwise the next window takes at most
// limit changes per side and, when it holds anything (or open errors wait
// for a retry), is recorded as pending with a new run row.
func (r *syncRun) planWindow(ctx context.Context, trigger string, retry bool) (window, error) {
	var w window
	err := pgx.BeginFunc(ctx, r.e.Control, func(tx pgx.Tx) error {
		var pending, ps, pt, pso, pto *int64
		var phase *string
		var after, until, upto []byte
		err := tx.QueryRow(ctx, `SELECT source_through, target_through, pending_run, pending_source_through, pending_target_through,
				pending_source_own, pending_target_own,
				initial_phase, initial_after, initial_until, pending_initial_upto, initial_band_source, initial_band_target
			FROM tandem.sync_state WHERE sync_id = $1 FOR UPDATE`, r.cfg.ID).
			Scan(&w.SourceFrom, &w.TargetFrom, &pending, &ps, &pt, &pso, &pto, &phase, &after, &until, &upto, &w.Band[0], &w.Band[1])
		if errors.Is(err, pgx.ErrNoRows) {
			// A sync's state is made by its initial sync (runLocked begins it).
			return fmt.Errorf("sync %s has no state: its initial sync has not begun", r.cfg.ID)
		}
		if err != nil {
			return err
		}
		if pending != nil {
			w.RunID, w.SourceThrough, w.TargetThrough, w.Redo = *pending, *ps, *pt, true
			// No bound: a window cut by an earlier version, which stretched
			// it to the last own row.
			w.SourceOwn, w.TargetOwn = w.SourceThrough, w.TargetThrough
			if pso != nil && pto != nil {
				w.SourceOwn, w.TargetOwn = *pso, *pto
			}
			if upto != nil && phase == nil {
				w.Seed = &seed{}
				w.Seed.Repair, err = decodeRepair(upto)
				return err
			}
			if upto != nil && phase != nil {
				if w.Seed, err = r.decodeSeed(*phase, after, until); err != nil {
					return err
				}
				w.Seed.Upto, err = decodeJSON(upto)
			}
			return err
		}
		if phase != nil {
			if w.Seed, err = r.planSeed(ctx, tx, *phase, after, until, &w.Band); err != nil {
				return err
			}
		}
		seedTrigger, chunk := "initial", []byte(nil)
		switch {
		case w.Seed != nil:
			chunk = encodeJSON(w.Seed.Upto)
		case r.repair != nil && phase == nil:
			w.Seed, seedTrigger, chunk = &seed{Repair: r.repair}, "repair", encodeRepair(r.repair)
			r.repairPlanned = true
		}
		if w.Seed != nil {
			// A chunk of the initial sync, or a repair: the change_log windows
			// wait; the chunk is recorded, so a run cut off redoes it.
			w.SourceThrough, w.TargetThrough = w.SourceFrom, w.TargetFrom
			w.SourceOwn, w.TargetOwn = w.SourceFrom, w.TargetFrom
			return tx.QueryRow(ctx, `WITH run AS (
					INSERT INTO tandem.sync_runs (sync_id, trigger, source_from, source_through, target_from, target_through)
					VALUES ($1, $5, $2, $2, $3, $3) RETURNING id)
				UPDATE tandem.sync_state SET pending_run = run.id, pending_source_through = $2,
					pending_target_through = $3, pending_source_own = $2, pending_target_own = $3,
					pending_initial_upto = $4, checked_at = now() FROM run WHERE sync_id = $1 RETURNING run.id`,
				r.cfg.ID, w.SourceFrom, w.TargetFrom, chunk, seedTrigger).Scan(&w.RunID)
		}
		if err = r.windowEnds(ctx, tx, &w); err != nil {
			return err
		}
		if w.empty() && !retry {
			_, err := tx.Exec(ctx, `UPDATE tandem.sync_state SET checked_at = now() WHERE sync_id = $1`, r.cfg.ID)
			return err
		}
		return tx.QueryRow(ctx, `WITH run AS (
				INSERT INTO tandem.sync_runs (sync_id, trigger, source_from, source_through, target_from, target_through)
				VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
			UPDATE tandem.sync_state SET pending_run = run.id, pending_source_through = $4,
				pending_target_through = $6, pending_source_own = $7, pending_target_own = $8, checked_at = now()
			FROM run WHERE sync_id = $1 RETURNING run.id`,
			r.cfg.ID, trigger, w.SourceFrom, w.SourceThrough, w.TargetFrom, w.TargetThrough, w.SourceOwn, w.TargetOwn).Scan(&w.RunID)
	})
	if err != nil {
		return w, fmt.Errorf("control: planning run of sync %s: %w", r.cfg.ID, err)
	}
	return w, nil
}

// windowEnds sets where each side of the next window w stops (at most
// the window's size in changes after its start) and each side's last own
// row (the sync's applies), which may come later: with a backlog on a
// side, an apply's marker comes after all of it.
func (r *syncRun) windowEnds(ctx context.Context, tx pgx.Tx, w *window) error {
	return tx.QueryRow(ctx, "SELECT "+windowEndSQL(1, 2, 3, 7)+", "+ownEndSQL(1, 2, 3, 8)+", "+windowEndSQL(4, 5, 6, 7)+", "+ownEndSQL(4, 5, 6, 8),
		r.src.Node, r.src.Table, w.SourceFrom, r.tgt.Node, r.tgt.Table, w.TargetFrom, r.e.windowSize(), r.cfg.ID).
		Scan(&w.SourceThrough, &w.SourceOwn, &w.TargetThrough, &w.TargetOwn)
}

// windowEnd is where a window of side s starting after from stops.
func (r *syncRun) windowEnd(ctx context.Context, s *side, from int64) (end int64, err error) {
	err = r.e.Control.QueryRow(ctx, "SELECT "+windowEndSQL(1, 2, 3, 4), s.Node, s.Table, from, r.e.windowSize()).Scan(&end)
	return end, err
}

// windowEndSQL is the expression of a side's window end, with the numbers
// of its parameters: node, table, from, the window size.
func windowEndSQL(node, table, from, size int) string {
	return fmt.Sprintf(`coalesce((SELECT max(id) FROM (SELECT id FROM tandem.change_log
		  WHERE id > $%[3]d AND node = $%[1]d AND table_name = $%[2]d ORDER BY id LIMIT $%[4]d) w), $%[3]d)`, node, table, from, size)
}

// ownEndSQL is the expression of a side's last own row after from (or
// from), with the numbers of its parameters: node, table, from, the
// sync's id.
func ownEndSQL(node, table, from, id int) string {
	return fmt.Sprintf(`coalesce((SELECT max(id) FROM tandem.change_log
		  WHERE node = $%[1]d AND table_name = $%[2]d AND origin = $%[4]d AND id > $%[3]d), $%[3]d)`, node, table, from, id)
}

// loadChanges reads one side's window from change_log, in capture order.
//
// The sync's own markers stand for echoes, and an echo only matters to an
// entity the window also holds another change of (collapse drops an entity
// whose changes are all echoes). So a marker's writes are expanded only for
// those entities: a catch-up window of nothing but the last window's
// echoes decodes no marker at all.
func (r *syncRun) loadChanges(ctx context.Context, s *side, from, through int64) ([]change, error) {
	rows, err := r.readChanges(ctx, s, from, through)
	if err != nil {
		return nil, err
	}
	return rows.expand()
}

// changeRows is a run of one side's change_log rows, in capture order:
// the changes, and the sync's own markers, each with its place among them.
type changeRows struct {
	changes []change
	markers []markerRow
}

// markerRow is one of the sync's markers, before its writes are expanded.
type markerRow struct {
	at  int // its place in changes
	c   change
	doc []byte
}

// readChanges reads side s's changes in change_log ids (from, through].
func (r *syncRun) readChanges(ctx context.Context, s *side, from, through int64) (changeRows, error) {
	var out changeRows
	if from == through {
		return out, nil
	}
	// new #>> '{}': a row's values as text, or a marker's list, stored as
	// the text of a JSON string (or, by earlier versions, as an object).
	rows, err := r.e.Control.Query(ctx, `SELECT id, op, keys, old, new #>> '{}', captured_at, coalesce(origin, '')
		FROM tandem.change_log WHERE id > $3 AND id <= $4 AND node = $1 AND table_name = $2 ORDER BY id`,
		s.Node, s.Table, from, through)
	if err != nil {
		return out, fmt.Errorf("control: reading changes of %s on node %s: %w", s.Table, s.Node, err)
	}
	defer rows.Close()
	out.changes = make([]change, 0, min(through-from, int64(r.e.windowSize())))
	for rows.Next() {
		var c change
		var keys, oldB, newB []byte
		if err := rows.Scan(&c.ID, &c.Op, &keys, &oldB, &newB, &c.CapturedAt, &c.Origin); err != nil {
			return out, fmt.Errorf("control: reading changes of %s on node %s: %w", s.Table, s.Node, err)
		}
		if c.Op == opApplied {
			if c.Origin == r.cfg.ID { // another sync's marker is skipped: it alone reads this table
				out.markers = append(out.markers, markerRow{len(out.changes), c, newB})
			}
			continue
		}
		if c.KeyVals, c.Key, err = decodeKey(keys); err != nil {
			return out, fmt.Errorf("change_log %d: keys: %w", c.ID, err)
		}
		if c.Old, err = decodeFlat(oldB); err != nil {
			return out, fmt.Errorf("change_log %d: old: %w", c.ID, err)
		}
		if c.New, err = decodeFlat(newB); err != nil {
			return out, fmt.Errorf("change_log %d: new: %w", c.ID, err)
		}
		out.changes = append(out.changes, c)
	}
	return out, rows.Err()
}

// then appends the rows that follow these.
func (c *changeRows) then(more changeRows) {
	for _, m := range more.markers {
		m.at += len(c.changes)
		c.markers = append(c.markers, m)
	}
	c.changes = append(c.changes, more.changes...)
}

// expand returns the changes with each marker's writes to the entities the
// changes hold, in the marker's place.
func (c changeRows) expand() ([]change, error) {
	if len(c.markers) == 0 || len(c.changes) == 0 {
		return c.changes, nil
	}
	wanted := make(map[string]bool, len(c.changes))
	for _, ch := range c.changes {
		wanted[ch.Key] = true
	}
	merged := make([]change, 0, len(c.changes))
	next := 0
	var err error
	for _, m := range c.markers {
		merged = append(merged, c.changes[next:m.at]...)
		next = m.at
		if merged, err = appendMarked(merged, m.c, m.doc, wanted); err != nil {
			return nil, err
		}
	}
	return append(merged, c.changes[next:]...), nil
}

// appendMarked appends the writes an apply's marker lists to entities in
// wanted, each as the echo the trigger would have captured for it.
func appendMarked(out []change, m change, doc []byte, wanted map[string]bool) ([]change, error) {
	ws, err := parseMarkerList(m.ID, doc)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		if !wanted[w.text] {
			continue
		}
		c, err := w.echo(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// lockSync holds the sync's session advisory lock on a dedicated control
// connection while the run lasts: a second daemon (or `conflicts resolve`)
// waits or skips instead of running the same sync at once.
func (e *Engine) lockSync(ctx context.Context, id string, wait time.Duration) (release func(), err error) {
	conn, err := e.Control.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('tandem.sync'), hashtext($1))`, id).Scan(&ok)
		if err != nil {
			conn.Release()
			return nil, fmt.Errorf("control: locking sync %s: %w", id, err)
		}
		if ok {
			return func() {
				// A fresh context: unlocking must happen even when the run's was cancelled.
				uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(hashtext('tandem.sync'), hashtext($1))`, id); err != nil {
					conn.Conn().Close(uctx) // the lock goes with the session
				}
				conn.Release()
			}, nil
		}
		if time.Now().After(deadline) {
			conn.Release()
			return nil, ErrBusy
		}
		select {
		case <-ctx.Done():
			conn.Release()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ErrBusy means another tandem process holds the sync.
var ErrBusy = errors.New("another tandem process is running this sync")
