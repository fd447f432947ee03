package engine_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// syncedAnnAndBob is a rig whose crm and hubspot both hold Ann and Bob,
// linked, with every echo consumed.
func syncedAnnAndBob(t *testing.T, extra string) *rig {
	t.Helper()
	r := newRig(t, contactsYAML(extra), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '100'), ('Bob Ray', 'bob@x.com', '200')`)
	require.Equal(t, 2, r.run("contacts").Created)
	r.idle("contacts")
	return r
}

// Invariant 4: edits of different fields on both sides between two runs
// merge; nothing is a conflict.
func TestDisjointEditsMerge(t *testing.T) {
	t.Parallel()
	r := syncedAnnAndBob(t, "")
	r.exec("crm", `UPDATE contacts SET phone = '101' WHERE email = 'ann@x.com'`)
	r.exec("hubspot", `UPDATE hs_contacts SET lastname = 'Smith' WHERE email = 'ann@x.com'`)
	res := r.run("contacts")
	require.Equal(t, 2, res.Updated) // one row on each side
	require.Zero(t, res.Conflicts)
	require.Equal(t, []string{"Ann Smith|ann@x.com|101", "Bob Ray|bob@x.com|200"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
	require.Equal(t, []string{"Ann|Smith|ann@x.com|101", "Bob|Ray|bob@x.com|200"},
		r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY id"))
	require.Zero(t, r.ctlInt("SELECT count(*) FROM tandem.sync_conflicts"))
	r.idle("contacts")
}

// Invariants 3 and 4: the same field edited to different values on both
// sides is settled by the strategy; both sides end with the winner and
// sync_conflicts keeps both values.
func TestConflictingEditsFollowTheStrategy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
		first       string // the side that edits first
		winner      string // source | target
	}{
		{"latest_wins, hubspot later", "", "crm", "target"},
		{"latest_wins, crm later", "    conflict: latest_wins\n", "hubspot", "source"},
		{"source_wins, crm earlier", "    conflict: source_wins\n", "crm", "source"},
		{"target_wins, hubspot earlier", "    conflict: target_wins\n", "hubspot", "target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := syncedAnnAndBob(t, tc.extra)
			edits := map[string]string{
				"crm":     `UPDATE contacts SET phone = 'from-crm' WHERE email = 'ann@x.com'`,
				"hubspot": `UPDATE hs_contacts SET phone_number = 'from-hubspot' WHERE email = 'ann@x.com'`,
			}
			second := map[string]string{"crm": "hubspot", "hubspot": "crm"}[tc.first]
			r.exec(tc.first, edits[tc.first]) // each statement's capture time is later than the one before
			r.exec(second, edits[second])
			res := r.run("contacts")
			require.Equal(t, 1, res.Conflicts)
			require.Equal(t, 1, res.Updated) // only the loser's side is written

			want, lost := "from-crm", "from-hubspot"
			if tc.winner == "target" {
				want, lost = lost, want
			}
			require.Equal(t, []string{want}, r.rows("crm", "SELECT phone FROM contacts WHERE email = 'ann@x.com'"))
			require.Equal(t, []string{want}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'ann@x.com'"))
			resolution := "latest_wins"
			if tc.extra != "" {
				resolution = tc.extra[len("    conflict: ") : len(tc.extra)-1]
			}
			keptPath, lostPath := "{source,phone}", "{target,phone_number}"
			if tc.winner == "target" {
				keptPath, lostPath = lostPath, keptPath
			}
			require.Equal(t, []string{"update_update|resolved|" + resolution + "|" + want + "|" + lost + "|true|tandem"},
				r.ctlRows(`SELECT kind, status, resolution, kept #>> $1, lost #>> $2, resolved_at IS NOT NULL, resolved_by
					FROM tandem.sync_conflicts`, keptPath, lostPath))
			require.Equal(t, []string{"from-crm|from-hubspot"}, r.ctlRows(`SELECT source_change #>> '{vals,phone}', target_change #>> '{vals,phone_number}'
				FROM tandem.sync_conflicts`), "both changes are kept")
			r.idle("contacts")
		})
	}
}

// Invariant 3: an update against a delete is a conflict of kind
// update_delete, settled by latest_wins; what lost is recorded.
func TestUpdateAgainstDelete(t *testing.T) {
	t.Parallel()
	t.Run("the later delete wins", func(t *testing.T) {
		t.Parallel()
		r := syncedAnnAndBob(t, "")
		r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '111' WHERE email = 'ann@x.com'`)
		r.exec("crm", `DELETE FROM contacts WHERE email = 'ann@x.com'`)
		res := r.run("contacts")
		require.Equal(t, 1, res.Conflicts)
		require.Equal(t, 1, res.Deleted)
		require.Equal(t, []string{"bob@x.com"}, r.rows("crm", "SELECT email FROM contacts"))
		require.Equal(t, []string{"bob@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts"))
		require.Equal(t, []string{"update_delete|resolved|latest_wins|111"},
			r.ctlRows(`SELECT kind, status, resolution, lost #>> '{target,phone_number}' FROM tandem.sync_conflicts`))
		require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.links"))
		r.idle("contacts")
	})
	t.Run("manual holds both sides", func(t *testing.T) {
		t.Parallel()
		r := syncedAnnAndBob(t, "    conflict: manual\n")
		r.exec("crm", `DELETE FROM contacts WHERE email = 'ann@x.com'`)
		r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '111' WHERE email = 'ann@x.com'`)
		res := r.run("contacts")
		require.Equal(t, 1, res.Conflicts)
		require.Zero(t, res.Synced())
		require.Equal(t, []string{"bob@x.com"}, r.rows("crm", "SELECT email FROM contacts"))
		require.Equal(t, []string{"ann@x.com|111", "bob@x.com|200"}, r.rows("hubspot", "SELECT email, phone_number FROM hs_contacts ORDER BY email"))
		require.Equal(t, []string{"update_delete|open|manual"}, r.ctlRows(`SELECT kind, status, resolution FROM tandem.sync_conflicts`))
		r.idle("contacts")
	})
	t.Run("the later update wins", func(t *testing.T) {
		t.Parallel()
		r := syncedAnnAndBob(t, "")
		r.exec("crm", `DELETE FROM contacts WHERE email = 'ann@x.com'`)
		r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '111' WHERE email = 'ann@x.com'`)
		res := r.run("contacts")
		require.Equal(t, 1, res.Conflicts)
		require.Equal(t, 1, res.Created) // re-created in crm
		require.Equal(t, []string{"Ann Lee|ann@x.com|111", "Bob Ray|bob@x.com|200"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY email"))
		require.Equal(t, []string{"Ann|Lee|ann@x.com|111", "Bob|Ray|bob@x.com|200"},
			r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY email"))
		require.Equal(t, []string{"update_delete|resolved|latest_wins|111|100"},
			r.ctlRows(`SELECT kind, status, resolution, kept #>> '{target,phone_number}', lost #>> '{source,phone}' FROM tandem.sync_conflicts`))
		require.Equal(t, 2, r.ctlInt("SELECT count(*) FROM tandem.links"))
		r.idle("contacts")

		// The re-created row is linked: an edit of it is an update, not a new row.
		r.exec("crm", `UPDATE contacts SET phone = '112' WHERE email = 'ann@x.com'`)
		require.Equal(t, 1, r.run("contacts").Updated)
		require.Equal(t, []string{"112"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'ann@x.com'"))
	})
}

// conflict: manual holds a conflicting entity, on both sides, until a
// person decides; the rest of the run flows.
func TestManualConflictHoldsOnlyItsEntity(t *testing.T) {
	t.Parallel()
	r := syncedAnnAndBob(t, "    conflict: manual\n")
	r.exec("crm", `UPDATE contacts SET phone = 'from-crm' WHERE email = 'ann@x.com'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from-hubspot' WHERE email = 'ann@x.com'`)
	r.exec("crm", `UPDATE contacts SET phone = '201' WHERE email = 'bob@x.com'`)
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email) VALUES ('Cy', 'Dunn', 'cy@x.com')`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Conflicts)
	require.Equal(t, 1, res.Updated)
	require.Equal(t, 1, res.Created)
	require.Equal(t, []string{"Ann Lee|from-crm", "Bob Ray|201", "Cy Dunn|<nil>"}, r.rows("crm", "SELECT full_name, phone FROM contacts ORDER BY email"))
	require.Equal(t, []string{"Ann|from-hubspot", "Bob|201", "Cy|<nil>"}, r.rows("hubspot", "SELECT firstname, phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{"update_update|open|manual|<nil>|<nil>|from-crm|from-hubspot"},
		r.ctlRows(`SELECT kind, status, resolution, resolved_at, kept, source_change #>> '{vals,phone}', target_change #>> '{vals,phone_number}'
			FROM tandem.sync_conflicts`))

	// Later edits of the held entity wait too, and raise no new conflict.
	r.exec("crm", `UPDATE contacts SET full_name = 'Ann Jones' WHERE email = 'ann@x.com'`)
	r.exec("crm", `UPDATE contacts SET phone = '202' WHERE email = 'bob@x.com'`)
	res = r.run("contacts")
	require.Equal(t, 1, res.Held)
	require.Equal(t, 1, res.Updated)
	require.Equal(t, []string{"Ann|Lee|from-hubspot", "Bob|Ray|202", "Cy|Dunn|<nil>"},
		r.rows("hubspot", "SELECT firstname, lastname, phone_number FROM hs_contacts ORDER BY email"))
	require.Equal(t, []string{"1|Ann Jones"}, r.ctlRows(`SELECT count(*), min(source_change #>> '{vals,full_name}') FROM tandem.sync_conflicts WHERE status = 'open'`))
	require.Zero(t, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE status = 'open' AND (resolved_by IS NOT NULL OR resolved_at IS NOT NULL)`),
		"an open conflict has no resolver yet")
	require.Equal(t, 1, r.ctlInt("SELECT count(*) FROM tandem.sync_conflicts"))
}

// match pairs a row created on one side with an existing row with the same
// (mapped) natural key on the other instead of creating a duplicate; their
// differing fields are settled by the strategy and recorded.
func TestMatchLinksExistingRows(t *testing.T) {
	t.Parallel()
	// The hubspot row exists before tandem is installed: it was never captured.
	ddl := map[string]string{"crm": crmDDL, "hubspot": hubspotDDL + `;
		INSERT INTO hs_contacts (firstname, lastname, email, phone_number, score) VALUES ('Ann', 'Old', 'ann@x.com', '111', 7)`}
	for _, tc := range []struct {
		name, extra    string
		captured       bool // the hubspot row is created under capture, just before the crm row
		crm, hubspot   string
		keptPath, kept string
		lostPath, lost string
	}{
		{"latest_wins: the new crm row is later", "", false,
			"Ann Lee|Ann@X.com|222", "Ann|Lee|ann@x.com|222|7", "{source,phone}", "222", "{target,phone_number}", "111"},
		{"target_wins", "    conflict: target_wins\n", false,
			"Ann Old|Ann@X.com|111", "Ann|Old|ann@x.com|111|7", "{target,phone_number}", "111", "{source,phone}", "222"},
		{"latest_wins: created on both sides in one window", "", true,
			"Ann Lee|Ann@X.com|222", "Ann|Lee|ann@x.com|222|7", "{source,phone}", "222", "{target,phone_number}", "111"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r *rig
			if tc.captured {
				r = newRig(t, contactsYAML(tc.extra+"    match: [email]\n"), twoNodes())
				r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number, score) VALUES ('Ann', 'Old', 'ann@x.com', '111', 7)`)
			} else {
				r = newRig(t, contactsYAML(tc.extra+"    match: [email]\n"), ddl)
			}
			r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'Ann@X.com', '222'), ('Bob Ray', 'bob@x.com', '200')`)
			res := r.run("contacts")
			require.Equal(t, 1, res.Created) // Bob
			require.Equal(t, []string{tc.crm, "Bob Ray|bob@x.com|200"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
			require.Equal(t, []string{tc.hubspot, "Bob|Ray|bob@x.com|200|<nil>"},
				r.rows("hubspot", "SELECT firstname, lastname, email, phone_number, score FROM hs_contacts ORDER BY id"))
			require.Equal(t, []string{`{"id": 1}|{"id": 1}`, `{"id": 2}|{"id": 2}`},
				r.ctlRows("SELECT source_key::text, target_key::text FROM tandem.links ORDER BY source_key"))
			require.Equal(t, []string{tc.kept + "|" + tc.lost}, r.ctlRows(`SELECT kept #>> $1, lost #>> $2 FROM tandem.sync_conflicts`, tc.keptPath, tc.lostPath),
				"the overwritten values are recorded")
			r.idle("contacts")

			// Linked: edits flow as updates.
			r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '333' WHERE email = 'ann@x.com'`)
			require.Equal(t, 1, r.run("contacts").Updated)
			require.Equal(t, []string{"333"}, r.rows("crm", "SELECT phone FROM contacts WHERE lower(email) = 'ann@x.com'"))
			r.idle("contacts")
		})
	}
}

// Streaming match compares natural keys as the initial sync pairs them:
// each side's value normalised by the field's transform. Several rows
// that normalise alike pair only with the one holding exactly the mapped
// value; with none such, nothing is guessed.
func TestMatchComparesNormalisedNaturalKeys(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML("    match: [email]\n"), twoNodes())
	r.idle("contacts") // the initial sync, of nothing: from here changes stream
	// Rows written behind tandem's back (not captured, not linked; SET
	// LOCAL lasts the one implicit transaction of the statements).
	r.exec("hubspot", `SET LOCAL session_replication_role = replica;
		INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Ann', 'Old', 'ANN@x.com', '111')`)
	r.exec("crm", `SET LOCAL session_replication_role = replica;
		INSERT INTO contacts (full_name, email, phone) VALUES ('Cy One', 'Cy@x.com', '1'), ('Cy Two', 'cy@x.com', '2')`)

	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '222')`)
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Cy', 'Three', 'CY@x.com', '3')`)
	r.exec("hubspot", `INSERT INTO hs_contacts (firstname, lastname, email, phone_number) VALUES ('Cy', 'Two', 'cy@x.com', '2')`)
	r.run("contacts")

	require.Equal(t, []string{"1"}, r.rows("hubspot", `SELECT count(*) FROM hs_contacts WHERE lower(email) = 'ann@x.com'`),
		"crm's ann@x.com pairs with hubspot's ANN@x.com (lowercase on both sides), not a second row")
	require.Equal(t, []string{"Cy One|Cy@x.com", "Cy Two|cy@x.com", "Cy Three|CY@x.com"},
		r.rows("crm", `SELECT full_name, email FROM contacts WHERE lower(email) = 'cy@x.com' ORDER BY id`),
		"CY@x.com normalises like two crm rows and is neither: created")
	emails := func(node, query string) map[string]string {
		out := map[string]string{}
		for _, row := range r.rows(node, query) {
			id, email, _ := strings.Cut(row, "|")
			out[id] = email
		}
		return out
	}
	crm, hub := emails("crm", "SELECT id, email FROM contacts"), emails("hubspot", "SELECT id, email FROM hs_contacts")
	var pairs []string
	for _, l := range r.ctlRows(`SELECT source_key ->> 'id', target_key ->> 'id' FROM tandem.links`) {
		s, t, _ := strings.Cut(l, "|")
		pairs = append(pairs, crm[s]+"|"+hub[t])
	}
	require.ElementsMatch(t, []string{"ann@x.com|ann@x.com", "CY@x.com|CY@x.com", "cy@x.com|cy@x.com"}, pairs,
		"hubspot's cy@x.com pairs with crm's cy@x.com, the one holding exactly its value")
	require.Equal(t, []string{"ANN@x.com"}, r.ctlRows(`SELECT lost #>> '{target,email}' FROM tandem.sync_conflicts`),
		"the paired rows' differing values are settled as a conflict (latest_wins: the crm row)")
	r.idle("contacts")
}
