package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refuseOneCommit makes hubspot refuse the next commit that wrote
// hs_contacts, once: a deferred trigger raises at COMMIT, after every
// statement of the apply went through, and only once the window's record
// in the control database (its name the trigger's argument) waits at its
// gate: idle in its transaction after its last statement.
func refuseOneCommit(ctl string) string {
	return fmt.Sprintf(`;
CREATE SEQUENCE refused;
CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('refused') = 1 THEN
		FOR i IN 1..2000 LOOP
			PERFORM pg_stat_clear_snapshot();
			IF EXISTS (SELECT FROM pg_stat_activity WHERE datname = TG_ARGV[0] AND state = 'idle in transaction'
					AND query LIKE 'UPDATE tandem.sync_runs SET status%%') THEN
				RAISE EXCEPTION 'commit refused once, its record waiting';
			END IF;
			PERFORM pg_sleep(0.005);
		END LOOP;
		RAISE EXCEPTION 'commit refused once, no record waiting';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_once AFTER INSERT OR UPDATE ON hs_contacts
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_once('%s')`, ctl)
}

// A window's record is written in control while its apply commits on the
// node, but commits only after the node did: an apply whose commit fails
// leaves no record (no links, cursors where they were), and the window is
// redone whole. Both ways the record is written early: an initial sync's
// inserts under keys drawn before the insert, and updates.
func TestRecordCommitsOnlyAfterTheApply(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), map[string]string{"crm": crmDDL + `;
		INSERT INTO contacts (full_name, email, phone) SELECT 'Person ' || n, 'p' || n || '@x.com', n::text FROM generate_series(1, 1000) n`,
		"hubspot": hubspotDDL})
	r.exec("hubspot", refuseOneCommit(r.ctl.Name))

	// The initial sync's chunk creates the rows; its commit is refused.
	_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "commit refused once, its record waiting")
	require.Zero(t, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.links`), "links recorded for rows hubspot never committed")
	r.run("contacts")
	require.Equal(t, 1000, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Equal(t, 1000, r.ctlInt(`SELECT count(*) FROM tandem.links`))
	r.requireSameContacts()
	r.idle("contacts")
	require.NotZero(t, r.eng.EarlyRecords(), "no window was recorded while its apply committed")

	// Streaming updates; the commit is refused again.
	r.exec("hubspot", `ALTER SEQUENCE refused RESTART`)
	through := r.ctlInt(`SELECT source_through FROM tandem.sync_state`)
	r.exec("crm", `UPDATE contacts SET phone = 'new ' || id WHERE id <= 100`)
	_, err = r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "commit refused once, its record waiting")
	require.Equal(t, through, r.ctlInt(`SELECT source_through FROM tandem.sync_state`), "cursor advanced past updates hubspot never committed")
	require.Zero(t, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE phone_number LIKE 'new %'`))
	early := r.eng.EarlyRecords()
	res := r.run("contacts")
	require.Equal(t, 100, res.Updated, "%+v", res)
	require.Greater(t, r.eng.EarlyRecords(), early, "the updates were not recorded while their apply committed")
	require.Equal(t, 100, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE phone_number LIKE 'new %'`))
	r.requireSameContacts()
	r.idle("contacts")
}

// linksMatchRows fails unless every link's hubspot key names the hubspot
// row of its crm row's email: no link records a key hubspot never kept.
func (r *rig) linksMatchRows() {
	r.t.Helper()
	emails := func(node, table string) map[string]string {
		out := map[string]string{}
		for _, row := range r.rows(node, `SELECT id || ' ' || email FROM `+table) {
			id, email, _ := strings.Cut(row, " ")
			out[id] = email
		}
		return out
	}
	crm, hub := emails("crm", "contacts"), emails("hubspot", "hs_contacts")
	for _, l := range r.ctlRows(`SELECT (source_key ->> 'id') || ' ' || (target_key ->> 'id') FROM tandem.links`) {
		src, tgt, _ := strings.Cut(l, " ")
		require.NotEmpty(r.t, hub[tgt], "link %s: no hubspot row %s", l, tgt)
		require.Equal(r.t, crm[src], hub[tgt], "link %s: the two rows differ", l)
	}
}

// An initial sync's insert whose keys were drawn, and whose result was
// heard before it ran, fails: on a row the node rejects (the rows then go
// in one by one, under other keys), and on a lock it waits on too long
// (retried, with keys drawn again). Each time the links name the rows
// hubspot kept, not the keys drawn first.
func TestRecordOfAnInsertThatWentOtherwise(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), map[string]string{"crm": crmDDL + `;
		INSERT INTO contacts (full_name, email, phone) SELECT 'Person ' || n, 'p' || n || '@x.com', n::text FROM generate_series(1, 300) n`,
		"hubspot": hubspotDDL + `; ALTER TABLE hs_contacts ADD CONSTRAINT no_bad CHECK (phone_number <> '7')`})
	ctx := context.Background()

	// A row hubspot rejects: the chunk goes in row by row.
	res := r.run("contacts")
	require.Equal(t, 299, res.Created, "%+v", res)
	require.Equal(t, 1, res.Errors, "%+v", res)
	r.linksMatchRows()
	require.Equal(t, 299, r.ctlInt(`SELECT count(*) FROM tandem.links`))

	// A lock: an application's uncommitted row holds one email the sync
	// creates, until the sync's insert has waited for it once.
	blocker, err := r.nodes["hubspot"].Pool.Begin(ctx)
	require.NoError(t, err)
	defer blocker.Rollback(ctx)
	_, err = blocker.Exec(ctx, `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('App', 'Row', 'p500@x.com', 'x')`)
	require.NoError(t, err)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) SELECT 'Person ' || n, 'p' || n || '@x.com', n::text FROM generate_series(400, 500) n`)
	done := make(chan error, 1)
	go func() {
		_, err := r.eng.RunSync(ctx, "contacts", "manual")
		done <- err
	}()
	waiting := func() string {
		got := r.rows("hubspot", `SELECT xact_start::text FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO%'`)
		if len(got) == 0 {
			return ""
		}
		return got[0]
	}
	var first string
	require.Eventually(t, func() bool { first = waiting(); return first != "" }, time.Minute, 5*time.Millisecond, "the insert never waited")
	require.Eventually(t, func() bool { w := waiting(); return w != "" && w != first }, time.Minute, 5*time.Millisecond, "the insert was never retried")
	require.NoError(t, blocker.Rollback(ctx))
	require.NoError(t, <-done)
	r.idle("contacts")
	r.linksMatchRows()
	require.Equal(t, 299+101, r.ctlInt(`SELECT count(*) FROM tandem.links`))
}

// A record whose own COMMIT fails after its apply committed may have
// committed or not (a connection lost on the way): the run fails, and the
// window is not recorded a second time; the next run redoes it from the
// node's tandem.applied, and the conflict the window settled is recorded
// once.
func TestRecordWhoseCommitFailsIsNotWrittenAgain(t *testing.T) {
	t.Parallel()
	recordCommitFails(t, false)
}

// The same with the pending window as a version before migration 00006
// left it (no bound of the sync's own rows after it: its windows reached
// them): the redo reads nothing after the window.
func TestWindowPendingFromBeforeOwnBoundsIsRedoneTheSame(t *testing.T) {
	t.Parallel()
	recordCommitFails(t, true)
}

func recordCommitFails(t *testing.T, unbounded bool) {
	r := newRig(t, contactsYAML("    conflict: source_wins\n"), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.run("contacts")
	r.refuseRecordOnce("true")
	r.exec("crm", `UPDATE contacts SET phone = 'crm'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'hub'`)

	early := r.eng.EarlyRecords()
	_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "record refused once")
	require.Equal(t, early, r.eng.EarlyRecords())
	require.Equal(t, []string{"crm"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts`), "the apply committed")
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts`))
	if unbounded {
		r.ctl.Exec(t, `UPDATE tandem.sync_state SET pending_source_own = NULL, pending_target_own = NULL`)
	}

	r.run("contacts")
	r.idle("contacts")
	// The same conflict as had the record gone through: the redone window
	// does not take its own apply, now in change_log after it, for a
	// write that overwrote hubspot's.
	require.Equal(t, []string{`update_update|"hub"|"crm"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'target' -> 'phone_number')::text || '|' || (kept -> 'source' -> 'phone')::text FROM tandem.sync_conflicts`))
	require.Equal(t, []string{"crm"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts`))
}

// refuseRecordOnce makes the commit of the first window record whose run
// row (NEW, in tandem.sync_runs) meets cond fail with "record refused
// once": a deferred trigger, so the window's apply has committed by then.
func (r *rig) refuseRecordOnce(cond string) {
	r.ctl.Exec(r.t, `CREATE SEQUENCE refused;
		CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.status = 'succeeded' AND (`+cond+`) AND nextval('refused') = 1 THEN
				RAISE EXCEPTION 'record refused once';
			END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER refuse_once AFTER UPDATE ON tandem.sync_runs
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_once()`)
}
