package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// Invariant 7: the engine needs no superuser on the nodes. A role holding
// only the GRANTs the README lists installs capture and runs the sync: an
// initial sync (bulk inserts with keys drawn from the key's sequence, reads
// in REPEATABLE READ snapshots), then changes both ways, then a verify and
// its repair.
func TestEngineRunsWithTheDocumentedGrants(t *testing.T) {
	t.Parallel()
	role := pgtest.UniqueName("tandem")
	pgtest.Roles(t, role) // before the databases: dropped after them
	ctx := context.Background()
	ddl := map[string]string{"crm": crmDDL + existingContacts, "hubspot": hubspotDDL}
	tables := map[string]string{"crm": "contacts", "hubspot": "hs_contacts"}
	env := map[string]string{}
	pools := map[string]*pgxpool.Pool{}
	ctl := pgtest.NewDB(t)
	env["CTL"] = ctl.URL
	nodes := map[string]*pgtest.DB{}
	for name, d := range ddl {
		db := pgtest.NewDB(t)
		db.Exec(t, d)
		r := pgx.Identifier{role}.Sanitize()
		for _, g := range []string{ // README, "Privileges (no superuser)"
			"GRANT CONNECT, CREATE ON DATABASE " + pgx.Identifier{db.Name}.Sanitize() + " TO " + r,
			"GRANT USAGE ON SCHEMA public TO " + r,
			"GRANT SELECT, TRIGGER ON public." + tables[name] + " TO " + r,
			"GRANT INSERT, UPDATE, DELETE ON public." + tables[name] + " TO " + r,
			"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO " + r,
		} {
			db.Exec(t, g)
		}
		url := db.URLAs(role, "")
		env[strings.ToUpper(map[string]string{"crm": "crm", "hubspot": "hub"}[name])] = url
		pools[name], nodes[name] = enginePool(t, url), db
	}
	cfg, err := config.Parse("tandem.yaml", []byte(contactsYAML("    match: [email]\n")), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	_, err = control.Migrate(ctx, ctl.Pool)
	require.NoError(t, err)
	for name, pool := range pools {
		conn, err := pool.Acquire(ctx)
		require.NoError(t, err)
		_, err = capture.Install(ctx, conn.Conn(), name, cfg.TablesOnNode(name), "tandem.yaml")
		conn.Release()
		require.NoError(t, err, "install on %s as %s", name, role)
	}
	r := &rig{t: t, ctl: ctl, nodes: nodes, cfg: cfg,
		eng: &engine.Engine{Config: cfg, Control: ctl.Pool, Nodes: pools, Logger: testLogger(t)}}
	t.Cleanup(r.eng.Close)

	require.Equal(t, 10000, r.run("contacts").Created)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from hubspot' WHERE email = 'user7@x.com'`)
	r.exec("crm", `INSERT INTO contacts (full_name, email) VALUES ('New Person', 'new@x.com')`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Created)
	require.Equal(t, 1, res.Updated)
	r.requireSameContacts()
	r.idle("contacts")

	// verify and its repair, with the same grants: drift made behind
	// tandem's back (by the superuser, triggers off) is found and settled.
	r.exec("hubspot", `ALTER TABLE hs_contacts DISABLE TRIGGER USER;
		UPDATE hs_contacts SET phone_number = 'drift' WHERE email = 'user9@x.com';
		ALTER TABLE hs_contacts ENABLE TRIGGER USER`)
	rep := r.verify("contacts", engine.VerifyOptions{})
	require.Equal(t, int64(1), rep.Differing, "%+v", rep)
	_, err = r.eng.Repair(ctx, "contacts", rep)
	require.NoError(t, err)
	require.True(t, r.verify("contacts", engine.VerifyOptions{}).Clean())
	r.requireSameContacts()
}
