package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMigrateCreatesControlSchemaOnce(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	env := urls(ctl.URL, "", "")
	cfg := fixture("tandem.yaml")

	r := mustRun(t, env, "-c", cfg, "migrate")
	require.Contains(t, r.stdout, "control schema migrated to version 2")
	var exists bool
	require.NoError(t, ctl.Pool.QueryRow(context.Background(),
		"SELECT to_regclass('tandem.change_log') IS NOT NULL").Scan(&exists))
	require.True(t, exists, "migrate did not create tandem.change_log")

	r = mustRun(t, env, "-c", cfg, "migrate")
	require.Equal(t, "control schema is current (version 2)\n", r.stdout)
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

// statusRows splits status output into its rows' fields, by node name.
func statusRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.True(t, strings.HasPrefix(lines[0], "NODE "), "no header in\n%s", out)
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 3, "short row %q", l)
		rows[f[0]] = f
	}
	return rows
}
