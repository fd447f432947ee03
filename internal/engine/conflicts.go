package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/mapping"
)

// Conflict is one row of tandem.sync_conflicts.
type Conflict struct {
	ID     int64
	SyncID string
	RunID  int64  // the run that found it
	Status string // open | resolved
	Kind   string // update_update | update_delete | insert_insert | concurrent_apply
	// Resolution is how it was settled: the strategy (latest_wins, …), manual
	// while a person has to decide, manual:source, manual:target or
	// manual:value once one did.
	Resolution string
	// SourceKey and TargetKey are the entity's key objects on each side.
	SourceKey, TargetKey map[string]any
	// SourceChange and TargetChange are each side's net change: {"op":
	// insert|upsert|delete, "vals": {column: value}, "at": time}. While a
	// manual conflict is open, runs merge the entity's later changes in.
	SourceChange, TargetChange map[string]any
	Base                       map[string]any // the changed columns' values before the changes
	Kept, Lost                 map[string]any // by side name: {"source": {column: value}}
	Fields                     []string       // conflicting fields, as source/target columns
	CreatedAt                  time.Time
	ResolvedAt                 *time.Time
	ResolvedBy                 string
}

// ErrNoConflict is wrapped by the error for a conflict id that does not exist.
var ErrNoConflict = errors.New("no such conflict")

// ErrNotOpen is wrapped by the error for resolving a conflict that is not open.
var ErrNotOpen = errors.New("conflict is not open")

// conflictError says what is wrong with one conflict and wraps a sentinel,
// so callers classify with errors.Is and people read the message.
type conflictError struct {
	msg  string
	kind error
}

func (e *conflictError) Error() string { return e.msg }
func (e *conflictError) Unwrap() error { return e.kind }

const conflictColumns = `SELECT id, sync_id, coalesce(run_id, 0), status, kind, coalesce(resolution, ''),
	source_key, target_key, source_change, target_change, base, kept, lost, fields,
	created_at, resolved_at, coalesce(resolved_by, '')
	FROM tandem.sync_conflicts`

// Conflicts returns the conflicts of one sync (every sync when syncID is
// ""), in id order: the open ones, or all of them.
func (e *Engine) Conflicts(ctx context.Context, syncID string, all bool) ([]Conflict, error) {
	rows, err := e.Control.Query(ctx, conflictColumns+` WHERE ($1 = '' OR sync_id = $1) AND ($2 OR status = 'open') ORDER BY id`,
		syncID, all)
	if err != nil {
		return nil, fmt.Errorf("control: reading conflicts (run `tandem migrate`?): %w", err)
	}
	defer rows.Close()
	var out []Conflict
	for rows.Next() {
		c, err := scanConflict(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("control: reading conflicts: %w", err)
	}
	return out, nil
}

// Conflict returns one conflict; an id that does not exist is an error
// wrapping ErrNoConflict.
func (e *Engine) Conflict(ctx context.Context, id int64) (Conflict, error) {
	c, err := scanConflict(e.Control.QueryRow(ctx, conflictColumns+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, &conflictError{fmt.Sprintf("no conflict %d", id), ErrNoConflict}
	}
	return c, err
}

func scanConflict(row pgx.Row) (Conflict, error) {
	var c Conflict
	var raw [7][]byte
	err := row.Scan(&c.ID, &c.SyncID, &c.RunID, &c.Status, &c.Kind, &c.Resolution,
		&raw[0], &raw[1], &raw[2], &raw[3], &raw[4], &raw[5], &raw[6], &c.Fields,
		&c.CreatedAt, &c.ResolvedAt, &c.ResolvedBy)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, err
	}
	if err != nil {
		return c, fmt.Errorf("control: reading a conflict: %w", err)
	}
	dst := [7]*map[string]any{&c.SourceKey, &c.TargetKey, &c.SourceChange, &c.TargetChange, &c.Base, &c.Kept, &c.Lost}
	for i, b := range raw {
		if *dst[i], err = decodeJSON(b); err != nil {
			return c, fmt.Errorf("control: decoding conflict %d: %w", c.ID, err)
		}
	}
	return c, nil
}

// open fails unless the conflict waits for a person.
func (c *Conflict) open() error {
	if c.Status == "open" {
		return nil
	}
	msg := fmt.Sprintf("conflict %d is %s, not open", c.ID, c.Status)
	if c.Status == "resolved" {
		msg = fmt.Sprintf("conflict %d is already resolved (%s", c.ID, c.Resolution)
		if c.ResolvedBy != "" {
			msg += " by " + c.ResolvedBy
		}
		if c.ResolvedAt != nil {
			msg += " at " + c.ResolvedAt.Format(time.RFC3339)
		}
		msg += ")"
	}
	return &conflictError{msg, ErrNotOpen}
}

// resolveLockWait bounds how long a resolve waits for a run of the sync to
// finish.
const resolveLockWait = 30 * time.Second

// ResolveConflict settles an open conflict: take is "source" or "target", or
// value (a JSON object of SOURCE column values) overrides; by is recorded in
// resolved_by. It applies the decision to both nodes, then marks the
// conflict resolved (resolution "manual:source" / "manual:target" /
// "manual:value", kept/lost filled), all before returning.
//
// It holds the sync's lock, so no run interleaves, and first brings the
// sync up to date: every change captured before the decision is then held
// in the conflict and decided with it. Its writes carry the sync's origin,
// so the next run finds nothing to do for the entity.
//
// For an entity updated on both sides, fields only one side changed flow
// to the other side; conflicting fields take the chosen side's values, or
// value's, which must then set every conflicting field. For an update
// against a delete, taking the deleting side deletes the row on the other
// side; taking the updating side re-creates the row on the deleting side
// and links it. value is refused there: it has no row to apply to.
func (e *Engine) ResolveConflict(ctx context.Context, id int64, take string, value map[string]any, by string) error {
	how, err := resolutionOf(take, value)
	if err != nil {
		return err
	}
	c, err := e.Conflict(ctx, id)
	if err != nil {
		return err
	}
	if err := c.open(); err != nil {
		return err
	}
	s, ok := e.Config.SyncByID(c.SyncID)
	if !ok {
		return fmt.Errorf("conflict %d belongs to sync %q, which is not in %s", id, c.SyncID, e.Config.Path)
	}
	if err := e.init(ctx); err != nil {
		return err
	}
	release, err := e.lockCaughtUp(ctx, s, resolveLockWait)
	if err != nil {
		return fmt.Errorf("conflict %d: %w", id, err)
	}
	defer release()
	if c, err = e.Conflict(ctx, id); err != nil {
		return err
	}
	if err := c.open(); err != nil {
		return err
	}
	r, err := e.newRun(s)
	if err != nil {
		return err
	}
	if err := r.src.check(ctx); err != nil {
		return err
	}
	if err := r.tgt.check(ctx); err != nil {
		return err
	}
	d, err := r.settle(ctx, &c, how, take, value)
	if err != nil {
		return fmt.Errorf("conflict %d: %w", id, err)
	}
	newKey, err := r.applySettlement(ctx, &c, d)
	if err != nil {
		return fmt.Errorf("conflict %d: %w", id, err)
	}
	if err := r.recordSettlement(ctx, &c, d, newKey, by); err != nil {
		return fmt.Errorf("conflict %d: applied to both nodes, but %w", id, err)
	}
	r.forgetSettled(ctx, c.ID)
	return nil
}

// resolutionOf checks the choice and names it as sync_conflicts records it.
func resolutionOf(take string, value map[string]any) (string, error) {
	switch {
	case value != nil && take != "":
		return "", errors.New("resolving a conflict takes a side or a value, not both")
	case value != nil:
		if len(value) == 0 {
			return "", errors.New("the value to resolve a conflict with names no column")
		}
		return "manual:value", nil
	case take == "source" || take == "target":
		return "manual:" + take, nil
	}
	return "", fmt.Errorf("resolving a conflict takes source or target, not %q", take)
}

// lockCaughtUp takes the sync's lock (waiting up to wait for a run in
// progress) and runs its pending windows (its initial sync first, when it
// has never run), so what follows sees both sides as the sync has them.
// release gives the lock back.
func (e *Engine) lockCaughtUp(ctx context.Context, s *config.Sync, wait time.Duration) (release func(), err error) {
	release, err = e.lockSync(ctx, s.ID, wait)
	if errors.Is(err, ErrBusy) {
		return nil, fmt.Errorf("sync %s: a run held it for %s; try again: %w", s.ID, wait, err)
	}
	if err != nil {
		return nil, err
	}
	if _, err := e.runLocked(ctx, s, "manual", false, nil); err != nil {
		release()
		return nil, fmt.Errorf("bringing sync %s up to date first: %w", s.ID, err)
	}
	return release, nil
}

// settlement is what resolving one conflict writes to each side (by
// mapping.Side) and records.
type settlement struct {
	how        string
	update     [2]Values // columns to set on the entity's row
	del        [2]bool   // delete the entity's row
	insert     [2]Values // re-create the entity's row from these values
	kept, lost map[string]Values
	unlink     bool // the entity is gone from both sides
}

// changeOf reads a stored change: its op and values. Values that are not
// an object are refused rather than read as no change.
func changeOf(side string, c map[string]any) (op string, vals Values, err error) {
	op, _ = c["op"].(string)
	switch v := c["vals"].(type) {
	case nil:
	case map[string]any:
		vals = v
	default:
		return "", nil, fmt.Errorf("its %s change holds values that are not a JSON object (%T); fix the row in tandem.sync_conflicts first", side, v)
	}
	return op, vals, nil
}

// settle decides what resolving the conflict writes, from its held changes
// and the entity's current rows.
func (r *syncRun) settle(ctx context.Context, c *Conflict, how, take string, value Values) (*settlement, error) {
	d := &settlement{how: how, kept: map[string]Values{}, lost: map[string]Values{}}
	var changes [2]Values
	var ops [2]string
	for i, ch := range []map[string]any{c.SourceChange, c.TargetChange} {
		var err error
		if ops[i], changes[i], err = changeOf(mapping.Side(i).String(), ch); err != nil {
			return nil, err
		}
	}
	rows, err := r.currentRows(ctx, c)
	if err != nil {
		return nil, err
	}
	switch {
	case ops[0] == opDelete && ops[1] == opDelete:
		d.unlink = true // both sides deleted it since: nothing left to decide
	case ops[0] == opDelete || ops[1] == opDelete:
		del := mapping.Source
		if ops[1] == opDelete {
			del = mapping.Target
		}
		err = r.settleDelete(d, c, del, take, value, changes, rows)
	default:
		err = r.settleFields(d, take, value, changes, rows)
	}
	return d, err
}

// currentRows reads the entity's row on each side (nil where it is gone).
func (r *syncRun) currentRows(ctx context.Context, c *Conflict) ([2]Values, error) {
	var out [2]Values
	for i, key := range []Values{c.SourceKey, c.TargetKey} {
		if key == nil {
			continue
		}
		s := r.sides()[i]
		rows, err := s.fetchRows(ctx, s.Pool, []Values{key})
		if err != nil {
			return out, err
		}
		for _, row := range rows { // at most one
			out[i] = row
		}
	}
	return out, nil
}

// settleFields decides an entity updated (or created) on both sides: each
// side's fields the other did not touch flow across; conflicting fields
// take the chosen side's values, or value's.
func (r *syncRun) settleFields(d *settlement, take string, value Values, changes, rows [2]Values) error {
	for i, row := range rows {
		if row == nil {
			s := r.sides()[i]
			return fmt.Errorf("its row on node %s (%s) is gone but no delete is held yet; run sync %s, then resolve again",
				s.Node, s.Table, r.cfg.ID)
		}
	}
	named := map[*mapping.Field]bool{}
	if value != nil {
		if err := r.checkValue(value); err != nil {
			return err
		}
		for _, f := range r.m.Touched(mapping.Source, value) {
			named[f] = true
		}
	}
	S, T := changes[mapping.Source], changes[mapping.Target]
	srow, trow := overlay(rows[mapping.Source], S), overlay(rows[mapping.Target], T)
	var unset []string
	for _, f := range r.m.Fields {
		inS, inT := touches(f, mapping.Source, S), touches(f, mapping.Target, T)
		if named[f] {
			if err := d.setValue(f, value, srow, trow); err != nil {
				return err
			}
			continue
		}
		if !inS && !inT {
			continue
		}
		sv, serr := f.Map(mapping.Source, srow)
		tv, terr := f.Map(mapping.Target, trow)
		if inS && serr != nil {
			return fmt.Errorf("mapping the source's change: %w", serr)
		}
		if inT && terr != nil {
			return fmt.Errorf("mapping the target's change: %w", terr)
		}
		switch {
		case inS && !inT:
			d.set(mapping.Target, sv)
		case inT && !inS:
			d.set(mapping.Source, tv)
		case sameValues(sv, pick(trow, f.Target)):
			// Both sides hold the same value: nothing to decide.
		case value != nil:
			unset = append(unset, strings.Join(f.Source, "+"))
		case take == "source":
			d.set(mapping.Target, sv)
			addTo(d.kept, "source", pick(srow, f.Source))
			addTo(d.lost, "target", pick(trow, f.Target))
		default:
			d.set(mapping.Source, tv)
			addTo(d.kept, "target", pick(trow, f.Target))
			addTo(d.lost, "source", pick(srow, f.Source))
		}
	}
	if len(unset) > 0 {
		return fmt.Errorf("the value must set every conflicting field; it lacks source column %s", strings.Join(unset, ", "))
	}
	return nil
}

// checkValue fails on a column that is not a mapped source column.
func (r *syncRun) checkValue(value Values) error {
	cols := r.m.Columns(mapping.Source)
	var bad []string
	for c := range value {
		if !slices.Contains(cols, c) {
			bad = append(bad, c)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("the value names %s, which sync %s does not map from %s (mapped source columns: %s)",
		strings.Join(bad, ", "), r.cfg.ID, r.src.Table, strings.Join(cols, ", "))
}

// setValue writes a field of the given source values to both sides,
// recording the values it replaces.
func (d *settlement) setValue(f *mapping.Field, value, srow, trow Values) error {
	sv := pick(value, f.Source)
	tv, err := f.Map(mapping.Source, value)
	if err != nil {
		return fmt.Errorf("mapping the value: %w", err)
	}
	d.set(mapping.Source, sv)
	d.set(mapping.Target, tv)
	addTo(d.kept, "source", sv)
	if old := pick(srow, f.Source); !sameValues(old, sv) {
		addTo(d.lost, "source", old)
	}
	if old := pick(trow, f.Target); !sameValues(old, tv) {
		addTo(d.lost, "target", old)
	}
	return nil
}

func (d *settlement) set(s mapping.Side, vals Values) {
	if d.update[s] == nil {
		d.update[s] = Values{}
	}
	copyInto(d.update[s], vals)
}

// settleDelete decides an entity deleted on side del and changed on the
// other.
func (r *syncRun) settleDelete(d *settlement, c *Conflict, del mapping.Side, take string, value Values, changes, rows [2]Values) error {
	upd := del.Other()
	if value != nil {
		return fmt.Errorf("the %s deleted the row the %s changed: choose which stands with take source or target, not a value",
			del, upd)
	}
	if take == del.String() {
		d.del[upd], d.unlink = true, true
		d.lost[upd.String()] = changes[upd]
		return nil
	}
	row := rows[upd]
	if row == nil {
		s := r.sides()[upd]
		return fmt.Errorf("its row on node %s (%s) is gone too, but no delete is held yet; run sync %s, then resolve again",
			s.Node, s.Table, r.cfg.ID)
	}
	vals, errs := r.m.Map(upd, row)
	if len(errs) > 0 {
		return fmt.Errorf("mapping the %s's row: %w", upd, errs[0])
	}
	d.insert[del] = vals
	d.kept[upd.String()] = changes[upd]
	if c.Kind == "update_delete" && c.Base != nil {
		d.lost[del.String()] = c.Base // the deleted row's values
	}
	return nil
}

// overlay returns row with vals over it.
func overlay(row, vals Values) Values {
	out := Values{}
	copyInto(out, row)
	copyInto(out, vals)
	return out
}

// applySettlement writes the settlement to both nodes, one transaction
// each with the sync's origin, and commits them only once both have
// succeeded. It returns the key of a re-created row. A lock timeout or
// deadlock is retried with backoff.
func (r *syncRun) applySettlement(ctx context.Context, c *Conflict, d *settlement) (Values, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		key, err := r.applySettlementOnce(ctx, c, d)
		if err == nil || !retryable(err) || attempt == 5 {
			return key, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff *= 2
	}
}

func (r *syncRun) applySettlementOnce(ctx context.Context, c *Conflict, d *settlement) (Values, error) {
	keys := [2]Values{c.SourceKey, c.TargetKey}
	var newKey Values
	var txs []pgx.Tx
	defer func() {
		for _, tx := range txs {
			tx.Rollback(ctx) // a no-op once committed
		}
	}()
	for _, to := range []mapping.Side{mapping.Target, mapping.Source} {
		// Even a side this decision does not write is checked: an earlier
		// attempt with another decision may have written it.
		s := r.sides()[to]
		tx, err := s.Pool.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", s.Node, err)
		}
		txs = append(txs, tx)
		share := settledShare{Update: d.update[to], Delete: d.del[to], Insert: d.insert[to]}
		done, err := s.settledBefore(ctx, tx, r.cfg.ID, c.ID, &share)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", s.Node, err)
		}
		if !done && !share.empty() {
			if share.Created, err = s.settle(ctx, tx, r.cfg.ID, keys[to], d.update[to], d.del[to], d.insert[to]); err != nil {
				return nil, fmt.Errorf("node %s: writing to %s: %w", s.Node, s.Table, err)
			}
			if err := s.recordSettled(ctx, tx, r.cfg.ID, c.ID, &share); err != nil {
				return nil, fmt.Errorf("node %s: %w", s.Node, err)
			}
		}
		if share.Created != nil {
			newKey = share.Created
		}
	}
	for _, tx := range txs {
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("committing: %w", err)
		}
	}
	return newKey, nil
}

// settle writes one side's share of a settlement in tx, under the sync's
// origin so that the sync does not send it back. It returns the key of an
// inserted row.
func (s *side) settle(ctx context.Context, tx pgx.Tx, syncID string, key, update Values, del bool, insert Values) (Values, error) {
	if _, err := tx.Exec(ctx, `SELECT `+s.originSQL()+`, set_config('lock_timeout', $2, true)`,
		syncID, lockTimeout); err != nil {
		return nil, err
	}
	const ref = "conflict"
	switch {
	case del:
		_, err := tx.Exec(ctx, s.deleteSQL(), encodeJSON([]rowWrite{{Ref: ref, Key: key}}))
		return nil, err
	case insert != nil:
		var b []byte
		if err := tx.QueryRow(ctx, s.insertSQL(insert), encodeJSON(insert)).Scan(&b); err != nil {
			return nil, err
		}
		return decodeJSON(b)
	}
	ups := []rowWrite{{Ref: ref, Key: key, Vals: update}}
	if written, _, err := s.update(ctx, tx, ups); err != nil || len(written) > 0 {
		return nil, err
	}
	missing, err := s.missing(ctx, tx, ups)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("row %s is gone (deleted since the last run); run the sync, then resolve again", canonicalKey(key))
	}
	return nil, nil
}

// recordSettlement marks the conflict resolved and updates the entity's
// link, in one control transaction.
func (r *syncRun) recordSettlement(ctx context.Context, c *Conflict, d *settlement, newKey Values, by string) error {
	keys := [2]Values{c.SourceKey, c.TargetKey}
	err := pgx.BeginFunc(ctx, r.e.Control, func(tx pgx.Tx) error {
		if d.unlink {
			unlink := [2]string{}
			for i, k := range keys {
				if k != nil {
					unlink[i] = canonicalKey(k)
				}
			}
			if err := r.saveLinks(ctx, tx, nil, [][2]string{unlink}, [2]string{}); err != nil {
				return err
			}
		}
		for s, ins := range d.insert {
			if ins == nil {
				continue
			}
			if newKey == nil {
				return errors.New("the re-created row's key was not returned")
			}
			pair := keys
			pair[s] = newKey // the re-created row stands for the deleted one
			if err := r.saveLinks(ctx, tx, [][2]string{{canonicalKey(pair[0]), canonicalKey(pair[1])}}, nil, [2]string{}); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `UPDATE tandem.sync_conflicts SET status = 'resolved', resolution = $2,
			kept = $3, lost = $4, resolved_at = now(), resolved_by = $5 WHERE id = $1 AND status = 'open'`,
			c.ID, d.how, jsonOrNil(d.kept), jsonOrNil(d.lost), nilIfEmpty(by))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("conflict %d stopped being open while it was resolved", c.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("control: recording the resolution: %w", err)
	}
	return nil
}
