package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// manualRig is a rig with conflict: manual whose crm and hubspot hold Ann
// and Bob, linked, with every echo consumed.
func manualRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, contactsYAML("    conflict: manual\n"), twoNodes())
	r.exec("crm", `INSERT INTO contacts (full_name, email, phone) VALUES ('Ann Lee', 'ann@x.com', '100'), ('Bob Ray', 'bob@x.com', '200')`)
	require.Equal(t, 2, r.run("contacts").Created)
	r.idle("contacts")
	return r
}

// openConflict returns the id of the only open conflict.
func (r *rig) openConflict() int64 {
	r.t.Helper()
	require.Equal(r.t, 1, r.ctlInt(`SELECT count(*) FROM tandem.sync_conflicts WHERE status = 'open'`))
	return int64(r.ctlInt(`SELECT id FROM tandem.sync_conflicts WHERE status = 'open'`))
}

// phoneConflict makes a manual conflict on Ann's phone, with edits of other
// fields on each side that are held with it.
func phoneConflict(t *testing.T) (*rig, int64) {
	t.Helper()
	r := manualRig(t)
	r.exec("crm", `UPDATE contacts SET phone = 'from-crm', email = 'Ann@Y.com' WHERE email = 'ann@x.com'`)
	r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from-hubspot', lastname = 'Smith' WHERE email = 'ann@x.com'`)
	res := r.run("contacts")
	require.Equal(t, 1, res.Conflicts)
	require.Zero(t, res.Synced(), "a manual conflict holds the whole entity")
	return r, r.openConflict()
}

func TestResolveConflictTakingASide(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		take       string
		crm, hub   string // Ann's row on each side after resolving
		kept, lost string
	}{
		{"source", "Ann Smith|Ann@Y.com|from-crm-2", "Ann|Smith|ann@y.com|from-crm-2",
			`{"source": {"phone": "from-crm-2"}}`, `{"target": {"phone_number": "from-hubspot-3"}}`},
		{"target", "Ann Smith|Ann@Y.com|from-hubspot-3", "Ann|Smith|ann@y.com|from-hubspot-3",
			`{"target": {"phone_number": "from-hubspot-3"}}`, `{"source": {"phone": "from-crm-2"}}`},
	} {
		t.Run(tc.take, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r, id := phoneConflict(t)
			// A run merges later edits into the open conflict …
			r.exec("crm", `UPDATE contacts SET phone = 'from-crm-2' WHERE email = 'Ann@Y.com'`)
			r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from-hubspot-2' WHERE email = 'ann@x.com'`)
			require.Equal(t, 1, r.run("contacts").Held)
			// … and so does resolving, for edits no run has taken yet.
			r.exec("hubspot", `UPDATE hs_contacts SET phone_number = 'from-hubspot-3' WHERE email = 'ann@x.com'`)

			list, err := r.eng.Conflicts(ctx, "", false)
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.Equal(t, []string{"phone/phone_number"}, list[0].Fields)
			require.Equal(t, "from-crm-2", list[0].SourceChange["vals"].(map[string]any)["phone"])

			require.NoError(t, r.eng.ResolveConflict(ctx, id, tc.take, nil, "alice"))
			// Fields only one side changed flow either way; the multi-column
			// full_name is joined from hubspot's unchanged firstname.
			require.Equal(t, []string{tc.crm, "Bob Ray|bob@x.com|200"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY id"))
			require.Equal(t, []string{tc.hub, "Bob|Ray|bob@x.com|200"},
				r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY id"))
			require.Equal(t, []string{"resolved|manual:" + tc.take + "|alice|true|" + tc.kept + "|" + tc.lost},
				r.ctlRows(`SELECT status, resolution, resolved_by, resolved_at IS NOT NULL, kept::text, lost::text
					FROM tandem.sync_conflicts WHERE id = $1`, id))
			r.idle("contacts") // the resolution's writes do not come back
			r.idle("contacts")

			c, err := r.eng.Conflict(ctx, id)
			require.NoError(t, err)
			require.Equal(t, "resolved", c.Status)
			require.NotNil(t, c.ResolvedAt)
			list, err = r.eng.Conflicts(ctx, "contacts", false)
			require.NoError(t, err)
			require.Empty(t, list)
			list, err = r.eng.Conflicts(ctx, "contacts", true)
			require.NoError(t, err)
			require.Len(t, list, 1)

			err = r.eng.ResolveConflict(ctx, id, "source", nil, "bob")
			require.ErrorIs(t, err, engine.ErrNotOpen)
			require.ErrorContains(t, err, "conflict "+strconv.FormatInt(id, 10)+" is already resolved (manual:"+tc.take+" by alice at ")

			// The entity is no longer held: edits flow again.
			r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '300' WHERE email = 'ann@y.com'`)
			require.Equal(t, 1, r.run("contacts").Updated)
			require.Equal(t, []string{"300"}, r.rows("crm", "SELECT phone FROM contacts WHERE email = 'Ann@Y.com'"))
			r.idle("contacts")
		})
	}
}

func TestResolveConflictWithAValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, id := phoneConflict(t)

	for _, bad := range []struct {
		value map[string]any
		err   string
	}{
		{map[string]any{"nope": "1", "phone": "9"}, "the value names nope, which sync contacts does not map from public.contacts"},
		{map[string]any{"full_name": "Ann Value"}, "the value must set every conflicting field; it lacks source column phone"},
		{map[string]any{}, "names no column"},
	} {
		require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "", bad.value, "carol"), bad.err)
	}
	require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "source", map[string]any{"phone": "9"}, "carol"), "not both")
	require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "both", nil, "carol"), `takes source or target, not "both"`)
	require.Equal(t, id, r.openConflict(), "a refused resolution leaves the conflict open")

	value := map[string]any{"phone": "999", "full_name": "Ann Value Q"}
	require.NoError(t, r.eng.ResolveConflict(ctx, id, "", value, "carol"))
	require.Equal(t, []string{"Ann Value Q|Ann@Y.com|999"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts WHERE id = 1"))
	require.Equal(t, []string{"Ann|Value Q|ann@y.com|999"}, r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts WHERE id = 1"))
	var kept, lost map[string]any
	var how string
	require.NoError(t, r.ctl.Pool.QueryRow(ctx, `SELECT resolution, kept, lost FROM tandem.sync_conflicts WHERE id = $1`, id).Scan(&how, &kept, &lost))
	require.Equal(t, "manual:value", how)
	require.Equal(t, map[string]any{"source": map[string]any{"phone": "999", "full_name": "Ann Value Q"}}, kept)
	require.Equal(t, map[string]any{
		"source": map[string]any{"phone": "from-crm", "full_name": "Ann Lee"},
		"target": map[string]any{"phone_number": "from-hubspot", "firstname": "Ann", "lastname": "Smith"},
	}, lost, "every value the resolution overwrote is recorded")
	r.idle("contacts")
	r.idle("contacts")
}

func TestResolveUpdateDeleteConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	deleted := func(t *testing.T) (*rig, int64) {
		r := manualRig(t)
		r.exec("crm", `DELETE FROM contacts WHERE email = 'ann@x.com'`)
		r.exec("hubspot", `UPDATE hs_contacts SET phone_number = '111' WHERE email = 'ann@x.com'`)
		res := r.run("contacts")
		require.Equal(t, 1, res.Conflicts)
		require.Zero(t, res.Synced())
		id := r.openConflict()
		require.Equal(t, []string{"update_delete|delete|111"},
			r.ctlRows(`SELECT kind, source_change ->> 'op', target_change #>> '{vals,phone_number}' FROM tandem.sync_conflicts`))
		require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "", map[string]any{"phone": "1"}, "dave"), "not a value")
		return r, id
	}

	t.Run("the delete stands", func(t *testing.T) {
		t.Parallel()
		r, id := deleted(t)
		require.NoError(t, r.eng.ResolveConflict(ctx, id, "source", nil, "dave"))
		require.Equal(t, []string{"bob@x.com"}, r.rows("crm", "SELECT email FROM contacts"))
		require.Equal(t, []string{"bob@x.com"}, r.rows("hubspot", "SELECT email FROM hs_contacts"))
		require.Equal(t, []string{`{"id": 2}|{"id": 2}`}, r.ctlRows("SELECT source_key::text, target_key::text FROM tandem.links"))
		require.Equal(t, []string{`resolved|manual:source|dave|<nil>|{"target": {"phone_number": "111"}}`},
			r.ctlRows(`SELECT status, resolution, resolved_by, kept::text, lost::text FROM tandem.sync_conflicts WHERE id = $1`, id))
		r.idle("contacts")
		r.idle("contacts")
	})

	t.Run("the update stands", func(t *testing.T) {
		t.Parallel()
		r, id := deleted(t)
		require.NoError(t, r.eng.ResolveConflict(ctx, id, "target", nil, "dave"))
		require.Equal(t, []string{"Ann Lee|ann@x.com|111", "Bob Ray|bob@x.com|200"}, r.rows("crm", "SELECT full_name, email, phone FROM contacts ORDER BY email"))
		require.Equal(t, []string{"Ann|Lee|ann@x.com|111", "Bob|Ray|bob@x.com|200"},
			r.rows("hubspot", "SELECT firstname, lastname, email, phone_number FROM hs_contacts ORDER BY email"))
		annID := r.nodeInt("crm", "SELECT id FROM contacts WHERE email = 'ann@x.com'")
		require.Equal(t, 3, annID, "re-created with a new key")
		require.Equal(t, []string{`{"id": 2}|{"id": 2}`, `{"id": 3}|{"id": 1}`},
			r.ctlRows("SELECT source_key::text, target_key::text FROM tandem.links ORDER BY source_key"))
		require.Equal(t, []string{`resolved|manual:target|{"target": {"phone_number": "111"}}|100`},
			r.ctlRows(`SELECT status, resolution, kept::text, lost #>> '{source,phone}' FROM tandem.sync_conflicts WHERE id = $1`, id))
		r.idle("contacts")
		r.idle("contacts")

		// The re-created row is linked: an edit of it is an update on the other side.
		r.exec("crm", `UPDATE contacts SET phone = '112' WHERE email = 'ann@x.com'`)
		require.Equal(t, 1, r.run("contacts").Updated)
		require.Equal(t, []string{"112"}, r.rows("hubspot", "SELECT phone_number FROM hs_contacts WHERE email = 'ann@x.com'"))
		r.idle("contacts")
	})
	t.Run("an earlier attempt still committing", func(t *testing.T) {
		t.Parallel()
		r, id := deleted(t)
		// The earlier attempt, cut off while its COMMIT was on the way: it
		// holds the sync's apply lock on crm, re-creates Ann there and
		// records its share, then commits while the new attempt waits.
		ghost := r.holdApplyLock("crm", "source")
		done := make(chan error, 1)
		go func() { done <- r.eng.ResolveConflict(ctx, id, "target", nil, "dave") }()
		r.waitForAdvisoryLock("crm", "the settlement never waited for the earlier attempt")
		var annID int
		require.NoError(t, ghost.QueryRow(ctx, `INSERT INTO contacts (full_name, email, phone)
			VALUES ('Ann Lee', 'ann@x.com', '111') RETURNING id`).Scan(&annID))
		_, err := ghost.Exec(ctx, `INSERT INTO tandem.applied (sync_id, side, run_id, result) VALUES ($1, 'source', $2, $3)`,
			fmt.Sprintf("contacts#conflict:%d", id), id,
			fmt.Sprintf(`{"insert": {"email": "ann@x.com", "full_name": "Ann Lee", "phone": "111"}, "created": {"id": %d}}`, annID))
		require.NoError(t, err)
		require.NoError(t, ghost.Commit(ctx))

		require.NoError(t, <-done)
		require.Equal(t, []string{"ann@x.com|111", "bob@x.com|200"}, r.rows("crm", "SELECT email, phone FROM contacts ORDER BY email"), "Ann re-created once")
		require.Equal(t, []string{`{"id": 2}|{"id": 2}`, fmt.Sprintf(`{"id": %d}|{"id": 1}`, annID)},
			r.ctlRows("SELECT source_key::text, target_key::text FROM tandem.links ORDER BY source_key"))
		r.idle("contacts")
	})
	t.Run("the nodes committed, the control database did not", func(t *testing.T) {
		t.Parallel()
		r, id := deleted(t)
		// The control database refuses to record the resolution once.
		r.ctl.Exec(t, `CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'control went away'; END $$;
			CREATE TRIGGER refuse BEFORE UPDATE ON tandem.sync_conflicts FOR EACH ROW EXECUTE FUNCTION refuse()`)
		require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "target", nil, "dave"), "applied to both nodes, but")
		require.Equal(t, []string{"ann@x.com|111", "bob@x.com|200"}, r.rows("crm", "SELECT email, phone FROM contacts ORDER BY email"))
		r.ctl.Exec(t, `DROP TRIGGER refuse ON tandem.sync_conflicts`)

		require.ErrorContains(t, r.eng.ResolveConflict(ctx, id, "source", nil, "dave"), "already applied here with another decision")
		require.NoError(t, r.eng.ResolveConflict(ctx, id, "target", nil, "dave"), "the same decision again completes it")
		require.Equal(t, []string{"ann@x.com|111", "bob@x.com|200"}, r.rows("crm", "SELECT email, phone FROM contacts ORDER BY email"), "Ann re-created once")
		require.Equal(t, []string{`{"id": 2}|{"id": 2}`, `{"id": 3}|{"id": 1}`},
			r.ctlRows("SELECT source_key::text, target_key::text FROM tandem.links ORDER BY source_key"))
		require.Equal(t, []string{"resolved|manual:target"}, r.ctlRows(`SELECT status, resolution FROM tandem.sync_conflicts WHERE id = $1`, id))
		for _, node := range []string{"crm", "hubspot"} {
			require.Zero(t, r.nodeInt(node, `SELECT count(*) FROM tandem.applied WHERE sync_id LIKE '%#conflict:%'`),
				"%s keeps the settlement's record after the control database has the conflict resolved", node)
		}
		r.idle("contacts")
	})
}

func TestResolveConflictThatDoesNotExist(t *testing.T) {
	t.Parallel()
	r := manualRig(t)
	err := r.eng.ResolveConflict(context.Background(), 999, "source", nil, "erin")
	require.ErrorIs(t, err, engine.ErrNoConflict)
	require.EqualError(t, err, "no conflict 999")
	_, err = r.eng.Conflict(context.Background(), 999)
	require.ErrorIs(t, err, engine.ErrNoConflict)
}
