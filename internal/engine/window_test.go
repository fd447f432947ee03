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
// application's update also holds the marker (it stretches to it): the
// update, overwritten by the apply, is a conflict the apply won, not a
// change sent to hubspot.
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

func windowBeforeOwnRows(t *testing.T, refuse bool) {
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	require.Equal(t, 1, r.run("contacts").Created)
	r.idle("contacts")
	r.eng.Window, r.eng.PullBatch = 4, 100 // a pull takes everything, a window 4 changes

	insert := func(from, to int) {
		for i := from; i <= to; i++ {
			r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ($1, $2)`, fmt.Sprintf("P %d", i), fmt.Sprintf("p%d@x.com", i))
		}
	}
	insert(1, 4)
	r.exec("crm", `UPDATE contacts SET phone = 'app' WHERE email = 'ann@x.com'`)
	insert(5, 12)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'hub' WHERE email = 'ann@x.com'`)

	if refuse {
		r.refuseRecordOnce("NEW.conflicts > 0")
		_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
		require.ErrorContains(t, err, "record refused once")
		require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts`))
	}
	r.run("contacts")
	r.idle("contacts")
	require.Equal(t, []string{"hub"}, r.rows("crm", `SELECT phone FROM contacts WHERE email = 'ann@x.com'`))
	require.Equal(t, []string{"hub"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'ann@x.com'`))
	require.Equal(t, 13, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Equal(t, []string{`concurrent_apply|"app"|"hub"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'source' -> 'phone')::text || '|' || (kept -> 'source' -> 'phone')::text FROM tandem.sync_conflicts`))
}
