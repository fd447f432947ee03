package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// How a verify decides about single rows: in Go, through the mapping.

// pairs is a list of pairs to compare row by row.
type pairs []pair

// addRaw adds a link given as raw jsonb keys.
func (ps *pairs) addRaw(source, target []byte) error {
	var p pair
	for s, b := range [2][]byte{source, target} {
		k, err := decodeFlat(b)
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
		sd := v.r.sides()[s]
		var err error
		if rows[s], err = sd.rowsAt(ctx, sd.Pool, keys[s]); err != nil {
			return fmt.Errorf("node %s: reading rows of %s: %w", sd.Node, sd.Table, err)
		}
		return nil
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
