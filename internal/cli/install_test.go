package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
)

func TestInstallPrintChangesNothing(t *testing.T) {
	t.Parallel()
	node := newNode(t, contactsDDL)

	r := mustRun(t, urls("", node.URL, ""), "-c", fixture("tandem.yaml"), "install", "crm", "--print")
	require.Contains(t, r.stdout, "CREATE SCHEMA tandem")
	require.Contains(t, r.stdout, `CREATE TRIGGER tandem_capture_update AFTER UPDATE ON "public"."contacts"`)
	require.NotContains(t, r.stdout, "hs_contacts", "hs_contacts is on hubspot, not on crm")

	require.False(t, schemaExists(t, node), "install --print created schema tandem")
	require.Empty(t, captureTriggers(t, node, "public.contacts"), "install --print created triggers")
}

func TestInstallCapturesAndIsIncremental(t *testing.T) {
	t.Parallel()
	node := newNode(t, contactsDDL+";"+companiesDDL)
	env := urls("", node.URL, "")
	ctx := context.Background()

	r := mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "crm")
	require.Contains(t, r.stdout, "node crm: capture version 5 installed (was 0)")
	require.Contains(t, r.stdout, "capturing now: public.contacts\n")
	require.Empty(t, captureTriggers(t, node, "public.companies"), "companies is in no sync of tandem.yaml")

	node.Exec(t, "INSERT INTO contacts (id, email) VALUES (1, 'ann@example.com')")
	var table, op, email string
	require.NoError(t, node.Pool.QueryRow(ctx,
		"SELECT table_name, op, new->>'email' FROM tandem.change_queue").Scan(&table, &op, &email))
	require.Equal(t, []string{"public.contacts", "insert", "ann@example.com"}, []string{table, op, email})

	contacts := captureTriggers(t, node, "public.contacts")
	require.Len(t, contacts, 4)

	r = mustRun(t, env, "-c", fixture("tandem.yaml"), "install", "crm")
	require.Equal(t, "node crm: capture version 5 already installed on public.contacts; nothing to do\n", r.stdout)
	require.Equal(t, contacts, captureTriggers(t, node, "public.contacts"))

	r = mustRun(t, env, "-c", fixture("two_tables.yaml"), "install", "crm")
	require.Contains(t, r.stdout, "capturing now: public.companies\n")
	require.Contains(t, r.stdout, "already captured: public.contacts\n")
	require.Equal(t, contacts, captureTriggers(t, node, "public.contacts"), "contacts' triggers were recreated")
	require.Len(t, captureTriggers(t, node, "public.companies"), 4)

	var queued int
	require.NoError(t, node.Pool.QueryRow(ctx, "SELECT count(*) FROM tandem.change_queue").Scan(&queued))
	require.Equal(t, 1, queued, "installing a table must keep the changes already queued")
}

func TestInstallTableWithoutKey(t *testing.T) {
	t.Parallel()
	node := newNode(t, "CREATE TABLE public.contacts (id int, email text)")
	cfg := fixture("tandem.yaml")

	r := run(t, urls("", node.URL, ""), "-c", cfg, "install", "crm")
	require.Equal(t, cli.ExitUsage, r.code, r)
	require.Contains(t, r.stderr, fmt.Sprintf("%s:%d: ", cfg, lineOf(t, cfg, "table: public.contacts")))
	require.Contains(t, r.stderr, "table public.contacts on node crm has no primary key")
	require.False(t, schemaExists(t, node), "a failed install left schema tandem behind")
}

func TestUninstallRemovesCapture(t *testing.T) {
	t.Parallel()
	node := newNode(t, contactsDDL)
	env := urls("", node.URL, "")
	cfg := fixture("tandem.yaml")
	mustRun(t, env, "-c", cfg, "install", "crm")
	node.Exec(t, "INSERT INTO contacts (id) VALUES (1)")

	r := mustRun(t, env, "-c", cfg, "uninstall", "crm", "--print")
	require.Contains(t, r.stdout, `DROP TRIGGER "tandem_capture_insert" ON "public"."contacts"`)
	require.Contains(t, r.stdout, "DROP SCHEMA tandem;")
	require.True(t, schemaExists(t, node), "uninstall --print dropped schema tandem")
	require.Len(t, captureTriggers(t, node, "public.contacts"), 4, "uninstall --print dropped triggers")

	r = mustRun(t, env, "-c", cfg, "uninstall", "crm")
	require.Equal(t, "node crm: capture removed\n", r.stdout)
	require.Contains(t, r.stderr, "node crm: dropping about 1 queued changes")
	require.False(t, schemaExists(t, node))
	require.Empty(t, captureTriggers(t, node, "public.contacts"))
	node.Exec(t, "INSERT INTO contacts (id) VALUES (2)") // the table works without capture

	r = mustRun(t, env, "-c", cfg, "uninstall", "crm")
	require.Equal(t, "node crm: capture is not installed; nothing to do\n", r.stdout)
}

func TestUnreachableNodeNamesItAndHidesPassword(t *testing.T) {
	t.Parallel()
	const password = "s3cret"
	dsn := "postgres://tandem:" + password + "@127.0.0.1:1/crm?connect_timeout=2"
	cfg := fixture("tandem.yaml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"install", "crm"}, "node crm (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
		{[]string{"install", "crm", "--print"}, "node crm (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
		{[]string{"uninstall", "crm"}, "node crm (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
		{[]string{"migrate"}, "control database (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
		{[]string{"status"}, "could not read capture status:\n  node crm (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
		{[]string{"status"}, "\n  node hubspot (postgres://tandem:xxxxx@127.0.0.1:1/crm?connect_timeout=2): cannot connect"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			r := run(t, urls(dsn, dsn, dsn), append([]string{"-c", cfg}, c.args...)...)
			require.Equal(t, cli.ExitFailure, r.code, r)
			require.Contains(t, r.stderr, c.want)
			require.NotContains(t, r.stderr, password)
			require.NotContains(t, r.stdout, password)
		})
	}
}
