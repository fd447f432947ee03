package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// In windows of 4 changes, one pull takes crm's whole backlog: 4 inserts,
// an application's update of Ann, 8 more inserts. The first window sets
// Ann's phone from hubspot on crm, over the application's value; that
// apply's marker comes after the whole backlog. The window holding the
// application's update reads the marker after it: the update, overwritten
// by the apply, is a conflict the apply won, not a change sent to
// hubspot.
func TestOverwrittenWriteFarBeforeTheApplysMarker(t *testing.T) {
	t.Parallel()
	windowBeforeOwnRows(t, false)
}

// The same with the record of the window holding the conflict refused
// once, after its apply committed: the window is redone with the same rows,
// so the conflict is recorded.
func TestOverwrittenWriteFarBeforeTheApplysMarkerRedone(t *testing.T) {
	t.Parallel()
	windowBeforeOwnRows(t, true)
}

// In windows of 4, one pull takes crm's whole backlog: 4 inserts, Ann's
// phone set to 'a1', 3 inserts, Ann's phone set to 'a2', 1 insert. The
// first window sets Ann's phone from hubspot ('hub') on crm, over 'a2'; its
// marker comes after the backlog. The window holding 'a1' does not send it
// on (crm holds 'hub' since), and the conflict recorded is 'a2' lost to
// 'hub', once: 'a1' was replaced by the application itself.
func TestWriteReplacedBeforeAnApplyAfterTheWindow(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	require.Equal(t, 1, r.run("contacts").Created)
	r.idle("contacts")
	r.eng.Window, r.eng.PullBatch = 4, 100
	insertContacts(r, 1, 4)
	r.exec("crm", `UPDATE contacts SET phone = 'a1' WHERE email = 'ann@x.com'`)
	insertContacts(r, 5, 7)
	r.exec("crm", `UPDATE contacts SET phone = 'a2' WHERE email = 'ann@x.com'`)
	insertContacts(r, 8, 8)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'hub' WHERE email = 'ann@x.com'`)

	r.run("contacts")
	r.idle("contacts")
	requireAnnSettledOnHub(t, r, 9, "a2")
	requireWindowsAtMost(t, r, 4)
}

// Backlogs on both sides, in windows of 10: each window's apply puts its
// marker after the other side's whole backlog. Yet every window takes at
// most 10 changes a side, the sides converge, and no value overwritten
// goes unrecorded.
func TestWindowsStaySmallWithBacklogsOnBothSides(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML("    conflict: latest_wins\n"), twoNodes())
	backlogsOnBothSides(t, r)
	requireMarkersParsedOnce(t, r)
}

// The same with hubspot captured from its WAL: the sync's own rows there
// are its writes row by row, whole rows (not a marker), origin set.
func TestWindowsStaySmallWithBacklogsOnBothSidesAndAWALNode(t *testing.T) {
	t.Parallel()
	backlogsOnBothSides(t, newRig(t, walYAML("    conflict: latest_wins\n"), walNodes()))
}

// The same with no parsed marker kept between windows: each window parses
// the markers after it again, and comes to the same.
func TestWindowsStaySmallWithBacklogsOnBothSidesParsingMarkersEachTime(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML("    conflict: latest_wins\n"), twoNodes())
	r.eng.SetMarkerCacheWrites(1)
	backlogsOnBothSides(t, r)
	require.Greater(t, r.eng.MarkersParsed(), int64(r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE op = 'applied'`)))
}

func backlogsOnBothSides(t *testing.T, r *rig) {
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) SELECT 'Crm P' || g, 'seed' || g || '@x', 'seed' FROM generate_series(1, 100) g`)
	r.run("contacts")
	r.idle("contacts")
	r.eng.Window, r.eng.PullBatch = 10, 10
	for i := range 300 {
		for _, node := range []string{"crm", "hubspot"} {
			r.exec(node, randomWrite(node, fmt.Sprintf("%s%d", node[:1], i)))
		}
	}
	before := r.eng.ReadAfterWindows()
	r.run("contacts")
	r.idle("contacts")
	requireConvergedWithoutLoss(t, r)
	requireWindowsAtMost(t, r, 10)
	require.Greater(t, r.eng.ReadAfterWindows()-before, int64(10), "windows that read the sync's own rows after them")
}

// requireMarkersParsedOnce fails if readLater parsed a marker twice.
func requireMarkersParsedOnce(t *testing.T, r *rig) {
	t.Helper()
	markers := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE op = 'applied'`)
	require.LessOrEqual(t, r.eng.MarkersParsed(), int64(markers), "markers parsed, of %d", markers)
	// Every window has passed them: none is kept.
	require.Zero(t, r.eng.MarkersCached(), "markers kept once the backlogs are done")
}

// requireWindowsAtMost fails if a run's window took more than n changes of
// a side.
func requireWindowsAtMost(t *testing.T, r *rig, n int) {
	t.Helper()
	require.Empty(t, r.ctlRows(`SELECT concat_ws(' ', 'run', r.id, s.node, count(c.id)) FROM tandem.sync_runs r
		CROSS JOIN LATERAL (VALUES ('crm', 'public.contacts', r.source_from, r.source_through),
			('hubspot', 'public.hs_contacts', r.target_from, r.target_through)) s(node, tbl, "from", through)
		JOIN tandem.change_log c ON c.node = s.node AND c.table_name = s.tbl AND c.id > s."from" AND c.id <= s.through
		GROUP BY r.id, s.node HAVING count(c.id) > $1`, n))
}

func insertContacts(r *rig, from, to int) {
	for i := from; i <= to; i++ {
		r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ($1, $2)`, fmt.Sprintf("P %d", i), fmt.Sprintf("p%d@x.com", i))
	}
}

func windowBeforeOwnRows(t *testing.T, refuse bool) {
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	require.Equal(t, 1, r.run("contacts").Created)
	r.idle("contacts")
	r.eng.Window, r.eng.PullBatch = 4, 100 // a pull takes everything, a window 4 changes

	insertContacts(r, 1, 4)
	r.exec("crm", `UPDATE contacts SET phone = 'app' WHERE email = 'ann@x.com'`)
	insertContacts(r, 5, 12)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'hub' WHERE email = 'ann@x.com'`)

	if refuse {
		r.refuseRecordOnce("NEW.conflicts > 0")
		_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
		require.ErrorContains(t, err, "record refused once")
		require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts`))
	}
	r.run("contacts")
	r.idle("contacts")
	requireAnnSettledOnHub(t, r, 13, "app")
}

// requireAnnSettledOnHub: both sides hold hubspot's phone for Ann, hubspot
// holds rows contacts, and the one conflict recorded is crm's phone lost
// (an application write the apply overwrote) to hubspot's.
func requireAnnSettledOnHub(t *testing.T, r *rig, rows int, lost string) {
	t.Helper()
	require.Equal(t, []string{"hub"}, r.rows("crm", `SELECT phone FROM contacts WHERE email = 'ann@x.com'`))
	require.Equal(t, []string{"hub"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'ann@x.com'`))
	require.Equal(t, rows, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Equal(t, []string{`concurrent_apply|"` + lost + `"|"hub"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'source' -> 'phone')::text || '|' || (kept -> 'source' -> 'phone')::text FROM tandem.sync_conflicts`))
}
