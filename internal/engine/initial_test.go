package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// existingContacts fills both tables before capture is installed: 10,000
// contacts in crm; in hubspot 3,000 of them (email in another case and
// with spaces, which the lowercase transform normalises), 30 of those with
// another phone, and 500 contacts of its own.
const existingContacts = `;
INSERT INTO contacts (full_name, email, phone)
	SELECT 'Person ' || n || ' Smith', CASE WHEN n % 2 = 0 THEN 'User' || n || '@X.com' ELSE 'user' || n || '@x.com' END, 'p' || n
	FROM generate_series(1, 10000) n`

const existingHubspot = `;
INSERT INTO hs_contacts (firstname, lastname, email, phone_number)
	SELECT 'Person', n || ' Smith', 'user' || n || '@x.com', CASE WHEN n % 100 = 0 THEN 'hub' || n ELSE 'p' || n END
	FROM generate_series(1, 3000) n;
INSERT INTO hs_contacts (firstname, lastname, email, phone_number)
	SELECT 'Hub', 'Only ' || n, 'hub' || n || '@x.com', 'h' || n FROM generate_series(1, 500) n`

func existingRig(t *testing.T, extra string) *rig {
	return newRig(t, contactsYAML(extra), map[string]string{"crm": crmDDL + existingContacts, "hubspot": hubspotDDL + existingHubspot})
}

// mappedContacts returns both tables as the sync maps them, sorted, for
// comparing the two sides.
func (r *rig) mappedContacts() (crm, hub []string) {
	r.t.Helper()
	crm = r.rows("crm", `SELECT lower(email) || '|' || coalesce(phone, '') || '|' || coalesce(full_name, '') FROM contacts ORDER BY 1`)
	hub = r.rows("hubspot", `SELECT email || '|' || coalesce(phone_number, '') || '|' || concat_ws(' ', firstname, lastname) FROM hs_contacts ORDER BY 1`)
	return crm, hub
}

func (r *rig) requireSameContacts() {
	r.t.Helper()
	crm, hub := r.mappedContacts()
	require.Equal(r.t, len(crm), len(hub), "row counts differ")
	require.Equal(r.t, crm, hub)
	require.Equal(r.t, len(crm), r.ctlInt(`SELECT count(*) FROM tandem.links WHERE sync_id = 'contacts'`), "one link per row")
}

func TestInitialSyncSettlesEachStrategy(t *testing.T) {
	for _, strategy := range []string{"source_wins", "target_wins", "latest_wins", "manual"} {
		t.Run(strategy, func(t *testing.T) {
			r := existingRig(t, "    match: [email]\n    conflict: source_wins\n    initial: "+strategy+"\n")
			if strategy == "latest_wins" {
				r.cfg.ChangeLogRetention = 600000 * time.Hour // past an int4 of seconds
				// Changed after capture began: the later change wins.
				r.exec("hubspot", `UPDATE hs_contacts SET phone_number = phone_number || '!' WHERE phone_number LIKE 'hub%'`)
			}
			hubBefore := r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE phone_number LIKE 'hub%' ORDER BY 1`)
			require.Len(t, hubBefore, 30)

			res := r.run("contacts")
			require.Equal(t, 7500, res.Created, "7,000 crm-only rows created in hubspot, 500 hubspot-only in crm: %+v", res)
			require.Equal(t, 10500, r.nodeInt("crm", `SELECT count(*) FROM contacts`))
			require.Equal(t, 10500, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
			require.Equal(t, 30, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE kind = 'insert_insert'`))
			lost := map[string]string{ // every overwritten phone is recorded (invariant 3)
				"source_wins": `lost #>> '{target,phone_number}' LIKE 'hub%'`,
				"target_wins": `lost #>> '{source,phone}' LIKE 'p%'`,
				"latest_wins": `lost #>> '{source,phone}' LIKE 'p%'`,
				"manual":      `lost IS NULL AND status = 'open'`,
			}[strategy]
			require.Equal(t, 30, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE kind = 'insert_insert' AND `+lost))
			require.Equal(t, 10500, r.ctlInt(`SELECT count(*) FROM tandem.links`))
			require.NotZero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_runs WHERE trigger = 'initial'`))

			crmDiff := r.rows("crm", `SELECT phone FROM contacts WHERE id % 100 = 0 AND id <= 3000 ORDER BY phone`)
			hubDiff := r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE id % 100 = 0 AND id <= 3000 ORDER BY phone_number`)
			switch strategy {
			case "source_wins":
				require.Equal(t, crmDiff, hubDiff)
				require.True(t, slices.ContainsFunc(hubDiff, func(s string) bool { return s == "p100" }), "%v", hubDiff)
			case "target_wins", "latest_wins":
				require.Equal(t, hubBefore, crmDiff)
				require.Equal(t, hubBefore, hubDiff)
			case "manual":
				require.Equal(t, 30, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE status = 'open'`))
				require.Equal(t, hubBefore, hubDiff, "nothing written for a manual conflict")
				require.Contains(t, crmDiff, "p100")
				return
			}
			r.requireSameContacts()
			require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE status = 'open'`))

			// Streaming takes over: an edit each way, then nothing to do.
			r.exec("crm", `UPDATE contacts SET phone = 'new' WHERE email = 'user7@x.com'`)
			r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'newer' WHERE email = 'hub7@x.com'`)
			res = r.run("contacts")
			require.Equal(t, 2, res.Updated, "%+v", res)
			require.Equal(t, []string{"manual"}, r.ctlRows(`SELECT trigger FROM tandem.sync_runs WHERE id = $1`, res.RunID))
			r.requireSameContacts()
			r.idle("contacts")
		})
	}
}

// The hand-over to streaming takes every change committed before the
// initial sync ended, however little the pulls between its chunks took: a
// change it already read in a row is dropped, not applied again over a
// newer edit made since. (One way: the engine never writes crm, so no
// write of its own there makes a pull take everything.)
//
// Also with the control database's transactions repeatable read by
// default: the hand-over's bounds are not read in a snapshot older than
// that pull.
func TestInitialSyncHandOverTakesEveryChangeItRead(t *testing.T) {
	t.Parallel()
	for _, isolation := range []string{"read committed", "repeatable read"} {
		t.Run(strings.ReplaceAll(isolation, " ", "_"), func(t *testing.T) {
			t.Parallel()
			r := existingRig(t, "    match: [email]\n    direction: source_to_target\n")
			pc, err := pgxpool.ParseConfig(r.ctl.URL)
			require.NoError(t, err)
			pc.ConnConfig.RuntimeParams["default_transaction_isolation"] = isolation
			ctl, err := pgxpool.NewWithConfig(context.Background(), pc)
			require.NoError(t, err)
			t.Cleanup(ctl.Close)
			r.eng.Control = ctl
			r.eng.Window = 2000                     // chunks of 1,000 rows
			r.eng.PullBatch, r.eng.PullLimit = 1, 1 // pulls of a row each
			chunks := 0
			r.eng.Progress = func(p engine.InitialProgress) {
				switch {
				case p.Finished:
					r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'newer' WHERE email = 'user9001@x.com'`)
				case p.Done > 0:
					chunks++
					if chunks == 1 {
						// Changes queued ahead of the one that matters, then a
						// change to a crm-only row the walk has yet to reach:
						// it creates the row on hubspot with that change in it.
						r.exec("crm", `UPDATE contacts SET phone = 'q' || id WHERE id BETWEEN 5001 AND 5050`)
						r.exec("crm", `UPDATE contacts SET phone = 'read' WHERE id = 9001`)
					}
				}
			}
			r.run("contacts")
			r.eng.Progress = nil
			r.idle("contacts")
			require.Greater(t, chunks, 8, "the initial sync ran in chunks")
			require.Equal(t, []string{"read"}, r.rows("crm", "SELECT phone FROM contacts WHERE id = 9001"))
			require.Equal(t, []string{"newer"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'user9001@x.com'"),
				"the change the initial sync read was applied again")
			require.Equal(t, []string{"q5001"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'user5001@x.com'"))
		})
	}
}

// Writes made while the initial sync runs, between its chunks, on rows it
// has done and rows it has not reached, all arrive once it streams.
func TestInitialSyncHandsOverToStreamingExactly(t *testing.T) {
	r := existingRig(t, "    match: [email]\n")
	r.eng.Window = 2000 // chunks of 1,000 rows
	// Pulls of a row each: the writes pile up in the queues, and the
	// initial sync must take them all before it hands over.
	r.eng.PullBatch, r.eng.PullLimit = 1, 1
	chunks := 0
	var inserted, deleted []string
	r.eng.Progress = func(p engine.InitialProgress) {
		if p.Finished || p.Done == 0 {
			return
		}
		chunks++
		n := chunks
		// Rows already walked and rows still ahead, on both sides.
		r.exec("crm", `UPDATE contacts SET phone = 'c' || $1::int WHERE id IN ($2, $3)`, n, n*7, 10000-n*7)
		r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'h' || $1::int WHERE email IN ($2, $3)`, n,
			fmt.Sprintf("user%d@x.com", n*11), fmt.Sprintf("hub%d@x.com", n*3))
		r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('New ' || $1::int, 'new' || $1::int || '@x.com', 'n')`, n)
		r.exec("hubspot", `INSERT INTO hs_contacts (firstname, email) VALUES ('Hnew', 'hnew' || $1::int || '@x.com')`, n)
		inserted = append(inserted, fmt.Sprintf("new%d@x.com", n), fmt.Sprintf("hnew%d@x.com", n))
		deleted = append(deleted, r.rows("crm", `DELETE FROM contacts WHERE id = $1 RETURNING lower(email)`, 200*n+1)...)
		deleted = append(deleted, r.rows("hubspot", `DELETE FROM hs_contacts WHERE email = $1 RETURNING email`, fmt.Sprintf("hub%d@x.com", 400+n))...)
	}
	r.run("contacts")
	require.Greater(t, chunks, 8, "the initial sync ran in chunks")
	r.eng.Progress = nil
	r.run("contacts")
	r.requireSameContacts()
	require.Len(t, deleted, 2*chunks)
	for _, node := range []string{"crm", "hubspot"} {
		require.Equal(t, len(inserted), r.nodeInt(node, `SELECT count(*) FROM `+map[string]string{"crm": "contacts", "hubspot": "hs_contacts"}[node]+
			` WHERE lower(email) = ANY ($1)`, inserted), node)
	}
	require.Empty(t, r.rows("hubspot", `SELECT email FROM hs_contacts WHERE email = ANY ($1)`, deleted))
	require.Empty(t, r.rows("crm", `SELECT email FROM contacts WHERE lower(email) = ANY ($1)`, deleted))
	require.Equal(t, 10500+len(inserted)-len(deleted), r.nodeInt("crm", `SELECT count(*) FROM contacts`))
	r.idle("contacts")
}

// A run cut off anywhere in the initial sync resumes where it was: the
// tables converge with one row per contact and one link per row.
func TestInitialSyncResumesAfterCancellation(t *testing.T) {
	r := existingRig(t, "    match: [email]\n")
	r.eng.Window = 1000
	cuts := 0
	for attempt := 0; ; attempt++ {
		ctx := context.Background()
		if attempt < 40 {
			// Cut off at a random point: planning, reading, applying, recording.
			c, cancel := context.WithTimeout(ctx, time.Duration(10+rand.IntN(150))*time.Millisecond)
			defer cancel()
			ctx = c
		}
		_, err := r.eng.RunSync(ctx, "contacts", "manual")
		if err == nil {
			break
		}
		require.True(t, errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil, "%v", err)
		cuts++
	}
	require.Greater(t, cuts, 2)
	r.run("contacts")
	r.requireSameContacts()
	require.Equal(t, 10500, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	r.idle("contacts")
}

// itemsYAML is a sync of items between crm and hubspot whose keys (sku)
// are mapped to each other, with extra lines before its fields.
func itemsYAML(extra string) string { return sameTableYAML("items", extra, "sku", "name", "qty") }

// sameTableYAML is a sync of the same-named table between public.table on crm and on hubspot,
// each column renamed to itself, with extra lines before its fields.
func sameTableYAML(table, extra string, cols ...string) string {
	yaml := `control: ${CTL}
nodes:
  crm: { dsn: "${CRM}" }
  hubspot: { dsn: "${HUB}" }
syncs:
  - id: ` + table + `
    source: { node: crm, table: public.` + table + ` }
    target: { node: hubspot, table: public.` + table + ` }
` + extra + "    fields:\n"
	for _, c := range cols {
		yaml += "      - { source: " + c + ", target: " + c + " }\n"
	}
	return yaml
}

func TestInitialSyncPairsByMappedKey(t *testing.T) {
	const ddl = `CREATE TABLE items (sku text PRIMARY KEY, name text, qty int);
		INSERT INTO items SELECT 's' || n, 'item ' || n, n FROM generate_series(1, 300) n`
	r := newRig(t, itemsYAML("    conflict: target_wins\n"), map[string]string{"crm": ddl, "hubspot": ddl + `;
		DELETE FROM items WHERE qty > 200; UPDATE items SET name = 'renamed' WHERE qty = 7;
		INSERT INTO items VALUES ('hub-only', 'h', 0)`})
	res := r.run("items")
	require.Equal(t, 101, res.Created, "%+v", res)
	crm := r.rows("crm", `SELECT sku, name, qty FROM items ORDER BY sku`)
	require.Equal(t, crm, r.rows("hubspot", `SELECT sku, name, qty FROM items ORDER BY sku`))
	require.Len(t, crm, 301)
	require.Equal(t, []string{"renamed"}, r.rows("crm", `SELECT name FROM items WHERE sku = 's7'`))
	r.idle("items")
}

func TestInitialSyncRefusesWhatItCannotPair(t *testing.T) {
	t.Run("duplicate natural keys on one side", func(t *testing.T) {
		r := existingRig(t, "    match: [email]\n")
		// Unique as written, the same once lowercased.
		r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('Twin', 'USER3@x.com')`)
		_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
		require.ErrorContains(t, err, `share a natural key (email): ["user3@x.com"] in 2 rows ({"id": 3}, {"id": 10001})`)
		require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.links`))
		require.Equal(t, 3500, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`), "nothing written")
		// Fixed, the next run does the initial sync.
		r.exec("crm", `DELETE FROM contacts WHERE id = 10001`)
		r.run("contacts")
		r.requireSameContacts()
	})
}

// `tandem run --resync` pairs and compares every row again: drift made
// behind tandem's back is settled by the initial strategy. A linked row
// that is gone is left alone: its delete may still be on its way.
func TestResyncSettlesDrift(t *testing.T) {
	r := existingRig(t, "    match: [email]\n    initial: source_wins\n")
	r.run("contacts")
	r.exec("hubspot", `ALTER TABLE hs_contacts DISABLE TRIGGER USER;
		UPDATE hs_contacts SET phone_number = 'drift' WHERE email = 'user5@x.com';
		INSERT INTO hs_contacts (firstname, email) VALUES ('Behind', 'behind@x.com');
		ALTER TABLE hs_contacts ENABLE TRIGGER USER`)
	r.idle("contacts") // nothing captured: the sync cannot know
	res, err := r.eng.Resync(context.Background(), "contacts")
	require.NoError(t, err)
	require.Equal(t, 1, res.Created, "%+v", res)
	require.Equal(t, 1, res.Updated, "%+v", res)
	require.Equal(t, []string{"p5"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'user5@x.com'`))
	r.requireSameContacts()
	r.idle("contacts")
}

// chunkedItemsRig is a rig with items s100..s400 on crm only, whose initial
// sync goes in chunks of 50 rows and calls each time it reports progress
// (once when it begins, then after each chunk).
func chunkedItemsRig(t *testing.T, each func(*rig)) *rig { return chunkedItemsRigWith(t, "", each) }

// chunkedItemsRigWith is chunkedItemsRig with extra lines in the sync.
func chunkedItemsRigWith(t *testing.T, extra string, each func(*rig)) *rig {
	return chunkedItemsRigOn(t, "trigger", extra, each)
}

// chunkedItemsRigOn is chunkedItemsRigWith with crm captured by capture
// (trigger or wal).
func chunkedItemsRigOn(t *testing.T, capture, extra string, each func(*rig)) *rig {
	const ddl = `CREATE TABLE items (sku text PRIMARY KEY, name text, qty int);
		INSERT INTO items SELECT 's' || n, 'item ' || n, n FROM generate_series(100, 400) n`
	yaml := itemsYAML(extra)
	if capture == "wal" {
		yaml = strings.Replace(yaml, `crm: { dsn: "${CRM}" }`, `crm: { dsn: "${CRM}", capture: wal }`, 1)
	}
	r := newRig(t, yaml, map[string]string{"crm": ddl, "hubspot": `CREATE TABLE items (sku text PRIMARY KEY, name text, qty int)`})
	r.eng.Window = 100
	r.eng.Progress = func(engine.InitialProgress) { each(r) }
	return r
}

// A row inserted after the initial sync began, read by it (its key sorts
// inside the walk) and deleted before it ended: the insert and the delete
// stream after it in one window, and the row it created on the other side
// is deleted too.
func TestInitialSyncRowInsertedAndDeletedWhileItRuns(t *testing.T) {
	step := 0
	r := chunkedItemsRig(t, func(r *rig) {
		step++
		switch step {
		case 1: // begun: a row sorting first, read by the first chunk
			r.exec("crm", `INSERT INTO items VALUES ('a', 'early', 1)`)
		case 3: // created on hubspot by now
			require.Equal(t, []string{"early"}, r.rows("hubspot", `SELECT name FROM items WHERE sku = 'a'`))
			r.exec("crm", `DELETE FROM items WHERE sku = 'a'`)
		}
	})
	r.run("items")
	require.Greater(t, step, 3)
	r.eng.Progress = nil
	r.run("items")
	require.Empty(t, r.rows("hubspot", `SELECT name FROM items WHERE sku = 'a'`))
	require.Equal(t, r.rows("crm", `SELECT sku, name, qty FROM items ORDER BY sku`), r.rows("hubspot", `SELECT sku, name, qty FROM items ORDER BY sku`))
	r.idle("items")
}

// Drift made behind tandem's back (triggers off) is repaired for the keys
// given: the differing pair by the sync's conflict strategy, with the value
// lost recorded; rows missing on a side are created there again, never
// deleted on the other.
func TestRepairKeysSettlesDrift(t *testing.T) {
	r := existingRig(t, "    match: [email]\n    conflict: source_wins\n")
	r.run("contacts")
	key := func(node, table, email string) engine.Values {
		return engine.Values{"id": json.Number(r.rows(node, `SELECT id FROM `+table+` WHERE lower(email) = $1`, email)[0])}
	}
	drifted := key("hubspot", "hs_contacts", "user5@x.com")
	goneThere := key("crm", "contacts", "user6@x.com")      // its hubspot row is deleted
	goneHere := key("hubspot", "hs_contacts", "hub9@x.com") // its crm row is deleted
	r.exec("hubspot", `SET session_replication_role = replica;
		UPDATE hs_contacts SET phone_number = 'drift' WHERE email = 'user5@x.com';
		DELETE FROM hs_contacts WHERE email = 'user6@x.com';
		INSERT INTO hs_contacts (firstname, email) VALUES ('Behind', 'behind@x.com')`)
	r.exec("crm", `SET session_replication_role = replica; DELETE FROM contacts WHERE email = 'hub9@x.com'`)
	behind := key("hubspot", "hs_contacts", "behind@x.com")
	r.idle("contacts")

	res, err := r.eng.RepairKeys(context.Background(), "contacts",
		[2][]engine.Values{{goneThere}, {drifted, goneHere, behind}})
	require.NoError(t, err)
	require.Equal(t, 3, res.Created, "%+v", res)
	require.Equal(t, 1, res.Updated, "%+v", res)
	require.Equal(t, []string{"p5"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'user5@x.com'`))
	require.Equal(t, []string{`{"target": {"phone_number": "drift"}}`},
		r.ctlRows(`SELECT lost::text FROM tandem.sync_conflicts c JOIN tandem.sync_runs r ON r.id = c.run_id WHERE r.trigger = 'repair'`))
	require.Equal(t, 1, r.ctlInt(`SELECT count(*) FROM tandem.sync_runs WHERE trigger = 'repair'`))
	r.requireSameContacts()
	r.idle("contacts")
}

// A repair cut off after it was planned is redone by the next run.
func TestRepairCutOffIsRedone(t *testing.T) {
	r := existingRig(t, "    match: [email]\n    conflict: source_wins\n")
	r.run("contacts")
	r.exec("hubspot", `SET session_replication_role = replica; UPDATE hs_contacts SET phone_number = 'drift' WHERE email = 'user5@x.com'`)
	id := json.Number(r.rows("hubspot", `SELECT id FROM hs_contacts WHERE email = 'user5@x.com'`)[0])

	held := r.holdApplyLock("hubspot", "target")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.eng.RepairKeys(ctx, "contacts", [2][]engine.Values{nil, {{"id": id}}})
		done <- err
	}()
	r.waitForAdvisoryLock("hubspot", "the repair's apply never waited for the lock")
	cancel()
	require.Error(t, <-done)
	require.NoError(t, held.Rollback(context.Background()))
	require.Equal(t, []string{"drift"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'user5@x.com'`))

	res := r.run("contacts") // the pending repair first
	require.Equal(t, 1, res.Updated, "%+v", res)
	require.Equal(t, []string{"p5"}, r.rows("hubspot", `SELECT phone_number FROM hs_contacts WHERE email = 'user5@x.com'`))
	r.requireSameContacts()
	r.idle("contacts")
}

// A chunk whose apply committed but whose record did not is redone: it
// then finds the rows the apply created and pairs them by email again,
// and links each once.
func TestInitialSyncChunkRedoneAfterItsApplyCommitted(t *testing.T) {
	r := existingRig(t, "    match: [email]\n")
	ctx := context.Background()
	lock, err := r.ctl.Pool.Begin(ctx)
	require.NoError(t, err)
	defer lock.Rollback(ctx)
	_, err = lock.Exec(ctx, `LOCK TABLE tandem.links IN EXCLUSIVE MODE`) // reads go on, writes wait
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := r.eng.RunSync(runCtx, "contacts", "manual")
		done <- err
	}()
	require.Eventually(t, func() bool {
		return r.ctlInt(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query ILIKE 'copy%links%'`) == 1
	}, time.Minute, 5*time.Millisecond, "the chunk's record never waited for the links")
	// (The record is written while the apply commits: see earlyRecord.)
	require.Eventually(t, func() bool { return r.nodeInt("hubspot", `SELECT count(*) FROM tandem.applied`) == 1 },
		time.Minute, 5*time.Millisecond, "the chunk's apply never committed")
	cancel()
	require.Error(t, <-done)
	require.NoError(t, lock.Rollback(ctx))
	// The redo plans a write (this row differs now), so it reads back what
	// the committed apply created.
	r.exec("crm", `UPDATE contacts SET phone = 'changed' WHERE id = 5000`)

	r.run("contacts")
	r.requireSameContacts()
	require.Equal(t, 10500, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	r.idle("contacts")
}

// A change the initial sync already read in a row (committed after it
// began, before the row's chunk was read) is not applied again after it:
// applied again, it would carry the row as it was then over a newer edit
// made on the other side since.
func TestInitialSyncDoesNotReplayWhatItRead(t *testing.T) {
	for _, capture := range []string{"trigger", "wal"} {
		t.Run(capture, func(t *testing.T) {
			step := 0
			r := chunkedItemsRigOn(t, capture, "", func(r *rig) {
				step++
				switch step {
				case 1: // begun: rows the first chunk reads, one inserted, one updated since
					r.exec("crm", `INSERT INTO items VALUES ('a', 'early', 1)`)
					r.exec("crm", `UPDATE items SET qty = -1 WHERE sku = 's101'`)
				case 2: // the first chunk created them on hubspot; edited there since
					r.exec("hubspot", `UPDATE items SET name = 'edited there' WHERE sku IN ('a', 's101')`)
				}
			})
			r.run("items")
			require.Greater(t, step, 2)
			r.eng.Progress = nil
			r.run("items")
			require.Equal(t, []string{"a|edited there|1", "s101|edited there|-1"}, r.rows("crm", `SELECT concat_ws('|', sku, name, qty) FROM items WHERE sku IN ('a', 's101') ORDER BY sku`))
			require.Equal(t, r.rows("crm", `SELECT sku, name, qty FROM items ORDER BY sku`), r.rows("hubspot", `SELECT sku, name, qty FROM items ORDER BY sku`))
			require.Empty(t, r.ctlRows(`SELECT concat_ws(' ', kind, source_key, target_key, resolution, kept, lost) FROM tandem.sync_conflicts`), "nothing was overwritten")
			r.idle("items")
		})
	}
}

// A row the initial sync creates under a key it writes (sku, mapped from
// the source) whose key an application inserted and deleted on that side
// after the chunk read it and before the chunk's apply: the insert and the
// delete stream after it and come before the sync's own insert, so they
// are no delete of the row the sync created, and the source row stays.
func TestInitialSyncInsertAfterAnApplicationInsertAndDelete(t *testing.T) {
	r := chunkedItemsRig(t, func(*rig) {})
	r.eng.Progress = nil
	held := r.holdSyncApplyLock("items", "hubspot", "target")
	done := make(chan error, 1)
	go func() {
		_, err := r.eng.RunSync(context.Background(), "items", "manual")
		done <- err
	}()
	r.waitForAdvisoryLock("hubspot", "the first chunk's apply never waited for the lock")
	r.exec("hubspot", `INSERT INTO items VALUES ('s100', 'app', 0)`)
	r.exec("hubspot", `DELETE FROM items WHERE sku = 's100'`)
	require.NoError(t, held.Rollback(context.Background()))
	require.NoError(t, <-done)
	r.run("items")
	require.Equal(t, []string{"item 100"}, r.rows("crm", `SELECT name FROM items WHERE sku = 's100'`))
	require.Equal(t, r.rows("crm", `SELECT sku, name, qty FROM items ORDER BY sku`), r.rows("hubspot", `SELECT sku, name, qty FROM items ORDER BY sku`))
	r.idle("items")
}

// A natural key compared after trim pairs a value that ends in v (the SQL
// that trims must not take E'\v' for a v).
func TestInitialSyncPairsATrimmedNaturalKey(t *testing.T) {
	const ddl = `CREATE TABLE tags (id bigserial PRIMARY KEY, code text UNIQUE, label text)`
	yaml := strings.Replace(itemsYAML(""), "public.items", "public.tags", 2)
	yaml = yaml[:strings.Index(yaml, "    fields:")] + `    match: [code]
    fields:
      - { source: code, target: code, transform: trim }
      - { source: label, target: label }
`
	r := newRig(t, yaml, map[string]string{
		"crm":     ddl + `; INSERT INTO tags (code, label) VALUES (' lev ', 'from crm'), ('dev', 'crm only')`,
		"hubspot": ddl + `; INSERT INTO tags (code, label) VALUES ('lev', 'from hubspot')`,
	})
	res := r.run("items")
	require.Equal(t, 1, res.Created, "dev created on hubspot, lev paired: %+v", res)
	require.Equal(t, 1, res.Conflicts, "the pair's labels differ: %+v", res)
	require.Equal(t, []string{"dev", "lev"}, r.rows("hubspot", `SELECT code FROM tags ORDER BY code`))
	require.Equal(t, 2, r.ctlInt(`SELECT count(*) FROM tandem.links`))
}

// A resync compares pairs that are already linked: the snapshots it read
// them in replace the old ones in their links, so a change it read is not
// replayed over a newer edit on the other side (source_wins would let the
// replay win).
func TestResyncDoesNotReplayWhatItRead(t *testing.T) {
	step := 0
	r := chunkedItemsRigWith(t, "    conflict: source_wins\n", func(r *rig) {})
	r.run("items")
	r.idle("items")
	r.eng.Progress = func(engine.InitialProgress) {
		step++
		switch step {
		case 1: // begun: a change the first chunk reads in the row
			r.exec("crm", `UPDATE items SET name = 'crm early' WHERE sku = 's101'`)
		case 2: // the first chunk settled the pair; edited on hubspot since
			r.exec("hubspot", `UPDATE items SET name = 'edited there' WHERE sku = 's101'`)
		}
	}
	_, err := r.eng.Resync(context.Background(), "items")
	require.NoError(t, err)
	require.Greater(t, step, 2)
	r.eng.Progress = nil
	r.run("items")
	require.Equal(t, []string{"edited there"}, r.rows("crm", `SELECT name FROM items WHERE sku = 's101'`))
	require.Equal(t, r.rows("crm", `SELECT sku, name, qty FROM items ORDER BY sku`), r.rows("hubspot", `SELECT sku, name, qty FROM items ORDER BY sku`))
	require.Equal(t, []string{"insert_insert crm early item 101"},
		r.ctlRows(`SELECT concat_ws(' ', kind, kept #>> '{source,name}', lost #>> '{target,name}') FROM tandem.sync_conflicts`),
		"only the pair the resync found differing")
	r.idle("items")
}

// A verify (or a conflict resolution) brings the sync up to date before it
// compares: before the sync's first run, that is its initial sync. It
// used to start the sync without one, and no later run made it.
func TestVerifyBeforeTheFirstRunDoesTheInitialSync(t *testing.T) {
	r := existingRig(t, "    match: [email]\n    initial: manual\n")
	// In chunks far smaller than the tables: every pair is compared, and
	// the 30 the initial sync left to a person are reported.
	rep, err := r.eng.Verify(context.Background(), "contacts", engine.VerifyOptions{ChunkRows: 700})
	require.NoError(t, err)
	require.Equal(t, int64(10500), rep.SourceRows)
	require.Equal(t, rep.SourceRows, rep.Compared)
	require.Equal(t, int64(30), rep.Differing, "%+v", rep.Rows)
	require.Zero(t, rep.MissingOnSource+rep.MissingOnTarget)
	for _, d := range rep.Rows {
		require.NotZero(t, d.Conflict, "held by its open conflict: %+v", d)
	}
	for _, id := range r.ctlRows(`SELECT id FROM tandem.sync_conflicts WHERE status = 'open'`) {
		n, err := strconv.ParseInt(id, 10, 64)
		require.NoError(t, err)
		require.NoError(t, r.eng.ResolveConflict(context.Background(), n, "source", nil, "test"))
	}
	r.run("contacts")
	r.requireSameContacts()
	require.Equal(t, []string{"initial"}, r.ctlRows(`SELECT DISTINCT trigger FROM tandem.sync_runs WHERE trigger = 'initial'`))
	r.idle("contacts")
}

// A node that stores a written key otherwise than it was given (char(5)
// pads it): a bulk insert cannot tell which new row is which, so it is
// rolled back and the rows go in one by one, each linked to the key the
// node returned. Nothing is created twice, and later edits reach the rows.
func TestRowsWhoseKeyTheNodeRewritesAreLinkedOnce(t *testing.T) {
	r := newRig(t, itemsYAML(""), map[string]string{
		"crm": `CREATE TABLE items (sku text PRIMARY KEY, name text, qty int);
			INSERT INTO items VALUES ('a', 'one', 1), ('bb', 'two', 2), ('ccc', 'three', 3)`,
		"hubspot": `CREATE TABLE items (sku char(5) PRIMARY KEY, name text, qty int)`,
	})
	require.Equal(t, 3, r.run("items").Created)
	r.exec("crm", `INSERT INTO items VALUES ('dd', 'four', 4), ('ee', 'five', 5)`)
	require.Equal(t, 2, r.run("items").Created)
	r.idle("items")
	r.exec("crm", `UPDATE items SET qty = qty * 10`)
	require.Equal(t, 5, r.run("items").Updated)
	r.idle("items")
	require.Equal(t, []string{"a|one|10", "bb|two|20", "ccc|three|30", "dd|four|40", "ee|five|50"},
		r.rows("hubspot", `SELECT concat_ws('|', rtrim(sku), name, qty) FROM items ORDER BY sku`))
	require.Equal(t, 5, r.ctlInt(`SELECT count(*) FROM tandem.links`), "one link per row")
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_errors`))
}

// latest_wins in an initial sync counts only changes taken within
// change_log_retention, pruned or not: hubspot's old edit of a row, still
// in change_log, is as forgotten as one pruned, and the tie goes to crm;
// its recent edit of another row wins.
func TestInitialSyncLatestWinsForgetsChangesPastTheRetention(t *testing.T) {
	t.Parallel()
	const ddl = `CREATE TABLE items (sku text PRIMARY KEY, name text, qty int);
		INSERT INTO items VALUES ('a', 'one', %d), ('b', 'two', %d)`
	r := newRig(t, itemsYAML("    initial: latest_wins\n"), map[string]string{"crm": fmt.Sprintf(ddl, 1, 2), "hubspot": fmt.Sprintf(ddl, 10, 20)})
	r.exec("hubspot", `UPDATE items SET qty = qty + 1`)
	r.eng.Progress = func(p engine.InitialProgress) {
		if p.Done == 0 && !p.Finished { // begun, hubspot's changes taken, no row read yet
			_, err := r.ctl.Pool.Exec(context.Background(), `UPDATE tandem.change_log SET logged_at = logged_at - interval '8 days'
				WHERE new->>'qty' = '21'`)
			require.NoError(t, err)
		}
	}
	r.run("items")
	require.Equal(t, 1, r.ctlInt(`SELECT count(*) FROM tandem.change_log WHERE logged_at < now() - interval '7 days'`))
	for _, node := range []string{"crm", "hubspot"} {
		require.Equal(t, []string{"a|11", "b|2"}, r.rows(node, `SELECT sku, qty FROM items ORDER BY sku`), node)
	}
}
