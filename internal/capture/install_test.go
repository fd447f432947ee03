package capture_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// catalog lists the objects of a database outside the system schemas:
// schemas, relations, functions and triggers. withOIDs adds object ids, to
// tell "unchanged" from "dropped and created again".
func catalog(t *testing.T, db *pgtest.DB, withOIDs bool) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT 'schema ' || nspname, oid FROM pg_namespace
		WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
		UNION ALL
		SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' owner=' || pg_get_userbyid(c.relowner), c.oid
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
		UNION ALL
		SELECT 'func ' || n.nspname || '.' || p.proname || ' secdef=' || p.prosecdef || ' acl=' || coalesce(p.proacl::text, '-'), p.oid
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
		UNION ALL
		SELECT 'trigger ' || t.tgrelid::regclass || ' ' || t.tgname || ' ' || encode(t.tgargs, 'escape'), t.oid
		FROM pg_trigger t WHERE NOT t.tgisinternal
		ORDER BY 1`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		var oid uint32
		require.NoError(t, rows.Scan(&s, &oid))
		if withOIDs {
			s = fmt.Sprintf("%s #%d", s, oid)
		}
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// Invariant 7: trigger capture needs no superuser. The owner of the tables,
// with CREATE on the database, installs; an application role that can only
// write its table is captured; installing again changes nothing; uninstall
// leaves the catalog exactly as it was.
func TestInstallAsTableOwnerIsIdempotentAndUninstallRestoresCatalog(t *testing.T) {
	t.Parallel()
	owner, app := pgtest.UniqueName("owner"), pgtest.UniqueName("app")
	pgtest.Roles(t, owner, app)
	db := pgtest.NewDB(t)
	db.Exec(t, contactsDDL)
	for _, s := range []string{
		"ALTER TABLE contacts OWNER TO " + owner,
		"GRANT CREATE ON DATABASE " + pgx.Identifier{db.Name}.Sanitize() + " TO " + owner,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON contacts TO " + app,
		"GRANT USAGE ON SEQUENCE contacts_id_seq TO " + app,
	} {
		db.Exec(t, s)
	}
	ctx := context.Background()
	before := catalog(t, db, false)

	ownerConn := connect(t, db.URLAs(owner, ""))
	p, err := capture.Install(ctx, ownerConn, "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml")
	require.NoError(t, err)
	require.Equal(t, []string{"public.contacts"}, p.Added)
	require.Equal(t, capture.CurrentVersion(), p.ToVersion)
	installed := catalog(t, db, true)
	require.Contains(t, strings.Join(installed, "\n"), "func tandem.capture secdef=true acl={"+owner+"="+"X/"+owner+"}")
	require.Contains(t, strings.Join(installed, "\n"), "trigger contacts tandem_capture_update id")

	again, err := capture.Install(ctx, ownerConn, "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml")
	require.NoError(t, err)
	require.True(t, again.Empty(), "second install runs nothing, planned: %v", again.Statements)
	require.Equal(t, installed, catalog(t, db, true), "second install leaves every object as it was")

	appConn := connect(t, db.URLAs(app, ""))
	_, err = appConn.Exec(ctx, "INSERT INTO contacts (name) VALUES ('from app'); UPDATE contacts SET score = 1; DELETE FROM contacts")
	require.NoError(t, err, "an application role without any right on schema tandem writes and is captured")
	require.Equal(t, 3, queueLen(t, db))

	p, err = capture.Uninstall(ctx, ownerConn, "crm")
	require.NoError(t, err)
	require.False(t, p.Empty())
	require.Equal(t, before, catalog(t, db, false), "uninstall removes every object install created and nothing else")

	p, err = capture.Uninstall(ctx, ownerConn, "crm")
	require.NoError(t, err)
	require.True(t, p.Empty(), "uninstalling twice is a no-op")
}

func TestInstallAddsOnlyNewTablesAndFollowsKeyChanges(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, contactsDDL+`; CREATE TABLE deals (ref text PRIMARY KEY, amount numeric)`)
	first := install(t, db, tableRef("contacts"))
	require.Equal(t, []string{"public.contacts"}, first.Added)
	before := catalog(t, db, true)

	second := install(t, db, tableRef("contacts"), tableRef("deals"))
	require.Equal(t, []string{"public.deals"}, second.Added)
	require.Equal(t, []string{"public.contacts"}, second.Kept)
	after := catalog(t, db, true)
	for _, line := range before {
		if strings.HasPrefix(line, "trigger contacts") {
			require.Contains(t, after, line, "contacts' triggers are untouched")
		}
	}

	// A configured key replaces the primary key as the trigger argument.
	byEmail := tableRef("contacts")
	byEmail.Key = []string{"email"}
	third := install(t, db, byEmail, tableRef("deals"))
	require.Equal(t, []string{"public.contacts"}, third.Added)
	db.Exec(t, "INSERT INTO contacts (name, email) VALUES ('k', 'k@x')")
	require.Equal(t, map[string]any{"email": "k@x"}, drainQueue(t, db)[0].Keys)
}

func TestInstallReportsEveryCatalogProblemWithItsLine(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, `CREATE TABLE nokey (a int); CREATE TABLE ok (id int PRIMARY KEY); CREATE VIEW v AS SELECT 1 AS id`)
	conn := connect(t, db.URL)
	_, err := capture.Install(context.Background(), conn, "crm", []config.TableRef{
		{Schema: "public", Name: "missing", Line: 3},
		{Schema: "public", Name: "nokey", Line: 5},
		{Schema: "public", Name: "ok", Key: []string{"nope"}, Line: 7},
		{Schema: "public", Name: "v", Line: 9},
		{Schema: "public", Name: "ok", Line: 11},
	}, "tandem.yaml")
	var probs *config.Problems
	require.ErrorAs(t, err, &probs)
	msg := err.Error()
	require.Contains(t, msg, "tandem.yaml:3: table: table public.missing on node crm does not exist")
	require.Contains(t, msg, "tandem.yaml:5: table: table public.nokey on node crm has no primary key and the config gives no key")
	require.Contains(t, msg, "tandem.yaml:7: key: table public.ok on node crm has no column \"nope\"")
	require.Contains(t, msg, "tandem.yaml:9: table: table public.v on node crm is not a table")
	require.Len(t, probs.List, 4)
	var exists bool
	require.NoError(t, db.Pool.QueryRow(context.Background(), "SELECT to_regnamespace('tandem') IS NOT NULL").Scan(&exists))
	require.False(t, exists, "a refused install changes nothing")
}

func TestInstallWithoutPrivilegesSaysWhichGrantIsMissing(t *testing.T) {
	t.Parallel()
	role := pgtest.UniqueName("weak")
	pgtest.Roles(t, role)
	db := pgtestDBWith(t, contactsDDL)
	conn := connect(t, db.URLAs(role, ""))
	_, err := capture.Install(context.Background(), conn, "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml")
	require.ErrorContains(t, err, "may not create schema tandem: GRANT CREATE ON DATABASE")
	require.ErrorContains(t, err, "may not create triggers on table public.contacts on node crm: GRANT TRIGGER ON \"public\".\"contacts\" TO "+role)
}

// When the control database is also a node, uninstall removes capture and
// leaves the control schema alone.
func TestUninstallLeavesControlSchemaInTheSameDatabase(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, contactsDDL)
	ctx := context.Background()
	_, err := control.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	install(t, db, tableRef("contacts"))
	_, err = capture.Uninstall(ctx, connect(t, db.URL), "crm")
	require.NoError(t, err)
	for rel, want := range map[string]bool{"tandem.change_log": true, "tandem.cursors": true, "tandem.change_queue": false, "tandem.capture_info": false} {
		var ok bool
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", rel).Scan(&ok))
		require.Equal(t, want, ok, rel)
	}
}

// The SQL a DBA reviews with --print is generated; its text is pinned here.
// Run `go test ./internal/capture -run Golden -update` after a deliberate change.
func TestInstallSQLGolden(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, contactsDDL+`; CREATE TABLE "Odd ""Name""" (k1 int, "K 2" text, PRIMARY KEY (k1, "K 2"))`)
	conn := connect(t, db.URL)
	p, err := capture.PlanInstall(context.Background(), conn, "crm",
		[]config.TableRef{tableRef("contacts"), tableRef(`Odd "Name"`)}, "tandem.yaml")
	require.NoError(t, err)
	golden := filepath.Join("testdata", "install_fresh.sql")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, []byte(p.SQL()), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), p.SQL())

	// and the printed script really installs
	_, err = conn.Exec(context.Background(), p.SQL())
	require.NoError(t, err)
	db.Exec(t, `INSERT INTO "Odd ""Name""" VALUES (1, 'x''y')`)
	require.Equal(t, map[string]any{"k1": num(1), "K 2": "x'y"}, drainQueue(t, db)[0].Keys)
}

// TestInstallUpgradesInPlace: a node at an older capture version gets only
// the newer files; its queue, its pending changes and its triggers stay.
func TestInstallUpgradesInPlace(t *testing.T) {
	t.Parallel()
	db := pgtestDBWith(t, contactsDDL)
	install(t, db, tableRef("contacts"))
	// Make the node look like one installed by a version-1 tandem, with a
	// change pending.
	db.Exec(t, "DROP TABLE tandem.applied; DROP INDEX tandem.change_queue_origin; UPDATE tandem.capture_info SET version = 1")
	db.Exec(t, "INSERT INTO contacts (name, email) VALUES ('v1', 'v1@x')")
	before := catalog(t, db, true)

	p := install(t, db, tableRef("contacts"))
	require.Equal(t, 1, p.FromVersion)
	require.Equal(t, capture.CurrentVersion(), p.ToVersion)
	require.Empty(t, p.Added, "triggers are current: not recreated")
	sql := p.SQL()
	require.Contains(t, sql, "0002_applied.sql")
	require.NotContains(t, sql, "0001_capture.sql", "version 1 is not run again")
	after := catalog(t, db, true)
	for _, line := range before {
		require.Contains(t, after, line, "an upgrade keeps every existing object as it was")
	}
	require.Contains(t, strings.Join(after, "\n"), "rel tandem.applied r")
	changes := drainQueue(t, db)
	require.Len(t, changes, 1, "the change pending before the upgrade is still there")
	require.Equal(t, "v1@x", changes[0].New["email"])
}
