package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// echoModes runs a test with the engine's writes to hubspot marked (capture
// version 3: one marker row per apply) and captured row by row (a node
// still at capture version 2, or a table another sync reads too); in
// objectMarker mode, a test that reads a marker finds its list as an
// object, as engines before it went in as a JSON string wrote it.
var echoModes = []struct {
	name         string
	version      int
	perRow       bool
	objectMarker bool
}{
	{"marked", 3, false, false},
	{"captured row by row", 2, true, false},
	{"marked by an earlier engine", 3, false, true},
}

func TestAppliesComeBackAsOneMarker(t *testing.T) {
	t.Parallel()
	for _, mode := range echoModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, contactsYAML(""), twoNodes())
			r.exec("hubspot", "UPDATE tandem.capture_info SET version = $1", mode.version)
			r.idle("contacts") // the initial sync, of nothing (the rows it creates are in no marker): the inserts stream
			r.exec("crm", `INSERT INTO contacts (full_name, email, phone) SELECT 'P ' || g, 'p' || g || '@x.com', g::text FROM generate_series(1, 3) g`)
			require.Equal(t, 3, r.run("contacts").Created)
			r.exec("crm", `UPDATE contacts SET phone = phone || '0'`)
			r.exec("crm", `DELETE FROM contacts WHERE phone = '30'`)
			res := r.run("contacts")
			require.Equal(t, [2]int{2, 1}, [2]int{res.Updated, res.Deleted}, "updated, deleted")
			r.idle("contacts")

			echoes := r.ctlRows(`SELECT op FROM tandem.change_log WHERE node = 'hubspot' AND origin = 'contacts' ORDER BY id`)
			if mode.perRow {
				require.Equal(t, []string{"insert", "insert", "insert", "delete", "update", "update"}, echoes)
			} else {
				require.Equal(t, []string{"applied", "applied"}, echoes, "one marker per apply, none per row")
				require.Equal(t, []string{`insert {"id": 1}`, `insert {"id": 2}`, `insert {"id": 3}`},
					r.ctlRows(`SELECT w ->> 'op' || ' ' || (w -> 'key')::text FROM tandem.change_log l,
						jsonb_array_elements((l.new #>> '{}')::jsonb -> 'writes') w WHERE l.node = 'hubspot' AND l.id = (
						SELECT min(id) FROM tandem.change_log WHERE node = 'hubspot' AND op = 'applied')`))
			}
			require.Equal(t, []string{"P|1|10", "P|2|20"}, r.rows("hubspot", "SELECT firstname, lastname, phone_number FROM hs_contacts ORDER BY id"))
			require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_conflicts"))
		})
	}
}

// An application write that commits while an apply waits for its row lock
// is overwritten by the apply: it must be recorded as a concurrent_apply
// conflict and not sent to the other side afterwards (which would undo the
// sync's decision there and leave the two sides apart).
//
// In windows of 2 changes the one window is full, so the application's
// write and the apply's echo are read ahead, while the apply's run records.
func TestWriteOverwrittenByARacingApplyIsRecorded(t *testing.T) {
	t.Parallel()
	for _, mode := range echoModes {
		for _, window := range []int{engine.DefaultWindow, 2} {
			if mode.objectMarker && window == 2 {
				continue // the marker is read ahead before the test can rewrite it
			}
			t.Run(fmt.Sprintf("%s/window=%d", mode.name, window), func(t *testing.T) {
				t.Parallel()
				racingApply(t, mode.version, mode.objectMarker, window)
			})
		}
	}
}

// runRacingApp runs the sync while an application's transaction on
// hubspot holds a row lock its apply needs: the transaction runs sql, and
// once the apply waits for the lock, then, and commits. It returns the
// run's error.
func (r *rig) runRacingApp(ctx context.Context, sql string, then ...string) error {
	t := r.t
	t.Helper()
	app, err := r.nodes["hubspot"].Pool.Begin(ctx)
	require.NoError(t, err)
	defer app.Rollback(ctx)
	_, err = app.Exec(ctx, sql) // holds the row lock, not yet committed
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { _, err := r.eng.RunSync(ctx, "contacts", "manual"); done <- err }()
	require.Eventually(t, func() bool {
		return r.nodeInt("hubspot", `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE%hs_contacts%'`) == 1
	}, 10*time.Second, 5*time.Millisecond, "the apply never waited for the application's lock")
	for _, q := range then {
		_, err = app.Exec(ctx, q)
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit(ctx))
	return <-done
}

func racingApply(t *testing.T, version int, objectMarker bool, window int) {
	ctx := context.Background()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Window, r.eng.PullBatch = window, window // pulls stop part way too, unless the sync's own writes wait
	r.exec("hubspot", "UPDATE tandem.capture_info SET version = $1", version)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	r.run("contacts")
	r.idle("contacts")

	r.exec("crm", `UPDATE contacts SET phone = 'crm'`)
	require.NoError(t, r.runRacingApp(ctx, `UPDATE hs_contacts SET phone_number = 'app'`))
	require.Equal(t, []string{"crm"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"), "the apply went in after the application's write")
	if objectMarker {
		require.Equal(t, 1, r.nodeInt("hubspot", `WITH m AS (UPDATE tandem.change_queue SET new = (new #>> '{}')::jsonb
			WHERE op = 'applied' AND jsonb_typeof(new) = 'string' RETURNING 1) SELECT count(*) FROM m`))
	}

	r.run("contacts") // takes the application's write and the apply's echo
	r.idle("contacts")
	require.Equal(t, []string{"crm"}, r.rows("crm", "SELECT phone FROM contacts"), "the overwritten write is not sent on")
	require.Equal(t, []string{"crm"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"))
	require.Equal(t, []string{`concurrent_apply|"app"|"crm"`},
		r.ctlRows(`SELECT kind || '|' || (lost -> 'target' -> 'phone_number')::text || '|' || (kept -> 'target' -> 'phone_number')::text FROM tandem.sync_conflicts`))
	if window == 2 {
		require.Positive(t, r.eng.LookedAhead(), "the application's write and the echo were not read ahead")
	}
}
