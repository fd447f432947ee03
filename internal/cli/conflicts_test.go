package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

const (
	phonesDDL   = "CREATE TABLE public.contacts (id serial PRIMARY KEY, email text, phone text)"
	hsPhonesDDL = "CREATE TABLE public.hs_contacts (hs_id serial PRIMARY KEY, email text, phone_number text)"
)

// column returns one text column of every row of a query, in order.
func column(t *testing.T, db *pgtest.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), query, args...)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s *string
		require.NoError(t, rows.Scan(&s))
		if s == nil {
			out = append(out, "NULL")
		} else {
			out = append(out, *s)
		}
	}
	require.NoError(t, rows.Err())
	return out
}

// listed splits `conflicts list` output into its rows' fields, after
// checking the header.
func listed(t *testing.T, r result) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Equal(t, []string{"ID", "SYNC", "KIND", "STATUS", "FIELDS", "CREATED"}, strings.Fields(lines[0]), r)
	var out [][]string
	for _, l := range lines[1:] {
		out = append(out, strings.Fields(l))
	}
	return out
}

func TestConflictsListShowResolve(t *testing.T) {
	t.Parallel()
	p := newPhones(t, fixture("manual.yaml"))
	ctl, crm, hubspot := p.ctl, p.crm, p.hubspot
	p.env["USER"] = "alice"
	tandem := func(args ...string) result { return p.must(t, args...) }
	runs := func() string { return column(t, ctl, "SELECT count(*)::text FROM tandem.sync_runs")[0] }
	crm.Exec(t, "INSERT INTO contacts (email, phone) VALUES ('ann@x.com', '100'), ('bob@x.com', '200')")
	require.Contains(t, tandem("run", "--once").stdout, "sync contacts: 2 synced (2 created")
	require.Equal(t, "no open conflicts\n", tandem("conflicts", "list").stdout)

	crm.Exec(t, "UPDATE contacts SET phone = 'from-crm' WHERE email = 'ann@x.com'")
	hubspot.Exec(t, "UPDATE hs_contacts SET phone_number = 'from-hubspot' WHERE email = 'ann@x.com'")
	require.Contains(t, tandem("run", "--once").stdout, "0 synced (0 created, 0 updated, 0 deleted), 1 conflicts")

	r := tandem("conflicts", "list")
	rows := listed(t, r)
	require.Len(t, rows, 1, r)
	require.Equal(t, []string{"1", "contacts", "update_update", "open", "phone/phone_number"}, rows[0][:5])
	require.Equal(t, r.stdout, tandem("conflicts", "list", "--sync", "contacts").stdout)
	require.Equal(t, "no open conflicts in sync other\n", tandem("conflicts", "list", "--sync", "other").stdout)

	r = tandem("conflicts", "show", "1")
	for _, want := range []string{
		"conflict 1\n", "sync:         contacts\n", "kind:         update_update\n", "status:       open\n",
		"resolution:   manual\n", "fields:       phone/phone_number\n", "resolved:     -\n",
		"source key:\n  {\n    \"id\": 1\n  }\n",
		"source change:\n  {\n", `"phone": "from-crm"`, `"phone_number": "from-hubspot"`, `"op": "upsert"`,
		"base:\n  {\n    \"phone\": \"100\"\n  }\n", "kept:         -\n", "lost:         -\n",
	} {
		require.Contains(t, r.stdout, want)
	}

	require.Equal(t, "conflict 1 resolved: took target\n", tandem("conflicts", "resolve", "1", "--take", "target").stdout)
	require.Equal(t, []string{"from-hubspot", "200"}, column(t, crm, "SELECT phone FROM contacts ORDER BY id"))
	require.Equal(t, []string{"from-hubspot", "200"}, column(t, hubspot, "SELECT phone_number FROM hs_contacts ORDER BY hs_id"))
	require.Equal(t, []string{`resolved|manual:target|alice|{"target": {"phone_number": "from-hubspot"}}|{"source": {"phone": "from-crm"}}`},
		column(t, ctl, `SELECT concat_ws('|', status, resolution, resolved_by, kept, lost) FROM tandem.sync_conflicts WHERE id = 1`))
	before := runs()
	require.Contains(t, tandem("run", "--once").stdout, "sync contacts: 0 synced (0 created, 0 updated, 0 deleted), 0 conflicts, 0 errors")
	require.Equal(t, before, runs(), "the run after resolving is idle: the resolution's writes do not come back")
	require.Equal(t, "no open conflicts\n", tandem("conflicts", "list").stdout)
	require.Equal(t, []string{"1", "contacts", "update_update", "resolved"}, listed(t, tandem("conflicts", "list", "--all"))[0][:4])
	r = tandem("conflicts", "show", "1")
	require.Contains(t, r.stdout, "by alice\n")
	require.Contains(t, r.stdout, "kept:\n  {\n    \"target\": {\n      \"phone_number\": \"from-hubspot\"\n    }\n  }\n")

	r = p.run(t, "conflicts", "resolve", "1", "--take", "source")
	require.Equal(t, cli.ExitFailure, r.code, r)
	require.Contains(t, r.stderr, "tandem: conflict 1 is already resolved (manual:target by alice at ")

	// --value; without $USER the resolver is recorded as cli.
	crm.Exec(t, "UPDATE contacts SET phone = '201' WHERE email = 'bob@x.com'")
	hubspot.Exec(t, "UPDATE hs_contacts SET phone_number = '202' WHERE email = 'bob@x.com'")
	tandem("run", "--once")
	noUser := urls(ctl.URL, crm.URL, hubspot.URL)
	r = mustRun(t, noUser, "-c", p.cfg, "conflicts", "resolve", "2", "--value", `{"phone": "555"}`)
	require.Equal(t, "conflict 2 resolved: took the given value\n", r.stdout)
	require.Equal(t, []string{"from-hubspot", "555"}, column(t, crm, "SELECT phone FROM contacts ORDER BY id"))
	require.Equal(t, []string{"from-hubspot", "555"}, column(t, hubspot, "SELECT phone_number FROM hs_contacts ORDER BY hs_id"))
	require.Equal(t, []string{`manual:value|cli|{"source": {"phone": "555"}}`},
		column(t, ctl, `SELECT concat_ws('|', resolution, resolved_by, kept) FROM tandem.sync_conflicts WHERE id = 2`))

	// An update against a delete: the update stands, the row comes back.
	crm.Exec(t, "DELETE FROM contacts WHERE email = 'ann@x.com'")
	hubspot.Exec(t, "UPDATE hs_contacts SET phone_number = '111' WHERE email = 'ann@x.com'")
	tandem("run", "--once")
	require.Equal(t, []string{"3", "contacts", "update_delete", "open", "-"}, listed(t, tandem("conflicts", "list"))[0][:5])
	require.Equal(t, "conflict 3 resolved: took target\n", tandem("conflicts", "resolve", "--take=target", "3").stdout)
	require.Equal(t, []string{"ann@x.com|111", "bob@x.com|555"}, column(t, crm, "SELECT email || '|' || phone FROM contacts ORDER BY email"))
	before = runs()
	tandem("run", "--once")
	require.Equal(t, before, runs())
}

func TestConflictsUsageErrors(t *testing.T) {
	t.Parallel()
	cfg := fixture("manual.yaml")
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"conflicts"}, "conflicts takes list"},
		{[]string{"conflicts", "drop"}, `unknown conflicts command "drop"`},
		{[]string{"conflicts", "list", "extra"}, "conflicts list takes no arguments"},
		{[]string{"conflicts", "list", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"conflicts", "show"}, "conflicts show takes exactly one conflict id"},
		{[]string{"conflicts", "show", "one"}, `conflict id must be a positive number, not "one"`},
		{[]string{"conflicts", "resolve", "1"}, "exactly one of --take source|target and --value JSON"},
		{[]string{"conflicts", "resolve", "1", "--take", "source", "--value", "{}"}, "exactly one of"},
		{[]string{"conflicts", "resolve", "1", "--take", "middle"}, `--take is source or target, not "middle"`},
		{[]string{"conflicts", "resolve", "1", "--value", "[1]"}, "--value must be a JSON object of source column values"},
		{[]string{"conflicts", "resolve", "1", "--value", "null"}, "--value must be a JSON object"},
		{[]string{"conflicts", "resolve", "1", "--value", `{"a": 1} {}`}, "more than one JSON value"},
		{[]string{"conflicts", "resolve", "1", "2", "--take", "source"}, "exactly one conflict id"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			// No database exists: usage is checked before connecting.
			r := run(t, urls("", "", ""), append([]string{"-c", cfg}, tc.args...)...)
			require.Equal(t, cli.ExitUsage, r.code, r)
			require.Contains(t, r.stderr, tc.err, r)
			require.Empty(t, r.stdout)
		})
	}
}

func TestConflictsShowMissing(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	env := urls(ctl.URL, "", "")
	mustRun(t, env, "-c", fixture("manual.yaml"), "migrate")
	r := run(t, env, "-c", fixture("manual.yaml"), "conflicts", "show", "7")
	require.Equal(t, cli.ExitFailure, r.code, r)
	require.Equal(t, "tandem: no conflict 7\n", r.stderr)
	require.Equal(t, "no conflicts\n", mustRun(t, env, "-c", fixture("manual.yaml"), "conflicts", "list", "--all").stdout)
}
