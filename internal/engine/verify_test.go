package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// verifyRows is how many contacts the verify tests sync first.
const verifyRows = 300

// syncedContacts is a rig whose crm and hubspot hold verifyRows contacts,
// synced by the engine, every echo consumed. Contact i has email
// personI@X.com (person i@x.com on hubspot) and a name of one word, two
// words, or two words apart.
func syncedContacts(t *testing.T, extra string) *rig {
	t.Helper()
	return syncedContactsOn(t, "trigger", extra)
}

// syncedContactsOn is syncedContacts with hubspot captured by capture
// (trigger or wal).
func syncedContactsOn(t *testing.T, capture, extra string) *rig {
	t.Helper()
	yaml, nodes := contactsYAML(extra), twoNodes()
	if capture == "wal" {
		yaml, nodes = walYAML(extra), walNodes()
	}
	r := newRig(t, yaml, nodes)
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone)
		SELECT CASE i % 3 WHEN 0 THEN 'Solo' || i WHEN 1 THEN 'Mary ' || i || ' Lee' ELSE ' Ann' || E'\t ' || 'B' || i END,
			'Person' || i || '@X.com', CASE WHEN i % 5 = 0 THEN NULL ELSE '555-' || i END
		FROM generate_series(1, $1::int) i`, verifyRows)
	require.Equal(t, verifyRows, r.run("contacts").Created)
	r.idle("contacts")
	return r
}

// behindTandem runs sql on a node with ordinary triggers off (capture's
// among them): a change tandem never hears of.
func (r *rig) behindTandem(node, sql string) {
	r.t.Helper()
	require.NoError(r.t, pgx.BeginFunc(context.Background(), r.nodes[node].Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(context.Background(), "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(context.Background(), sql)
		return err
	}))
}

// hubID is the hubspot id of crm contact i.
func (r *rig) hubID(i int) int {
	r.t.Helper()
	return r.nodeInt("hubspot", "SELECT id FROM hs_contacts WHERE email = $1", fmt.Sprintf("person%d@x.com", i))
}

// verify runs Verify and checks what it reports of its progress: done
// never goes back, and ends at the total.
func (r *rig) verify(id string, opts engine.VerifyOptions) *engine.VerifyReport {
	r.t.Helper()
	var last, lastTotal int64
	opts.Progress = func(done, total int64) {
		require.GreaterOrEqual(r.t, done, last)
		require.LessOrEqual(r.t, done, total)
		last, lastTotal = done, total
	}
	rep, err := r.eng.Verify(context.Background(), id, opts)
	require.NoError(r.t, err)
	require.Equal(r.t, lastTotal, last, "progress ends at its total")
	if opts.MaxListed == 0 {
		require.Equal(r.t, rep.Drifted(), int64(len(rep.Rows)), "every drifting row is listed")
	}
	return rep
}

// drifts renders a report's rows as "kind source-key target-key fields
// conflict", sorted.
func drifts(t *testing.T, rep *engine.VerifyReport) []string {
	t.Helper()
	var out []string
	for _, d := range rep.Rows {
		out = append(out, drift(t, d.Kind, d.SourceKey, d.TargetKey, d.Conflict, d.Fields...))
	}
	slices.Sort(out)
	return out
}

func drift(t *testing.T, kind string, source, target map[string]any, conflict int64, fields ...string) string {
	t.Helper()
	key := func(k map[string]any) string {
		if k == nil {
			return "-"
		}
		b, err := json.Marshal(k)
		require.NoError(t, err)
		return string(b)
	}
	return fmt.Sprintf("%s %s %s %s %d", kind, key(source), key(target), strings.Join(fields, ","), conflict)
}

func id(n int) map[string]any { return map[string]any{"id": json.Number(fmt.Sprint(n))} }

func TestVerifyEqualTables(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "")
	for _, chunk := range []int{0, 7} {
		rep := r.verify("contacts", engine.VerifyOptions{ChunkRows: chunk})
		require.True(t, rep.Clean(), "chunk %d: %+v", chunk, rep.Rows)
		require.Equal(t, int64(verifyRows), rep.Compared)
		require.Equal(t, int64(verifyRows), rep.SourceRows)
		require.Equal(t, int64(verifyRows), rep.TargetRows)
		require.Zero(t, rep.CaughtUp)
		require.Zero(t, rep.RowByRow)
	}
}

// Rows changed, deleted and inserted on either node behind tandem's back
// are reported, each with its keys, whatever the chunk size; nothing else
// is.
func TestVerifyFindsDrift(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "")
	h := map[int]int{}
	for _, i := range []int{10, 20, 30, 40, 50} {
		h[i] = r.hubID(i)
	}
	r.behindTandem("hubspot", fmt.Sprintf(`UPDATE hs_contacts SET email = 'changed@x.com' WHERE id = %d;
		UPDATE hs_contacts SET lastname = 'Other' WHERE id = %d;
		DELETE FROM hs_contacts WHERE id = %d`, h[10], h[20], h[30]))
	r.behindTandem("hubspot", `INSERT INTO hs_contacts (id, firstname, email) VALUES (1000, 'Ghost', 'ghost@x.com')`)
	r.behindTandem("crm", `DELETE FROM contacts WHERE id = 40;
		UPDATE contacts SET phone = '000' WHERE id = 50;
		INSERT INTO contacts (id, full_name, email) VALUES (2000, 'Phantom Menace', 'phantom@x.com')`)
	want := []string{
		drift(t, engine.DriftDiffering, id(10), id(h[10]), 0, "email/email"),
		drift(t, engine.DriftDiffering, id(20), id(h[20]), 0, "full_name/firstname+lastname"),
		drift(t, engine.DriftDiffering, id(50), id(h[50]), 0, "phone/phone_number"),
		drift(t, engine.DriftMissingOnSource, id(40), id(h[40]), 0),
		drift(t, engine.DriftMissingOnSource, nil, id(1000), 0),
		drift(t, engine.DriftMissingOnTarget, id(30), id(h[30]), 0),
		drift(t, engine.DriftMissingOnTarget, id(2000), nil, 0),
	}
	slices.Sort(want)
	for _, opts := range []engine.VerifyOptions{{}, {ChunkRows: 7}, {ChunkRows: 64},
		{ChunkRows: 7, RecheckRows: 1}, {ChunkRows: 3, RecheckRows: 2}} { // re-checks in the middle of the walk
		rep := r.verify("contacts", opts)
		require.Equal(t, want, drifts(t, rep), "%+v", opts)
		require.Equal(t, [3]int64{2, 2, 3}, [3]int64{rep.MissingOnSource, rep.MissingOnTarget, rep.Differing})
		require.Equal(t, int64(verifyRows+2), rep.Compared, "the links and the rows no link reaches")
		require.Equal(t, int64(verifyRows), rep.SourceRows)
		require.Equal(t, int64(verifyRows), rep.TargetRows)
		require.Zero(t, rep.CaughtUp)
		for _, d := range rep.Rows {
			require.Equal(t, d.SourceKey != nil && d.TargetKey != nil, d.Linked)
		}
	}

	// The list is bounded; the counts are not.
	rep := r.verify("contacts", engine.VerifyOptions{MaxListed: 2})
	require.Len(t, rep.Rows, 2)
	require.Equal(t, int64(7), rep.Drifted())
}

// Changes captured but not yet synced, on both nodes, are not drift: the
// verify applies them and compares those rows again.
func TestVerifyAppliesPendingChangesBeforeCallingThemDrift(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "")
	r.exec("crm", `UPDATE contacts SET phone = 'new' WHERE id = 5`)
	r.exec("crm", `DELETE FROM contacts WHERE id = 6`)
	r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('Newcomer', 'new@x.com')`)
	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Changed' WHERE email = 'person7@x.com'`)
	rep := r.verify("contacts", engine.VerifyOptions{ChunkRows: 50})
	require.True(t, rep.Clean(), "%+v", rep.Rows)
	require.Equal(t, int64(4), rep.CaughtUp)
	require.Equal(t, []string{"new"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'person5@x.com'"))
	require.Equal(t, []string{"Mary Changed"}, r.rows("crm", "SELECT full_name FROM contacts WHERE id = 7"))
	r.idle("contacts")
	require.True(t, r.verify("contacts", engine.VerifyOptions{}).Clean())

	// Re-checked in the middle of the walk: the first chunk's three suspects
	// are re-checked at once, and that catch-up syncs the new row before the
	// walk reaches it, so it is never a suspect.
	r.exec("crm", `UPDATE contacts SET phone = 'newer' WHERE id = 8`)
	r.exec("crm", `DELETE FROM contacts WHERE id = 9`)
	r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('Latecomer', 'late@x.com')`)
	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Changed' WHERE email = 'person11@x.com'`)
	rep = r.verify("contacts", engine.VerifyOptions{ChunkRows: 50, RecheckRows: 1})
	require.True(t, rep.Clean(), "%+v", rep.Rows)
	require.Equal(t, int64(3), rep.CaughtUp)
	require.Equal(t, []string{"late@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts WHERE email = 'late@x.com'"))
	r.idle("contacts")
}

// A row the application changes again at every re-check is in flight: not
// drift (the sync will take the change), and not verified either.
func TestVerifyCountsARowChangedAtEveryRecheckAsInFlight(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "")
	r.exec("crm", `UPDATE contacts SET phone = 'w0' WHERE id = 5`)
	rounds := 0
	r.eng.OnRecheck(func() {
		rounds++
		r.exec("crm", `UPDATE contacts SET phone = 'w' || $1::int WHERE id = 5`, rounds)
	})
	rep := r.verify("contacts", engine.VerifyOptions{})
	require.True(t, rep.Clean(), "%+v", rep.Rows)
	require.Equal(t, int64(1), rep.InFlight)
	require.Zero(t, rep.CaughtUp)
	require.Equal(t, 3, rounds, "re-check rounds")

	// Left alone, it is in step at the first re-check.
	r.eng.OnRecheck(func() {})
	r.exec("crm", `UPDATE contacts SET phone = 'last' WHERE id = 5`)
	rep = r.verify("contacts", engine.VerifyOptions{})
	require.True(t, rep.Clean(), "%+v", rep.Rows)
	require.Zero(t, rep.InFlight)
	require.Equal(t, int64(1), rep.CaughtUp)
	require.Equal(t, []string{"last"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'person5@x.com'"))
}

// Through a transform with no exact reverse, a bidirectional sync leaves
// values that map only one way; they are in step, not drift.
func TestVerifyTakesValuesThatMapEitherWay(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "")
	r.exec("hubspot", `UPDATE hs_contacts SET email = 'PERSON1@X.COM' WHERE email = 'person1@x.com'`)
	// Mary 4 Lee: the same full name, split elsewhere.
	r.exec("hubspot", `UPDATE hs_contacts SET firstname = 'Mary 4', lastname = 'Lee' WHERE email = 'person4@x.com'`)
	r.run("contacts")
	r.idle("contacts")
	require.Equal(t, []string{"PERSON1@X.COM"}, r.rows("crm", "SELECT email FROM contacts WHERE id = 1"))
	rep := r.verify("contacts", engine.VerifyOptions{})
	require.True(t, rep.Clean(), "%+v", rep.Rows)
	require.Zero(t, rep.CaughtUp)

	// One way only, one side's values must be the other's mapped: the
	// target's the source's (lowercase), or the source's the target's
	// (split_name joined, email as it is).
	for _, tc := range []struct{ direction, node, write, edit, fields string }{
		{"source_to_target", "crm", `INSERT INTO contacts (full_name, email) VALUES ('Ann  Lee', 'Ann@x.com')`,
			`UPDATE hs_contacts SET email = 'ANN@X.COM'`, "email/email"},
		{"target_to_source", "hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES (' Ann', 'Lee', 'Ann@x.com')`,
			`UPDATE contacts SET full_name = 'Ann  Lee'`, "full_name/firstname+lastname"},
	} {
		oneWay := newRig(t, contactsYAML("    direction: "+tc.direction+"\n"), twoNodes())
		oneWay.exec(tc.node, tc.write)
		require.Equal(t, 1, oneWay.run("contacts").Created)
		require.True(t, oneWay.verify("contacts", engine.VerifyOptions{}).Clean(), tc.direction)
		other := map[string]string{"crm": "hubspot", "hubspot": "crm"}[tc.node]
		oneWay.behindTandem(other, tc.edit)
		require.Equal(t, []string{drift(t, engine.DriftDiffering, id(1), id(1), 0, tc.fields)},
			drifts(t, oneWay.verify("contacts", engine.VerifyOptions{})), tc.direction)
	}
}

// An entity an open manual conflict holds differs until a person resolves
// it: the report names the conflict.
func TestVerifyNamesTheOpenConflict(t *testing.T) {
	t.Parallel()
	r := syncedContacts(t, "    conflict: manual\n")
	r.exec("crm", `UPDATE contacts SET phone = 'from-crm' WHERE id = 8`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from-hubspot' WHERE email = 'person8@x.com'`)
	require.Equal(t, 1, r.run("contacts").Conflicts)
	conflict := int64(r.ctlInt("SELECT id FROM tandem.sync_conflicts WHERE status = 'open'"))
	rep := r.verify("contacts", engine.VerifyOptions{})
	require.Equal(t, []string{drift(t, engine.DriftDiffering, id(8), id(r.hubID(8)), conflict, "phone/phone_number")}, drifts(t, rep))
}

// A composite key is walked in key order; values render alike on nodes
// whose time zones differ; numbers compare by value (1.5 is 1.50).
func TestVerifyCompositeKeysAndTypes(t *testing.T) {
	t.Parallel()
	fields := contactsFields + "      - { source: seen, target: seen }\n      - { source: score, target: score }\n"
	r := newRig(t, contactsYAMLWith("", fields), map[string]string{
		"crm": `CREATE TABLE contacts (id bigserial PRIMARY KEY, full_name text, email text UNIQUE, phone text,
			seen timestamptz, score numeric)`,
		"hubspot": `CREATE TABLE hs_contacts (region text NOT NULL DEFAULT 'eu', id bigserial, firstname text, lastname text,
			email text UNIQUE, phone_number text, seen timestamptz, score numeric(10, 2), PRIMARY KEY (region, id))`,
	})
	for node, zone := range map[string]string{"crm": "America/New_York", "hubspot": "Asia/Tokyo"} {
		r.exec(node, fmt.Sprintf("ALTER DATABASE %s SET TimeZone = '%s'", pgx.Identifier{r.nodes[node].Name}.Sanitize(), zone))
		r.nodes[node].Pool.Reset()
	}
	r.exec("crm", `INSERT INTO contacts (full_name, email, seen, score)
		SELECT 'P ' || i, 'p' || i || '@x.com', timestamptz '2024-05-01 10:00:00+00' + i * interval '1 hour', i + 0.5
		FROM generate_series(1, 20) i`)
	require.Equal(t, 20, r.run("contacts").Created)
	r.idle("contacts")
	rep := r.verify("contacts", engine.VerifyOptions{ChunkRows: 3})
	require.True(t, rep.Clean())
	require.Zero(t, rep.RowByRow, "1.5 and 1.50 checksum alike: no bucket is read row by row")

	hub := func(i int) map[string]any {
		return map[string]any{"region": "eu", "id": json.Number(fmt.Sprint(r.nodeInt("hubspot", "SELECT id FROM hs_contacts WHERE email = $1", fmt.Sprintf("p%d@x.com", i))))}
	}
	h5 := hub(5)
	r.behindTandem("hubspot", `INSERT INTO hs_contacts (region, id, email) VALUES ('us', 1, 'us1@x.com'), ('us', 2, 'us2@x.com');
		DELETE FROM hs_contacts WHERE email = 'p5@x.com';
		UPDATE hs_contacts SET seen = seen + interval '1 second' WHERE email = 'p6@x.com'`)
	want := []string{
		drift(t, engine.DriftDiffering, id(6), hub(6), 0, "seen/seen"),
		drift(t, engine.DriftMissingOnSource, nil, map[string]any{"region": "us", "id": json.Number("1")}, 0),
		drift(t, engine.DriftMissingOnSource, nil, map[string]any{"region": "us", "id": json.Number("2")}, 0),
		drift(t, engine.DriftMissingOnTarget, id(5), h5, 0),
	}
	slices.Sort(want)
	require.Equal(t, want, drifts(t, r.verify("contacts", engine.VerifyOptions{ChunkRows: 3})))
}

// Applications keep writing on both nodes while a verify runs (and no
// daemon does): what they change is in flight, never drift.
func TestVerifyWhileApplicationsWrite(t *testing.T) {
	t.Parallel()
	for _, capture := range []string{"trigger", "wal"} {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			r := syncedContactsOn(t, capture, "")
			ctx, stop := context.WithCancel(context.Background())
			var written atomic.Int64
			done := make(chan struct{}, 2)
			write := func(node string, stmts ...string) {
				defer func() { done <- struct{}{} }()
				for n := 0; ctx.Err() == nil; n++ {
					sql := fmt.Sprintf(stmts[n%len(stmts)], 1+n*7%verifyRows, n)
					if _, err := r.nodes[node].Pool.Exec(ctx, sql); err != nil && ctx.Err() == nil {
						r.t.Errorf("%s: %s: %v", node, sql, err)
						return
					}
					written.Add(1)
				}
			}
			go write("crm",
				`UPDATE contacts SET phone = 'w%[2]d' WHERE id = %[1]d`,
				`INSERT INTO contacts (full_name, email) VALUES ('New %[2]d', 'new%[2]d@x.com')`,
				`DELETE FROM contacts WHERE id = %[1]d + 3 -- %[2]d`)
			go write("hubspot", `UPDATE hs_contacts SET lastname = 'H%[2]d' WHERE id = %[1]d`)
			stopped := false
			stopWriters := func() {
				if !stopped {
					stopped = true
					stop()
					<-done
					<-done
				}
			}
			defer stopWriters() // before the pools close, if the test fails first
			// Changes wait for the sync when the verify starts, and more come.
			require.Eventually(t, func() bool { return written.Load() >= 30 }, time.Minute, time.Millisecond)
			rep := r.verify("contacts", engine.VerifyOptions{ChunkRows: 20})
			stopWriters()
			require.True(t, rep.Clean(), "%+v", rep.Rows)
			require.Positive(t, rep.CaughtUp, "no change was in flight")

			for !r.run("contacts").Idle { // the last writes, and their echoes
			}
			rep = r.verify("contacts", engine.VerifyOptions{})
			require.True(t, rep.Clean(), "%+v", rep.Rows)
			require.Zero(t, rep.CaughtUp+rep.InFlight)
		})
	}
}
