package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// refuseOneCommit makes hubspot refuse the next commit that wrote
// hs_contacts, once: a deferred trigger raises at COMMIT, after every
// statement of the apply went through.
const refuseOneCommit = `CREATE SEQUENCE refused;
CREATE FUNCTION refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF nextval('refused') = 1 THEN
		RAISE EXCEPTION 'commit refused once';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER refuse_once AFTER INSERT OR UPDATE ON hs_contacts
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_once()`

// A window's record is written in control while its apply commits on the
// node, but commits only after the node did: an apply whose commit fails
// leaves no record (no links, cursors where they were), and the window is
// redone whole. Both ways the record is written early: an initial sync's
// inserts under keys drawn before the insert, and updates.
func TestRecordCommitsOnlyAfterTheApply(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), map[string]string{"crm": crmDDL + `;
		INSERT INTO contacts (full_name, email, phone) SELECT 'Person ' || n, 'p' || n || '@x.com', n::text FROM generate_series(1, 1000) n`,
		"hubspot": hubspotDDL + ";\n" + refuseOneCommit})

	// The initial sync's chunk creates the rows; its commit is refused.
	_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "commit refused once")
	require.Zero(t, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.links`), "links recorded for rows hubspot never committed")
	r.run("contacts")
	require.Equal(t, 1000, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts`))
	require.Equal(t, 1000, r.ctlInt(`SELECT count(*) FROM tandem.links`))
	r.requireSameContacts()
	r.idle("contacts")

	// Streaming updates; the commit is refused again.
	r.exec("hubspot", `ALTER SEQUENCE refused RESTART`)
	through := r.ctlInt(`SELECT source_through FROM tandem.sync_state`)
	r.exec("crm", `UPDATE contacts SET phone = 'new ' || id WHERE id <= 100`)
	_, err = r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "commit refused once")
	require.Equal(t, through, r.ctlInt(`SELECT source_through FROM tandem.sync_state`), "cursor advanced past updates hubspot never committed")
	require.Zero(t, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE phone_number LIKE 'new %'`))
	res := r.run("contacts")
	require.Equal(t, 100, res.Updated, "%+v", res)
	require.Equal(t, 100, r.nodeInt("hubspot", `SELECT count(*) FROM hs_contacts WHERE phone_number LIKE 'new %'`))
	r.requireSameContacts()
	r.idle("contacts")
}
