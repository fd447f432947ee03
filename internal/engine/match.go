package engine

import (
	"context"
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

// match links entities created on one side to an existing row with the same
// natural key on the other, instead of creating a duplicate. Natural keys
// compare as the initial sync pairs them: each side's value normalised by
// the field's transform (lowercase, uppercase, trim), so a row the initial
// sync would pair is paired here too. The pair is then resolved like any
// entity changed on both sides.
func (r *syncRun) match(ctx context.Context, ents *[]*entity, p *plan) error {
	fields := r.matchFields()
	if len(fields) == 0 {
		return nil
	}
	for _, from := range []mapping.Side{mapping.Source, mapping.Target} {
		if err := r.matchFrom(ctx, ents, p, from, fields); err != nil {
			return err
		}
	}
	return nil
}

func (r *syncRun) matchFrom(ctx context.Context, ents *[]*entity, p *plan, from mapping.Side, fields []*mapping.Field) error {
	to := from.Other()
	ts := r.sides()[to]
	var probes, exact []Values
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
		probe := Values{}
		for _, f := range fields {
			v := pairValue(f, from, n.row())
			if v == nil {
				probe = nil // NULL matches nothing
				break
			}
			probe[f.Columns(to)[0]] = v
		}
		if probe != nil {
			probes = append(probes, probe)
			exact = append(exact, mapped)
			probing = append(probing, e)
		}
	}
	found, err := ts.pairRows(ctx, ts.Pool, fields, probes)
	if err != nil {
		return err
	}
	var keys [2][]string
	for _, rows := range found {
		for _, row := range rows {
			keys[to] = append(keys[to], ts.keyText(row))
		}
	}
	if len(keys[to]) == 0 {
		return nil
	}
	byKey := map[string]*entity{}
	for _, e := range *ents {
		if e.key[to] != nil && e.net[to] != nil {
			byKey[e.keyText(to)] = e
		}
	}
	taken, err := r.loadLinks(ctx, keys)
	if err != nil {
		return err
	}
	claimed := map[string]bool{}
	for i, e := range probing {
		row := matchOf(found[i], exact[i], fields, to)
		if row == nil {
			continue
		}
		key := ts.keyOf(row)
		kt := canonicalKey(key)
		if _, linked := taken[to][kt]; linked || claimed[kt] {
			continue // that row is another entity's
		}
		claimed[kt] = true // one row pairs with one entity
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

// matchOf is the row of rows (those whose normalised natural key is the
// entity's) that the entity pairs with: the only one, or else the only one
// holding exactly the entity's mapped values. Several and none exact: no
// guess, the entity is created as it would be without match (a unique
// index on the other side then sends it to sync_errors, naming itself).
func matchOf(rows []Values, mapped Values, fields []*mapping.Field, to mapping.Side) Values {
	if len(rows) == 1 {
		return rows[0]
	}
	var only Values
	for _, row := range rows {
		same := true
		for _, f := range fields {
			c := f.Columns(to)[0]
			same = same && mapping.Equal(row[c], mapped[c])
		}
		if same {
			if only != nil {
				return nil
			}
			only = row
		}
	}
	return only
}
