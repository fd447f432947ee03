package engine

import (
	"context"

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
	var rows, exact []Values
	var probing []*entity
	for _, e := range *ents {
		n := e.net[from]
		if e.linked || n == nil || n.Op != netUpsert || e.heldBy != 0 {
			continue
		}
		row := n.row()
		mapped, errs := r.m.Map(from, row)
		if len(errs) > 0 {
			continue // reported when the entity is decided
		}
		rows, exact = append(rows, row), append(exact, mapped)
		probing = append(probing, e)
	}
	pr, err := r.probePairs(ctx, ts.Pool, fields, from, rows)
	if err != nil || pr.taken == nil { // nothing found
		return err
	}
	byKey := map[string]*entity{}
	for _, e := range *ents {
		if e.key[to] != nil && e.net[to] != nil {
			byKey[e.keyText(to)] = e
		}
	}
	claimed := map[string]bool{}
	for i, at := range pr.at {
		e := probing[at]
		row := matchOf(pr.found[i], exact[at], fields, to)
		if row == nil {
			continue
		}
		key := ts.keyOf(row)
		kt := canonicalKey(key)
		if _, linked := pr.taken[kt]; linked || claimed[kt] {
			continue // that row is another entity's
		}
		claimed[kt] = true // one row pairs with one entity
		p.link(e, to, key, kt)
		if other := byKey[kt]; other != nil && other != e {
			e.net[to] = other.net[to] // created on both sides in this window
			other.net[to] = nil
		} else {
			e.net[to] = seedNet(to, key, kt, row)
		}
	}
	return nil
}

// link pairs entity e with the row of side to under key (text its
// canonical text), and records the new link.
func (p *plan) link(e *entity, to mapping.Side, key Values, text string) {
	e.key[to], e.keyTxt[to], e.linked = key, text, true
	p.links = append(p.links, e.keyTexts())
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

// pairing is what probing the other side by natural key found.
type pairing struct {
	probes []Values             // the natural keys probed, as the other side's columns
	at     []int                // each probe's row among the rows given
	found  [][]Values           // each probe's rows on the other side
	taken  map[string]linkedKey // those rows already linked, by key text; nil when none was found
}

// probePairs looks up on the other side of from the rows whose natural key
// (fields, normalised by pairValue and pairSQL) is that of each of rows, a
// row of side from; a row with a NULL in its natural key pairs with
// nothing. It also reads which of the rows found are already linked.
func (r *syncRun) probePairs(ctx context.Context, q querier, fields []*mapping.Field, from mapping.Side, rows []Values) (*pairing, error) {
	to := from.Other()
	ts := r.sides()[to]
	pr := &pairing{}
	for i, row := range rows {
		probe := Values{}
		for _, f := range fields {
			v := pairValue(f, from, row)
			if v == nil {
				probe = nil
				break
			}
			probe[f.Columns(to)[0]] = v
		}
		if probe != nil {
			pr.probes, pr.at = append(pr.probes, probe), append(pr.at, i)
		}
	}
	var err error
	if pr.found, err = ts.pairRows(ctx, q, fields, pr.probes); err != nil {
		return nil, err
	}
	var keys [2][]string
	for _, found := range pr.found {
		for _, row := range found {
			keys[to] = append(keys[to], ts.keyText(row))
		}
	}
	if len(keys[to]) == 0 {
		return pr, nil
	}
	links, err := r.loadLinks(ctx, keys)
	if err != nil {
		return nil, err
	}
	pr.taken = links[to]
	return pr, nil
}
