package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// env returns a getenv over vars, the way os.LookupEnv reads the environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// exampleEnv sets every variable testdata/config/tandem.yaml reads.
func exampleEnv() func(string) (string, bool) {
	return env(map[string]string{
		"TANDEM_CONTROL_URL": "postgres://tandem:s3cret@localhost/control",
		"CRM_URL":            "postgres://crm@localhost/crm",
		"HUBSPOT_URL":        "host=localhost dbname=hubspot",
	})
}

func testdata(name string) string { return filepath.Join("..", "..", "testdata", "config", name) }

func TestLoadExample(t *testing.T) {
	t.Parallel()
	cfg, err := Load(testdata("tandem.yaml"), exampleEnv())
	require.NoError(t, err)

	require.Equal(t, testdata("tandem.yaml"), cfg.Path)
	require.Equal(t, "postgres://tandem:s3cret@localhost/control", cfg.Control)
	require.Equal(t, []string{"crm", "hubspot"}, cfg.NodeNames)
	require.Equal(t, map[string]*Node{
		"crm": {Name: "crm", DSN: "postgres://crm@localhost/crm", Capture: CaptureTrigger,
			QueueLimit: QueueLimit{Rows: 1000000, Age: 24 * time.Hour}, Line: 4},
		"hubspot": {Name: "hubspot", DSN: "host=localhost dbname=hubspot", Capture: CaptureTrigger, Line: 5},
	}, cfg.Nodes)

	require.Equal(t, []*Sync{
		{
			ID: "contacts", Entity: "contacts",
			Source:    Endpoint{Node: "crm", Table: "public.contacts", Line: 9},
			Target:    Endpoint{Node: "hubspot", Table: "public.hs_contacts", Key: []string{"hs_id"}, Line: 10},
			Direction: DirectionBidirectional, Conflict: ConflictLatestWins, Initial: ConflictLatestWins, Interval: 5 * time.Second,
			Match: []string{"email"},
			Fields: []Field{
				{Source: []string{"full_name"}, Target: []string{"firstname", "lastname"}, Transform: TransformSplitName, Line: 16},
				{Source: []string{"email"}, Target: []string{"email"}, Transform: TransformLowercase, Line: 17},
				{Source: []string{"phone"}, Target: []string{"phone_number"}, Line: 18},
			},
			Line: 7,
		},
		{
			// entity, conflict and interval left out: their defaults.
			ID: "companies", Entity: "hs_companies",
			Source:    Endpoint{Node: "crm", Table: "companies", Key: []string{"id"}, Line: 22},
			Target:    Endpoint{Node: "hubspot", Table: "hs_companies", Line: 24},
			Direction: DirectionSourceToTarget, Conflict: ConflictLatestWins, Initial: ConflictLatestWins, Interval: DefaultInterval,
			Fields: []Field{
				{Source: []string{"name"}, Target: []string{"company_name"}, Transform: TransformTrim, Line: 27},
			},
			Line: 19,
		},
	}, cfg.Syncs)
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(`
control: postgres://control
nodes:
  a: { dsn: postgres://a }
  b: { dsn: postgres://b }
syncs:
  - id: s1
    source: { node: a, table: people }
    target: { node: b, table: crm.persons }
    fields:
      - { source: name, target: name }
`), nil)
	require.NoError(t, err)
	require.Equal(t, CaptureTrigger, cfg.Nodes["a"].Capture)
	require.Equal(t, QueueLimit{}, cfg.Nodes["a"].QueueLimit)
	s := cfg.Syncs[0]
	require.Equal(t, "persons", s.Entity)
	require.Equal(t, DirectionBidirectional, s.Direction)
	require.Equal(t, ConflictLatestWins, s.Conflict)
	require.Equal(t, 5*time.Second, s.Interval)
	require.Nil(t, s.Match)
	require.Nil(t, s.Source.Key)
	require.Equal(t, TransformRename, s.Fields[0].Transform)
	require.Equal(t, DefaultChangeLogRetention, cfg.ChangeLogRetention)
}

func TestParseChangeLogRetention(t *testing.T) {
	t.Parallel()
	for yaml, want := range map[string]time.Duration{"720h": 720 * time.Hour, "0": 0, "~": DefaultChangeLogRetention} {
		cfg, err := Parse("tandem.yaml", []byte("control: x\nnodes: { a: { dsn: x } }\nchange_log_retention: "+yaml+"\n"), nil)
		require.NoError(t, err)
		require.Equal(t, want, cfg.ChangeLogRetention, "change_log_retention: %s", yaml)
	}
}

func TestParseWindow(t *testing.T) {
	t.Parallel()
	for yaml, want := range map[string]int{"500": 500, "1_000_000": MaxWindow, "2": MinWindow, "~": 0} {
		cfg, err := Parse("tandem.yaml", []byte("control: x\nnodes: { a: { dsn: x } }\nwindow: "+yaml+"\n"), nil)
		require.NoError(t, err)
		require.Equal(t, want, cfg.Window, "window: %s", yaml)
	}
	_, err := Parse("tandem.yaml", []byte("control: x\nnodes: { a: { dsn: x } }\nwindow: 1000001\n"), nil)
	require.ErrorContains(t, err, "window: 1000001 is out of range")
}

// TestLoadBad checks that one file with many mistakes reports every one of them, each at
// its line, and nothing else.
func TestLoadBad(t *testing.T) {
	t.Parallel()
	_, err := Load(testdata("bad.yaml"), exampleEnv())
	var probs *Problems
	require.ErrorAs(t, err, &probs)
	file := testdata("bad.yaml")
	require.Equal(t, file+`:5: nodes.hubspot.dsn: environment variable MISSING_URL is not set: set it, or give a default with ${MISSING_URL:-value}
`+file+`:8: syncs[0].source.node: unknown node "crmm" (known: crm, hubspot)
`+file+`:10: syncs[0].direction: unknown direction "both_ways": use one of bidirectional, source_to_target, target_to_source
`+file+`:11: syncs[0]: unknown key "intervall": did you mean "interval"?
`+file+`:13: syncs[0].fields[0].transform: unknown transform "titlecase": use one of uppercase, lowercase, trim, to_number, to_string, split_name, or leave transform out to copy the value as it is
`+file+`:14: syncs[1].id: duplicate sync id "contacts": it is already used at line 7; give each sync its own id`,
		err.Error())
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "tandem.yaml"), nil)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "reading config: ")
}

func TestParseDocumentProblems(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []want
	}{
		{"empty", "", []want{{1, "", "the file is empty"}}},
		{"only comments", "# nothing\n", []want{{1, "", "the file is empty"}}},
		{"null document", "---\n~\n", []want{{1, "", "the file is empty"}}},
		{"list at top", "- control\n", []want{{1, "", "the file must be a mapping with keys control, nodes and syncs, found a list"}}},
		{"syntax error", "control: x\nnodes:\n  a: { dsn: x\n", []want{{3, "", "invalid YAML: did not find expected ',' or '}'"}}},
		{"bad indentation", "control: x\nnodes:\n  a:\n    dsn: x\n   capture: wal\n", []want{{5, "", "invalid YAML: "}}},
		{"unclosed quote", "control: x\nnodes:\n  a: { dsn: \"x }\n  b: { dsn: y }\n", []want{{3, "", "invalid YAML: "}}},
		{"error after a multi-line flow list", "control: x\nnodes:\n  a: { dsn: x,\n       capture: wal }\n  b: c: d\n",
			[]want{{5, "", "invalid YAML: mapping values are not allowed in this context"}}},
		{"error in a second document", "control: x\n---\na: [\n", []want{{3, "", "invalid YAML: "}}},
		{"tab", "control: x\nnodes:\n\ta: {}\n", []want{{3, "", "invalid YAML: found character that cannot start any token"}}},
		{"second document", "control: x\nnodes: { a: { dsn: x } }\n---\ncontrol: y\n", []want{{3, "", "a second YAML document"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("tandem.yaml", []byte(tc.yaml), nil)
			requireProblems(t, err, tc.want)
		})
	}
}

func TestParseAnchorsAndMerge(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(`
control: postgres://control
nodes:
  a: { dsn: postgres://a }
  b: { dsn: postgres://b }
syncs:
  - &base
    id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    conflict: manual
    fields: &fields
      - { source: x, target: y }
  - <<: *base
    id: s2
    target: { node: b, table: t3 }
    fields: *fields
`), nil)
	require.NoError(t, err)
	require.Len(t, cfg.Syncs, 2)
	s2 := cfg.Syncs[1]
	require.Equal(t, "s2", s2.ID)
	require.Equal(t, ConflictManual, s2.Conflict)
	require.Equal(t, Endpoint{Node: "a", Table: "t1", Line: 9}, s2.Source)
	require.Equal(t, Endpoint{Node: "b", Table: "t3", Line: 16}, s2.Target)
	require.Equal(t, cfg.Syncs[0].Fields, s2.Fields)
}

// TestParseMergeBomb checks that merges of merges cannot keep Parse busy: past a bound
// they stop, with a problem.
func TestParseMergeBomb(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("l0: &l0 { x: 1 }\n")
	for i := 1; i <= 9; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "l%d: &l%d { <<: [%s] }\n", i, i, strings.Repeat(p+",", 7)+p)
	}
	b.WriteString("control: x\nnodes: { a: { dsn: x } }\nsyncs:\n  - <<: *l9\n")
	_, err := Parse("tandem.yaml", []byte(b.String()), nil)
	var probs *Problems
	require.ErrorAs(t, err, &probs)
	require.Contains(t, err.Error(), "more than 1000 merges (<<) in the file")
}
