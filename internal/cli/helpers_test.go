package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture returns the path of a config under testdata/cli.
func fixture(name string) string { return filepath.Join("..", "..", "testdata", "cli", name) }

// unusedURL is a syntactically valid DSN for nodes a test never connects to.
const unusedURL = "postgres://tandem@127.0.0.1:1/unused"

// vars is the environment a command sees: only these variables are set.
type vars map[string]string

// urls sets the three variables the fixtures read; an empty URL is unusedURL.
func urls(control, crm, hubspot string) vars {
	or := func(u string) string {
		if u == "" {
			return unusedURL
		}
		return u
	}
	return vars{"CONTROL_URL": or(control), "CRM_URL": or(crm), "HUBSPOT_URL": or(hubspot)}
}

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
}

// String shows the whole result in failure messages.
func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs one tandem command in-process with env as its whole environment.
func run(t *testing.T, env vars, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(t.Context(), args, cli.Env{
		Stdout: &stdout,
		Stderr: &stderr,
		Getenv: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		},
	})
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, env vars, args ...string) result {
	t.Helper()
	r := run(t, env, args...)
	require.Equal(t, cli.ExitOK, r.code, "tandem %s\n%s", strings.Join(args, " "), r)
	return r
}

// lineOf returns the 1-based line of the only line of file that contains
// text, so tests follow the fixtures when they are edited.
func lineOf(t *testing.T, file, text string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	line := 0
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, text) {
			require.Zero(t, line, "%s: %q is on more than one line", file, text)
			line = i + 1
		}
	}
	require.NotZero(t, line, "%s: no line contains %q", file, text)
	return line
}

// newNode returns a fresh database after running ddl.
func newNode(t *testing.T, ddl string) *pgtest.DB {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(t, ddl)
	return db
}

const (
	contactsDDL   = "CREATE TABLE public.contacts (id int PRIMARY KEY, email text)"
	companiesDDL  = "CREATE TABLE public.companies (id int PRIMARY KEY, name text)"
	hsContactsDDL = "CREATE TABLE public.hs_contacts (hs_id int PRIMARY KEY, email text)"
)

// schemaExists reports whether db has schema tandem.
func schemaExists(t *testing.T, db *pgtest.DB) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		"SELECT to_regnamespace('tandem') IS NOT NULL").Scan(&ok))
	return ok
}

// captureTriggers returns the oids of the tandem_capture_* triggers on
// table, by trigger name.
func captureTriggers(t *testing.T, db *pgtest.DB, table string) map[string]uint32 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT tgname, oid FROM pg_trigger
		WHERE tgrelid = $1::regclass AND tgname LIKE 'tandem\_capture\_%' AND NOT tgisinternal`, table)
	require.NoError(t, err)
	out := map[string]uint32{}
	for rows.Next() {
		var name string
		var oid uint32
		require.NoError(t, rows.Scan(&name, &oid))
		out[name] = oid
	}
	require.NoError(t, rows.Err())
	return out
}

// nodePool opens a pool on a node as the engine's, closed when the test ends.
func nodePool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := engine.OpenNodePool(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// phones is a control database, and crm and hubspot nodes holding the
// phones tables (phonesDDL, hsPhonesDDL), migrated and with capture
// installed for config file cfg.
type phones struct {
	ctl, crm, hubspot *pgtest.DB
	env               vars
	cfg               string
}

// newPhones sets up phones for config file cfg (a path).
func newPhones(t *testing.T, cfg string) *phones {
	t.Helper()
	p := &phones{ctl: pgtest.NewDB(t), crm: newNode(t, phonesDDL), hubspot: newNode(t, hsPhonesDDL), cfg: cfg}
	p.env = urls(p.ctl.URL, p.crm.URL, p.hubspot.URL)
	for _, args := range [][]string{{"migrate"}, {"install", "crm"}, {"install", "hubspot"}} {
		p.must(t, args...)
	}
	return p
}

// run runs tandem -c cfg args.
func (p *phones) run(t *testing.T, args ...string) result {
	t.Helper()
	return run(t, p.env, append([]string{"-c", p.cfg}, args...)...)
}

// must is run, failing the test unless tandem exits 0.
func (p *phones) must(t *testing.T, args ...string) result {
	t.Helper()
	return mustRun(t, p.env, append([]string{"-c", p.cfg}, args...)...)
}
