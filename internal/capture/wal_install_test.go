package capture_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// walDB returns a fresh database after running ddl, whose replication slots
// are dropped when the test ends.
func walDB(t *testing.T, ddl string) *pgtest.DB {
	t.Helper()
	db := pgtestDBWith(t, ddl)
	db.DropSlotsAtCleanup(t)
	return db
}

func installWAL(t *testing.T, conn *pgx.Conn, slot string, tables ...config.TableRef) *capture.Plan {
	t.Helper()
	p, err := capture.InstallWAL(context.Background(), conn, "crm", tables, "tandem.yaml", slot)
	require.NoError(t, err)
	return p
}

// published returns the tables publication tandem publishes.
func published(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1", capture.Publication)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// slotPlugin returns the plugin of the named logical slot on db, "" when
// db has no such slot.
func slotPlugin(t *testing.T, db *pgtest.DB, slot string) string {
	t.Helper()
	var plugin string
	err := db.Pool.QueryRow(context.Background(), `
		SELECT plugin FROM pg_replication_slots
		WHERE slot_name = $1 AND slot_type = 'logical' AND database = current_database()`, slot).Scan(&plugin)
	if err == pgx.ErrNoRows {
		return ""
	}
	require.NoError(t, err)
	return plugin
}

func TestInstallWALPublishesExactlyTheTablesAndCreatesTheSlot(t *testing.T) {
	t.Parallel()
	db := walDB(t, contactsDDL+`;
		CREATE TABLE deals (ref text PRIMARY KEY, amount numeric);
		ALTER TABLE deals REPLICA IDENTITY FULL;
		CREATE TABLE unsynced (id int PRIMARY KEY)`)
	ctx := context.Background()
	before := catalog(t, db, false)
	slot := pgtest.UniqueName("tandem")
	conn := connect(t, db.URL)

	p := installWAL(t, conn, slot, tableRef("contacts"), tableRef("deals"))
	require.Equal(t, "create", p.Publication)
	require.Equal(t, []string{"public.contacts", "public.deals"}, p.Published)
	require.True(t, p.CreateSlot)
	require.Equal(t, []string{"public.contacts", "public.deals"}, published(t, db))
	require.Equal(t, "pgoutput", slotPlugin(t, db, slot))
	installed := catalog(t, db, true)
	require.Contains(t, strings.Join(installed, "\n"), "rel tandem.applied r", "the engine records its applies there")
	require.NotContains(t, strings.Join(installed, "\n"), "trigger ", "a wal node gets no trigger")
	require.Len(t, p.Notices, 1, "deals has REPLICA IDENTITY FULL, contacts DEFAULT: %v", p.Notices)
	require.Contains(t, p.Notices[0], "table public.contacts on node crm has replica identity DEFAULT")
	require.Contains(t, p.Notices[0], `ALTER TABLE "public"."contacts" REPLICA IDENTITY FULL;`)

	// The slot decodes the published tables' changes through the publication.
	db.Exec(t, "INSERT INTO deals VALUES ('d1', 10); INSERT INTO unsynced VALUES (1)")
	var changes int
	require.NoError(t, db.Pool.QueryRow(ctx, `
		SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
		       'proto_version', '1', 'publication_names', $2)
		WHERE get_byte(data, 0) = ascii('I')`, slot, capture.Publication).Scan(&changes))
	require.Equal(t, 1, changes, "one insert into a published table")

	again := installWAL(t, conn, slot, tableRef("contacts"), tableRef("deals"))
	require.True(t, again.Empty(), "second install runs nothing, planned: %v %v", again.Statements, again.After)
	require.False(t, again.CreateSlot)
	require.Equal(t, installed, catalog(t, db, true), "second install leaves every object as it was")

	// A table added to the config is added to the publication; the slot stays.
	third := installWAL(t, conn, slot, tableRef("contacts"), tableRef("deals"), tableRef("unsynced"))
	require.Equal(t, "alter", third.Publication)
	require.False(t, third.CreateSlot)
	require.Equal(t, []string{"public.contacts", "public.deals", "public.unsynced"}, published(t, db))

	// Slot names are per server: the same slot for a node in another
	// database of the server is refused, saying why.
	other := walDB(t, contactsDDL)
	_, err := capture.PlanInstallWAL(ctx, connect(t, other.URL), "hubspot", []config.TableRef{tableRef("contacts")}, "tandem.yaml", slot)
	require.ErrorContains(t, err, "replication slot "+slot+" already exists for database "+db.Name)

	// Switched back to capture: trigger, the node keeps its slot until
	// uninstall: install says so.
	tp, err := capture.PlanInstall(ctx, conn, "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml")
	require.NoError(t, err)
	require.Len(t, tp.Notices, 1)
	require.Contains(t, tp.Notices[0], "replication slot "+slot+" on this database is left from capture: wal and retains WAL until dropped")

	u, err := capture.Uninstall(ctx, conn, "crm")
	require.NoError(t, err)
	require.Equal(t, "drop", u.Publication)
	require.Equal(t, []string{slot}, u.DropSlots)
	require.Empty(t, published(t, db))
	require.Empty(t, slotPlugin(t, db, slot), "uninstall drops the slot")
	require.Equal(t, before, catalog(t, db, false), "uninstall removes every object install created and nothing else")

	u, err = capture.Uninstall(ctx, conn, "crm")
	require.NoError(t, err)
	require.True(t, u.Empty(), "uninstalling twice is a no-op")
}

// A node switched from capture: trigger to wal loses its triggers. The SQL a
// DBA reviews with --print is pinned here, slot after COMMIT; printing
// changes nothing, and the printed script, run as is, installs.
// Run `go test ./internal/capture -run Golden -update` after a deliberate change.
func TestInstallWALSQLGolden(t *testing.T) {
	t.Parallel()
	db := walDB(t, contactsDDL+`; CREATE TABLE "Odd ""Name""" (k1 int, "K 2" text, PRIMARY KEY (k1, "K 2"));
		ALTER TABLE "Odd ""Name""" REPLICA IDENTITY FULL`)
	install(t, db, tableRef("contacts"))
	ctx := context.Background()
	conn := connect(t, db.URL)
	before := catalog(t, db, true)
	slot := pgtest.UniqueName("tandem") // slot names are per server: never a fixed one

	tables := []config.TableRef{tableRef("contacts"), tableRef(`Odd "Name"`)}
	p, err := capture.PlanInstallWAL(ctx, conn, "crm", tables, "tandem.yaml", slot)
	require.NoError(t, err)
	sql := p.SQL()
	pinned := strings.ReplaceAll(sql, slot, "tandem_SLOT")
	golden := filepath.Join("testdata", "install_wal_from_trigger.sql")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(pinned), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(want), pinned)
	commit := strings.Index(sql, "COMMIT;\n")
	require.Less(t, strings.Index(sql, "CREATE PUBLICATION"), commit)
	require.Greater(t, strings.Index(sql, "SELECT pg_create_logical_replication_slot('"+slot+"', 'pgoutput');"), commit)
	require.Equal(t, before, catalog(t, db, true), "planning changes nothing")
	require.Empty(t, published(t, db))
	require.Empty(t, slotPlugin(t, db, slot))

	_, err = conn.Exec(ctx, sql)
	require.NoError(t, err)
	require.Equal(t, []string{`public.Odd "Name"`, "public.contacts"}, published(t, db))
	require.Equal(t, "pgoutput", slotPlugin(t, db, slot))
	require.NotContains(t, strings.Join(catalog(t, db, false), "\n"), "trigger ")
	p, err = capture.PlanInstallWAL(ctx, conn, "crm", tables, "tandem.yaml", slot)
	require.NoError(t, err)
	require.True(t, p.Empty(), "the printed script did all of it: %v %v", p.Statements, p.After)
}

func TestInstallWALReportsEveryTableWhoseChangesCannotBeDecoded(t *testing.T) {
	t.Parallel()
	db := walDB(t, `
		CREATE TABLE nothing (id int PRIMARY KEY);
		ALTER TABLE nothing REPLICA IDENTITY NOTHING;
		CREATE TABLE nopk (id int, email text);
		CREATE TABLE keyed (id int, email text UNIQUE NOT NULL);
		CREATE TABLE by_email (id int PRIMARY KEY, email text UNIQUE NOT NULL);
		CREATE TABLE by_index (id int PRIMARY KEY, code text NOT NULL);
		CREATE UNIQUE INDEX by_index_code ON by_index (code);
		ALTER TABLE by_index REPLICA IDENTITY USING INDEX by_index_code;
		CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		ALTER TABLE parted_1 REPLICA IDENTITY NOTHING;
		CREATE TABLE good (id int PRIMARY KEY);
		ALTER TABLE good REPLICA IDENTITY FULL`)
	ref := func(name string, line int, key ...string) config.TableRef {
		return config.TableRef{Schema: "public", Name: name, Line: line, Key: key}
	}
	_, err := capture.InstallWAL(context.Background(), connect(t, db.URL), "crm", []config.TableRef{
		ref("nothing", 3),
		ref("nopk", 5),
		ref("keyed", 7, "email"),
		ref("by_email", 9, "email"),
		ref("by_index", 11),
		ref("parted", 13),
		ref("good", 15),
	}, "tandem.yaml", pgtest.UniqueName("tandem"))
	var probs *config.Problems
	require.ErrorAs(t, err, &probs)
	msg := err.Error()
	for _, want := range []string{
		`tandem.yaml:3: table: table public.nothing on node crm has REPLICA IDENTITY NOTHING, which identifies no row: its updates and deletes could not be decoded (and PostgreSQL refuses UPDATE and DELETE on a published table without a replica identity): ALTER TABLE "public"."nothing" REPLICA IDENTITY FULL;`,
		`tandem.yaml:5: table: table public.nopk on node crm has no primary key and the config gives no key: add a primary key`,
		`ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL;`,
		`tandem.yaml:7: table: table public.keyed on node crm has no primary key, so its replica identity (DEFAULT) is empty: its updates and deletes could not be decoded`,
		`add a primary key, or ALTER TABLE "public"."keyed" REPLICA IDENTITY FULL;`,
		`tandem.yaml:9: table: table public.by_email on node crm has REPLICA IDENTITY DEFAULT on columns id, without key column(s) email: a delete could not say which row it removed: ALTER TABLE "public"."by_email" REPLICA IDENTITY FULL;`,
		`tandem.yaml:11: table: table public.by_index on node crm has REPLICA IDENTITY USING INDEX on columns code, without key column(s) id`,
		`tandem.yaml:13: table: partition public.parted_1 of table public.parted on node crm has REPLICA IDENTITY NOTHING`,
		`ALTER TABLE "public"."parted_1" REPLICA IDENTITY FULL;`,
	} {
		require.Contains(t, msg, want)
	}
	require.NotContains(t, msg, "public.good")
	require.Len(t, probs.List, 6)
	var schema, pub bool
	require.NoError(t, db.Pool.QueryRow(context.Background(), `
		SELECT to_regnamespace('tandem') IS NOT NULL, EXISTS (SELECT 1 FROM pg_publication)`).Scan(&schema, &pub))
	require.False(t, schema || pub, "a refused install changes nothing")
	require.Empty(t, slotNames(t, db))
}

// slotNames returns the names of db's replication slots.
func slotNames(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), "SELECT slot_name::text FROM pg_replication_slots WHERE database = current_database()")
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// Capture: wal needs no superuser either: the tables' owner with CREATE on
// the database and REPLICATION installs and uninstalls. Without them, the
// install says which grant is missing, and changes nothing.
func TestInstallWALAsNonSuperuserSaysWhatIsMissing(t *testing.T) {
	t.Parallel()
	role := pgtest.UniqueName("dba")
	pgtest.Roles(t, role)
	db := walDB(t, contactsDDL)
	db.Exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" TO "+role)
	ctx := context.Background()
	conn := connect(t, db.URLAs(role, ""))
	slot := pgtest.UniqueName("tandem")

	_, err := capture.InstallWAL(ctx, conn, "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml", slot)
	var probs *config.Problems
	require.ErrorAs(t, err, &probs)
	require.Len(t, probs.List, 2, err.Error())
	require.ErrorContains(t, err, "tandem.yaml: nodes.crm: role "+role+" on node crm has neither REPLICATION nor superuser; creating and reading the replication slot needs one: ALTER ROLE "+role+" REPLICATION;")
	require.ErrorContains(t, err, "tandem.yaml:1: table: role "+role+" may not publish table public.contacts on node crm: only its owner may add it to publication tandem; install as the owner (or a member of its role), or ALTER TABLE \"public\".\"contacts\" OWNER TO "+role+";")
	require.Empty(t, slotNames(t, db))

	db.Exec(t, "ALTER ROLE "+role+" REPLICATION")
	db.Exec(t, "ALTER TABLE contacts OWNER TO "+role)
	p := installWAL(t, conn, slot, tableRef("contacts"))
	require.True(t, p.CreateSlot)
	require.Equal(t, "pgoutput", slotPlugin(t, db, slot))

	u, err := capture.Uninstall(ctx, conn, "crm")
	require.NoError(t, err)
	require.Equal(t, []string{slot}, u.DropSlots)
	require.Empty(t, slotNames(t, db))
}

// What keeps a server from logical replication is reported at once. The
// shared cluster runs wal_level=logical, so this test starts its own.
func TestInstallWALChecksTheServer(t *testing.T) {
	t.Parallel()
	c, err := pgtest.Start(pgtest.Options{Settings: map[string]string{
		"wal_level": "replica", "max_replication_slots": "0", "max_wal_senders": "0"}})
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	db := c.NewDB(t)
	db.Exec(t, contactsDDL)

	_, err = capture.InstallWAL(context.Background(), connect(t, db.URL), "crm", []config.TableRef{tableRef("contacts")}, "tandem.yaml", "tandem_x")
	var probs *config.Problems
	require.ErrorAs(t, err, &probs)
	require.Len(t, probs.List, 3, err.Error())
	require.ErrorContains(t, err, "node crm has wal_level = replica; capture: wal needs logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")
	require.ErrorContains(t, err, "node crm has max_wal_senders = 0")
	require.ErrorContains(t, err, "node crm has no free replication slot (max_replication_slots = 0, all in use")
}

// A slot something streams from is not dropped under it: uninstall refuses
// before changing anything, naming the slot and the session.
func TestUninstallRefusesWhileTheSlotIsActive(t *testing.T) {
	t.Parallel()
	db := walDB(t, contactsDDL)
	ctx := context.Background()
	conn := connect(t, db.URL)
	slot := pgtest.UniqueName("tandem")
	installWAL(t, conn, slot, tableRef("contacts"))

	repl, err := pgconn.Connect(ctx, db.ReplicationURL())
	require.NoError(t, err)
	t.Cleanup(func() { repl.Close(context.Background()) })
	// The walsender takes the slot before it answers START_REPLICATION.
	require.NoError(t, pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + capture.Publication + "'"}}))
	var pid int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&pid))

	before := catalog(t, db, true)
	_, err = capture.Uninstall(ctx, conn, "crm")
	require.ErrorContains(t, err, "replication slot "+slot+" is in use by PID ")
	require.ErrorContains(t, err, "stop tandem run first")
	require.Contains(t, err.Error(), "PID "+strconv.Itoa(pid))
	require.Equal(t, before, catalog(t, db, true), "a refused uninstall changes nothing")
	require.Equal(t, []string{"public.contacts"}, published(t, db))

	// --print still shows what uninstall would run, and why it refuses.
	p, err := capture.PlanUninstall(ctx, conn, "crm")
	require.NoError(t, err)
	sql := p.SQL()
	require.Contains(t, sql, "-- REFUSED for now: replication slot "+slot+" is in use by PID")
	require.Contains(t, sql, `DROP PUBLICATION "tandem";`)
	require.Greater(t, strings.Index(sql, "SELECT pg_drop_replication_slot('"+slot+"');"), strings.Index(sql, "COMMIT;"))
}
