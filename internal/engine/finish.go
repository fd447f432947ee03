package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// finish records a run in one control transaction: links, conflicts and
// errors, the advanced cursors, and the run row. Until it commits, the
// window stays pending and a restart redoes it. gate, when set, is called
// last in the transaction, which commits only if it returns nil.
func (r *syncRun) finish(ctx context.Context, w window, p *plan, results [2]*applyResult, res Result, gate func() error) (Result, error) {
	links, unlinks, done := r.outcomes(p, results)
	r.relinked = relinked(links, unlinks)
	for s, ar := range results {
		res.Created += ar.Inserted
		res.Updated += ar.Updated
		res.Deleted += ar.Deleted
		r.missingConflicts(p, mapping.Side(s), ar)
	}
	newErrors := r.errorRows(p, results)
	res.Conflicts = len(p.conflicts)
	res.Held = len(p.holds)
	for _, e := range newErrors {
		if e.ID == 0 {
			res.Errors++
		}
	}
	err := pgx.BeginFunc(ctx, r.e.Control, func(tx pgx.Tx) error {
		seen := p.seen
		if w.Redo {
			// Redone: its apply may have written what an earlier read saw,
			// so the reads of this attempt say nothing about it.
			seen = [2]string{}
		}
		if err := r.saveLinks(ctx, tx, links, unlinks, seen); err != nil {
			return err
		}
		if err := r.saveSeen(ctx, tx, p.compared, seen); err != nil {
			return err
		}
		if err := r.saveConflicts(ctx, tx, w.RunID, p); err != nil {
			return err
		}
		if err := r.saveErrors(ctx, tx, w.RunID, newErrors, done); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tandem.sync_state SET source_through = $2, target_through = $3,
			pending_run = NULL, pending_source_through = NULL, pending_target_through = NULL,
			pending_source_own = NULL, pending_target_own = NULL, last_error = NULL,
			initial_after = CASE WHEN initial_phase IS NULL THEN initial_after ELSE coalesce(pending_initial_upto, initial_after) END,
			initial_done = initial_done + $4,
			pending_initial_upto = NULL
			WHERE sync_id = $1`, r.cfg.ID, w.SourceThrough, w.TargetThrough, p.seeded); err != nil {
			return err
		}
		if res.Synced()+res.Conflicts+res.Errors == 0 {
			// Only echoes or no-ops: an idle check, not a run.
			if _, err := tx.Exec(ctx, `DELETE FROM tandem.sync_runs WHERE id = $1`, w.RunID); err != nil {
				return err
			}
		} else if _, err := tx.Exec(ctx, `UPDATE tandem.sync_runs SET status = 'succeeded', synced = $2, created = $3, updated = $4,
			deleted = $5, conflicts = $6, errors = $7, completed_at = clock_timestamp(), error = NULL,
			duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::int
			WHERE id = $1`, w.RunID, res.Synced(), res.Created, res.Updated, res.Deleted, res.Conflicts, res.Errors); err != nil {
			return err
		}
		if gate != nil {
			return gate()
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("control: recording run: %w", err)
	}
	if res.Synced()+res.Conflicts+res.Errors == 0 {
		res.Idle = true
	}
	return res, nil
}

// earlyRecord is a window's record written while its last apply commits:
// from the result the apply reported before its commit (applyBulk's
// known), in a control transaction that commits only once the node's has,
// with that same result. Otherwise it rolls back and the window is
// recorded after the apply, as ever: control never holds a record of
// writes a node has not committed.
type earlyRecord struct {
	results [2]*applyResult
	applied chan bool // the verdict: the apply committed with results
	passed  bool      // the verdict was yes: the transaction went on to commit
	done    chan struct{}
	cancel  context.CancelFunc
	res     Result
	err     error
}

// errNotApplied rolls back an early record whose apply did not commit
// what it was written from.
var errNotApplied = errors.New("the apply did not commit the result the record was written from")

// recordEarly starts recording the window from results.
func (r *syncRun) recordEarly(ctx context.Context, w window, p *plan, results [2]*applyResult, res Result) *earlyRecord {
	ctx, cancel := context.WithCancel(ctx)
	e := &earlyRecord{results: results, applied: make(chan bool, 1), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(e.done)
		e.res, e.err = r.finish(ctx, w, p, results, res, func() error {
			if e.passed = <-e.applied; e.passed {
				return nil
			}
			return errNotApplied
		})
		if e.err == nil {
			r.e.test.earlyRecords.Add(1)
		}
	}()
	return e
}

// settle gives the record its verdict (whether the apply committed with
// the results it was written from) and waits for it to end: ok when it
// committed. A no cuts its statements short. err is set when the verdict
// was yes and the commit failed: it may have committed or not, so the
// window is not recorded again (the next run redoes it if it is pending).
func (e *earlyRecord) settle(applied bool) (res Result, ok bool, err error) {
	if e == nil {
		return res, false, nil
	}
	e.applied <- applied
	if !applied {
		e.cancel()
	}
	<-e.done
	e.cancel()
	if e.passed && e.err != nil {
		return e.res, false, e.err
	}
	return e.res, applied && e.err == nil, nil
}

// outcomes turns apply results into link changes and the refs that
// applied. Links are canonical key texts: [source, target].
func (r *syncRun) outcomes(p *plan, results [2]*applyResult) (links, unlinks [][2]string, done map[string]bool) {
	n, refs := len(p.links), 0
	for _, r := range results {
		n += len(r.Created)
		refs += len(r.Done)
	}
	done = make(map[string]bool, refs+n)
	unlinks = append(unlinks, p.unlinks...)
	taken := [2]map[string]bool{make(map[string]bool, n), make(map[string]bool, n)}
	links = make([][2]string, 0, n)
	link := func(pair [2]string) {
		if pair[0] != "" && pair[1] != "" && !taken[0][pair[0]] && !taken[1][pair[1]] {
			taken[0][pair[0]], taken[1][pair[1]] = true, true
			links = append(links, pair)
		}
	}
	for s := range results {
		to := mapping.Side(s)
		for _, ref := range results[s].Done {
			done[to.String()+" "+ref] = true
		}
		for _, w := range p.writes[s] {
			if done[to.String()+" "+w.Ref] && w.ent != nil && w.ent.key[to.Other()] != nil {
				// Mapping errors name the entity by the key it came from.
				done[to.String()+" key "+w.ent.keyText(to.Other())] = true
			}
		}
		// Every row an apply created is linked to the key its ref names. From
		// the result, not from this run's writes: a run redone after a crash
		// may decide differently (it reads live rows), but what the node
		// committed is what its tandem.applied row says.
		for _, c := range results[s].Created {
			var pair [2]string
			pair[to], pair[to.Other()] = c[1], strings.TrimPrefix(c[0], insertRefPrefix)
			link(pair)
		}
	}
	// Then the pairs resolution found, unless a key is linked above: a run
	// redone after its apply committed finds the rows that apply created
	// and pairs them again by their natural key.
	for _, l := range p.links {
		link(l)
	}
	return links, unlinks, done
}

// missingConflicts records updates that found their row deleted on the
// side being written: the delete wins (it reaches the other side from
// that side's changes); the update's values are recorded as lost.
func (r *syncRun) missingConflicts(p *plan, to mapping.Side, ar *applyResult) {
	if len(ar.Missing) == 0 {
		return
	}
	missing := map[string]bool{}
	for _, m := range ar.Missing {
		missing[m] = true
	}
	for _, w := range p.writes[to] {
		if w.Kind != "update" || !missing[w.Ref] || w.ent == nil {
			continue
		}
		from := to.Other()
		p.conflicts = append(p.conflicts, &conflictRow{
			Kind: "update_delete", Keys: w.ent.key, Resolution: "deleted",
			Changes: sideChanges(from, netJSON(w.ent.net[from])),
			Lost:    map[string]Values{from.String(): w.ent.net[from].Vals},
		})
	}
}

// relinked returns, per side, the key texts whose links a run's record
// changes: the keys of the links it makes (each replaces the links of
// either key) and of those it removes.
func relinked(links, unlinks [][2]string) [2]map[string]bool {
	out := [2]map[string]bool{make(map[string]bool, len(links)+len(unlinks)), make(map[string]bool, len(links)+len(unlinks))}
	for _, l := range slices.Concat(links, unlinks) {
		for s, k := range l {
			if k != "" {
				out[s][k] = true
			}
		}
	}
	return out
}

// saveLinks records links; seen are the snapshots an initial sync's chunk
// read each side in (see filterSeen), kept with its links.
func (r *syncRun) saveLinks(ctx context.Context, tx pgx.Tx, links, unlinks [][2]string, seen [2]string) error {
	if len(unlinks) > 0 {
		if err := r.deleteLinks(ctx, tx, pairsJSON(unlinks)); err != nil {
			return fmt.Errorf("unlinking: %w", err)
		}
	}
	if len(links) == 0 {
		return nil
	}
	if r.seeding {
		// An initial sync links only keys without a link (see resolveSeed
		// and pairSeed): nothing to replace, and COPY is the fast way in.
		rows := make([][]any, len(links))
		var snaps [2]any
		for i, sn := range seen {
			if sn != "" {
				snaps[i] = sn
			}
		}
		for i, l := range links {
			rows[i] = []any{r.cfg.ID, l[0], l[1], snaps[0], snaps[1]}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tandem", "links"}, []string{"sync_id", "source_key", "target_key", "source_seen", "target_seen"},
			pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("linking: %w", err)
		}
		return nil
	}
	// A re-created row replaces the link of the row it stands for.
	pairs := pairsJSON(links)
	if err := r.deleteLinks(ctx, tx, pairs); err != nil {
		return fmt.Errorf("replacing links: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tandem.links (sync_id, source_key, target_key)
		SELECT $1, l.s, l.t FROM jsonb_to_recordset($2::jsonb) l(s jsonb, t jsonb)`, r.cfg.ID, pairs); err != nil {
		return fmt.Errorf("linking: %w", err)
	}
	return nil
}

// saveSeen keeps with the links an initial sync's chunk compared (source
// key texts) the snapshots it read their rows in, in place of any earlier
// ones: a resync's handoff to streaming is then as exact as the first
// initial sync's (see filterSeen).
func (r *syncRun) saveSeen(ctx context.Context, tx pgx.Tx, sourceKeys []string, seen [2]string) error {
	if len(sourceKeys) == 0 || seen[0] == "" || seen[1] == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE tandem.links SET source_seen = $2, target_seen = $3
		WHERE sync_id = $1 AND source_key = ANY ($4::jsonb[])`, r.cfg.ID, seen[0], seen[1], sourceKeys)
	if err != nil {
		return fmt.Errorf("keeping the snapshots of compared links: %w", err)
	}
	return nil
}

// deleteLinks removes the links of either key of each pair (pairsJSON):
// one DELETE per side, each an index lookup per pair (an OR of the two
// would compare every link with every pair).
func (r *syncRun) deleteLinks(ctx context.Context, tx pgx.Tx, pairs []byte) error {
	if _, err := tx.Exec(ctx, `DELETE FROM tandem.links k USING jsonb_to_recordset($2::jsonb) l(s jsonb, t jsonb)
		WHERE k.sync_id = $1 AND k.source_key = l.s`, r.cfg.ID, pairs); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM tandem.links k USING jsonb_to_recordset($2::jsonb) l(s jsonb, t jsonb)
		WHERE k.sync_id = $1 AND k.target_key = l.t`, r.cfg.ID, pairs)
	return err
}

// pairsJSON renders pairs of key texts (canonical JSON, as canonicalKey
// writes them; "" for none) as a JSON array of {"s": source key, "t":
// target key}.
func pairsJSON(pairs [][2]string) []byte {
	key := func(b []byte, text string) []byte {
		if text == "" {
			return append(b, "null"...)
		}
		return append(b, text...)
	}
	return appendArray(nil, pairs, func(b []byte, p [2]string) []byte {
		b = key(append(b, `{"s":`...), p[0])
		b = key(append(b, `,"t":`...), p[1])
		return append(b, '}')
	})
}

func (r *syncRun) saveConflicts(ctx context.Context, tx pgx.Tx, runID int64, p *plan) error {
	// One COPY for the window's conflicts: a window of conflicts (two
	// backlogs writing the same fields) is thousands of them.
	if len(p.conflicts) > 0 {
		if err := r.copyConflicts(ctx, tx, runID, p.conflicts); err != nil {
			return err
		}
	}
	for _, e := range p.holds {
		// Later changes of a held entity wait in its conflict.
		for s, n := range e.net {
			if n == nil || n.Op == netNone {
				continue
			}
			col := "source_change"
			if s == 1 {
				col = "target_change"
			}
			_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE tandem.sync_conflicts SET %[1]s = jsonb_build_object(
				'op', $2::text, 'at', $3::timestamptz,
				'vals', CASE WHEN $2 = 'delete' THEN NULL WHEN $2 = 'insert' THEN $4::jsonb
				             ELSE coalesce(nullif(%[1]s -> 'vals', 'null'::jsonb), '{}') || $4::jsonb END)
				WHERE id = $1`, col), e.heldBy, netOp(n), n.Last, encodeJSON(n.Vals))
			if err != nil {
				return fmt.Errorf("holding changes in conflict %d: %w", e.heldBy, err)
			}
		}
	}
	return nil
}

// copyConflicts records a window's conflicts in one COPY.
func (r *syncRun) copyConflicts(ctx context.Context, tx pgx.Tx, runID int64, conflicts []*conflictRow) error {
	now := time.Now()
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"tandem", "sync_conflicts"},
		[]string{"sync_id", "run_id", "status", "kind", "source_key", "target_key", "source_change", "target_change",
			"base", "resolution", "kept", "lost", "fields", "resolved_at", "resolved_by"},
		pgx.CopyFromSlice(len(conflicts), func(i int) ([]any, error) {
			c := conflicts[i]
			status, resolvedAt, resolvedBy := "resolved", any(now), any("tandem")
			if c.Open {
				status, resolvedAt, resolvedBy = "open", nil, nil
			}
			return []any{r.cfg.ID, runID, status, c.Kind, jsonOrNil(c.Keys[0]), jsonOrNil(c.Keys[1]),
				jsonOrNil(c.Changes[0]), jsonOrNil(c.Changes[1]), jsonOrNil(c.Base), c.Resolution,
				jsonOrNil(c.Kept), jsonOrNil(c.Lost), c.Fields, resolvedAt, resolvedBy}, nil
		}))
	if err != nil {
		return fmt.Errorf("recording conflicts: %w", err)
	}
	return nil
}

func netOp(n *netChange) string {
	if n.Created {
		return "insert"
	}
	return n.Op
}

// jsonOrNil renders v as a jsonb parameter; nil and empty maps as NULL.
func jsonOrNil(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case Values:
		if x == nil {
			return nil
		}
	case map[string]Values:
		if len(x) == 0 {
			return nil
		}
	}
	return string(encodeJSON(v))
}
