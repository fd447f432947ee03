package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/engine"
)

// A key with a timestamptz column, written by sessions in different time
// zones on both nodes: the captured keys, the keys the engine reads back
// and the links all render in UTC, so an edit reaches the row it was made
// to, not a second one, and none is lost.
func TestKeysWrittenInAnyTimeZoneMatch(t *testing.T) {
	t.Parallel()
	const ddl = `CREATE TABLE events (id bigint, at timestamptz, name text, PRIMARY KEY (id, at))`
	r := newRig(t, sameTableYAML("events", "", "id", "at", "name"), map[string]string{"crm": ddl, "hubspot": ddl})
	// Neither node's own default is UTC: the engine's sessions must set it.
	for node, zone := range map[string]string{"crm": "Asia/Kolkata", "hubspot": "America/Sao_Paulo"} {
		r.exec(node, fmt.Sprintf("ALTER DATABASE %s SET TimeZone = '%s'", pgx.Identifier{r.nodes[node].Name}.Sanitize(), zone))
		r.nodes[node].Pool.Reset()
		r.eng.Nodes[node].Reset()
	}
	inZone := func(node, zone, sql string) {
		r.exec(node, "BEGIN; SET LOCAL TimeZone = '"+zone+"'; "+sql+"; COMMIT")
	}
	inZone("crm", "Asia/Tokyo", `INSERT INTO events VALUES (1, '2024-05-01 10:00:00+00', 'made in Tokyo')`)
	require.Equal(t, 1, r.run("events").Created)
	inZone("hubspot", "America/New_York", `UPDATE events SET name = 'edited in New York'`)
	require.Equal(t, 1, r.run("events").Updated)
	inZone("crm", "Australia/Adelaide", `UPDATE events SET name = 'edited in Adelaide'`)
	require.Equal(t, 1, r.run("events").Updated)
	r.idle("events")
	for _, node := range []string{"crm", "hubspot"} {
		require.Equal(t, []string{"1|2024-05-01 10:00:00+00|edited in Adelaide"},
			r.rows(node, `SELECT concat_ws('|', id, at AT TIME ZONE 'UTC' || '+00', name) FROM events`), node)
	}
	require.Equal(t, 1, r.ctlInt(`SELECT count(*) FROM tandem.links`))
	require.True(t, r.verify("events", engine.VerifyOptions{}).Clean())
}

// The engine refuses node pools whose sessions render otherwise: its keys
// would not be capture's.
func TestEngineRefusesNodeSessionsOfAnotherRendering(t *testing.T) {
	t.Parallel()
	r := newRig(t, contactsYAML(""), twoNodes())
	r.eng.Nodes["crm"] = r.nodes["crm"].Pool // the database's own settings
	_, err := r.eng.RunSync(context.Background(), "contacts", "manual")
	require.ErrorContains(t, err, "node crm: the engine's sessions run with TimeZone")
	require.ErrorContains(t, err, "engine.NodePoolConfig")
}
