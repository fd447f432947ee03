package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Invariant 5: a run's work is proportional to the changes, not to the
// table size. 15 edits among 10,000 synced rows are 15 row writes on the
// other side and none on the edited side, whatever the echoes of the first
// sync still waiting in the queue.
func TestRunWritesOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone)
		SELECT 'Person ' || i, 'p' || i || '@x.com', i::text FROM generate_series(1, 10000) i`)
	res := r.run("contacts")
	require.Equal(t, 10000, res.Created)
	require.Equal(t, 10000, r.nodeInt("hubspot", "SELECT count(*) FROM hs_contacts"))
	require.Equal(t, 10000, r.tableWrites("hubspot", "public.hs_contacts", 10000))

	r.exec("crm", `UPDATE contacts SET phone = phone || '-new' WHERE id % 667 = 0`) // ids 667, 1334, …: 14 rows
	r.exec("crm", `UPDATE contacts SET full_name = 'Renamed One' WHERE id = 1`)
	res = r.run("contacts")
	require.Equal(t, 15, res.Updated)
	require.Equal(t, 15, res.Synced())
	require.Zero(t, res.Created+res.Deleted+res.Conflicts+res.Errors)
	require.Equal(t, 10015, r.tableWrites("hubspot", "public.hs_contacts", 10015), "hubspot rows written by the run")
	require.Equal(t, 10015, r.tableWrites("crm", "public.contacts", 10015), "the run wrote to crm")
	require.Equal(t, []string{"15|15|0|0|succeeded"},
		r.ctlRows("SELECT synced, updated, created, deleted, status FROM tandem.sync_runs WHERE id = $1", res.RunID))
	require.Equal(t, 14, r.nodeInt("hubspot", "SELECT count(*) FROM hs_contacts WHERE phone_number LIKE '%-new'"))
	require.Equal(t, []string{"Renamed|One"}, r.rows("hubspot", "SELECT firstname, lastname FROM hs_contacts WHERE email = 'p1@x.com'"))
	r.idle("contacts")
}

// Invariant 2: tandem's own writes never come back as changes, including
// through a transform with no reverse (uppercase one way, identity back).
func TestOwnWritesDoNotEcho(t *testing.T) {
	t.Parallel()
	yaml := contactsYAMLWith("", `      - { source: full_name, target: [firstname, lastname], transform: split_name }
      - { source: email, target: email, transform: uppercase }
      - { source: phone, target: phone_number }
`)
	r := newRig(t, yaml, twoNodes())
	r.idle("contacts") // nothing captured yet

	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1'), ('Bob Ray', 'bob@x.com', '2')`)
	require.Equal(t, 2, r.run("contacts").Created)
	r.idle("contacts")
	r.idle("contacts")

	r.exec("crm", `UPDATE contacts SET email = 'ann.lee@x.com' WHERE full_name = 'Ann Lee'`)
	require.Equal(t, 1, r.run("contacts").Updated)
	require.Equal(t, []string{"Ann|ANN.LEE@X.COM", "Bob|BOB@X.COM"}, r.rows("hubspot", "SELECT firstname, email FROM hs_contacts ORDER BY id"))
	r.idle("contacts")

	// Back the other way the field is identity: hubspot's value as it is.
	r.exec("hubspot", `UPDATE hs_contacts SET email = 'Bob.Ray@Y.org', phone_number = '22' WHERE firstname = 'Bob'`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Updated)
	require.Equal(t, []string{"Ann Lee|ann.lee@x.com|1", "Bob Ray|Bob.Ray@Y.org|22"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
	// crm now maps to BOB.RAY@Y.ORG, but its change was tandem's own: not sent back.
	r.idle("contacts")
	require.Equal(t, []string{"Bob.Ray@Y.org"}, r.rows("hubspot", "SELECT email FROM hs_contacts WHERE firstname = 'Bob'"))
	require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_conflicts"))
	require.Equal(t, 3, r.ctlInt("SELECT count(*) FROM tandem.sync_runs WHERE status = 'succeeded'"))
}

const gcontactsDDL = `CREATE TABLE gc_people (
	id bigserial PRIMARY KEY,
	display_name text,
	mail text UNIQUE,
	tel text)`

// starYAML links crm to hubspot and crm to gcontacts: hubspot and gcontacts
// only meet through crm.
const starYAML = `control: ${CTL}
nodes:
  crm: { dsn: "${CRM}" }
  hubspot: { dsn: "${HUB}" }
  gcontacts: { dsn: "${GC}" }
syncs:
  - id: contacts
    source: { node: crm, table: public.contacts }
    target: { node: hubspot, table: public.hs_contacts }
    fields:
      - { source: full_name, target: [firstname, lastname], transform: split_name }
      - { source: email, target: email, transform: lowercase }
      - { source: phone, target: phone_number }
  - id: gcontacts
    source: { node: crm, table: public.contacts }
    target: { node: gcontacts, table: public.gc_people }
    fields:
      - { source: full_name, target: display_name }
      - { source: email, target: mail, transform: lowercase }
      - { source: phone, target: tel }
`

// Invariant 2 in a star: a change one sync applies to crm is a change for
// the other sync from crm, and the no-op check ends every cycle.
func TestStarTopologyPropagatesWithoutLooping(t *testing.T) {
	t.Parallel()
	r := newRig(t, starYAML, map[string]string{"crm": crmDDL, "hubspot": hubspotDDL, "gcontacts": gcontactsDDL})
	both := func() {
		t.Helper()
		for range 3 {
			r.run("contacts")
			r.run("gcontacts")
		}
	}
	settled := func() {
		t.Helper()
		for range 3 {
			r.idle("contacts")
			r.idle("gcontacts")
		}
	}

	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '1')`)
	both()
	settled()
	require.Equal(t, []string{"Ann|Lee|ann@x.com|1"}, r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts"))
	require.Equal(t, []string{"Ann Lee|ann@x.com|1"}, r.rows("gcontacts", "SELECT display_name, mail, tel FROM gc_people"))

	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Smith', phone_number = '2' WHERE email = 'ann@x.com'`)
	both()
	require.Equal(t, []string{"Ann Smith|ann@x.com|2"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts"))
	require.Equal(t, []string{"Ann Smith|ann@x.com|2"}, r.rows("gcontacts", "SELECT display_name, mail, tel FROM gc_people"))
	settled()

	r.exec("gcontacts", `UPDATE gc_people SET display_name = 'Ann Jones', tel = '3'`)
	r.exec("gcontacts", `INSERT INTO gc_people (display_name, mail, tel) VALUES ('Cy Dunn', 'cy@x.com', '4')`)
	both()
	require.Equal(t, []string{"Ann|Jones|ann@x.com|3", "Cy|Dunn|cy@x.com|4"},
		r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{"Ann Jones|ann@x.com|3", "Cy Dunn|cy@x.com|4"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY email"))
	settled()
	require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_conflicts"))
	require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_errors"))
}
