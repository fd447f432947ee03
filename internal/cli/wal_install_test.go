package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/cli"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// walNode returns a fresh node database after running ddl, whose
// replication slots are dropped when the test ends.
func walNode(t *testing.T, ddl string) *pgtest.DB {
	t.Helper()
	db := newNode(t, ddl)
	db.DropSlotsAtCleanup(t)
	return db
}

// tandemSlots returns the names and plugins of db's replication slots.
func tandemSlots(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT slot_name || ' ' || plugin FROM pg_replication_slots WHERE database = current_database() ORDER BY 1`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func publishedTables(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'tandem' ORDER BY 1")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func TestInstallWALNodeThenUninstall(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	crm := walNode(t, contactsDDL+";"+companiesDDL)
	env := urls(ctl.URL, crm.URL, "")
	cfg := fixture("wal.yaml")
	mustRun(t, env, "-c", cfg, "migrate")
	id, err := control.InstanceID(context.Background(), ctl.Pool)
	require.NoError(t, err)
	slot := capture.SlotName(id, "crm")

	r := mustRun(t, env, "-c", cfg, "install", "crm", "--print")
	commit := strings.Index(r.stdout, "COMMIT;\n")
	require.Less(t, strings.Index(r.stdout, `CREATE PUBLICATION "tandem" FOR TABLE "public"."contacts" WITH (`), commit, r.stdout)
	require.Greater(t, strings.Index(r.stdout, "SELECT pg_create_logical_replication_slot('"+slot+"', 'pgoutput');"), commit, r.stdout)
	require.NotContains(t, r.stdout, "CREATE TRIGGER")
	require.False(t, schemaExists(t, crm), "install --print created schema tandem")
	require.Empty(t, publishedTables(t, crm), "install --print created the publication")
	require.Empty(t, tandemSlots(t, crm), "install --print created the slot")

	r = mustRun(t, env, "-c", cfg, "install", "crm")
	require.Equal(t, fmt.Sprintf(`node crm: capture: wal installed (capture version 5, was 0)
  publication tandem (created): public.contacts
  replication slot %s: created (pgoutput)
NOTICE: table public.contacts on node crm has replica identity DEFAULT or USING INDEX: its updates carry no old values, so every column counts as changed, and edits of different fields on both sides conflict instead of merging. For field-level merge (at the cost of logging whole old rows): ALTER TABLE "public"."contacts" REPLICA IDENTITY FULL;
`, slot), r.stdout)
	require.Equal(t, []string{"public.contacts"}, publishedTables(t, crm), "companies is in no sync")
	require.Equal(t, []string{slot + " pgoutput"}, tandemSlots(t, crm))
	require.Empty(t, captureTriggers(t, crm, "public.contacts"))

	// status shows the slot's health (hubspot is not set up here: its row
	// is unavailable, which status reports with exit code 1).
	r = run(t, env, "-c", cfg, "status")
	require.Regexp(t, `NODE +SLOT +ACTIVE +RETAINED WAL +CONFIRMED LSN +WRITTEN LSN +LAST WRITTEN\n`+
		`crm +`+slot+` +no +\d+(\.\d)? [KM]?i?B +[0-9A-F]+/[0-9A-F]+ +- +-\n`, r.stdout)
	require.NotContains(t, r.stderr, "replication slot")

	crm.Exec(t, "ALTER TABLE contacts REPLICA IDENTITY FULL")
	r = mustRun(t, env, "-c", cfg, "install", "crm")
	require.Equal(t, fmt.Sprintf(`node crm: capture: wal already installed (capture version 5); nothing to do
  publication tandem (unchanged): public.contacts
  replication slot %s: already present
`, slot), r.stdout)

	r = mustRun(t, env, "-c", cfg, "uninstall", "crm")
	require.Equal(t, fmt.Sprintf(`node crm: capture removed
  publication tandem: dropped
  replication slot %s: dropped
`, slot), r.stdout)
	require.Empty(t, tandemSlots(t, crm))
	require.Empty(t, publishedTables(t, crm))
	require.False(t, schemaExists(t, crm))

	r = run(t, env, "-c", cfg, "status")
	require.Regexp(t, `crm +`+slot+` +missing\n`, r.stdout)
	require.Contains(t, r.stderr, "WARNING: node crm: replication slot "+slot+" does not exist: run `tandem install crm`")
}

func TestInstallWALNeedsAMigratedControlDatabase(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t) // not migrated
	crm := walNode(t, contactsDDL)
	for _, args := range [][]string{{"install", "crm"}, {"install", "crm", "--print"}} {
		r := run(t, urls(ctl.URL, crm.URL, ""), append([]string{"-c", fixture("wal.yaml")}, args...)...)
		require.Equal(t, cli.ExitFailure, r.code, r)
		require.Contains(t, r.stderr, "tandem: node crm: capture: wal names the node's replication slot after the control database, which is not migrated: run `tandem migrate` first")
	}
	require.False(t, schemaExists(t, crm))
	require.Empty(t, tandemSlots(t, crm))
}

func TestInstallWALTableWithoutReplicaIdentity(t *testing.T) {
	t.Parallel()
	ctl := pgtest.NewDB(t)
	crm := walNode(t, contactsDDL+"; ALTER TABLE contacts REPLICA IDENTITY NOTHING")
	env := urls(ctl.URL, crm.URL, "")
	cfg := fixture("wal.yaml")
	mustRun(t, env, "-c", cfg, "migrate")

	r := run(t, env, "-c", cfg, "install", "crm")
	require.Equal(t, cli.ExitUsage, r.code, r)
	require.Contains(t, r.stderr, fmt.Sprintf("%s:%d: table: table public.contacts on node crm has REPLICA IDENTITY NOTHING", cfg, lineOf(t, cfg, "table: public.contacts")))
	require.Contains(t, r.stderr, `ALTER TABLE "public"."contacts" REPLICA IDENTITY FULL;`)
	require.False(t, schemaExists(t, crm), "a refused install left schema tandem behind")
	require.Empty(t, tandemSlots(t, crm))
}
