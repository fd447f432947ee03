package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// A sync another session holds is reported busy, not run and not idle: its
// changes wait for the next run, which takes them.
func TestHeldSyncIsReportedBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	holder, err := r.ctl.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer holder.Release()
	_, err = holder.Exec(ctx, `SELECT pg_advisory_lock(hashtext('tandem.sync'), hashtext('contacts'))`)
	require.NoError(t, err)

	res, err := r.eng.RunSync(ctx, "contacts", "manual")
	require.NoError(t, err)
	require.True(t, res.Busy, "%+v", res)
	require.Zero(t, res.Synced())
	require.Empty(t, r.rows("hubspot", "SELECT email FROM hs_contacts"))

	_, err = holder.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('tandem.sync'), hashtext('contacts'))`)
	require.NoError(t, err)
	require.Equal(t, 1, r.run("contacts").Created)
	require.Equal(t, []string{"ann@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts"))
}

// Invariant 1 (exactly once): an earlier attempt of a run whose client was
// cut off can still be committing on the node when the run is done again.
// The redo waits for it, sees the run recorded in tandem.applied, and does
// not insert the row a second time.
func TestApplyWaitsForAnEarlierAttemptStillCommitting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	crmID := r.rows("crm", "SELECT id FROM contacts")[0]

	// The earlier attempt: it holds the sync's apply lock on hubspot.
	ghost := r.holdApplyLock("hubspot", "target")
	done := make(chan error, 1)
	go func() { _, err := r.eng.RunSync(ctx, "contacts", "manual"); done <- err }()
	r.waitForAdvisoryLock("hubspot", "the apply never waited for the earlier attempt")

	// The earlier attempt's writes and its record of the run, then its COMMIT.
	runID := r.ctlInt("SELECT pending_run FROM tandem.sync_state WHERE sync_id = 'contacts'")
	var hubID int
	require.NoError(t, ghost.QueryRow(ctx, `INSERT INTO hs_contacts (firstname, lastname, email, phone_number)
		VALUES ('Ann', 'Lee', 'ann@x.com', '1') RETURNING id`).Scan(&hubID))
	ref := fmt.Sprintf(`from {"id":%s}`, crmID)
	result := fmt.Sprintf(`{"created": [[%q, %q]], "done": [%q], "inserted": 1, "updated": 0, "deleted": 0}`,
		ref, fmt.Sprintf(`{"id":%d}`, hubID), ref)
	_, err := ghost.Exec(ctx, `INSERT INTO tandem.applied (sync_id, side, run_id, result) VALUES ('contacts', 'target', $1, $2)
		ON CONFLICT (sync_id, side) DO UPDATE SET run_id = excluded.run_id, result = excluded.result`, runID, result)
	require.NoError(t, err)
	require.NoError(t, ghost.Commit(ctx))

	require.NoError(t, <-done)
	r.run("contacts") // the earlier attempt's echo
	r.idle("contacts")
	require.Equal(t, []string{"ann@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts"), "inserted once")
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.links"))
	require.Equal(t, []string{"ann@x.com"}, r.rows("crm", "SELECT email FROM contacts"))
}

// holdApplyLock begins a transaction on node that holds the contacts
// sync's apply lock for side, as an earlier attempt still committing
// would; it rolls back when the test ends unless committed first.
func (r *rig) holdApplyLock(node, side string) pgx.Tx {
	r.t.Helper()
	return r.holdSyncApplyLock("contacts", node, side)
}

// holdSyncApplyLock is holdApplyLock for the sync named id.
func (r *rig) holdSyncApplyLock(id, node, side string) pgx.Tx {
	r.t.Helper()
	ctx := context.Background()
	tx, err := r.nodes[node].Pool.Begin(ctx)
	require.NoError(r.t, err)
	r.t.Cleanup(func() { tx.Rollback(ctx) })
	_, err = tx.Exec(ctx, `SELECT set_config('tandem.origin', $2, true),
		pg_advisory_xact_lock(hashtext('tandem.apply'), hashtext($2 || '/' || $1))`, side, id)
	require.NoError(r.t, err)
	return tx
}

// waitForAdvisoryLock waits until a session on node waits for an advisory lock.
func (r *rig) waitForAdvisoryLock(node, msg string) {
	r.t.Helper()
	require.Eventually(r.t, func() bool {
		return r.nodeInt(node, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`) == 1
	}, 10*time.Second, 5*time.Millisecond, msg)
}
