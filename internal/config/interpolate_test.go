package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInterpolate(t *testing.T) {
	t.Parallel()
	getenv := env(map[string]string{"HOST": "db.example", "EMPTY": "", "PASS": "p$a${X}ss"})
	for _, tc := range []struct {
		name, in, out string
		errs          []string
	}{
		{"no variables", "postgres://localhost/db", "postgres://localhost/db", nil},
		{"set", "postgres://${HOST}:5432/db", "postgres://db.example:5432/db", nil},
		{"set, with a default", "${HOST:-localhost}", "db.example", nil},
		{"unset, with a default", "${PORT:-5432}", "5432", nil},
		{"empty, with a default", "${EMPTY:-fallback}", "fallback", nil},
		{"empty, no default", "x${EMPTY}y", "xy", nil},
		{"empty default", "a${PORT:-}b", "ab", nil},
		{"default with colons", "${URL:-postgres://h:1/d}", "postgres://h:1/d", nil},
		{"values are not expanded again", "${PASS}", "p$a${X}ss", nil},
		{"dollar dollar", "pa$$word$${HOST}", "pa$word${HOST}", nil},
		{"lone dollars are kept", "a$b $ c$", "a$b $ c$", nil},
		{"unset", "${NOPE}/${HOST}/${ALSO_NOPE}", "/db.example/", []string{
			"environment variable NOPE is not set: set it, or give a default with ${NOPE:-value}",
			"environment variable ALSO_NOPE is not set: set it, or give a default with ${ALSO_NOPE:-value}",
		}},
		{"unterminated", "x${HOST", "x", []string{`unterminated "${": close it with "}", or write $$ for a literal $`}},
		{"bad name", "${1X}${}${A-B}", "", []string{
			`bad variable name "1X" in ${...}: use letters, digits and _, not starting with a digit; write $$ for a literal $`,
			`bad variable name "" in ${...}: use letters, digits and _, not starting with a digit; write $$ for a literal $`,
			`bad variable name "A-B" in ${...}: use letters, digits and _, not starting with a digit; write $$ for a literal $`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, errs := interpolate(tc.in, getenv)
			require.Equal(t, tc.out, out)
			require.Equal(t, tc.errs, errs)
		})
	}
}

// TestParseInterpolation checks interpolation through Parse: values only, never keys,
// with every unset variable reported at its line and no value in any message.
func TestParseInterpolation(t *testing.T) {
	t.Parallel()
	const file = `control: ${CONTROL:-postgres://localhost/control}
nodes:
  ${NODE}: { dsn: "postgres://u:${PASSWORD}@h/crm", capture: "${CAPTURE:-wal}" }
  b: { dsn: "${B_URL}", queue_limit: { rows: "${ROWS}", age: "${AGE:-1h}" } }
syncs:
  - id: s1
    source: { node: "${NODE}", table: "${SCHEMA:-public}.t1" }
    target: { node: b, table: t2 }
    interval: ${INTERVAL:-10s}
    fields: [{ source: price, target: price_$$ }]
`
	t.Run("all set", func(t *testing.T) {
		t.Parallel()
		_, err := Parse("tandem.yaml", []byte(file), env(map[string]string{
			"NODE": "crm", "PASSWORD": "hunter2", "B_URL": "postgres://b", "ROWS": "500", "INTERVAL": "1m",
		}))
		require.Error(t, err, "${NODE} is a key, so the source node must be unknown")
		require.Equal(t, `tandem.yaml:7: syncs[0].source.node: unknown node "crm" (known: ${NODE}, b)`, err.Error())
		cfg, err := Parse("tandem.yaml", []byte(file), env(map[string]string{
			"NODE": "${NODE}", "PASSWORD": "hunter2", "B_URL": "postgres://b", "ROWS": "500", "INTERVAL": "1m",
		}))
		require.NoError(t, err)
		require.Equal(t, "postgres://localhost/control", cfg.Control)
		require.Equal(t, "postgres://u:hunter2@h/crm", cfg.Nodes["${NODE}"].DSN)
		require.Equal(t, CaptureWAL, cfg.Nodes["${NODE}"].Capture)
		require.Equal(t, QueueLimit{Rows: 500, Age: 3600e9}, cfg.Nodes["b"].QueueLimit)
		require.Equal(t, "public.t1", cfg.Syncs[0].Source.Table)
		require.Equal(t, 60e9, float64(cfg.Syncs[0].Interval))
		require.Equal(t, []string{"price_$"}, cfg.Syncs[0].Fields[0].Target)
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		_, err := Parse("tandem.yaml", []byte(file), env(map[string]string{"CAPTURE": "wal", "NODE": "${NODE}"}))
		requireProblems(t, err, []want{
			{3, "nodes.${NODE}.dsn", "environment variable PASSWORD is not set"},
			{4, "nodes.b.dsn", "environment variable B_URL is not set"},
			{4, "nodes.b.queue_limit.rows", "environment variable ROWS is not set"},
		})
	})
	t.Run("bad values from the environment", func(t *testing.T) {
		t.Parallel()
		_, err := Parse("tandem.yaml", []byte(file), env(map[string]string{
			"NODE": "${NODE}", "PASSWORD": "hunter2", "B_URL": "postgres://b", "ROWS": "lots", "INTERVAL": "often",
			"CAPTURE": "logical",
		}))
		requireProblems(t, err, []want{
			{3, "nodes.${NODE}.capture", `unknown capture mode "logical"`},
			{4, "nodes.b.queue_limit.rows", `bad number "lots"`},
			{9, "syncs[0].interval", `bad duration "often"`},
		})
		require.NotContains(t, err.Error(), "hunter2")
	})
}

// TestProblemsNeverShowDSNs checks that no problem about a connection string repeats it.
func TestProblemsNeverShowDSNs(t *testing.T) {
	t.Parallel()
	_, err := Parse("tandem.yaml", []byte(`control: [postgres://u:hunter2@h/control]
nodes:
  a: { dsn: { url: "postgres://u:hunter2@h/a" } }
  b: { dsn: "postgres://u:hunter2@h/${DB}", capture: x }
  c: { dsn: "postgres://u:hunter2@h/c${" }
`), nil)
	requireProblems(t, err, []want{
		{1, "control", "want a single value, found a list"},
		{3, "nodes.a.dsn", "want a single value, found a mapping"},
		{4, "nodes.b.dsn", "environment variable DB is not set"},
		{4, "nodes.b.capture", `unknown capture mode "x"`},
		{5, "nodes.c.dsn", `unterminated "${"`},
	})
	require.NotContains(t, err.Error(), "hunter2")
}
