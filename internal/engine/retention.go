package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/config"
)

// DefaultPruneBatch is how many change_log rows one prune statement
// deletes: many short transactions, never one long one beside the runs'
// own writes.
const DefaultPruneBatch = 10000

// PruneResult says what PruneChangeLog did.
type PruneResult struct {
	Deleted int64
	// Strangers are syncs that have state in the control database but are
	// not in the config. Their tables are unknown here, so no change after
	// the oldest of their cursors is deleted, on any table.
	Strangers []string
}

// PruneChangeLog deletes the changes in tandem.change_log that were taken
// longer than the config's change_log_retention ago and that every sync
// reading their table has dealt with (at or before its cursor on that
// side). A change some sync has still to take, or that a pending run's
// window holds, is never deleted; nor is any change while the retention
// is 0. It deletes in batches of PruneBatch until none is left or ctx ends.
func (e *Engine) PruneChangeLog(ctx context.Context) (PruneResult, error) {
	var res PruneResult
	keep := e.Config.ChangeLogRetention
	if keep <= 0 {
		return res, nil
	}
	// Never nil: pgx sends a nil slice as NULL, and "<> ALL (NULL)" would
	// find no sync at all, pinning nothing.
	ids, nodes, tables, source := []string{}, []string{}, []string{}, []bool{}
	for _, s := range e.Config.Syncs {
		for i, end := range [2]config.Endpoint{s.Source, s.Target} {
			ids, nodes, tables = append(ids, s.ID), append(nodes, end.Node), append(tables, end.Qualified())
			source = append(source, i == 0)
		}
	}
	// Strangers: the syncs with state the config does not name; no change
	// after the oldest of their cursors goes.
	strangers := int64(math.MaxInt64)
	rows, err := e.Control.Query(ctx, `SELECT sync_id, least(source_through, target_through) FROM tandem.sync_state
		WHERE sync_id <> ALL ($1::text[]) ORDER BY sync_id`, ids)
	if err != nil {
		return res, fmt.Errorf("control: reading the syncs' state: %w", err)
	}
	var id string
	var through int64
	_, err = pgx.ForEachRow(rows, []any{&id, &through}, func() error {
		res.Strangers = append(res.Strangers, id)
		strangers = min(strangers, through+1)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("control: reading the syncs' state: %w", err)
	}
	// The bounds, read once: cursors only move on, so they stay safe.
	// pins: per table read by a sync with state, the least of its readers'
	// cursors (a sync with no state yet starts after the changes logged
	// when it does). before: the cut-off, on the control database's clock,
	// which wrote logged_at.
	var pins struct {
		Nodes, Tables []string
		Through       []int64
	}
	var before time.Time
	err = e.Control.QueryRow(ctx, `WITH pin AS (
			SELECT r.node, r.table_name, min(CASE WHEN r.source THEN s.source_through ELSE s.target_through END) AS through
			FROM unnest($1::text[], $2::text[], $3::text[], $4::boolean[]) r(sync_id, node, table_name, source)
			JOIN tandem.sync_state s ON s.sync_id = r.sync_id
			GROUP BY r.node, r.table_name)
		SELECT coalesce(array_agg(node), '{}'), coalesce(array_agg(table_name), '{}'), coalesce(array_agg(through), '{}'),
			`+retentionCutoff(5)+`
		FROM pin`, ids, nodes, tables, source, keep.Seconds()).Scan(&pins.Nodes, &pins.Tables, &pins.Through, &before)
	if err != nil {
		return res, fmt.Errorf("control: reading how far the syncs have taken tandem.change_log: %w", err)
	}
	below, err := e.firstLoggedSince(ctx, before)
	if err != nil {
		return res, err
	}
	below = min(below, strangers)
	// Each batch walks on from the last change the one before deleted; the
	// changes it passed over are left to the next prune.
	batch := int64(DefaultPruneBatch)
	if e.PruneBatch > 0 {
		batch = int64(e.PruneBatch)
	}
	var after int64
	for ctx.Err() == nil {
		var n int64
		var last *int64
		err := e.Control.QueryRow(ctx, `WITH gone AS (
				DELETE FROM tandem.change_log WHERE id = ANY (ARRAY(
					SELECT l.id FROM tandem.change_log l
					LEFT JOIN unnest($1::text[], $2::text[], $3::bigint[]) p(node, table_name, through)
						ON p.node = l.node AND p.table_name = l.table_name
					WHERE l.id > $4 AND l.id < $5 AND l.logged_at < $6 AND (p.through IS NULL OR l.id <= p.through)
					ORDER BY l.id LIMIT $7))
				RETURNING id)
			SELECT count(*), max(id) FROM gone`,
			pins.Nodes, pins.Tables, pins.Through, after, below, before, batch).Scan(&n, &last)
		if err != nil {
			return res, fmt.Errorf("control: pruning tandem.change_log: %w", err)
		}
		res.Deleted += n
		if n < batch {
			break
		}
		after = *last
	}
	return res, ctx.Err()
}

// DefaultPruneEvery is how often the daemon prunes tandem.change_log.
const DefaultPruneEvery = 10 * time.Minute

// PruneAndLog runs PruneChangeLog and logs what it did, warning about the
// syncs not in the config that keep changes from being pruned.
func (e *Engine) PruneAndLog(ctx context.Context) error {
	res, err := e.PruneChangeLog(ctx)
	log := e.logger()
	if err != nil {
		return err
	}
	if res.Deleted > 0 {
		log.Info("pruned tandem.change_log", "deleted", res.Deleted, "retention", e.Config.ChangeLogRetention)
	}
	if len(res.Strangers) > 0 {
		log.Warn("syncs in tandem.sync_state are not in the config: no change after their cursors is pruned; "+
			"if they are gone for good, delete their rows from tandem.sync_state", "syncs", strings.Join(res.Strangers, ", "))
	}
	return nil
}

// prune runs PruneAndLog now and then every PruneEvery until ctx ends.
func (d *Daemon) prune(ctx context.Context) {
	if d.Engine.Config.ChangeLogRetention <= 0 {
		return
	}
	tick := time.NewTicker(cmp.Or(d.PruneEvery, DefaultPruneEvery))
	defer tick.Stop()
	for {
		if err := d.Engine.PruneAndLog(ctx); err != nil && ctx.Err() == nil {
			d.Engine.logger().Error("pruning tandem.change_log failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// firstLoggedSince returns the id of the first change in change_log taken
// at or after t (or one past the last change), found by bisecting ids: a
// walk would read every change kept from before t. logged_at follows id
// give or take a commit, so the id found is where older changes end, give
// or take as much; the changes around it are left to a later prune.
func (e *Engine) firstLoggedSince(ctx context.Context, t time.Time) (int64, error) {
	var lo, hi *int64
	if err := e.Control.QueryRow(ctx, `SELECT min(id), max(id) FROM tandem.change_log`).Scan(&lo, &hi); err != nil {
		return 0, fmt.Errorf("control: reading tandem.change_log: %w", err)
	}
	if lo == nil {
		return 0, nil
	}
	low, high := *lo, *hi+1 // the answer is in [low, high]
	for low < high {
		mid := low + (high-low)/2
		var id int64
		var at time.Time
		err := e.Control.QueryRow(ctx, `SELECT id, logged_at FROM tandem.change_log WHERE id >= $1 ORDER BY id LIMIT 1`, mid).Scan(&id, &at)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && id >= high): // none in [mid, high)
			high = mid
		case err != nil:
			return 0, fmt.Errorf("control: reading tandem.change_log: %w", err)
		case at.Before(t):
			low = id + 1
		default:
			high = id
		}
	}
	return low, nil
}

// retentionCutoff is the SQL of change_log_retention's cut-off on the
// control database's clock (which writes logged_at), the retention in
// seconds being float8 parameter n: changes logged before it are past
// the retention.
func retentionCutoff(n int) string {
	return fmt.Sprintf("now() - make_interval(secs => $%d::float8)", n)
}
