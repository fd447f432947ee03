package engine

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// What a window's changes to Ann amount to once the rows after the window
// have had their say (settleLater), folded as a run folds them (collapse).
func TestSettleLater(t *testing.T) {
	const self = "contacts"
	app := func(op string, vals Values) change {
		return change{Op: op, Key: `{"id":1}`, KeyVals: Values{"id": 1}, New: vals}
	}
	own := func(op string, vals Values) change {
		c := app(op, vals)
		c.Origin = self
		return c
	}
	lost := func(l, k Values) lostWrite { return lostWrite{Lost: l, Kept: k} }
	for _, tc := range []struct {
		name           string
		window, later  []change
		op             string // the net op (netNone: nothing sent)
		vals           Values
		lost           []lostWrite
		created        bool
		untouchedLater bool // the later rows leave the window as it was
	}{{
		name:   "an own write comes first: overwritten, a conflict",
		window: []change{app(opUpdate, Values{"phone": "a1"})},
		later:  []change{own(opUpdate, Values{"phone": "hub"})},
		op:     netNone, lost: []lostWrite{lost(Values{"phone": "a1"}, Values{"phone": "hub"})},
	}, {
		name:   "the application writes again, then the sync: not sent, and the later write is the one lost",
		window: []change{app(opUpdate, Values{"phone": "a1"})},
		later:  []change{app(opUpdate, Values{"phone": "a2"}), own(opUpdate, Values{"phone": "hub"})},
		op:     netNone,
	}, {
		name:   "an own write of the value the column holds is no write",
		window: []change{app(opUpdate, Values{"phone": "X"})},
		later: []change{own(opUpdate, Values{"phone": "X", "full_name": "Ann Leigh"}), app(opUpdate, Values{"phone": "Y"}),
			own(opUpdate, Values{"phone": "crm"})},
		op: netNone,
	}, {
		name:   "the same in the window",
		window: []change{app(opUpdate, Values{"phone": "X"}), own(opUpdate, Values{"phone": "X", "full_name": "Ann Leigh"})},
		later:  []change{own(opUpdate, Values{"phone": "crm"})},
		op:     netNone, lost: []lostWrite{lost(Values{"phone": "X"}, Values{"phone": "crm"})},
	}, {
		name:   "an own write in the window overwrote it: its conflict alone",
		window: []change{app(opUpdate, Values{"phone": "a1"}), own(opUpdate, Values{"phone": "hub"})},
		later:  []change{own(opUpdate, Values{"phone": "z"})},
		op:     netNone, lost: []lostWrite{lost(Values{"phone": "a1"}, Values{"phone": "hub"})}, untouchedLater: true,
	}, {
		name:   "the sync writes back the window's value after the application's next: not sent",
		window: []change{app(opUpdate, Values{"phone": "X"})},
		later:  []change{app(opUpdate, Values{"phone": "Y"}), own(opUpdate, Values{"phone": "X"})},
		op:     netNone,
	}, {
		name:   "the sync first, the application last: a conflict, and the later write goes in its own window",
		window: []change{app(opUpdate, Values{"phone": "a1"})},
		later:  []change{own(opUpdate, Values{"phone": "hub"}), app(opUpdate, Values{"phone": "a3"})},
		op:     netNone, lost: []lostWrite{lost(Values{"phone": "a1"}, Values{"phone": "hub"})},
	}, {
		name:   "only the application after: sent",
		window: []change{app(opUpdate, Values{"phone": "a1"})},
		later:  []change{app(opUpdate, Values{"phone": "a2"})},
		op:     netUpsert, vals: Values{"phone": "a1"}, untouchedLater: true,
	}, {
		name:   "a row created takes the sync's value, with no conflict",
		window: []change{app(opInsert, Values{"id": 1, "phone": "a1", "email": "e"})},
		later:  []change{app(opUpdate, Values{"phone": "a2"}), own(opUpdate, Values{"phone": "hub"})},
		op:     netUpsert, vals: Values{"id": 1, "phone": "hub", "email": "e"}, created: true,
	}, {
		name: "a row deleted and inserted again is no row created: its column is not sent",
		window: []change{app(opDelete, nil), app(opInsert, Values{"id": 1, "phone": "a1", "email": "e"}),
			app(opUpdate, Values{"email": "f"})},
		later: []change{app(opUpdate, Values{"phone": "a2"}), own(opUpdate, Values{"phone": "hub"})},
		op:    netUpsert, vals: Values{"id": 1, "email": "f"},
	}, {
		name:   "a delete the sync undid",
		window: []change{app(opUpdate, Values{"phone": "a1"}), app(opDelete, nil)},
		later:  []change{own(opInsert, Values{"id": 1, "phone": "hub"})},
		op:     netNone, lost: []lostWrite{lost(nil, Values{"id": 1, "phone": "hub"})},
	}, {
		name:   "a row created takes the sync's last value",
		window: []change{app(opInsert, Values{"id": 1, "phone": "c"})},
		later:  []change{own(opUpdate, Values{"phone": "h1"}), own(opUpdate, Values{"phone": "h2"})},
		op:     netUpsert, vals: Values{"id": 1, "phone": "h2"}, created: true,
		lost: []lostWrite{lost(Values{"phone": "c"}, Values{"phone": "h1"})},
	}, {
		name:   "so does one the sync wrote in the window",
		window: []change{app(opInsert, Values{"id": 1, "phone": "c"}), own(opUpdate, Values{"phone": "h1"})},
		later:  []change{own(opUpdate, Values{"phone": "h2"})},
		op:     netUpsert, vals: Values{"id": 1, "phone": "h2"}, created: true,
		lost: []lostWrite{lost(Values{"phone": "c"}, Values{"phone": "h1"})},
	}, {
		name:   "a delete whose row the sync put back after the application's insert: not sent",
		window: []change{app(opDelete, nil)},
		later: []change{app(opInsert, Values{"id": 1, "phone": "a"}), own(opDelete, nil),
			own(opInsert, Values{"id": 1, "phone": "h"})},
		op: netNone,
	}, {
		name:   "a delete after the application replaced one column: the other is the one lost",
		window: []change{app(opUpdate, Values{"phone": "a1", "email": "e1"})},
		later:  []change{app(opUpdate, Values{"email": "e2"}), own(opDelete, nil)},
		op:     netNone, lost: []lostWrite{lost(Values{"phone": "a1"}, nil)},
	}, {
		name:   "per column",
		window: []change{app(opUpdate, Values{"phone": "a1", "full_name": "n1"})},
		later: []change{app(opUpdate, Values{"full_name": "n2"}),
			own(opUpdate, Values{"phone": "hub", "full_name": "hub2"})},
		op: netNone, lost: []lostWrite{lost(Values{"phone": "a1"}, Values{"phone": "hub"})},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			window := append([]change(nil), tc.window...)
			got := settleLater(window, pendingWrites(window, self), append([]change(nil), tc.later...), self)
			if tc.untouchedLater {
				require.Equal(t, tc.window, got)
			}
			nets := collapse(mapping.Source, got, self)
			if tc.op == netNone && len(tc.lost) == 0 {
				require.Empty(t, nets)
				return
			}
			require.Len(t, nets, 1)
			n := nets[0]
			require.Equal(t, tc.op, n.Op)
			require.Equal(t, tc.created, n.Created)
			if tc.op == netUpsert {
				require.Equal(t, tc.vals, n.Vals)
			}
			for i := range n.Lost {
				n.Lost[i].At = tc.lost[min(i, len(tc.lost)-1)].At
			}
			require.Equal(t, tc.lost, n.Lost)
		})
	}
}

// A property of settleLater, over random histories of one row on a side:
// application and sync writes (updates of some columns, or, like a WAL
// node's echoes, of every column; inserts; deletes) cut into random
// windows, each settled against the rows after it up to the sync's last
// own write, then folded (collapse) and applied to the other side, which
// also holds what each own write came from. The other side must end as
// the side is, and every value the application wrote must be on the side
// at the end, replaced by a later application write, sent, or recorded as
// lost. Each history is checked against the old way too (one window
// holding everything), as a check on the check.
func TestSettleLaterKeepsTheSidesInStep(t *testing.T) {
	const self = "s"
	for _, fullRows := range []bool{false, true} {
		for seed := range uint64(20000) {
			rnd := rand.New(rand.NewPCG(seed, 1))
			h := randomHistory(rnd, self, fullRows)
			if len(h.changes) == 0 {
				continue
			}
			var cuts []int
			for i := 1; i < len(h.changes); i++ {
				if rnd.IntN(3) == 0 {
					cuts = append(cuts, i)
				}
			}
			for _, windows := range [][]int{append(cuts, len(h.changes)), {len(h.changes)}} {
				other, present := h.otherStart()
				var sent, lost []string
				from := 0
				for _, end := range windows {
					w := cloneChanges(h.changes[from:end])
					if h.lastOwn >= end {
						if p := pendingWrites(w, self); len(p) > 0 {
							w = settleLater(w, p, filterLater(p, cloneChanges(h.changes[end:h.lastOwn+1]), self), self)
						}
					}
					for _, n := range collapse(mapping.Source, w, self) {
						if !n.Created && h.lastOwn >= end {
							for col := range n.Vals {
								if h.lastWriterOwn(col, end) {
									t.Fatalf("seed %d (full rows %v), windows %v: the window ending at %d sends %s=%v, which the side no longer holds: the sync wrote it last\n%s",
										seed, fullRows, windows, end, col, n.Vals[col], h)
								}
							}
						}
						other, present = applyNet(other, present, n, h.final)
						for col, v := range n.Vals {
							sent = append(sent, col+"="+fmt.Sprint(v))
						}
						for _, l := range n.Lost {
							for col, v := range l.Lost {
								lost = append(lost, col+"="+fmt.Sprint(v))
							}
						}
					}
					from = end
				}
				if present != (h.final != nil) || present && fmt.Sprint(other) != fmt.Sprint(h.final) {
					t.Fatalf("seed %d (full rows %v), windows %v: the other side holds %v (%v), the side %v\n%s",
						seed, fullRows, windows, other, present, h.final, h)
				}
				for _, v := range h.unreplaced() {
					if !slices.Contains(sent, v) && !slices.Contains(lost, v) && fmt.Sprint(h.final[v[:1]]) != v[2:] {
						t.Fatalf("seed %d (full rows %v), windows %v: the application's %s was neither sent nor recorded lost (sent %v, lost %v)\n%s",
							seed, fullRows, windows, v, sent, lost, h)
					}
				}
			}
		}
	}
}

// history is one row's changes on a side, in capture order.
type history struct {
	start   Values // the row before them (nil: none)
	changes []change
	final   Values // the row after them (nil: none)
	lastOwn int    // index of the last own change (-1: none)
}

func randomHistory(rnd *rand.Rand, self string, fullRows bool) history {
	h := history{lastOwn: -1}
	if rnd.IntN(3) != 0 {
		h.start = Values{"id": 1, "a": "0", "b": "0"}
	}
	cur := maps.Clone(h.start)
	for range 2 + rnd.IntN(7) {
		c := change{Key: `{"id":1}`, KeyVals: Values{"id": 1}}
		if rnd.IntN(2) == 0 {
			c.Origin = self
		}
		switch {
		case cur == nil:
			c.Op, c.New = opInsert, Values{"id": 1, "a": fmt.Sprint(rnd.IntN(3)), "b": fmt.Sprint(rnd.IntN(3))}
		case rnd.IntN(4) == 0:
			c.Op, c.Old = opDelete, maps.Clone(cur)
		default:
			c.Op, c.New, c.Old = opUpdate, Values{}, Values{}
			changed := false
			for _, col := range []string{"a", "b"} {
				if !fullRows && rnd.IntN(2) == 0 {
					continue
				}
				v := fmt.Sprint(rnd.IntN(3))
				if v == cur[col] && !fullRows && c.Origin != self {
					continue // a trigger records changed columns; a marker lists what the sync wrote
				}
				c.New[col], c.Old[col] = v, cur[col]
				changed = changed || v != cur[col]
			}
			if !changed {
				continue
			}
			if fullRows {
				c.New["id"] = 1
			}
		}
		switch c.Op {
		case opInsert:
			cur = maps.Clone(c.New)
		case opDelete:
			cur = nil
		default:
			maps.Copy(cur, c.New)
		}
		c.ID = int64(len(h.changes) + 1)
		if c.Origin == self {
			h.lastOwn = len(h.changes)
		}
		h.changes = append(h.changes, c)
	}
	h.final = cur
	return h
}

// otherStart is the other side before the windows: the row as it was,
// with every own write's values (each came from there).
func (h history) otherStart() (Values, bool) {
	other := maps.Clone(h.start)
	for _, c := range h.changes {
		switch {
		case c.Origin != "s":
		case c.Op == opInsert:
			other = maps.Clone(c.New)
		case c.Op == opDelete:
			other = nil
		case other != nil:
			maps.Copy(other, c.New)
		}
	}
	return other, other != nil
}

// unreplaced lists "col=value" of the application's writes that no later
// application write or delete replaced.
func (h history) unreplaced() []string {
	var out []string
	for i, c := range h.changes {
		if c.Origin == "s" || c.Op == opDelete {
			continue
		}
	next:
		for col, v := range c.New {
			if col == "id" {
				continue
			}
			for _, d := range h.changes[i+1:] {
				if _, ok := d.New[col]; d.Origin != "s" && (ok || d.Op == opDelete) {
					continue next
				}
			}
			out = append(out, col+"="+fmt.Sprint(v))
		}
	}
	return out
}

// lastWriterOwn reports whether the last change to col after the first
// end changes, up to the last own one, is the sync's (an own update of
// the value the column held is no change).
func (h history) lastWriterOwn(col string, end int) bool {
	cur := maps.Clone(h.start)
	own := false
	for i, c := range h.changes[:h.lastOwn+1] {
		v, ok := c.New[col]
		changed := c.Op != opUpdate || ok && (c.Origin != "s" || fmt.Sprint(v) != fmt.Sprint(cur[col]))
		if i >= end && changed {
			own = c.Origin == "s"
		}
		switch c.Op {
		case opInsert:
			cur = maps.Clone(c.New)
		case opDelete:
			cur = nil
		default:
			maps.Copy(cur, c.New)
		}
	}
	return own
}

func (h history) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "start %v\n", h.start)
	for _, c := range h.changes {
		fmt.Fprintf(&b, "  %d %q %s %v\n", c.ID, c.Origin, c.Op, c.New)
	}
	return b.String()
}

func cloneChanges(cs []change) []change {
	out := slices.Clone(cs)
	for i := range out {
		out[i].New, out[i].Old = maps.Clone(out[i].New), maps.Clone(out[i].Old)
	}
	return out
}

// filterLater is what readLater returns of later: the own writes that
// write a pending column or a row, then the application's that do, up to
// the last of those own writes.
func filterLater(pending map[string]*pendingWrite, later []change, self string) []change {
	p := pending[`{"id":1}`]
	writes := func(c change) bool {
		if c.Op != opUpdate {
			return true
		}
		for col := range c.New {
			if p.cols[col] != nil {
				return true
			}
		}
		return false
	}
	last := int64(-1)
	for _, c := range later {
		if c.Origin == self && writes(c) {
			last = c.ID
		}
	}
	var out []change
	for _, c := range later {
		if writes(c) && (c.Origin == self || c.ID <= last) {
			out = append(out, c)
		}
	}
	return out
}

// applyNet applies a window's net change to the other side's row (a
// created row is the row as the window has it; an update of a row the
// other side lacks creates it from the side's final row, as an apply's
// fetch of the current row would).
func applyNet(other Values, present bool, n *netChange, final Values) (Values, bool) {
	switch {
	case n.Op == netDelete:
		return nil, false
	case n.Op != netUpsert:
		return other, present
	case n.Created:
		return maps.Clone(n.Vals), true
	case !present:
		return maps.Clone(final), final != nil
	}
	other = maps.Clone(other)
	maps.Copy(other, n.Vals)
	return other, true
}
