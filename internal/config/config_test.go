package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEndpointSchemaName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ table, schema, name string }{
		{"contacts", "public", "contacts"},
		{"public.contacts", "public", "contacts"},
		{"crm.people", "crm", "people"},
	} {
		e := Endpoint{Table: tc.table}
		require.Equal(t, tc.schema, e.Schema(), tc.table)
		require.Equal(t, tc.name, e.Name(), tc.table)
	}
}

func TestTablesOnNode(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(header+`  - id: s1
    source: { node: a, table: people }
    target: { node: b, table: t1 }
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: public.people, key: [person_id] }
    target: { node: b, table: crm.t1, key: id }
    fields: [{ source: x, target: y }]
  - id: s3
    source: { node: b, table: t1 }
    target: { node: a, table: orders }
    fields: [{ source: x, target: y }]
  - id: s4
    source: { node: b, table: public.t1, key: [uuid] }
    target: { node: a, table: people }
    fields: [{ source: x, target: y }]
`), nil)
	require.NoError(t, err)
	require.Equal(t, []TableRef{
		{Node: "a", Schema: "public", Name: "people", Key: []string{"person_id"}, Line: 7},
		{Node: "a", Schema: "public", Name: "orders", Line: 16},
	}, cfg.TablesOnNode("a"))
	require.Equal(t, []TableRef{
		{Node: "b", Schema: "public", Name: "t1", Key: []string{"uuid"}, Line: 8},
		{Node: "b", Schema: "crm", Name: "t1", Key: []string{"id"}, Line: 12},
	}, cfg.TablesOnNode("b"))
	require.Nil(t, cfg.TablesOnNode("c"))

	// The returned key is a copy: changing it leaves the config alone.
	cfg.TablesOnNode("a")[0].Key[0] = "changed"
	require.Equal(t, []string{"person_id"}, cfg.Syncs[1].Source.Key)
}

func TestSyncByID(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(header+oneSync+`  - id: s2
    source: { node: a, table: t3 }
    target: { node: b, table: t4 }
    fields: [{ source: x, target: y }]
`), nil)
	require.NoError(t, err)
	s, ok := cfg.SyncByID("s2")
	require.True(t, ok)
	require.Same(t, cfg.Syncs[1], s)
	require.Equal(t, "t4", s.Target.Table)
	_, ok = cfg.SyncByID("s3")
	require.False(t, ok)
}
