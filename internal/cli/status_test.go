package cli_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMigrateCreatesControlSchemaOnce(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	env := urls(ctl.URL, "", "")
	cfg := fixture("tandem.yaml")

	r := mustRun(t, env, "-c", cfg, "migrate")
	require.Contains(t, r.stdout, "control schema migrated to version 6")
	var exists bool
	require.NoError(t, ctl.Pool.QueryRow(context.Background(),
		"SELECT to_regclass('tandem.change_log') IS NOT NULL").Scan(&exists))
	require.True(t, exists, "migrate did not create tandem.change_log")

	r = mustRun(t, env, "-c", cfg, "migrate")
	require.Equal(t, "control schema is current (version 6)\n", r.stdout)
}

func TestStatusShowsQueuesAndWarnsOverLimit(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	crm := newNode(t, contactsDDL)
	hubspot := newNode(t, hsContactsDDL)
	env := urls(ctl.URL, crm.URL, hubspot.URL)
	mustRun(t, env, "-c", fixture("tandem.yaml"), "migrate")
	mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "crm")
	mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "hubspot")
	crm.Exec(t, "INSERT INTO contacts (id) VALUES (1), (2)")
	crm.Exec(t, "UPDATE contacts SET email = 'a@example.com' WHERE id = 1")

	r := mustRun(t, env, "-c", fixture("tandem.yaml"), "status")
	rows := statusRows(t, r.stdout)
	require.Equal(t, []string{"crm", "trigger", "3"}, rows["crm"][:3], r)
	require.Equal(t, []string{"hubspot", "trigger", "0"}, rows["hubspot"][:3], r)
	require.NotContains(t, r.stderr, "WARNING", "no limit is configured")

	r = mustRun(t, env, "-c", fixture("queue_limit.yaml"), "status")
	require.Contains(t, r.stderr, "WARNING: node crm: change queue holds about 3 rows, over the limit of 1")
	require.NotContains(t, r.stderr, "WARNING: node hubspot")
}

// statusRows splits the node table of status output into its rows' fields,
// by node name.
func statusRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	nodes, _, _ := strings.Cut(out, "\n\n") // the sync table follows a blank line
	lines := strings.Split(strings.TrimSuffix(nodes, "\n"), "\n")
	require.True(t, strings.HasPrefix(lines[0], "NODE "), "no header in\n%s", out)
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 3, "short row %q", l)
		rows[f[0]] = f
	}
	return rows
}

// syncRows returns the sync table of status output: each row's cells by
// column name, by sync id. Cells hold single spaces; columns are two apart.
func syncRows(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	_, table, ok := strings.Cut(out, "\n\n")
	require.True(t, ok, "no sync table in\n%s", out)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	split := regexp.MustCompile(`\s{2,}`)
	header := split.Split(strings.TrimSpace(lines[0]), -1)
	require.Equal(t, []string{"SYNC", "LAST RUN", "LAST COUNTS", "LAST CHECK", "PENDING SOURCE", "PENDING TARGET",
		"OLDEST PENDING", "OPEN CONFLICTS", "OPEN ERRORS"}, header, out)
	rows := map[string]map[string]string{}
	for _, l := range lines[1:] {
		cells := split.Split(strings.TrimSpace(l), -1)
		require.Len(t, cells, len(header), "row %q", l)
		row := map[string]string{}
		for i, c := range cells {
			row[header[i]] = c
		}
		rows[cells[0]] = row
	}
	return rows
}

// hsContactsSerialDDL gives hs_contacts a key of its own, so the sync can
// create rows there.
const hsContactsSerialDDL = "CREATE TABLE public.hs_contacts (hs_id bigserial PRIMARY KEY, email text)"

func TestStatusShowsPendingChangesAndLastRunPerSync(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ctl := pgtest.NewDB(t)
	crm := newNode(t, contactsDDL)
	hubspot := newNode(t, hsContactsSerialDDL)
	env := urls(ctl.URL, crm.URL, hubspot.URL)
	cfgPath := fixture("tandem.yaml")
	mustRun(t, env, "-c", cfgPath, "migrate")
	mustRun(t, env, "-c", cfgPath, "install", "crm")
	mustRun(t, env, "-c", cfgPath, "install", "hubspot")
	status := func() (map[string][]string, map[string]string, result) {
		t.Helper()
		r := mustRun(t, env, "-c", cfgPath, "status")
		syncs := syncRows(t, r.stdout)
		require.Contains(t, syncs, "contacts", r)
		return statusRows(t, r.stdout), syncs["contacts"], r
	}

	_, row, r := status()
	require.Equal(t, map[string]string{"SYNC": "contacts", "LAST RUN": "never", "LAST COUNTS": "-", "LAST CHECK": "never",
		"PENDING SOURCE": "0", "PENDING TARGET": "0", "OLDEST PENDING": "-", "OPEN CONFLICTS": "0", "OPEN ERRORS": "0"}, row, r)

	// Another consumer keeps taken changes queued on crm: once they are in
	// change_log they must not count twice.
	crm.Exec(t, "INSERT INTO tandem.consumers (name, snapshot) VALUES ('another-control', '1:1:')")
	crm.Exec(t, "INSERT INTO contacts (id, email) VALUES (1, 'a@example.com'), (2, 'b@example.com')")
	crm.Exec(t, "UPDATE contacts SET email = 'A@example.com' WHERE id = 1")
	_, row, r = status()
	require.Equal(t, "3", row["PENDING SOURCE"], r)
	require.Equal(t, "0", row["PENDING TARGET"], r)
	require.NotEqual(t, "-", row["OLDEST PENDING"], r)

	cfg, err := config.Load(cfgPath, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	eng := &engine.Engine{Config: cfg, Control: ctl.Pool, Nodes: map[string]*pgxpool.Pool{"crm": nodePool(t, crm.URL), "hubspot": nodePool(t, hubspot.URL)}}
	pulled, err := eng.Pull(ctx, "crm")
	require.NoError(t, err)
	require.EqualValues(t, 3, pulled.Rows)
	crm.Exec(t, "INSERT INTO contacts (id, email) VALUES (3, 'c@example.com')") // queued, not taken
	nodes, row, r := status()
	require.Equal(t, "4", nodes["crm"][2], "crm's queue holds the 3 taken changes and the new one\n%s", r)
	require.Equal(t, "4", row["PENDING SOURCE"], "3 in change_log + 1 queued\n%s", r)

	r = mustRun(t, env, "-c", cfgPath, "run", "--once")
	require.Contains(t, r.stdout, "sync contacts: 3 synced (3 created, 0 updated, 0 deleted), 0 conflicts, 0 errors", r)
	nodes, row, r = status()
	// The run was the sync's initial sync: after its chunk it pulled again,
	// taking the apply's marker (one row for its 3 writes) from the queue.
	require.Equal(t, "0", nodes["hubspot"][2], "hubspot's queue is empty\n%s", r)
	require.Regexp(t, `^succeeded \d{4}-\d\d-\d\d \d\d:\d\d:\d\d `, row["LAST RUN"], r)
	require.Equal(t, "3 synced: 3 created, 0 updated, 0 deleted; 0 conflicts, 0 errors", row["LAST COUNTS"], r)
	require.NotEqual(t, "never", row["LAST CHECK"], r)
	require.Equal(t, "0", row["PENDING SOURCE"], r)
	require.Equal(t, "0", row["PENDING TARGET"], "the sync's own echoes are not pending\n%s", r)
	require.Equal(t, "-", row["OLDEST PENDING"], r)
	require.NotContains(t, r.stderr, "WARNING", r)

	hubspot.Exec(t, "UPDATE hs_contacts SET email = 'z@example.com' WHERE email = 'c@example.com'")
	ctl.Exec(t, `UPDATE tandem.sync_state SET last_error = 'node hubspot: applying: boom' WHERE sync_id = 'contacts'`)
	ctl.Exec(t, `INSERT INTO tandem.sync_conflicts (sync_id) VALUES ('contacts'), ('contacts')`)
	ctl.Exec(t, `UPDATE tandem.sync_conflicts SET status = 'resolved' WHERE id = (SELECT min(id) FROM tandem.sync_conflicts)`)
	ctl.Exec(t, `INSERT INTO tandem.sync_errors (sync_id, node, table_name, reason) VALUES ('contacts', 'hubspot', 'public.hs_contacts', 'boom')`)
	ctl.Exec(t, `UPDATE tandem.sync_state SET initial_phase = 'target', initial_done = 1500, initial_total = 4000 WHERE sync_id = 'contacts'`)
	_, row, r = status() // exits 0: status reports a failed run, it did not fail
	require.Contains(t, r.stderr, "sync contacts: initial sync under way: 1500 of 4000 rows (37%); changes wait until it is done\n", r)
	require.Equal(t, "1", row["PENDING TARGET"], r)
	require.Equal(t, "1", row["OPEN CONFLICTS"], r)
	require.Equal(t, "1", row["OPEN ERRORS"], r)
	require.Contains(t, r.stderr, "WARNING: sync contacts: last run failed: node hubspot: applying: boom\n", r)
}

func TestStatusSaysWhenTheControlSchemaIsMissing(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	crm := newNode(t, contactsDDL)
	hubspot := newNode(t, hsContactsDDL)
	env := urls(ctl.URL, crm.URL, hubspot.URL)
	mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "crm")
	mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "hubspot")

	r := run(t, env, "-c", fixture("tandem.yaml"), "status")
	require.Equal(t, cli.ExitFailure, r.code, r)
	require.Contains(t, r.stderr, "tandem: could not read sync status: control database (", r)
	require.Contains(t, r.stderr, "the control schema is at version 0, this tandem needs version 6: run `tandem migrate`", r)
	require.Len(t, statusRows(t, r.stdout), 2, "the node table is still shown\n%s", r)
	require.NotContains(t, r.stdout, "SYNC", r)
}
