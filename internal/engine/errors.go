package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// maxRetries bounds the open errors one run retries.
const maxRetries = 1000

// openWork reports whether the sync has failed writes to retry (then a
// run is due even with no new change) and open conflicts (then entities of
// the window may be held). One control round trip.
func (r *syncRun) openWork(ctx context.Context) (errors, conflicts bool, err error) {
	err = r.e.Control.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tandem.sync_errors
		WHERE sync_id = $1 AND resolved_at IS NULL AND change IS NOT NULL),
		EXISTS (SELECT 1 FROM tandem.sync_conflicts WHERE sync_id = $1 AND status = 'open')`, r.cfg.ID).Scan(&errors, &conflicts)
	if err != nil {
		return false, false, fmt.Errorf("control: reading errors and conflicts of sync %s: %w", r.cfg.ID, err)
	}
	return errors, conflicts, nil
}

// retryErrors adds the writes of open errors to the plan, unless a newer
// write of the same row replaces them.
func (r *syncRun) retryErrors(ctx context.Context, p *plan) error {
	rows, err := r.e.Control.Query(ctx, `SELECT id, side, change FROM tandem.sync_errors
		WHERE sync_id = $1 AND resolved_at IS NULL AND change IS NOT NULL ORDER BY id LIMIT $2`, r.cfg.ID, maxRetries)
	if err != nil {
		return fmt.Errorf("control: reading errors of sync %s: %w", r.cfg.ID, err)
	}
	type open struct {
		id   int64
		side string
		w    write
	}
	var opens []open
	for rows.Next() {
		var o open
		var b []byte
		if err := rows.Scan(&o.id, &o.side, &b); err != nil {
			rows.Close()
			return err
		}
		v, err := decodeJSON(b)
		if err != nil {
			rows.Close()
			return err
		}
		o.w = writeFromJSON(v)
		opens = append(opens, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, o := range opens {
		s := mapping.Source
		if o.side == "target" {
			s = mapping.Target
		}
		superseded := false
		for _, w := range p.writes[s] {
			if w.Ref == o.w.Ref {
				w.errorID, superseded = o.id, true // the new write settles the old error either way
			}
		}
		if !superseded {
			w := o.w
			w.errorID = o.id
			p.writes[s] = append(p.writes[s], &w)
		}
	}
	return nil
}

func writeFromJSON(v Values) write {
	w := write{}
	w.Kind, _ = v["kind"].(string)
	w.Ref, _ = v["ref"].(string)
	w.Key, _ = v["key"].(map[string]any)
	w.Vals, _ = v["vals"].(map[string]any)
	return w
}

// errorRows collects the run's errors: mapping failures and rows a node
// rejected. A retried write that fails again updates its row (ID set).
func (r *syncRun) errorRows(p *plan, results [2]*applyResult) []*errorRow {
	out := append([]*errorRow(nil), p.errors...)
	for s, ar := range results {
		if len(ar.Failed) == 0 {
			continue
		}
		byRef := make(map[string]*write, len(p.writes[s]))
		for _, w := range p.writes[s] {
			byRef[w.Ref] = w
		}
		for _, f := range ar.Failed {
			w := byRef[f.Ref]
			e := &errorRow{Side: mapping.Side(s), Write: w, SQLState: f.SQLState, Constraint: f.Constraint,
				Reason: fmt.Sprintf("node %s rejected the %s of a row of %s: %s", r.sides()[s].Node, w.Kind, r.sides()[s].Table, f.Reason)}
			if f.Constraint != "" {
				e.Reason += fmt.Sprintf(" (constraint %s)", f.Constraint)
			}
			if w != nil {
				e.ID = w.errorID
				e.Keys, _ = decodeJSON([]byte(strings.TrimPrefix(w.Ref, insertRefPrefix)))
			}
			out = append(out, e)
		}
	}
	return out
}

// saveErrors writes new errors, updates retried ones that failed again,
// and resolves errors whose write (or a newer one for the same row) applied.
func (r *syncRun) saveErrors(ctx context.Context, tx pgx.Tx, runID int64, errs []*errorRow, done map[string]bool) error {
	for _, e := range errs {
		s := r.sides()[e.Side]
		var change any
		if e.Write != nil {
			change = string(encodeJSON(e.Write))
		}
		var err error
		if e.ID != 0 {
			// run_id stays the run that first failed: a retry that changes
			// nothing else is not a run and its row goes away.
			_, err = tx.Exec(ctx, `UPDATE tandem.sync_errors SET reason = $2, sqlstate = $3, constraint_name = $4
				WHERE id = $1`, e.ID, e.Reason, nilIfEmpty(e.SQLState), nilIfEmpty(e.Constraint))
		} else {
			_, err = tx.Exec(ctx, `INSERT INTO tandem.sync_errors (sync_id, run_id, node, table_name, side, keys, change, reason, sqlstate, constraint_name)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				r.cfg.ID, runID, s.Node, s.Table, e.Side.String(), jsonOrNil(e.Keys), change, e.Reason,
				nilIfEmpty(e.SQLState), nilIfEmpty(e.Constraint))
		}
		if err != nil {
			return fmt.Errorf("recording an error: %w", err)
		}
	}
	var settled []int64
	if len(done) == 0 {
		return nil
	}
	// Resolve open errors whose ref applied now, on the same side.
	// A write error names its write's ref; a mapping error (no write) the
	// key of the entity on the side it came from.
	rows, err := tx.Query(ctx, `SELECT id, side, CASE WHEN change IS NOT NULL THEN change ->> 'ref' ELSE 'key ' || keys::text END
		FROM tandem.sync_errors WHERE sync_id = $1 AND resolved_at IS NULL AND (change IS NOT NULL OR keys IS NOT NULL)`, r.cfg.ID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id int64
		var side, ref string
		if err := rows.Scan(&id, &side, &ref); err != nil {
			rows.Close()
			return err
		}
		if k, ok := strings.CutPrefix(ref, "key "); ok {
			if v, err := decodeJSON([]byte(k)); err == nil {
				ref = "key " + canonicalKey(v)
			}
		}
		if done[side+" "+ref] {
			settled = append(settled, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(settled) > 0 {
		_, err = tx.Exec(ctx, `UPDATE tandem.sync_errors SET resolved_at = $2 WHERE id = ANY ($1)`, settled, time.Now())
	}
	return err
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// fail records a failed run. The window stays pending: the next run redoes it.
func (r *syncRun) fail(runID int64, start time.Time, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.e.Control.Exec(ctx, `WITH s AS (UPDATE tandem.sync_state SET last_error = $3 WHERE sync_id = $2)
		UPDATE tandem.sync_runs SET status = 'failed', error = $3, completed_at = clock_timestamp(), duration_ms = $4
		WHERE id = $1`, runID, r.cfg.ID, cause.Error(), time.Since(start).Milliseconds())
	if err != nil {
		r.e.logger().Error("recording failed run", "sync", r.cfg.ID, "run_id", runID, "err", err)
	}
}
