package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// One window of updates that write different sets of columns, of types
// that JSON does not carry as they are (timestamps, numeric, arrays,
// jsonb, a column whose name needs quoting), to a table with a composite
// key: each row ends with its own values, a row that already holds them
// is not written, and the node counts one write per row changed.
func TestUpdatesWritingDifferentColumns(t *testing.T) {
	t.Parallel()
	fields := contactsFields + `      - { source: seen, target: seen }
      - { source: score, target: score }
      - { source: tags, target: tags }
      - { source: doc, target: doc }
      - { source: 'we"ird', target: 'we"ird' }
`
	cols := `seen timestamptz, score numeric(10, 2), tags text[], doc jsonb, "we""ird" text`
	r := newRig(t, contactsYAMLWith("", fields), map[string]string{
		"crm": `CREATE TABLE contacts (id bigserial PRIMARY KEY, full_name text, email text UNIQUE, phone text, ` + cols + `)`,
		"hubspot": `CREATE TABLE hs_contacts (region text NOT NULL DEFAULT 'eu', id bigserial, firstname text, lastname text,
			email text UNIQUE, phone_number text, ` + cols + `, PRIMARY KEY (region, id))`,
	})
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone, seen, score, tags, doc, "we""ird")
		SELECT 'P ' || i, 'p' || i || '@x.com', 'ph' || i, timestamptz '2024-05-01 10:00:00+00' + i * interval '1 hour',
			i + 0.25, ARRAY['a' || i, 'b'], jsonb_build_object('n', i, 'list', jsonb_build_array(i, 'x')), 'w' || i
		FROM generate_series(1, 30) i`)
	require.Equal(t, 30, r.run("contacts").Created)
	r.idle("contacts")
	// Row 26 on hubspot already holds what crm is about to write.
	r.behindTandem("hubspot", `UPDATE hs_contacts SET phone_number = 'new-26' WHERE email = 'p26@x.com'`)
	before := r.tableWrites("hubspot", "public.hs_contacts", 30)

	r.exec("crm", `UPDATE contacts SET phone = 'new-' || id WHERE id <= 10 OR id = 26;
		UPDATE contacts SET tags = ARRAY['t' || id, NULL, 'it''s'], doc = jsonb_build_object('m', id::text || '"q') WHERE id BETWEEN 11 AND 20;
		UPDATE contacts SET seen = seen + interval '1 day 1.5 seconds', score = score * 3, "we""ird" = NULL WHERE id BETWEEN 21 AND 25;
		UPDATE contacts SET phone = NULL, tags = NULL WHERE id = 30`)
	res := r.run("contacts")
	require.Equal(t, 26, res.Updated, "rows 1-25 and 30; not row 26, which held the value: %+v", res)
	require.Zero(t, res.Errors+res.Conflicts)
	require.Equal(t, before+26, r.tableWrites("hubspot", "public.hs_contacts", before+26))

	const crmRow = `SELECT email, phone, (seen AT TIME ZONE 'UTC')::text, score::numeric(10, 2)::text, tags::text, doc::text, "we""ird" FROM contacts ORDER BY email`
	const hubRow = `SELECT email, phone_number, (seen AT TIME ZONE 'UTC')::text, score::text, tags::text, doc::text, "we""ird" FROM hs_contacts ORDER BY email`
	want := r.rows("crm", crmRow)
	require.Len(t, want, 30)
	require.Equal(t, want, r.rows("hubspot", hubRow))
	require.Contains(t, want, `p12@x.com|ph12|2024-05-01 22:00:00|12.25|{t12,NULL,it's}|{"m": "12\"q"}|w12`)
	require.Contains(t, want, `p22@x.com|ph22|2024-05-03 08:00:01.5|66.75|{a22,b}|{"n": 22, "list": [22, "x"]}|<nil>`)
	r.idle("contacts")
}

// A column whose type has no btree equality (box: its = compares areas)
// cannot be compared: a moved box of the same area is not taken for
// unchanged (and left behind); the run fails, naming the type.
func TestUpdateOfATypeWithoutEqualityIsAnError(t *testing.T) {
	t.Parallel()
	fields := contactsFields + "      - { source: area, target: area }\n"
	r := newRig(t, contactsYAMLWith("", fields), map[string]string{
		"crm":     `CREATE TABLE contacts (id bigserial PRIMARY KEY, full_name text, email text UNIQUE, phone text, area box)`,
		"hubspot": `CREATE TABLE hs_contacts (id bigserial PRIMARY KEY, firstname text, lastname text, email text UNIQUE, phone_number text, area box)`,
	})
	r.exec("crm", `INSERT INTO contacts (full_name, email, area) VALUES ('Ann Lee', 'ann@x.com', '((0,0),(1,1))')`)
	require.Equal(t, 1, r.run("contacts").Created)
	r.exec("crm", `UPDATE contacts SET area = '((5,5),(6,6))'`)
	_, err := r.runCtx(context.Background(), "contacts")
	require.ErrorContains(t, err, "node hubspot: applying to public.hs_contacts: ERROR: could not identify an equality operator for type box")
	require.Equal(t, []string{"(1,1),(0,0)"}, r.rows("hubspot", `SELECT area::text FROM hs_contacts`))
}
