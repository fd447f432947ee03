package engine

import (
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
