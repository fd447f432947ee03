package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// TestConvergenceUnderFire runs the daemon while both sides take inserts,
// updates to the same and to different fields, deletes and a long
// transaction. Once the writers stop and a run completes, both tables hold
// the same mapped data, and every value an application wrote either reached
// the other side, was replaced by a later write on its own side, or is in
// sync_conflicts.
func TestConvergenceUnderFire(t *testing.T) {
	t.Parallel()
	convergenceUnderFire(t, newRig(t, contactsYAML("    conflict: latest_wins\n    interval: 50ms\n"), twoNodes()))
}

// The same in windows of 2 changes: every window with a change is full, so
// the next one is read ahead while it applies, markers among the rows.
func TestConvergenceUnderFireInSmallWindows(t *testing.T) {
	t.Parallel()
	inSmallWindows(t, newRig(t, contactsYAML("    conflict: latest_wins\n    interval: 50ms\n"), twoNodes()))
}

// The same in small windows with hubspot captured from its WAL.
func TestConvergenceUnderFireInSmallWindowsWithAWALNode(t *testing.T) {
	t.Parallel()
	inSmallWindows(t, newRig(t, walYAML("    conflict: latest_wins\n    interval: 50ms\n"), walNodes()))
}

func inSmallWindows(t *testing.T, r *rig) {
	r.eng.Window, r.eng.PullBatch = 2, 2 // pulls stop part way too
	convergenceUnderFire(t, r)
	require.Positive(t, r.eng.LookedAhead(), "no window took rows read ahead")
}

// The same with hubspot captured from its WAL (capture: wal).
func TestConvergenceUnderFireWithAWALNode(t *testing.T) {
	t.Parallel()
	convergenceUnderFire(t, newRig(t, walYAML("    conflict: latest_wins\n    interval: 50ms\n"), walNodes()))
}

// The same with hubspot's table read by a second sync too (never run here):
// the engine's writes there are captured row by row, as on a wal node, not
// left to a marker.
func TestConvergenceUnderFireWithPerRowEchoes(t *testing.T) {
	t.Parallel()
	yaml := plusGcontacts(contactsYAML("    conflict: latest_wins\n    interval: 50ms\n"), "public.hs_contacts", "email")
	convergenceUnderFire(t, newRig(t, yaml, map[string]string{"crm": crmDDL, "hubspot": hubspotDDL, "gcontacts": gcontactsDDL}))
}

func convergenceUnderFire(t *testing.T, r *rig) {
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) SELECT 'Crm P' || g, 'seed' || g || '@x', 'seed' FROM generate_series(1, 200) g`)
	r.run("contacts")

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	dctx, stopDaemon := context.WithCancel(context.Background())
	ready := make(chan struct{})
	daemonDone := make(chan error, 1)
	d := &engine.Daemon{Engine: r.eng, Syncs: []string{"contacts"}, Ready: func() { close(ready) }}
	go func() { daemonDone <- d.Run(dctx) }()
	select {
	case <-ready:
	case err := <-daemonDone:
		t.Fatalf("daemon stopped before ready: %v", err)
	}

	var n atomic.Int64
	var wg sync.WaitGroup
	writer := func(node string) {
		defer wg.Done()
		for ctx.Err() == nil {
			q := randomWrite(node, fmt.Sprintf("%s%d", node[:1], n.Add(1)))
			// Not ctx: a statement cut off by stop() may still commit on
			// the server after the writer returned, behind the final run.
			if _, err := r.nodes[node].Pool.Exec(context.Background(), q); err != nil {
				t.Errorf("%s: %v", node, err)
				return
			}
		}
	}
	begun := make(chan struct{})
	long := func() { // a transaction open across many runs, committing last
		defer wg.Done()
		// Not ctx: the writers may be stopped before it begins.
		tx, err := r.nodes["crm"].Pool.Begin(context.Background())
		if !assert.NoError(t, err) {
			close(begun)
			return
		}
		defer tx.Rollback(context.Background())
		// Inserts: it takes no lock another writer or an apply waits for
		// (an apply blocked on an application's row lock backs off and retries).
		_, err = tx.Exec(context.Background(), `INSERT INTO contacts (full_name, email, phone) SELECT 'Long ' || g, 'long' || g || '@x', 'long' || g FROM generate_series(1, 5) g`)
		close(begun)
		if !assert.NoError(t, err) {
			return
		}
		<-ctx.Done()
		assert.NoError(t, tx.Commit(context.Background()))
	}
	wg.Add(3)
	go writer("crm")
	go writer("hubspot")
	go long()
	// Let the daemon work through a few hundred runs' worth of writes.
	// (At least 5 runs while writers write; at most 20, or 3 s past the 5th,
	// so the test stays short on a loaded machine.)
	<-begun
	started := time.Now()
	for runs := 0; runs < 5 || (runs < 20 && time.Since(started) < 3*time.Second); runs = r.ctlInt(`SELECT count(*) FROM tandem.sync_runs`) {
		if time.Since(started) > time.Minute {
			t.Fatalf("the daemon recorded %d runs in a minute of writes (failing? see sync_runs.error: %v)",
				runs, r.ctlRows(`SELECT DISTINCT error FROM tandem.sync_runs WHERE error IS NOT NULL`))
		}
		select {
		case err := <-daemonDone:
			t.Fatalf("daemon stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	wg.Wait()
	stopDaemon()
	require.NoError(t, <-daemonDone)

	// Writes stopped: one more run to completion converges; then all is idle.
	r.run("contacts")
	r.idle("contacts")

	requireConvergedWithoutLoss(t, r)
}

// requireConvergedWithoutLoss: both tables hold the same mapped data, no
// error is open, and every phone value an application wrote is on a side
// now, reached the other side (as an apply), was replaced by a later
// write of its own side (or its row was deleted there), or is in
// sync_conflicts.
func requireConvergedWithoutLoss(t *testing.T, r *rig) {
	crm := r.rows("crm", `SELECT concat_ws('|', full_name, email, phone) FROM contacts ORDER BY email`)
	hub := r.rows("hubspot", `SELECT concat_ws('|', concat_ws(' ', firstname, lastname), email, phone_number) FROM hs_contacts ORDER BY email`)
	if !assert.Equal(t, crm, hub, "both sides hold the same mapped data") {
		dumpDifferences(t, r, crm, hub)
		t.FailNow()
	}
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_errors WHERE resolved_at IS NULL`))

	var missing []string
	final := map[string]bool{}
	for _, row := range append(crm, hub...) {
		parts := strings.Split(row, "|")
		final[parts[len(parts)-1]] = true
	}
	for _, l := range lostCandidates(t, r) {
		if !final[l[strings.LastIndex(l, " ")+1:]] {
			missing = append(missing, l)
		}
	}
	require.Empty(t, missing, "values overwritten without a trace in sync_conflicts")
	t.Logf("%d rows, %d conflicts recorded", len(crm), r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts`))
}

// randomWrite is a statement of an application writing node's contacts,
// v a value never written before: an insert, an update of the field both
// sides write (conflicts), of a field only this side writes (merges), or a
// delete, of a random row.
func randomWrite(node, v string) string {
	table, phone, name := "contacts", "phone", "full_name"
	if node == "hubspot" {
		table, phone, name = "hs_contacts", "phone_number", "lastname"
	}
	pick := fmt.Sprintf("(SELECT id FROM %s ORDER BY random() LIMIT 1)", table)
	switch rand.IntN(10) {
	case 0, 1:
		if node == "crm" {
			return fmt.Sprintf(`INSERT INTO contacts (full_name, email, phone) VALUES ('Crm %[1]s', '%[1]s@x', '%[1]s')`, v)
		}
		return fmt.Sprintf(`INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Hub', '%[1]s', '%[1]s@x', '%[1]s')`, v)
	case 2, 3, 4, 5:
		return fmt.Sprintf(`UPDATE %s SET %s = '%s' WHERE id = %s`, table, phone, v, pick)
	case 6, 7, 8:
		return fmt.Sprintf(`UPDATE %s SET %s = '%s' WHERE id = %s`, table, name, "N "+v, pick)
	default:
		return fmt.Sprintf(`DELETE FROM %s WHERE id = %s`, table, pick)
	}
}

// lostCandidates lists phone values an application wrote that were not
// replaced by a later write (or delete) on the same side, never reached the
// other side as an apply, and are not in sync_conflicts: "node key value".
func lostCandidates(t *testing.T, r *rig) []string {
	return r.ctlRows(`
		SELECT a.node || ' ' || a.keys::text || ' ' || (a.new ->> a.col) FROM (
			SELECT c.*, CASE c.node WHEN 'crm' THEN 'phone' ELSE 'phone_number' END AS col FROM tandem.change_log c
			WHERE c.origin IS NULL AND c.op IN ('insert', 'update')) a
		WHERE a.new ? a.col AND a.new ->> a.col IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM tandem.change_log b WHERE b.node = a.node AND b.keys = a.keys AND b.id > a.id
		                  AND b.origin IS NULL AND (b.op = 'delete' OR b.new ? a.col))
		  AND NOT EXISTS (SELECT 1 FROM tandem.change_log e
		                  CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN e.op = 'applied' THEN (e.new #>> '{}')::jsonb -> 'writes'
		                                     ELSE jsonb_build_array(jsonb_build_object('vals', e.new)) END) w
		                  WHERE e.node <> a.node AND e.origin = 'contacts'
		                  AND (w -> 'vals' ->> 'phone' = a.new ->> a.col OR w -> 'vals' ->> 'phone_number' = a.new ->> a.col))
		  AND NOT EXISTS (SELECT 1 FROM tandem.sync_conflicts k
		                  WHERE position('"' || (a.new ->> a.col) || '"' IN concat(k.kept::text, k.lost::text)) > 0)`)
}

// dumpDifferences logs what tandem recorded of each row the two sides
// disagree on: its changes on both nodes (markers included), link and
// conflicts.
func dumpDifferences(t *testing.T, r *rig, crm, hub []string) {
	differ := map[string]bool{}
	for _, row := range crm {
		differ[row] = true
	}
	for _, row := range hub {
		if differ[row] {
			delete(differ, row)
		} else {
			differ[row] = true
		}
	}
	for row := range differ {
		email := strings.Split(row, "|")[1]
		crmIDs := r.rows("crm", "SELECT id FROM contacts WHERE email = $1", email)
		hubIDs := r.rows("hubspot", "SELECT id FROM hs_contacts WHERE email = $1", email)
		t.Logf("row %q differs (crm ids %v, hubspot ids %v)", row, crmIDs, hubIDs)
		for _, id := range crmIDs {
			for _, h := range r.ctlRows(`SELECT concat_ws(' ', id, node, op, keys, old, new, origin, captured_at) FROM tandem.change_log
				WHERE node = 'crm' AND (keys = jsonb_build_object('id', $1::bigint) OR (op = 'applied' AND (new #>> '{}')::jsonb -> 'writes' @> jsonb_build_array(jsonb_build_object('key', jsonb_build_object('id', $1::bigint)))))
				ORDER BY id`, id) {
				t.Log("  ", h)
			}
			t.Log("  links", r.ctlRows(`SELECT concat_ws(' ', source_key, target_key) FROM tandem.links WHERE source_key = jsonb_build_object('id', $1::bigint)`, id))
		}
		for _, id := range hubIDs {
			for _, h := range r.ctlRows(`SELECT concat_ws(' ', id, node, op, keys, old, new, origin, captured_at) FROM tandem.change_log
				WHERE node = 'hubspot' AND (keys = jsonb_build_object('id', $1::bigint) OR (op = 'applied' AND (new #>> '{}')::jsonb -> 'writes' @> jsonb_build_array(jsonb_build_object('key', jsonb_build_object('id', $1::bigint)))))
				ORDER BY id`, id) {
				t.Log("  ", h)
			}
			for _, h := range r.ctlRows(`SELECT concat_ws(' ', id, run_id, kind, source_key, target_key, resolution, kept, lost) FROM tandem.sync_conflicts
				WHERE target_key = jsonb_build_object('id', $1::bigint) ORDER BY id`, id) {
				t.Log("  conflict", h)
			}
		}
	}
	for _, h := range r.ctlRows(`SELECT concat_ws(' ', id, source_from, source_through, target_from, target_through, status, error) FROM tandem.sync_runs ORDER BY id`) {
		t.Log("  run", h)
	}
}
