package engine_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// poisonRig has hubspot reject phones that are not digits, and crm hold
// three contacts, one with phone 'abc', synced once.
func poisonRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, contactsYAML(""), map[string]string{"crm": crmDDL, "hubspot": hubspotDDL + `;
		ALTER TABLE hs_contacts ADD CONSTRAINT phone_digits CHECK (phone_number ~ '^[0-9]*$')`})
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '100'), ('Bad Row', 'bad@x.com', 'abc'), ('Bob Ray', 'bob@x.com', '200')`)
	res := r.run("contacts")
	require.Equal(t, 2, res.Created)
	require.Equal(t, 1, res.Errors)
	require.Equal(t, []string{"ann@x.com", "bob@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{"hubspot|public.hs_contacts|target|23514|phone_digits|true"},
		r.ctlRows(`SELECT node, table_name, side, sqlstate, constraint_name, reason LIKE '%phone_digits%'
			FROM tandem.sync_errors WHERE resolved_at IS NULL`))
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.sync_errors"))
	require.Equal(t, []string{"2|1|succeeded"}, r.ctlRows("SELECT created, errors, status FROM tandem.sync_runs WHERE id = $1", res.RunID))
	return r
}

// Invariant 6: a row the other side rejects goes to sync_errors naming the
// constraint, the others apply, and it applies once the cause is gone, as
// the same entity as its crm row.
func TestPoisonRowIsSplitOutAndRetried(t *testing.T) {
	t.Parallel()
	r := poisonRig(t)
	r.exec("hubspot", `ALTER TABLE hs_contacts DROP CONSTRAINT phone_digits`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{"Ann|ann@x.com|100", "Bad|bad@x.com|abc", "Bob|bob@x.com|200"},
		r.rows("hubspot", "SELECT firstname, email, phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{"true"}, r.ctlRows("SELECT resolved_at IS NOT NULL FROM tandem.sync_errors"))
	require.Equal(t, 3, r.ctlInt("SELECT count(*) FROM tandem.links"), "the retried row is linked")
	r.idle("contacts")

	// The retried row is the same entity as its crm row: edits update it.
	r.exec("crm", `UPDATE contacts SET phone = 'abcd' WHERE email = 'bad@x.com'`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Updated)
	require.Zero(t, res.Created+res.Errors)
	require.Equal(t, []string{"abcd"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'bad@x.com'"))
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '300' WHERE email = 'bad@x.com'`)
	require.Equal(t, 1, r.run("contacts").Updated)
	require.Equal(t, []string{"300"}, r.rows("crm", "SELECT phone FROM contacts WHERE email = 'bad@x.com'"))
	require.Equal(t, 3, r.nodeInt("crm", "SELECT count(*) FROM contacts"))
}

// Invariant 6: a row still rejected is retried quietly (no new error, no
// run row) and blocks nothing: later changes flow, and it applies once the
// cause is gone.
func TestPoisonRowDoesNotBlockTheSync(t *testing.T) {
	t.Parallel()
	r := poisonRig(t)
	r.idle("contacts") // retried, rejected again
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.sync_errors WHERE resolved_at IS NULL"))

	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Cy Dunn', 'cy@x.com', '400')`)
	require.Equal(t, 1, r.run("contacts").Created)
	require.Equal(t, []string{"ann@x.com", "bob@x.com", "cy@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts ORDER BY email"))
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.sync_errors"))

	r.exec("hubspot", `ALTER TABLE hs_contacts DROP CONSTRAINT phone_digits`)
	require.Equal(t, 1, r.run("contacts").Created)
	require.Equal(t, 4, r.nodeInt("hubspot", "SELECT count(*) FROM hs_contacts"))
	require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_errors WHERE resolved_at IS NULL"))
}

// Invariant 6: rows created with the same unique value on both sides,
// without match, cannot both exist on either side: each insert the other
// side rejects is in sync_errors with the unique constraint's name, and
// nothing else is written.
func TestUniqueCollisionGoesToSyncErrors(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '100'), ('Bob Ray', 'bob@x.com', '200')`)
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Ann', 'Other', 'ann@x.com', '111')`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Created) // Bob
	require.Equal(t, 2, res.Errors)
	require.Equal(t, []string{
		"crm|public.contacts|source|23505|contacts_email_key|true",
		"hubspot|public.hs_contacts|target|23505|hs_contacts_email_key|true",
	}, r.ctlRows(`SELECT node, table_name, side, sqlstate, constraint_name, reason LIKE '%' || constraint_name || '%'
		FROM tandem.sync_errors WHERE resolved_at IS NULL ORDER BY node`))
	require.Equal(t, []string{"Ann Lee|100", "Bob Ray|200"}, r.rows("crm", "SELECT full_name, phone FROM contacts ORDER BY email"))
	require.Equal(t, []string{"Ann|Other|111", "Bob|Ray|200"}, r.rows("hubspot", "SELECT firstname, lastname, phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.links"))
	r.idle("contacts")
	require.Equal(t, 2, r.ctlInt("SELECT count(*) FROM tandem.sync_errors"))
}

const notesCRM = `;
CREATE TABLE crm_notes (id bigserial PRIMARY KEY, body text)`

const notesHubspot = `;
CREATE TABLE hs_notes (id bigserial PRIMARY KEY, content text)`

// Invariant 6: a mapped column dropped under a sync stops that sync with an
// error naming the column; another sync between the same nodes runs on.
func TestDroppedColumnFailsOnlyItsSync(t *testing.T) {
	t.Parallel()
	yaml := contactsYAML("") + `  - id: notes
    source: { node: crm, table: public.crm_notes }
    target: { node: hubspot, table: public.hs_notes }
    fields:
      - { source: body, target: content }
`
	r := newRig(t, yaml, map[string]string{"crm": crmDDL + notesCRM, "hubspot": hubspotDDL + notesHubspot})
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '100')`)
	r.exec("crm", `INSERT INTO crm_notes (body) VALUES ('first')`)
	require.Equal(t, 1, r.run("contacts").Created)
	require.Equal(t, 1, r.run("notes").Created)

	r.exec("hubspot", `ALTER TABLE hs_contacts DROP COLUMN phone_number`)
	r.exec("crm", `UPDATE contacts SET phone = '101'`)
	r.exec("crm", `INSERT INTO crm_notes (body) VALUES ('second')`)
	_, err := r.runCtx(t.Context(), "contacts")
	require.ErrorContains(t, err, `"phone_number"`)
	require.ErrorContains(t, err, "hs_contacts")
	require.Equal(t, []string{"failed|true"},
		r.ctlRows(`SELECT status, error LIKE '%"phone_number"%' FROM tandem.sync_runs WHERE sync_id = 'contacts' ORDER BY id DESC LIMIT 1`))

	res := r.run("notes")
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{"first", "second"}, r.rows("hubspot", "SELECT content FROM hs_notes ORDER BY id"))
	require.Equal(t, []string{"succeeded"}, r.ctlRows(`SELECT status FROM tandem.sync_runs WHERE id = $1`, res.RunID))

	// Still failing, and still naming the column, until the column is back.
	_, err = r.runCtx(t.Context(), "contacts")
	require.ErrorContains(t, err, `"phone_number"`)
	r.exec("hubspot", `ALTER TABLE hs_contacts ADD COLUMN phone_number text`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Updated)
	require.Equal(t, []string{"101"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts"))
}
