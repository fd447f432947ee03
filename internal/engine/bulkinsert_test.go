package engine_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Rows created where one key column is written (mapped from the other
// side) and the other drawn from its sequence go in one bulk insert whose
// returned keys name every row: each row's key is its own, not the one
// before it (n_tup_ins counts a bulk insert rolled back for the rows one
// by one twice), and each link pairs the right rows.
func TestBulkInsertWithAKeyColumnWrittenAndOneDrawn(t *testing.T) {
	t.Parallel()
	yaml := strings.Replace(contactsYAMLWith("", "      - { source: notes, target: tenant }\n      - { source: email, target: email }\n"),
		"public.hs_contacts }", "public.hs_tenant, key: [tenant, id] }", 1)
	r := newRig(t, yaml, map[string]string{"crm": crmDDL, "hubspot": `CREATE TABLE hs_tenant (
		tenant text NOT NULL, id bigserial, email text, PRIMARY KEY (tenant, id))`})
	r.run("contacts") // the initial sync of empty tables
	r.exec("crm", `INSERT INTO contacts (full_name, email, notes)
		SELECT 'P' || n, 'p' || n || '@x', CASE WHEN n % 3 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 50) n`)
	require.Equal(t, 50, r.run("contacts").Created)
	r.eng.Nodes["hubspot"].Reset() // its sessions end: their statistics are sent
	require.Equal(t, 50, r.tableWrites("hubspot", "hs_tenant", 50), "the bulk insert was rolled back")
	pairs := r.ctlRows(`SELECT (source_key ->> 'id') || ' ' || (target_key ->> 'tenant') || ' ' || (target_key ->> 'id') FROM tandem.links`)
	require.Len(t, pairs, 50)
	crm := map[string]string{}
	for _, row := range r.rows("crm", `SELECT id || ' ' || notes || ' ' || email FROM contacts`) {
		id, rest, _ := strings.Cut(row, " ")
		crm[id] = rest
	}
	for _, p := range pairs {
		src, tgt, _ := strings.Cut(p, " ")
		tenant, id, _ := strings.Cut(tgt, " ")
		require.Equal(t, []string{crm[src]}, r.rows("hubspot", `SELECT tenant || ' ' || email FROM hs_tenant WHERE tenant = $1 AND id = $2::bigint`, tenant, id),
			"link %s names another row", p)
	}
	r.idle("contacts")
}
