package config

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// want is one expected problem: its exact line and path, and a part of its message.
type want struct {
	line int
	path string
	msg  string
}

// requireProblems checks that err is a *Problems holding exactly wants, in order.
func requireProblems(t *testing.T, err error, wants []want) {
	t.Helper()
	var probs *Problems
	require.ErrorAs(t, err, &probs)
	got := make([]string, len(probs.List))
	for i, p := range probs.List {
		got[i] = fmt.Sprintf("%d %s", p.Line, p.Path)
	}
	exp := make([]string, len(wants))
	for i, w := range wants {
		exp[i] = fmt.Sprintf("%d %s", w.line, w.path)
	}
	require.Equal(t, exp, got, "problems:\n%s", probs.Error())
	for i, w := range wants {
		require.Contains(t, probs.List[i].Msg, w.msg, "problem %d", i)
	}
}

// header is lines 1-5 of the sync cases below: their bodies start at line 6.
const header = `control: postgres://control
nodes:
  a: { dsn: "postgres://a" }
  b: { dsn: "postgres://b", capture: wal, max_retained_wal: 2GB }
syncs:
`

// oneSync is a valid sync body, lines 6-10.
const oneSync = `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { source: x, target: y }
`

func TestValidateFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []want
	}{
		{"control missing", "nodes: { a: { dsn: x } }\n",
			[]want{{1, "control", "missing: set it to the control database's connection string"}}},
		{"control null", "control:\nnodes: { a: { dsn: x } }\n", []want{{1, "control", "missing"}}},
		{"control empty", "control: ${EMPTY}\nnodes: { a: { dsn: x } }\n", []want{{1, "control", "empty"}}},
		{"control is a list", "control: [x]\nnodes: { a: { dsn: x } }\n",
			[]want{{1, "control", "want a single value, found a list"}}},
		{"nodes missing", "control: x\n", []want{{1, "nodes", "no nodes: define at least one"}}},
		{"nodes empty", "control: x\nnodes: {}\n", []want{{2, "nodes", "no nodes"}}},
		{"nodes is a list", "control: x\nnodes: [a]\n", []want{{2, "nodes", "want a mapping from node name to its settings"}}},
		{"node without settings", "control: x\nnodes:\n  a:\n", []want{{3, "nodes.a", "no settings: give at least its dsn"}}},
		{"node without dsn", "control: x\nnodes:\n  a: { capture: wal }\n", []want{{3, "nodes.a.dsn", "missing"}}},
		{"node dsn empty", "control: x\nnodes:\n  a:\n    dsn: ''\n", []want{{4, "nodes.a.dsn", "empty"}}},
		{"bad capture", "control: x\nnodes:\n  a: { dsn: x, capture: logical }\n",
			[]want{{3, "nodes.a.capture", `unknown capture mode "logical": use one of trigger, wal`}}},
		{"bad queue limit", "control: x\nnodes:\n  a:\n    dsn: x\n    queue_limit:\n      rows: many\n      age: forever\n",
			[]want{{6, "nodes.a.queue_limit.rows", `bad number "many"`}, {7, "nodes.a.queue_limit.age", `bad duration "forever"`}}},
		{"negative queue limit", "control: x\nnodes:\n  a: { dsn: x, queue_limit: { rows: -1, age: -1h } }\n",
			[]want{{3, "nodes.a.queue_limit.rows", "-1 is negative"}, {3, "nodes.a.queue_limit.age", "-1h0m0s is negative"}}},
		{"bad retained WAL cap", "control: x\nnodes:\n  a: { dsn: x, capture: wal, max_retained_wal: lots }\n  b: { dsn: x, capture: wal, max_retained_wal: -5GB }\n",
			[]want{{3, "nodes.a.max_retained_wal", `bad size "lots"`}, {4, "nodes.b.max_retained_wal", "-5GB is negative"}}},
		{"retained WAL cap on a trigger node", "control: x\nnodes:\n  a: { dsn: x, max_retained_wal: 1GB }\n",
			[]want{{3, "nodes.a.max_retained_wal", "only a node with capture: wal has a replication slot to cap"}}},
		{"bad change_log retention", "control: x\nnodes: { a: { dsn: x } }\nchange_log_retention: 7d\n",
			[]want{{3, "change_log_retention", `bad duration "7d": write a number and a unit, like 5s, 90m or 24h`}}},
		{"negative change_log retention", "control: x\nnodes: { a: { dsn: x } }\nchange_log_retention: -1h\n",
			[]want{{3, "change_log_retention", "-1h0m0s is negative: use a duration like 168h, or 0 to keep every change"}}},
		{"bad window", "control: x\nnodes: { a: { dsn: x } }\nwindow: lots\n",
			[]want{{3, "window", `bad number "lots": want a whole number like 20000`}}},
		{"window out of range", "control: x\nnodes: { a: { dsn: x } }\nwindow: 1\n",
			[]want{{3, "window", "1 is out of range: a run takes from 2 to 1000000 changes per side (leave it out for 20000)"}}},
		{"duplicate node", "control: x\nnodes:\n  a: { dsn: x }\n  a: { dsn: y }\n",
			[]want{{4, "nodes", `duplicate key "a": it is already set at line 3`}}},
		{"unknown top-level key", "control: x\nnodes: { a: { dsn: x } }\nsync: []\n",
			[]want{{3, "", `unknown key "sync": did you mean "syncs"?`}}},
		{"unknown node key", "control: x\nnodes:\n  a: { dsn: x, password: y }\n",
			[]want{{3, "nodes.a", `unknown key "password": the keys here are dsn, capture, queue_limit, max_retained_wal`}}},
		{"syncs not a list", "control: x\nnodes: { a: { dsn: x } }\nsyncs: { id: s }\n",
			[]want{{3, "syncs", "want a list of syncs, found a mapping"}}},
		{"sync not a mapping", "control: x\nnodes: { a: { dsn: x } }\nsyncs:\n  - s1\n",
			[]want{{4, "syncs[0]", "want a mapping with keys id, entity, source"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("tandem.yaml", []byte(tc.yaml), env(map[string]string{"EMPTY": ""}))
			requireProblems(t, err, tc.want)
		})
	}
}

func TestValidateSync(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       []want
	}{
		{"id missing", `  - source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{6, "syncs[0].id", "missing: give the sync an id"}}},
		{"id not lowercase", `  - id: Contacts
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{6, "syncs[0].id", `bad id "Contacts": use lowercase letters, digits, _ and -`}}},
		{"id starts with dash", `  - id: -x
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{6, "syncs[0].id", `bad id "-x"`}}},
		{"id duplicate", oneSync + oneSync,
			[]want{{11, "syncs[1].id", `duplicate sync id "s1": it is already used at line 6`}}},
		{"unknown source node", `  - id: s1
    source: { node: crmm, table: t1 }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{7, "syncs[0].source.node", `unknown node "crmm" (known: a, b)`}}},
		{"endpoint node missing", `  - id: s1
    source: { table: t1 }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{7, "syncs[0].source.node", "missing: name the node this table is on (known: a, b)"}}},
		{"target missing", `  - id: s1
    source: { node: a, table: t1 }
    fields: [{ source: x, target: y }]
`, []want{{6, "syncs[0].target", "missing: give { node: NAME, table: schema.table }"}}},
		{"table missing", `  - id: s1
    source:
      node: a
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
`, []want{{7, "syncs[0].source.table", "missing: name the table"}}},
		{"bad table names", `  - id: s1
    source: { node: a, table: public.contacts.old }
    target: { node: b, table: "my table" }
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: '"Quoted"' }
    target: { node: b, table: 1table }
    fields: [{ source: x, target: y }]
  - id: s3
    source: { node: a, table: .t }
    target: { node: b, table: ` + fmt.Sprintf("t%063d", 0) + ` }
    fields: [{ source: x, target: y }]
`, []want{
			{7, "syncs[0].source.table", `bad table name "public.contacts.old": write name or schema.name`},
			{8, "syncs[0].target.table", `bad table name "my table"`},
			{11, "syncs[1].source.table", `bad table name "\"Quoted\""`},
			{12, "syncs[1].target.table", `bad table name "1table"`},
			{15, "syncs[2].source.table", `bad table name ".t"`},
			{16, "syncs[2].target.table", "at most 63 bytes"},
		}},
		{"same table on both sides", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: a, table: public.t1 }
    fields: [{ source: x, target: y }]
`, []want{{8, "syncs[0].target", "source and target are the same table (public.t1 on node a)"}}},
		{"same table name on different nodes is fine, and so on one node in two schemas", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: a, table: other.t1 }
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: t1 }
    target: { node: b, table: t1 }
    fields: [{ source: x, target: y }]
  - id: s3
    source: { node: a, table: t1 }
    target: { node: a, table: t1 }
    fields: [{ source: x, target: y }]
`, []want{{16, "syncs[2].target", "same table"}}},
		{"bad direction", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    direction: both
    fields: [{ source: x, target: y }]
`, []want{{9, "syncs[0].direction", `unknown direction "both": use one of bidirectional, source_to_target, target_to_source`}}},
		{"bad conflict", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    conflict: newest
    fields: [{ source: x, target: y }]
`, []want{{9, "syncs[0].conflict", `unknown conflict strategy "newest": use one of latest_wins, source_wins, target_wins, manual`}}},
		{"bad intervals", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    interval: 5
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: t3 }
    target: { node: b, table: t4 }
    interval: 0s
    fields: [{ source: x, target: y }]
  - id: s3
    source: { node: a, table: t5 }
    target: { node: b, table: t6 }
    interval: -1m
    fields: [{ source: x, target: y }]
`, []want{
			{9, "syncs[0].interval", `bad duration "5": write a number and a unit, like 5s, 90m or 24h`},
			{14, "syncs[1].interval", "0s is not positive"},
			{19, "syncs[2].interval", "-1m0s is not positive"},
		}},
		{"fields missing", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
`, []want{{6, "syncs[0].fields", "no fields: map at least one column"}}},
		{"fields empty", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields: []
`, []want{{9, "syncs[0].fields", "no fields"}}},
		{"field source missing, target empty", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { target: y }
      - { source: x, target: [] }
      - { source: [w, ""], target: z }
`, []want{
			{10, "syncs[0].fields[0].source", "missing: name the source column"},
			{11, "syncs[0].fields[1].target", "empty: name the target column"},
			{12, "syncs[0].fields[2].source[1]", "empty column name"},
		}},
		{"bad transform", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { source: x, target: y, transform: titlecase }
`, []want{{10, "syncs[0].fields[0].transform", `unknown transform "titlecase": use one of uppercase, lowercase, trim, to_number, to_string, split_name`}}},
		{"transform arity", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { source: name, target: first, transform: split_name }
      - { source: email, target: [e1, e2], transform: lowercase }
      - { source: [a1, a2], target: addr }
      - { source: [n1, n2], target: [f, l], transform: split_name }
`, []want{
			{10, "syncs[0].fields[0]", "split_name maps 1 source column to 2 target columns; this field has 1 source and 1 target"},
			{11, "syncs[0].fields[1]", "transform lowercase maps 1 source column to 1 target column; this field has 1 source and 2 target"},
			{12, "syncs[0].fields[2]", "a field without transform maps 1 source column to 1 target column; this field has 2 source and 1 target"},
			{13, "syncs[0].fields[3]", "split_name maps 1 source column to 2 target columns; this field has 2 source and 2 target"},
		}},
		{"column mapped twice", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { source: email, target: email }
      - { source: email, target: email2 }
      - { source: email3, target: email }
      - { source: name, target: [first, first], transform: split_name }
`, []want{
			{11, "syncs[0].fields[1].source", `source column "email" is already mapped at line 10`},
			{12, "syncs[0].fields[2].target", `target column "email" is already mapped at line 10`},
			{13, "syncs[0].fields[3].target", `target column "first" is already mapped at line 13`},
		}},
		{"match names an unmapped column", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    match:
      - email
      - mail
    fields:
      - { source: email, target: e_mail }
`, []want{{11, "syncs[0].match", `column "mail" is not mapped: match names a source or target column of this sync's fields (mapped: email, e_mail)`}}},
		{"match on a target column", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    match: [e_mail, name]
    fields:
      - { source: email, target: e_mail }
      - { source: name, target: name }
  - id: s2
    source: { node: a, table: t3 }
    target: { node: b, table: t4 }
    match: []
    fields:
      - { source: email, target: e_mail }
`, []want{{16, "syncs[1].match", "lists no columns"}}},
		{"match names one field twice", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    match:
      - e_mail
      - name
      - email
      - e_mail
    fields:
      - { source: email, target: e_mail }
      - { source: name, target: name }
`, []want{
			{12, "syncs[0].match", `column "email" is the field email -> e_mail again (named as "e_mail"): list each field once`},
			{13, "syncs[0].match", `column "e_mail" is the field email -> e_mail again (named as "e_mail"): list each field once`},
		}},
		{"match on a split column, and a bad initial strategy", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    match: [full_name]
    initial: newest
    fields:
      - { source: full_name, target: [first, last], transform: split_name }
`, []want{
			{9, "syncs[0].match", `column "full_name" is in a field that maps 1 column(s) to 2: match takes columns of one-to-one fields`},
			{10, "syncs[0].initial", `unknown initial sync strategy "newest"`},
		}},
		{"different keys for one table", `  - id: s1
    source: { node: a, table: t1, key: [id] }
    target: { node: b, table: t2 }
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: public.t1, key: [uuid] }
    target: { node: b, table: t3 }
    fields: [{ source: x, target: y }]
  - id: s3
    source: { node: a, table: t1 }
    target: { node: b, table: t4 }
    fields: [{ source: x, target: y }]
  - id: s4
    source: { node: a, table: t1, key: id }
    target: { node: b, table: t5 }
    fields: [{ source: x, target: y }]
`, []want{{11, "syncs[1].source.key", "table public.t1 on node a has key [uuid] here but [id] at line 7"}}},
		{"bad key lists", `  - id: s1
    source: { node: a, table: t1, key: [] }
    target: { node: b, table: t2, key: [id, ""] }
    fields: [{ source: x, target: y }]
  - id: s2
    source: { node: a, table: t3, key: [id, id] }
    target: { node: b, table: t4, key: "" }
    fields: [{ source: x, target: y }]
`, []want{
			{7, "syncs[0].source.key", "lists no columns: list the key columns, or leave key out"},
			{8, "syncs[0].target.key[1]", "empty column name"},
			{11, "syncs[1].source.key", `column "id" is listed twice`},
			{12, "syncs[1].target.key", "lists no columns"},
		}},
		{"unknown keys everywhere", `  - id: s1
    intervall: 5s
    source: { node: a, tabel: t1, table: t1 }
    target: { node: b, table: t2 }
    fields:
      - { source: x, target: y, transfrom: trim }
`, []want{
			{7, "syncs[0]", `unknown key "intervall": did you mean "interval"?`},
			{8, "syncs[0].source", `unknown key "tabel": did you mean "table"?`},
			{11, "syncs[0].fields[0]", `unknown key "transfrom": did you mean "transform"?`},
		}},
		{"wrong types", `  - id: [s1]
    entity: { x: 1 }
    source: [a, t1]
    target: { node: b, table: t2 }
    match: { email: 1 }
    fields:
      - { source: { x: 1 }, target: y }
      - z
`, []want{
			{6, "syncs[0].id", "want a single value, found a list"},
			{7, "syncs[0].entity", "want a single value, found a mapping"},
			{8, "syncs[0].source", "want a mapping with keys node, table, key, found a list"},
			{10, "syncs[0].match", "want a column name or a list of them, found a mapping"},
			{12, "syncs[0].fields[0].source", "want a column name or a list of them, found a mapping"},
			{13, "syncs[0].fields[1]", "want a mapping with keys source, target, transform, found a single value"},
		}},
		{"duplicate key in a sync", `  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    source: { node: a, table: t3 }
    fields: [{ source: x, target: y }]
`, []want{{9, "syncs[0]", `duplicate key "source": it is already set at line 7; keep one`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("tandem.yaml", []byte(header+tc.body), nil)
			requireProblems(t, err, tc.want)
		})
	}
}

func TestValidateAcceptsFlexibleForms(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(header+`  - id: s1-a_2
    source: { node: a, table: t1, key: id }
    target: { node: b, table: _t2, key: [k1, k2] }
    match: y
    interval: 1h30m
    fields:
      - source: x
        target: [y]
      - { source: [n], target: [f, l], transform: split_name }
`), nil)
	require.NoError(t, err)
	s := cfg.Syncs[0]
	require.Equal(t, []string{"id"}, s.Source.Key)
	require.Equal(t, []string{"k1", "k2"}, s.Target.Key)
	require.Equal(t, []string{"y"}, s.Match)
	require.Equal(t, 90*60e9, float64(s.Interval))
	require.Equal(t, []Field{
		{Source: []string{"x"}, Target: []string{"y"}, Line: 12},
		{Source: []string{"n"}, Target: []string{"f", "l"}, Transform: TransformSplitName, Line: 14},
	}, s.Fields)
	require.Equal(t, CaptureWAL, cfg.Nodes["b"].Capture)
	require.Equal(t, int64(2)<<30, cfg.Nodes["b"].MaxRetainedWAL)
}

// Two fields written on one line are two fields: match may name both.
func TestValidateMatchOnFieldsOfOneLine(t *testing.T) {
	t.Parallel()
	cfg, err := Parse("tandem.yaml", []byte(header+`  - id: s1
    source: { node: a, table: t1 }
    target: { node: b, table: t2 }
    match: [email, name]
    fields: [{ source: email, target: e_mail }, { source: name, target: name }]
`), nil)
	require.NoError(t, err)
	require.Equal(t, []string{"email", "name"}, cfg.Syncs[0].Match)
}
