package engine

import (
	"context"
	"fmt"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// How a verify tells drift from changes in flight.

// recheck decides the suspects. Each round holds the sync's lock, applies
// its pending changes, and compares the suspects again; a row that still
// differs is drift unless the application changed it again meanwhile (a
// change the sync has not taken yet), and then it goes to the next round.
// After maxRechecks rounds, rows still changing are counted as in flight.
func (v *verifier) recheck(ctx context.Context) error {
	suspects := pairs(v.suspects)
	v.suspects = nil
	first := len(suspects)
	var drift []Drift
	var inFlight int
	for round := 1; len(suspects) > 0; round++ {
		found, changing, err := v.recheckRound(ctx, suspects)
		if err != nil {
			return err
		}
		drift = append(drift, found...)
		if round == maxRechecks {
			inFlight = len(changing)
			break
		}
		suspects = driftPairs(changing)
	}
	if err := v.markHeld(ctx, drift); err != nil {
		return err
	}
	v.rep.InFlight += int64(inFlight)
	v.rep.CaughtUp += int64(max(0, first-len(drift)-inFlight))
	for _, d := range drift {
		v.rep.add(d, v.listed)
	}
	return nil
}

// recheckRound holds the sync's lock, applies its pending changes, and
// compares the suspects again, as the links now pair them. It returns the
// rows that differ, split into drift and rows the application has changed
// again since.
func (v *verifier) recheckRound(ctx context.Context, suspects pairs) (drift, changing []Drift, err error) {
	e, s := v.r.e, v.r.cfg
	release, err := e.lockCaughtUp(ctx, s, verifyLockWait)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	if e.test.recheck != nil {
		e.test.recheck()
	}
	ps, err := v.relink(ctx, suspects)
	if err != nil {
		return nil, nil, err
	}
	differ, err := v.classify(ctx, ps)
	if err != nil || len(differ) == 0 {
		return nil, nil, err
	}
	pending, err := v.pending(ctx, differ)
	if err != nil {
		return nil, nil, err
	}
	for _, d := range differ {
		if pending[mapping.Source][canonicalKey(d.SourceKey)] || pending[mapping.Target][canonicalKey(d.TargetKey)] {
			changing = append(changing, d)
		} else {
			drift = append(drift, d)
		}
	}
	return drift, changing, nil
}

// pending pulls both nodes and returns, by side, the canonical keys of
// drift rows with changes the sync has not taken: application writes made
// since the catch-up (the sync's own writes, which come back with its
// origin, are not).
func (v *verifier) pending(ctx context.Context, drift []Drift) ([2]map[string]bool, error) {
	out := [2]map[string]bool{{}, {}}
	if err := v.r.e.pullSides(ctx, v.r.cfg); err != nil {
		return out, err
	}
	texts := driftPairs(drift).keyTexts()
	const side = `SELECT %[1]d, c.keys FROM tandem.change_log c
		WHERE c.id > coalesce((SELECT %[2]s_through FROM tandem.sync_state WHERE sync_id = $1), 0)
		AND c.node = $%[3]d AND c.table_name = $%[4]d AND c.keys = ANY ($%[5]d::jsonb[]) AND c.origin IS DISTINCT FROM $1`
	src, tgt := v.r.src, v.r.tgt
	rows, err := v.r.e.Control.Query(ctx, fmt.Sprintf(side, mapping.Source, "source", 2, 3, 4)+" UNION "+
		fmt.Sprintf(side, mapping.Target, "target", 5, 6, 7),
		v.r.cfg.ID, src.Node, src.Table, texts[mapping.Source], tgt.Node, tgt.Table, texts[mapping.Target])
	if err != nil {
		return out, fmt.Errorf("control: reading pending changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s int
		var b []byte
		if err := rows.Scan(&s, &b); err != nil {
			return out, fmt.Errorf("control: reading pending changes: %w", err)
		}
		if _, text, err := decodeKey(b); err == nil && text != "" {
			out[s][text] = true
		}
	}
	return out, rows.Err()
}

// relink pairs each suspect's keys as the links pair them now: applying
// pending changes links created rows and unlinks deleted ones.
func (v *verifier) relink(ctx context.Context, suspects pairs) (pairs, error) {
	links, err := v.r.loadLinks(ctx, suspects.keyTexts())
	if err != nil {
		return nil, err
	}
	var out pairs
	seen := map[[2]string]bool{}
	for _, p := range suspects {
		for s, k := range p {
			if k == nil {
				continue
			}
			var np pair
			np[s] = k
			if other, ok := links[s][canonicalKey(k)]; ok {
				np[1-s] = other.vals
			}
			id := [2]string{canonicalKey(np[0]), canonicalKey(np[1])}
			if !seen[id] {
				seen[id] = true
				out = append(out, np)
			}
		}
	}
	return out, nil
}

// markHeld names the open conflict of each drifting entity that has one.
func (v *verifier) markHeld(ctx context.Context, drift []Drift) error {
	held, err := v.r.openConflicts(ctx, driftPairs(drift).keyTexts())
	if err != nil {
		return err
	}
	for i := range drift {
		for s, k := range drift[i].pair() {
			if id := held[s][canonicalKey(k)]; id != 0 {
				drift[i].Conflict = id
			}
		}
	}
	return nil
}
