package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// How a verify decides about single rows: in Go, through the mapping.

// pairs is a list of pairs to compare row by row.
type pairs []pair

// addRaw adds a link given as raw jsonb keys.
func (ps *pairs) addRaw(source, target []byte) error {
	var p pair
	for s, b := range [2][]byte{source, target} {
		k, err := decodeJSON(b)
		if err != nil {
			return fmt.Errorf("control: a %s key of a link: %w", mapping.Side(s), err)
		}
		p[s] = k
	}
	*ps = append(*ps, p)
	return nil
}

// classify reads the rows of pairs on both nodes and returns the pairs
// that drift, in order.
func (v *verifier) classify(ctx context.Context, ps pairs) ([]Drift, error) {
	var keys [2][]Values
	var at [2][]int // where each key's pair is in ps
	for i, p := range ps {
		for s, k := range p {
			if k != nil {
				keys[s] = append(keys[s], k)
				at[s] = append(at[s], i)
			}
		}
	}
	var rows [2][]Values
	err := bothSides(func(s mapping.Side) error {
		var err error
		rows[s], err = v.r.sides()[s].rowsOf(ctx, keys[s])
		return err
	})
	if err != nil {
		return nil, err
	}
	found := make([][2]Values, len(ps))
	for s := range rows {
		for j, i := range at[s] {
			found[i][s] = rows[s][j]
		}
	}
	var out []Drift
	for i, p := range ps {
		if d, ok := v.compare(p, found[i]); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// compare decides one pair from its rows (nil where gone).
func (v *verifier) compare(p pair, rows [2]Values) (Drift, bool) {
	d := Drift{SourceKey: p[mapping.Source], TargetKey: p[mapping.Target], Linked: p[0] != nil && p[1] != nil}
	switch {
	case rows[0] == nil && rows[1] == nil:
		return d, false // gone from both sides (or a row no link reached, gone since)
	case rows[mapping.Source] == nil:
		d.Kind = DriftMissingOnSource
	case rows[mapping.Target] == nil:
		d.Kind = DriftMissingOnTarget
	default:
		for _, f := range v.r.m.Fields {
			if !v.sameField(f, rows) {
				d.Fields = append(d.Fields, fieldLabel(f))
			}
		}
		if len(d.Fields) == 0 {
			return d, false
		}
		d.Kind = DriftDiffering
	}
	return d, true
}

// sameField reports whether a field's values agree on both rows: mapped
// from one side, they are the other side's, in a direction the sync flows.
// Either direction will do: through a transform with no exact reverse
// (lowercase), a bidirectional sync leaves values that only map one way
// (an edit of the target's email to capitals is copied back as it is).
func (v *verifier) sameField(f *mapping.Field, rows [2]Values) bool {
	for _, from := range []mapping.Side{mapping.Source, mapping.Target} {
		if !v.r.flows(from) {
			continue
		}
		mapped, err := f.Map(from, rows[from])
		if err != nil {
			continue
		}
		same := true
		for _, c := range f.Columns(from.Other()) {
			if !sameValue(mapped[c], rows[from.Other()][c]) {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	return false
}

// sameValue is mapping.Equal, except that a number or a boolean equals the
// text that spells it: the engine writes values through
// jsonb_populate_record, which stores 555 into a text column as '555'.
func sameValue(a, b any) bool {
	if mapping.Equal(a, b) {
		return true
	}
	if s, ok := a.(string); ok {
		t, ok := scalarText(b)
		return ok && t == s
	}
	if s, ok := b.(string); ok {
		t, ok := scalarText(a)
		return ok && t == s
	}
	return false
}

// scalarText spells a number or a boolean.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// fieldLabel names a field by its source and target columns
// (full_name/firstname+lastname), in conflicts and in verify reports.
func fieldLabel(f *mapping.Field) string {
	return strings.Join(f.Source, "+") + "/" + strings.Join(f.Target, "+")
}

// recheck decides the suspects: it applies the sync's pending changes and
// compares them again, until none is left or a round settles none. What is
// left is drift.
func (v *verifier) recheck(ctx context.Context) error {
	suspects := pairs(v.suspects)
	v.suspects = nil
	if len(suspects) == 0 {
		return nil
	}
	first := len(suspects)
	var drift []Drift
	for round := 1; ; round++ {
		var err error
		if drift, err = v.recheckRound(ctx, suspects); err != nil {
			return err
		}
		if len(drift) == 0 || len(drift) >= len(suspects) || round == maxRechecks {
			break
		}
		suspects = suspects[:0]
		for _, d := range drift {
			suspects = append(suspects, pair{d.SourceKey, d.TargetKey})
		}
	}
	if err := v.markHeld(ctx, drift); err != nil {
		return err
	}
	v.rep.CaughtUp += int64(max(0, first-len(drift)))
	for _, d := range drift {
		v.rep.add(d, v.listed)
	}
	return nil
}

// recheckRound holds the sync's lock, applies its pending changes, and
// compares the suspects again, as the links now pair them.
func (v *verifier) recheckRound(ctx context.Context, suspects pairs) ([]Drift, error) {
	e, s := v.r.e, v.r.cfg
	release, err := e.lockSync(ctx, s.ID, verifyLockWait)
	if errors.Is(err, ErrBusy) {
		return nil, fmt.Errorf("a run held the sync for %s; try again: %w", verifyLockWait, err)
	}
	if err != nil {
		return nil, err
	}
	defer release()
	if err := e.catchUp(ctx, s); err != nil {
		return nil, fmt.Errorf("applying the sync's pending changes before comparing again: %w", err)
	}
	ps, err := v.relink(ctx, suspects)
	if err != nil {
		return nil, err
	}
	return v.classify(ctx, ps)
}

// relink pairs each suspect's keys as the links pair them now: applying
// pending changes links created rows and unlinks deleted ones.
func (v *verifier) relink(ctx context.Context, suspects pairs) (pairs, error) {
	var texts [2][]string
	for _, p := range suspects {
		for s, k := range p {
			if k != nil {
				texts[s] = append(texts[s], canonicalKey(k))
			}
		}
	}
	links, err := v.r.loadLinks(ctx, texts)
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
			id := [2]string{keyText(np[0]), keyText(np[1])}
			if !seen[id] {
				seen[id] = true
				out = append(out, np)
			}
		}
	}
	return out, nil
}

func keyText(k Values) string {
	if k == nil {
		return ""
	}
	return canonicalKey(k)
}

// markHeld names the open conflict of each drifting entity that has one.
func (v *verifier) markHeld(ctx context.Context, drift []Drift) error {
	var sk, tk []string
	for _, d := range drift {
		if d.SourceKey != nil {
			sk = append(sk, canonicalKey(d.SourceKey))
		}
		if d.TargetKey != nil {
			tk = append(tk, canonicalKey(d.TargetKey))
		}
	}
	if len(sk)+len(tk) == 0 {
		return nil
	}
	// UNION, not OR: each arm uses its partial index of open conflicts.
	rows, err := v.r.e.Control.Query(ctx, `SELECT id, source_key, target_key FROM tandem.sync_conflicts
		WHERE sync_id = $1 AND status = 'open' AND source_key = ANY ($2::jsonb[])
		UNION SELECT id, source_key, target_key FROM tandem.sync_conflicts
		WHERE sync_id = $1 AND status = 'open' AND target_key = ANY ($3::jsonb[])`, v.r.cfg.ID, sk, tk)
	if err != nil {
		return fmt.Errorf("control: reading open conflicts: %w", err)
	}
	defer rows.Close()
	held := [2]map[string]int64{{}, {}}
	for rows.Next() {
		var id int64
		var keys [2][]byte
		if err := rows.Scan(&id, &keys[0], &keys[1]); err != nil {
			return fmt.Errorf("control: reading open conflicts: %w", err)
		}
		for s, b := range keys {
			if _, text, _ := decodeKey(b); text != "" {
				held[s][text] = id
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("control: reading open conflicts: %w", err)
	}
	for i := range drift {
		for s, k := range [2]Values{drift[i].SourceKey, drift[i].TargetKey} {
			if id := held[s][keyText(k)]; id != 0 {
				drift[i].Conflict = id
			}
		}
	}
	return nil
}
