package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/engine"
)

// annAndBob inserts two crm contacts.
const annAndBob = `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1'), ('Bob Ray', 'bob@x.com', '2')`

// syncedThenAnnAndBob is a rig whose contacts sync has run, and two crm
// contacts since.
func syncedThenAnnAndBob(t *testing.T) *rig {
	r := newRig(t, contactsYAML(""), twoNodes())
	r.run("contacts")
	r.exec("crm", annAndBob)
	return r
}

// ageChangeLog makes every change in change_log look taken eight days ago,
// past the default retention of seven.
func (r *rig) ageChangeLog() {
	r.t.Helper()
	_, err := r.ctl.Pool.Exec(context.Background(), `UPDATE tandem.change_log SET logged_at = logged_at - interval '8 days'`)
	require.NoError(r.t, err)
}

func (r *rig) prune() engine.PruneResult {
	r.t.Helper()
	res, err := r.eng.PruneChangeLog(context.Background())
	require.NoError(r.t, err)
	return res
}

// Pruning deletes only changes past the retention that every sync reading
// their table has dealt with: in a star, crm's changes stay until both
// syncs from crm have taken them, and a change taken since the cut-off
// stays whoever took it. (Batches of two rows: each walks on past the
// changes the one before kept.)
func TestPruneKeepsWhatASyncHasStillToTake(t *testing.T) {
	t.Parallel()
	r := newRig(t, starYAML, map[string]string{"crm": crmDDL, "hubspot": hubspotDDL, "gcontacts": gcontactsDDL})
	r.eng.PruneBatch = 2
	r.exec("crm", annAndBob)
	r.run("contacts") // its initial sync, before capture logged anything
	r.run("gcontacts")
	r.exec("crm", `UPDATE contacts SET phone = phone || '-new'`)
	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Smith' WHERE email = 'ann@x.com'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '0' WHERE email = 'bob@x.com'`)
	r.exec("crm", `UPDATE contacts SET full_name = 'Ann Lee' WHERE email = 'ann@x.com'`) // no change: not captured
	r.exec("hubspot", `UPDATE hs_contacts SET score = 1`)
	r.run("contacts") // takes crm's updates and hubspot's edit; gcontacts has taken neither crm update
	crmLogged := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE node = 'crm'`)
	hubLogged := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE node = 'hubspot'`)
	require.GreaterOrEqual(t, crmLogged, 2, "crm's two updates are logged")
	require.Positive(t, hubLogged, "hubspot's edit is logged")
	r.ageChangeLog()

	res := r.prune()
	require.Empty(t, res.Strangers)
	require.Equal(t, []string{"update|1-new", "update|2-new"},
		r.ctlRows(`SELECT op, new->>'phone' FROM tandem.change_log WHERE node = 'crm' ORDER BY id`),
		"crm's updates were pruned before gcontacts took them, or its inserts, which both syncs' initial syncs read, were kept")
	require.Equal(t, 0, r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE node = 'hubspot'`),
		"hubspot's edit, which its only reader has taken, was kept past the retention")
	require.Equal(t, int64(hubLogged+crmLogged-2), res.Deleted)

	// Once both have taken everything, every change past the retention
	// goes, and none taken since.
	settle := func() {
		for range 3 {
			r.run("gcontacts")
			r.run("contacts")
		}
	}
	settle()
	require.Equal(t, []string{"Ann Smith|1-new", "Bob Ray|0"}, r.rows("gcontacts", "SELECT display_name, tel FROM gc_people ORDER BY mail"))
	r.ageChangeLog()
	r.exec("crm", `UPDATE contacts SET phone = '3' WHERE email = 'bob@x.com'`)
	settle()
	old := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE logged_at < now() - interval '7 days'`)
	recent := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE logged_at >= now() - interval '7 days'`)
	require.Greater(t, old, 2)
	require.Positive(t, recent)
	require.Equal(t, int64(old), r.prune().Deleted)
	require.Equal(t, recent, r.ctlInt(`SELECT count(*) FROM tandem.change_log`))

	// The syncs go on as before.
	r.exec("gcontacts", `UPDATE gc_people SET tel = '4' WHERE mail = 'ann@x.com'`)
	for range 2 {
		r.run("gcontacts")
		r.run("contacts")
	}
	require.Equal(t, []string{"Ann Smith|4", "Bob Ray|3"}, r.rows("crm", "SELECT full_name, phone FROM contacts ORDER BY email"))
	require.Equal(t, []string{"Ann|Smith|4", "Bob|Ray|3"}, r.rows("hubspot", "SELECT firstname, lastname, phone_number FROM hs_contacts ORDER BY email"))
}

// A run cut off mid-apply is redone on the same window: pruning keeps that
// window's changes however old they are.
func TestPruneKeepsAPendingRunsWindow(t *testing.T) {
	t.Parallel()
	r := syncedThenAnnAndBob(t)
	ghost := r.holdApplyLock("hubspot", "target")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := r.eng.RunSync(ctx, "contacts", "manual"); done <- err }()
	r.waitForAdvisoryLock("hubspot", "the apply never waited for the lock")
	cancel()
	require.Error(t, <-done)
	require.NoError(t, ghost.Rollback(context.Background()))
	require.Equal(t, []string{"false"}, r.ctlRows("SELECT pending_run IS NULL FROM tandem.sync_state"), "the run left no pending window")

	r.ageChangeLog()
	r.prune()
	require.Equal(t, 2, r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE node = 'crm' AND op = 'insert'`), "the pending window's changes were pruned")
	require.Equal(t, 2, r.run("contacts").Created)
	require.Equal(t, []string{"Ann|ann@x.com", "Bob|bob@x.com"}, r.rows("hubspot", "SELECT firstname, email FROM hs_contacts ORDER BY email"))
}

// A sync that has state but is no longer in the config may come back: no
// change after its cursors is pruned, on any table, and PruneChangeLog
// names it. A retention of 0 keeps every change.
func TestPruneKeepsWhatASyncNotInTheConfigMayNeed(t *testing.T) {
	t.Parallel()
	r := syncedThenAnnAndBob(t)
	r.run("contacts")
	r.exec("crm", `UPDATE contacts SET phone = '3'`)
	r.run("contacts")
	r.run("contacts")
	r.idle("contacts")
	r.ageChangeLog()
	logged := r.ctlInt(`SELECT count(*) FROM tandem.change_log`)
	cursor := r.ctlInt(`SELECT min(id) FROM tandem.change_log WHERE op = 'update' AND node = 'crm'`) - 1
	_, err := r.ctl.Pool.Exec(context.Background(), `INSERT INTO tandem.sync_state (sync_id, source_through, target_through)
		VALUES ('departed', $1::bigint, $1::bigint + 1000)`, cursor)
	require.NoError(t, err)

	after := r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE id > $1`, cursor)
	require.Positive(t, after)

	r.cfg.ChangeLogRetention = 0
	require.Equal(t, engine.PruneResult{}, r.prune())
	require.Equal(t, logged, r.ctlInt(`SELECT count(*) FROM tandem.change_log`))

	r.cfg.ChangeLogRetention = config.DefaultChangeLogRetention
	res := r.prune()
	require.Equal(t, []string{"departed"}, res.Strangers)
	require.Equal(t, []string{"0"}, r.ctlRows(`SELECT count(*) FROM tandem.change_log WHERE id <= $1`, cursor))
	require.Equal(t, after, r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE id > $1`, cursor),
		"a change after the departed sync's cursor was pruned")
	require.Equal(t, int64(logged-after), res.Deleted)
	require.Positive(t, res.Deleted)

	// A config without syncs: every sync with state is a stranger.
	r.cfg.Syncs = nil
	require.Equal(t, engine.PruneResult{Strangers: []string{"contacts", "departed"}}, r.prune())
	require.Equal(t, after, r.ctlInt(`SELECT count(*) FROM tandem.change_log`),
		"with no syncs in the config, a change after the departed sync's cursor was pruned")
}

// The daemon prunes as it starts and then every PruneEvery, beside its runs.
func TestDaemonPrunesTheChangeLog(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML("    interval: 200ms\n"), twoNodes())
	r.run("contacts")
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.run("contacts")
	r.run("contacts")
	r.ageChangeLog()
	require.Positive(t, r.ctlInt(`SELECT count(*) FROM tandem.change_log`))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := &engine.Daemon{Engine: r.eng, PruneEvery: 50 * time.Millisecond}
	go func() { done <- d.Run(ctx) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()
	pruned := func() bool {
		return r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE logged_at < now() - interval '7 days'`) == 0
	}
	require.Eventually(t, pruned, time.Minute, 10*time.Millisecond, "the daemon did not prune as it started")

	r.exec("crm", `UPDATE contacts SET phone = '2'`)
	require.Eventually(t, func() bool {
		return r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE phone_number = '2'`) == 1
	}, time.Minute, 10*time.Millisecond, "the daemon did not sync the update")
	require.Eventually(t, func() bool {
		// The update and the apply's marker, both taken by now.
		return r.ctlInt(`SELECT count(*) FROM tandem.change_log`) >= 2 &&
			r.ctlInt(`SELECT count(*) FROM tandem.change_log l, tandem.sync_state s
				WHERE l.id > CASE l.node WHEN 'crm' THEN s.source_through ELSE s.target_through END`) == 0
	}, time.Minute, 10*time.Millisecond, "the daemon did not take the update and its marker")
	r.ageChangeLog()
	require.Eventually(t, pruned, time.Minute, 10*time.Millisecond, "the daemon did not prune again")
}
