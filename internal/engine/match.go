package engine

import (
	"context"
	"slices"
	"time"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// matchFields are the one-to-one fields of the sync's match columns.
func (r *syncRun) matchFields() []*mapping.Field {
	var out []*mapping.Field
	for _, name := range r.cfg.Match {
		for _, f := range r.m.Fields {
			if len(f.Source) == 1 && len(f.Target) == 1 && (f.Source[0] == name || f.Target[0] == name) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// matchColumns resolves the sync's match columns to one column per side.
func (r *syncRun) matchColumns() (cols [2][]string) {
	for _, f := range r.matchFields() {
		cols[0] = append(cols[0], f.Source[0])
		cols[1] = append(cols[1], f.Target[0])
	}
	return cols
}

// match links entities created on one side to an existing row with the same
// natural key (the match columns, after the field transforms) on the other,
// instead of creating a duplicate. The pair is then resolved like any
// entity changed on both sides.
func (r *syncRun) match(ctx context.Context, ents *[]*entity, p *plan) error {
	cols := r.matchColumns()
	if len(cols[0]) == 0 {
		return nil
	}
	for _, from := range []mapping.Side{mapping.Source, mapping.Target} {
		to := from.Other()
		if err := r.matchFrom(ctx, ents, p, from, to, cols); err != nil {
			return err
		}
	}
	return nil
}

func (r *syncRun) matchFrom(ctx context.Context, ents *[]*entity, p *plan, from, to mapping.Side, cols [2][]string) error {
	var probes []Values
	var probing []*entity
	for _, e := range *ents {
		n := e.net[from]
		if e.linked || n == nil || n.Op != netUpsert || e.heldBy != 0 {
			continue
		}
		mapped, errs := r.m.Map(from, n.row())
		if len(errs) > 0 {
			continue // reported when the entity is decided
		}
		probe := pick(mapped, cols[to])
		if slices.ContainsFunc(cols[to], func(c string) bool { return probe[c] == nil }) {
			continue // NULL matches nothing
		}
		probes = append(probes, probe)
		probing = append(probing, e)
	}
	found, err := r.sides()[to].findMatches(ctx, cols[to], probes)
	if err != nil || len(found) == 0 {
		return err
	}
	byKey := map[string]*entity{}
	for _, e := range *ents {
		if e.key[to] != nil && e.net[to] != nil {
			byKey[e.keyText(to)] = e
		}
	}
	keys := [2][]string{}
	for _, row := range found {
		keys[to] = append(keys[to], canonicalKey(r.sides()[to].keyOf(row)))
	}
	taken, err := r.loadLinks(ctx, keys)
	if err != nil {
		return err
	}
	for i, e := range probing {
		row, ok := found[canonicalKey(probes[i])]
		if !ok {
			continue
		}
		key := r.sides()[to].keyOf(row)
		kt := canonicalKey(key)
		if _, linked := taken[to][kt]; linked {
			continue // that row is another entity's
		}
		delete(found, canonicalKey(probes[i])) // one row pairs with one entity
		e.key[to], e.linked = key, true
		if other := byKey[kt]; other != nil && other != e {
			e.net[to] = other.net[to] // created on both sides in this window
			other.net[to] = nil
		} else {
			e.net[to] = &netChange{Side: to, Key: kt, KeyVals: key, Op: netUpsert, Created: true, Vals: row, At: map[string]time.Time{}}
		}
		var pair [2]Values
		pair[from], pair[to] = e.key[from], key
		p.links = append(p.links, pair)
	}
	return nil
}
