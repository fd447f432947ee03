package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// One run takes every change committed before it, however little each of
// its pulls takes (a window's worth, here one row): it goes on while a
// pull stopped part way, full windows or not.
func TestRunTakesEverythingInPullsOfARow(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Window, r.eng.PullBatch, r.eng.PullLimit = 4, 1, 1
	r.idle("contacts") // the initial sync, of nothing
	for i := range 10 {
		r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('P', 'p' || $1::int || '@x.com', 'ph')`, i)
	}
	res := r.run("contacts")
	require.Equal(t, 10, res.Created, "%+v", res)
	require.Equal(t, 10, r.nodeInt("hubspot", "SELECT count(*) FROM hs_contacts"))
	r.idle("contacts")
}

// A run owes what was committed before it began, not what comes while it
// runs: another sync's table on the same node, written faster than pulls
// of 50 rows take it, does not keep the run pulling. (Before each window,
// 200 rows are written there: every pull stops part way.)
func TestRunEndsWhileAnotherTableOnItsNodeKeepsBeingWritten(t *testing.T) {
	t.Parallel()
	r := newRig(t, plusGcontacts(contactsYAML(""), "public.hs_other", "v"), map[string]string{"crm": crmDDL, "hubspot": hubspotDDL + `; CREATE TABLE hs_other (id bigserial PRIMARY KEY, v text)`,
		"gcontacts": gcontactsDDL})
	r.eng.PullBatch, r.eng.PullLimit = 50, 50
	r.idle("contacts")
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	windows := 0
	r.eng.OnWindow(func() {
		if windows++; windows <= 100 { // past that the run is a runaway: let it end, and fail below
			r.exec("hubspot", `INSERT INTO hs_other (v) SELECT 'x' || g FROM generate_series(1, 200) g`)
		}
	})
	r.run("contacts")
	r.eng.OnWindow(nil)
	require.Less(t, windows, 10, "the run went on pulling what came after it began")
	require.Equal(t, []string{"ann@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts"))
}

// A pull may stop part way through a backlog, but never between an
// application write that an apply overwrote and that apply's echo: the
// window would send the write on without knowing it was overwritten. Here
// the application's transaction writes Ann (the apply waits for it) and
// then Bob, so its two changes come before the echo in hubspot's queue,
// and pulls of one row per batch and two per pull would stop after them.
func TestPullStopsNotBetweenAnOverwrittenWriteAndItsEcho(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Window, r.eng.PullBatch = 2, 1
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1'), ('Bob Ray', 'bob@x.com', '2')`)
	r.run("contacts")
	r.idle("contacts")

	r.exec("crm", `UPDATE contacts SET phone = 'crm' WHERE email = 'ann@x.com'`)
	// The run's window was full: it goes on, and takes Ann's write, Bob's and the echo.
	require.NoError(t, r.runRacingApp(ctx, `UPDATE hs_contacts SET phone_number = 'app' WHERE email = 'ann@x.com'`,
		`UPDATE hs_contacts SET lastname = 'Other' WHERE email = 'bob@x.com'`))

	r.run("contacts")
	r.idle("contacts")
	require.Equal(t, []string{"Ann Lee|crm", "Bob Other|2"}, r.rows("crm", "SELECT full_name || '|' || phone FROM contacts ORDER BY email"))
	require.Equal(t, []string{"crm", "2"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{`concurrent_apply|"app"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'target' -> 'phone_number')::text FROM tandem.sync_conflicts`))
}

// An initial sync begins after everything committed before it: the
// changes waiting on its nodes are taken first (its cursors start past
// them), however little each pull of a run takes.
func TestResyncBeginsAfterEverythingCommittedBeforeIt(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.PullBatch, r.eng.PullLimit = 1, 1
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) SELECT 'P', 'p' || i || '@x.com', 'ph' FROM generate_series(1, 5) i`)
	r.run("contacts")
	r.idle("contacts")
	r.exec("crm", `UPDATE contacts SET phone = 'before'`)
	queued := -1
	r.eng.Progress = func(engine.InitialProgress) {
		if queued < 0 {
			queued = r.nodeInt("crm", "SELECT count(*) FROM tandem.change_queue")
		}
	}
	_, err := r.eng.Resync(context.Background(), "contacts")
	require.NoError(t, err)
	require.Zero(t, queued, "changes still in crm's queue when the initial sync began")
	require.Equal(t, []string{"before", "before", "before", "before", "before"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"))
}
