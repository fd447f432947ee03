package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/mapping"
)

// entity is one synced record: its net change on each side in this window
// and its keys on both sides when they are known (linked).
type entity struct {
	net    [2]*netChange // by mapping.Side
	key    [2]Values     // by mapping.Side; nil when unknown, never changed once known
	keyTxt [2]string     // canonical text of key, once computed
	linked bool
	heldBy int64 // an open manual conflict holds it
}

func (e *entity) keyText(s mapping.Side) string {
	if e.keyTxt[s] == "" && e.key[s] != nil {
		e.keyTxt[s] = canonicalKey(e.key[s])
	}
	return e.keyTxt[s]
}

// keyTexts is both sides' key texts ("" where there is no key).
func (e *entity) keyTexts() [2]string {
	return [2]string{e.keyText(mapping.Source), e.keyText(mapping.Target)}
}

// write is one row write to one side.
type write struct {
	Kind string `json:"kind"` // insert | update | delete
	Key  Values `json:"key,omitempty"`
	Vals Values `json:"vals,omitempty"`
	// Ref names the write within its run: the written side's key, or for an
	// insert the other side's key (the new key is not known yet).
	Ref     string `json:"ref"`
	ent     *entity
	errorID int64 // the open sync_errors row this write retries
}

// plan is what resolution decided for one run.
type plan struct {
	writes    [2][]*write // by the side written
	conflicts []*conflictRow
	errors    []*errorRow
	links     [][2]string // key texts of the pairs found by match: [source, target]
	unlinks   [][2]string // key texts of the links to remove ("": no key on that side)
	holds     []*entity   // entities a manual conflict holds
	seeded    int         // rows of the initial sync's chunk
	// seen: the snapshots the initial sync's chunk read each side in, kept
	// with the links it makes ("": none), and with the links it compared
	// (source key texts): a resync's, or links there before an initial sync.
	seen     [2]string
	compared []string
}

// conflictRow is one row for tandem.sync_conflicts.
type conflictRow struct {
	Kind       string
	Keys       [2]Values
	Changes    [2]any
	Base       Values
	Resolution string
	Kept, Lost map[string]Values // by side name
	Fields     []string
	Open       bool
}

// errorRow is one row for tandem.sync_errors.
type errorRow struct {
	ID         int64 // an open error being retried
	Side       mapping.Side
	Keys       Values
	Write      *write
	Reason     string
	SQLState   string
	Constraint string
}

// netJSON is how a net change is stored in a conflict.
func netJSON(n *netChange) any {
	if n == nil {
		return nil
	}
	op := n.Op
	if n.Created {
		op = "insert"
	}
	return map[string]any{"op": op, "vals": n.Vals, "at": n.Last}
}

// resolver decides one window. Everything it reads from nodes (current
// rows, matches) it reads up front, in batches.
type resolver struct {
	run  *syncRun
	m    *mapping.Mapping
	plan *plan
}

func (r *syncRun) sides() [2]*side { return [2]*side{r.src, r.tgt} }

// strategy is how the run settles conflicts: the sync's initial strategy
// in a run of its initial sync, else its conflict strategy.
func (r *syncRun) strategy() string {
	if r.seeding && r.cfg.Initial != "" {
		return r.cfg.Initial
	}
	return r.cfg.Conflict
}

// decide resolves every entity.
func (v *resolver) decide(ents []*entity) {
	for _, e := range ents {
		if e.heldBy != 0 {
			v.plan.holds = append(v.plan.holds, e)
			continue
		}
		v.lost(e)
		s, t := e.net[mapping.Source], e.net[mapping.Target]
		switch {
		case s != nil && s.Op != netNone && t != nil && t.Op != netNone:
			v.both(e)
		case s != nil && s.Op != netNone:
			v.one(e, mapping.Source)
		case t != nil && t.Op != netNone:
			v.one(e, mapping.Target)
		}
	}
}

// lost records application writes that the sync's own applies overwrote.
func (v *resolver) lost(e *entity) {
	for s, n := range e.net {
		if n == nil {
			continue
		}
		for _, l := range n.Lost {
			side := mapping.Side(s)
			v.plan.conflicts = append(v.plan.conflicts, &conflictRow{
				Kind: "concurrent_apply", Keys: e.key, Resolution: "overwritten_by_sync",
				Kept: map[string]Values{side.String(): l.Kept}, Lost: map[string]Values{side.String(): l.Lost},
				Changes: sideChanges(side, map[string]any{"vals": l.Lost, "at": l.At}),
			})
		}
	}
}

func sideChanges(s mapping.Side, c any) [2]any {
	var out [2]any
	out[s] = c
	return out
}

// one handles an entity changed on one side only.
func (v *resolver) one(e *entity, from mapping.Side) {
	n, to := e.net[from], from.Other()
	if !v.run.flows(from) {
		return
	}
	if n.Op == netDelete {
		if e.linked {
			v.add(to, &write{Kind: "delete", Key: e.key[to], Ref: e.keyText(to), ent: e})
			v.plan.unlinks = append(v.plan.unlinks, e.keyTexts())
		}
		return
	}
	if e.linked {
		vals, ok := v.mapRow(e, from, n.Vals)
		if ok && len(vals) > 0 {
			v.add(to, &write{Kind: "update", Key: e.key[to], Vals: vals, Ref: e.keyText(to), ent: e})
		}
		return
	}
	vals, ok := v.mapRow(e, from, n.row())
	if ok {
		v.add(to, &write{Kind: "insert", Vals: vals, Ref: insertRef(e.keyText(from)), ent: e})
	}
}

// mapRow maps the fields that cols touch from one side to the other; a
// value a transform cannot take sends the entity to sync_errors.
func (v *resolver) mapRow(e *entity, from mapping.Side, cols Values) (Values, bool) {
	row := e.net[from].row()
	fields := v.m.Touched(from, cols)
	out := make(Values, len(fields)+1)
	for _, f := range fields {
		if err := f.MapInto(from, row, out); err != nil {
			v.mapError(e, from, err)
			return nil, false
		}
	}
	return out, true
}

func (v *resolver) mapError(e *entity, from mapping.Side, err error) {
	to := from.Other()
	v.plan.errors = append(v.plan.errors, &errorRow{
		Side: to, Keys: e.net[from].KeyVals,
		Reason: fmt.Sprintf("mapping %s change of %s on node %s: %v", from, v.run.sides()[from].Table, v.run.sides()[from].Node, err),
	})
}

func (v *resolver) add(to mapping.Side, w *write) {
	v.plan.writes[to] = append(v.plan.writes[to], w)
}

// both handles an entity changed on both sides.
func (v *resolver) both(e *entity) {
	s, t := e.net[mapping.Source], e.net[mapping.Target]
	switch {
	case s.Op == netDelete && t.Op == netDelete:
		v.plan.unlinks = append(v.plan.unlinks, e.keyTexts())
	case s.Op == netDelete || t.Op == netDelete:
		v.updateDelete(e)
	default:
		v.fields(e)
	}
}

// flows reports whether changes from side from are propagated.
func (r *syncRun) flows(from mapping.Side) bool {
	switch r.cfg.Direction {
	case config.DirectionSourceToTarget:
		return from == mapping.Source
	case config.DirectionTargetToSource:
		return from == mapping.Target
	}
	return true
}

// winner settles one conflict between the two sides' changes made at sAt
// and tAt. ok is false for manual.
func (r *syncRun) winner(sAt, tAt time.Time) (mapping.Side, string, bool) {
	switch r.strategy() {
	case config.ConflictSourceWins:
		return mapping.Source, "source_wins", true
	case config.ConflictTargetWins:
		return mapping.Target, "target_wins", true
	case config.ConflictManual:
		return 0, "manual", false
	}
	switch {
	case sAt.After(tAt):
		return mapping.Source, "latest_wins", true
	case tAt.After(sAt):
		return mapping.Target, "latest_wins", true
	case r.src.Node <= r.tgt.Node: // a tie: the node whose name sorts first, the same on every run
		return mapping.Source, "latest_wins", true
	}
	return mapping.Target, "latest_wins", true
}

// updateDelete settles an entity deleted on one side and changed on the other.
func (v *resolver) updateDelete(e *entity) {
	del := mapping.Source
	if e.net[mapping.Target].Op == netDelete {
		del = mapping.Target
	}
	upd := del.Other()
	win, how, ok := v.run.winner(e.net[mapping.Source].Last, e.net[mapping.Target].Last)
	c := &conflictRow{Kind: "update_delete", Keys: e.key, Resolution: how, Base: e.net[del].Old,
		Changes: [2]any{netJSON(e.net[mapping.Source]), netJSON(e.net[mapping.Target])}}
	v.plan.conflicts = append(v.plan.conflicts, c)
	if !ok {
		c.Open = true
		return
	}
	if win == del {
		c.Lost = map[string]Values{upd.String(): e.net[upd].Vals}
		if v.run.flows(del) {
			v.add(upd, &write{Kind: "delete", Key: e.key[upd], Ref: e.keyText(upd), ent: e})
		}
		v.plan.unlinks = append(v.plan.unlinks, e.keyTexts())
		return
	}
	c.Kept = map[string]Values{upd.String(): e.net[upd].Vals}
	c.Lost = map[string]Values{del.String(): e.net[del].Old}
	if !v.run.flows(upd) {
		return
	}
	// Re-create the row on the side that deleted it, from the whole current row.
	vals, ok := v.mapRow(e, upd, e.net[upd].row())
	if ok {
		v.add(del, &write{Kind: "insert", Vals: vals, Ref: insertRef(e.keyText(upd)), ent: e})
	}
}

// fields merges an entity updated on both sides, field by field.
func (v *resolver) fields(e *entity) {
	s, t := e.net[mapping.Source], e.net[mapping.Target]
	srow, trow := s.row(), t.row()
	toT, toS := Values{}, Values{}
	kept, lost := map[string]Values{}, map[string]Values{}
	var conflicted []string
	var how string
	seen := map[*mapping.Field]bool{}
	fields := append(v.m.Touched(mapping.Source, s.Vals), v.m.Touched(mapping.Target, t.Vals)...)
	slices.SortFunc(fields, func(a, b *mapping.Field) int { return a.Index - b.Index })
	for _, f := range fields {
		if seen[f] {
			continue
		}
		seen[f] = true
		inS, inT := touches(f, mapping.Source, s.Vals), touches(f, mapping.Target, t.Vals)
		sv, serr := f.Map(mapping.Source, srow)
		tv, terr := f.Map(mapping.Target, trow)
		if inS && serr != nil {
			v.mapError(e, mapping.Source, serr)
			return
		}
		if inT && terr != nil {
			v.mapError(e, mapping.Target, terr)
			return
		}
		switch {
		case inS && !inT:
			copyInto(toT, sv)
		case inT && !inS:
			copyInto(toS, tv)
		default:
			if sameValues(sv, pick(trow, f.Target)) {
				continue // both made the same edit
			}
			win, h, ok := v.run.winner(latest(s, f.Source), latest(t, f.Target))
			how = h
			conflicted = append(conflicted, fieldLabel(f))
			if !ok {
				continue
			}
			if win == mapping.Source {
				copyInto(toT, sv)
				addTo(kept, "source", pick(srow, f.Source))
				addTo(lost, "target", pick(trow, f.Target))
			} else {
				copyInto(toS, tv)
				addTo(kept, "target", pick(trow, f.Target))
				addTo(lost, "source", pick(srow, f.Source))
			}
		}
	}
	if len(conflicted) > 0 {
		base := Values{}
		copyInto(base, s.Old)
		c := &conflictRow{Kind: "update_update", Keys: e.key, Resolution: how, Fields: conflicted,
			Changes: [2]any{netJSON(s), netJSON(t)}, Base: base, Kept: kept, Lost: lost}
		if s.Created && t.Created {
			c.Kind = "insert_insert"
		}
		v.plan.conflicts = append(v.plan.conflicts, c)
		if how == "manual" {
			c.Open, c.Kept, c.Lost = true, nil, nil
			return
		}
	}
	if len(toT) > 0 && v.run.flows(mapping.Source) {
		v.add(mapping.Target, &write{Kind: "update", Key: e.key[mapping.Target], Vals: toT, Ref: e.keyText(mapping.Target), ent: e})
	}
	if len(toS) > 0 && v.run.flows(mapping.Target) {
		v.add(mapping.Source, &write{Kind: "update", Key: e.key[mapping.Source], Vals: toS, Ref: e.keyText(mapping.Source), ent: e})
	}
}

func touches(f *mapping.Field, s mapping.Side, vals Values) bool {
	for _, c := range f.Columns(s) {
		if _, ok := vals[c]; ok {
			return true
		}
	}
	return false
}

// latest is when a side last changed any of cols (zero: not in this window).
func latest(n *netChange, cols []string) time.Time {
	var t time.Time
	for _, c := range cols {
		if n.At[c].After(t) {
			t = n.At[c]
		}
	}
	return t
}

func pick(row Values, cols []string) Values {
	out := Values{}
	for _, c := range cols {
		out[c] = row[c]
	}
	return out
}

func sameValues(a, b Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || !mapping.Equal(x, y) {
			return false
		}
	}
	return true
}

func copyInto(dst, src Values) {
	for k, x := range src {
		dst[k] = x
	}
}

func addTo(m map[string]Values, side string, vals Values) {
	if m[side] == nil {
		m[side] = Values{}
	}
	copyInto(m[side], vals)
}

// insertRefPrefix marks an insert's ref: it names the other side's key, so
// it must not collide with the refs (keys) of this side's updates.
const insertRefPrefix = "from "

func insertRef(otherKey string) string { return insertRefPrefix + otherKey }

// fieldLabel names a field by its source and target columns
// (full_name/firstname+lastname), in conflicts and in verify reports.
func fieldLabel(f *mapping.Field) string {
	return strings.Join(f.Source, "+") + "/" + strings.Join(f.Target, "+")
}
