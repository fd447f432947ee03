package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// In windows of 2 changes, a window creates Ann and Bob on hubspot while
// the next one, an update of Ann, is read ahead with its links: before the
// window's record links Ann (the test holds that record back). The next
// window must not take Ann for unlinked, which would create her twice.
func TestReadAheadOfARowTheWindowBeforeCreated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Window, r.eng.PullBatch = 2, 2
	r.idle("contacts") // the initial sync, of nothing
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Bob Ray', 'bob@x.com', '2')`)
	r.exec("crm", `UPDATE contacts SET phone = '3' WHERE email = 'ann@x.com'`)

	// The window's record waits for this lock (its links go in); reading
	// links does not.
	hold, err := r.ctl.Pool.Begin(ctx)
	require.NoError(t, err)
	defer hold.Rollback(ctx)
	_, err = hold.Exec(ctx, `LOCK TABLE tandem.links IN SHARE MODE`)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := r.eng.RunSync(ctx, "contacts", "manual"); done <- err }()
	require.Eventually(t, func() bool {
		return r.eng.ReadAhead() > 0 && r.ctlInt(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE '%tandem.links%'`) == 1
	}, 10*time.Second, 5*time.Millisecond, "the next window was not read ahead while the record waited")
	require.NoError(t, hold.Rollback(ctx))
	require.NoError(t, <-done)

	r.idle("contacts")
	require.Positive(t, r.eng.LookedAhead(), "nothing was read ahead")
	require.Equal(t, []string{"ann@x.com|3", "bob@x.com|2"}, r.rows("hubspot", `SELECT email, phone_number FROM hs_contacts ORDER BY email`))
	require.Equal(t, 2, r.ctlInt(`SELECT count(*) FROM tandem.links`))
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_errors`))
}

// A side's next window is read ahead as soon as a window starts when the
// other side's window holds nothing that could write it; here the window
// writes it after all (match pairs crm's Ann with hubspot's, and target_wins
// takes hubspot's phone to crm). An application's update of Ann, taken by
// that early read, came before the apply that overwrote it: the next window
// must still hold the apply's marker after it (crm is pulled again), so the
// update is a conflict the apply won, not a change sent to hubspot.
func TestReadAheadOfASideTheWindowWritesAfterAll(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML("    match: [email]\n    conflict: target_wins\n"), twoNodes())
	r.eng.Window, r.eng.PullBatch = 2, 2
	r.idle("contacts") // the initial sync, of nothing
	r.behindTandem("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Ann', 'Lee', 'ann@x.com', 'hub')`)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Bob Ray', 'bob@x.com', '2')`)
	r.exec("crm", `UPDATE contacts SET phone = 'app' WHERE email = 'ann@x.com'`)

	r.run("contacts")
	r.idle("contacts")
	require.Positive(t, r.eng.LookedAhead(), "nothing was read ahead")
	require.Equal(t, []string{"ann@x.com|hub", "bob@x.com|2"}, r.rows("crm", `SELECT email, phone FROM contacts ORDER BY email`))
	require.Equal(t, []string{"ann@x.com|hub", "bob@x.com|2"}, r.rows("hubspot", `SELECT email, phone_number FROM hs_contacts ORDER BY email`))
	require.Equal(t, []string{`concurrent_apply|"app"|"hub"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'source' -> 'phone')::text || '|' || (kept -> 'source' -> 'phone')::text
			FROM tandem.sync_conflicts WHERE kind = 'concurrent_apply'`))
}
