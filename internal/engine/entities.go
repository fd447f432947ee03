package engine

import (
	"context"
	"fmt"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// resolveWindow loads both sides' windows and decides what to write.
func (r *syncRun) resolveWindow(ctx context.Context, w window) (*plan, error) {
	if w.Seed != nil && w.Seed.Repair != nil {
		return r.resolveRepair(ctx, *w.Seed.Repair)
	}
	if w.Seed != nil {
		return r.resolveSeed(ctx, w.Seed)
	}
	p := &plan{}
	var nets [2][]*netChange
	bounds := [2][2]int64{{w.SourceFrom, w.SourceThrough}, {w.TargetFrom, w.TargetThrough}}
	for i, s := range r.sides() {
		if !r.flows(s.Which) {
			continue // a one-way sync ignores the other side's changes
		}
		changes, err := r.windowChanges(ctx, s, bounds[i][0], bounds[i][1])
		if err != nil {
			return nil, err
		}
		if changes, err = r.filterSeen(ctx, s, w.Band[i], changes); err != nil {
			return nil, err
		}
		if changes, err = r.withOwnAfter(ctx, s, changes, bounds[i][1], w.own(s.Which)); err != nil {
			return nil, err
		}
		for _, c := range changes {
			if c.Op == opTruncate && c.Origin != r.cfg.ID {
				p.errors = append(p.errors, &errorRow{Side: s.Which.Other(),
					Reason: fmt.Sprintf("TRUNCATE of %s on node %s was not propagated: tandem never empties a table on the other side; delete the rows there by hand", s.Table, s.Node)})
			}
		}
		nets[i] = collapse(s.Which, changes, r.cfg.ID)
	}
	ents, err := r.entities(ctx, nets)
	if err != nil {
		return nil, err
	}
	if err := r.readRows(ctx, ents); err != nil {
		return nil, err
	}
	if err := r.match(ctx, &ents, p); err != nil {
		return nil, err
	}
	v := &resolver{run: r, m: r.m, plan: p}
	v.decide(ents)
	if err := r.retryErrors(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// entities pairs both sides' net changes through tandem.links and marks
// the entities an open manual conflict holds.
func (r *syncRun) entities(ctx context.Context, nets [2][]*netChange) ([]*entity, error) {
	ents := make([]*entity, 0, len(nets[0])+len(nets[1]))
	bySide := [2]map[string]*entity{make(map[string]*entity, len(nets[0])), make(map[string]*entity, len(nets[1]))}
	keys := [2][]string{}
	for s := range nets {
		keys[s] = make([]string, 0, len(nets[s]))
		for _, n := range nets[s] {
			keys[s] = append(keys[s], n.Key)
		}
	}
	links, err := r.windowLinks(ctx, keys)
	if err != nil {
		return nil, err
	}
	for s := range nets {
		side := mapping.Side(s)
		for _, n := range nets[s] {
			e := bySide[s][n.Key]
			other, linked := links[s][n.Key]
			if e == nil && linked {
				e = bySide[side.Other()][other.text]
			}
			if e == nil {
				e = &entity{}
				e.key[s], e.keyTxt[s] = n.KeyVals, n.Key
				if linked {
					e.key[side.Other()], e.keyTxt[side.Other()], e.linked = other.vals, other.text, true
					bySide[side.Other()][other.text] = e
				}
				ents = append(ents, e)
			}
			e.net[s] = n
			bySide[s][n.Key] = e
		}
	}
	return ents, r.markHeld(ctx, ents)
}

// openConflicts returns, per side, the open conflict of each of the given
// canonical keys that has one.
func (r *syncRun) openConflicts(ctx context.Context, keys [2][]string) ([2]map[string]int64, error) {
	held := [2]map[string]int64{{}, {}}
	if len(keys[0])+len(keys[1]) == 0 {
		return held, nil
	}
	// UNION, not OR: each arm uses its partial index of open conflicts.
	rows, err := r.e.Control.Query(ctx, `SELECT id, source_key, target_key FROM tandem.sync_conflicts
		WHERE sync_id = $1 AND status = 'open' AND source_key = ANY ($2::jsonb[])
		UNION SELECT id, source_key, target_key FROM tandem.sync_conflicts
		WHERE sync_id = $1 AND status = 'open' AND target_key = ANY ($3::jsonb[])`,
		r.cfg.ID, keys[0], keys[1])
	if err != nil {
		return held, fmt.Errorf("control: reading open conflicts of sync %s: %w", r.cfg.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var sb, tb []byte
		if err := rows.Scan(&id, &sb, &tb); err != nil {
			return held, fmt.Errorf("control: reading open conflicts of sync %s: %w", r.cfg.ID, err)
		}
		for i, b := range [][]byte{sb, tb} {
			if k, text, _ := decodeKey(b); k != nil {
				held[i][text] = id
			}
		}
	}
	return held, rows.Err()
}

// linkedKey is a key on the other side of a link, with its canonical text.
type linkedKey struct {
	vals Values
	text string
}

// loadLinks returns, per side, the linked key on the other side of each key.
func (r *syncRun) loadLinks(ctx context.Context, keys [2][]string) ([2]map[string]linkedKey, error) {
	out := [2]map[string]linkedKey{make(map[string]linkedKey, len(keys[0])), make(map[string]linkedKey, len(keys[1]))}
	if len(keys[0])+len(keys[1]) == 0 {
		return out, nil
	}
	// Two arms, not OR: each is an index lookup per key. UNION ALL: a link
	// both arms find comes twice and lands on the same entries (UNION's
	// duplicate check cost a fifth of the lookup).
	rows, err := r.e.Control.Query(ctx, `SELECT source_key, target_key FROM tandem.links
		WHERE sync_id = $1 AND source_key = ANY ($2::jsonb[])
		UNION ALL SELECT source_key, target_key FROM tandem.links
		WHERE sync_id = $1 AND target_key = ANY ($3::jsonb[])`,
		r.cfg.ID, keys[0], keys[1])
	if err != nil {
		return out, fmt.Errorf("control: reading links of sync %s: %w", r.cfg.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var sb, tb []byte
		if err := rows.Scan(&sb, &tb); err != nil {
			return out, fmt.Errorf("control: reading links of sync %s: %w", r.cfg.ID, err)
		}
		sk, skText, err := decodeKey(sb)
		if err != nil {
			return out, err
		}
		tk, tkText, err := decodeKey(tb)
		if err != nil {
			return out, err
		}
		out[0][skText] = linkedKey{tk, tkText}
		out[1][tkText] = linkedKey{sk, skText}
	}
	return out, rows.Err()
}

// markHeld finds entities with an open conflict: their changes wait, merged
// into the conflict, until a person resolves it.
func (r *syncRun) markHeld(ctx context.Context, ents []*entity) error {
	if !r.mayHold { // most syncs have no open conflict: no lookup per key
		return nil
	}
	var sk, tk []string
	for _, e := range ents {
		if e.key[0] != nil {
			sk = append(sk, e.keyText(0))
		}
		if e.key[1] != nil {
			tk = append(tk, e.keyText(1))
		}
	}
	held, err := r.openConflicts(ctx, [2][]string{sk, tk})
	if err != nil {
		return err
	}
	for _, e := range ents {
		for s := range e.key {
			if id := held[s][e.keyText(mapping.Side(s))]; id != 0 && e.key[s] != nil {
				e.heldBy = id
			}
		}
	}
	return nil
}

// readRows reads current rows a decision needs: the whole row of an
// unlinked entity changed by an update (it is created on the other side),
// of an updated entity whose other side deleted it (it may be re-created),
// and unchanged columns of multi-column fields.
func (r *syncRun) readRows(ctx context.Context, ents []*entity) error {
	for _, s := range r.sides() {
		var keys []Values
		var want []*netChange
		for _, e := range ents {
			n := e.net[s.Which]
			if n == nil || n.Op != netUpsert || n.Created || e.heldBy != 0 {
				continue
			}
			other := e.net[s.Which.Other()]
			whole := !e.linked || (other != nil && other.Op == netDelete)
			if whole || len(r.m.Needs(s.Which, n.Vals)) > 0 {
				keys = append(keys, n.KeyVals)
				want = append(want, n)
			}
		}
		rows, err := s.fetchRows(ctx, s.Pool, keys)
		if err != nil {
			return err
		}
		for _, n := range want {
			row, ok := rows[n.Key]
			if !ok {
				// Gone since: its delete is in a later window. Nothing to create.
				n.Op = netNone
				continue
			}
			n.Extra = row
		}
	}
	return nil
}
