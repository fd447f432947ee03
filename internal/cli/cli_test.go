package cli_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/cli"
)

func TestHelpPrintsUsage(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"help", "-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			// No config exists: help must not need one.
			r := run(t, vars{"TANDEM_CONFIG": filepath.Join(t.TempDir(), "none.yaml")}, arg)
			require.Equal(t, cli.ExitOK, r.code, r)
			require.Contains(t, r.stdout, "Usage:\n  tandem [-c FILE] COMMAND [ARGS]")
			for _, cmd := range []string{"migrate", "install NODE [--print]", "uninstall NODE", "status", "-c, --config FILE"} {
				require.Contains(t, r.stdout, cmd)
			}
			require.Empty(t, r.stderr)
		})
	}
}

func TestConfigFlagBeforeOrAfterCommand(t *testing.T) {
	t.Parallel()
	node := newNode(t, contactsDDL)
	cfg := fixture("tandem.yaml")
	missing := filepath.Join(t.TempDir(), "missing.yaml")

	cases := []struct {
		name string
		env  vars // besides the fixture's URLs
		args []string
	}{
		{"-c before the command", nil, []string{"-c", cfg, "install", "crm", "--print"}},
		{"--config before the command", nil, []string{"--config", cfg, "install", "crm", "--print"}},
		{"--config= before the command", nil, []string{"--config=" + cfg, "install", "crm", "--print"}},
		{"-c between command and node", nil, []string{"install", "-c", cfg, "crm", "--print"}},
		{"-c after the command's flags", nil, []string{"install", "crm", "--print", "-c", cfg}},
		{"--config after the command", nil, []string{"install", "--print", "crm", "--config", cfg}},
		{"TANDEM_CONFIG without -c", vars{"TANDEM_CONFIG": cfg}, []string{"install", "crm", "--print"}},
		{"-c wins over TANDEM_CONFIG", vars{"TANDEM_CONFIG": missing}, []string{"install", "crm", "--print", "-c", cfg}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			env := urls("", node.URL, "")
			for k, v := range c.env {
				env[k] = v
			}
			r := mustRun(t, env, c.args...)
			require.Contains(t, r.stdout, "-- tandem capture on node crm: version 0 -> 5")
			require.Contains(t, r.stdout, `ON "public"."contacts"`)
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nowhere", "tandem.yaml")
	cases := []struct {
		name string
		env  vars
		args []string
	}{
		{"-c", nil, []string{"-c", missing, "status"}},
		{"TANDEM_CONFIG", vars{"TANDEM_CONFIG": missing}, []string{"install", "crm"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, c.env, c.args...)
			require.Equal(t, cli.ExitUsage, r.code, r)
			require.Contains(t, r.stderr, "no configuration at "+missing)
			require.Contains(t, r.stderr, "pass -c FILE or set TANDEM_CONFIG")
		})
	}
}

func TestBadConfigListsEveryProblemWithItsLine(t *testing.T) {
	t.Parallel()
	cfg := fixture("bad.yaml")
	// Each mistake, by the text of its line and the words that must explain it.
	mistakes := []struct{ text, path, msg string }{
		{"carrier_pigeon", "nodes.hubspot.capture", "carrier_pigeon"},
		{"node: crmm", "syncs[0].source.node", `"crmm"`},
		{"both_ways", "syncs[0].direction", "both_ways"},
		{"intervall", "syncs[0]", `"intervall"`},
	}
	for _, args := range [][]string{{"status"}, {"install", "crm"}, {"migrate"}} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			r := run(t, urls("", "", ""), append([]string{"-c", cfg}, args...)...)
			require.Equal(t, cli.ExitUsage, r.code, r)

			// One problem per line, each line FILE:LINE: path: message (the
			// form editors and grep read), in line order.
			problems := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			require.Len(t, problems, len(mistakes), r)
			for i, m := range mistakes {
				prefix := fmt.Sprintf("%s:%d: %s: ", cfg, lineOf(t, cfg, m.text), m.path)
				require.True(t, strings.HasPrefix(problems[i], prefix), "problem %d: want prefix %q, got %q", i, prefix, problems[i])
				require.Contains(t, problems[i], m.msg)
			}
		})
	}
}

func TestUsageMistakes(t *testing.T) {
	t.Parallel()
	cfg := fixture("tandem.yaml")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"-c", cfg}, "tandem: no command given"},
		{"unknown command", []string{"-c", cfg, "frobnicate"}, `tandem: unknown command "frobnicate"`},
		{"-c without a file", []string{"status", "-c"}, "tandem: -c needs a file name"},
		{"install without node", []string{"-c", cfg, "install"}, "tandem: install takes exactly one node name"},
		{"install with two nodes", []string{"-c", cfg, "install", "crm", "hubspot"}, "tandem: install takes exactly one node name"},
		{"uninstall without node", []string{"-c", cfg, "uninstall", "--print"}, "tandem: uninstall takes exactly one node name"},
		{"unknown node", []string{"-c", cfg, "install", "crmm"}, `tandem: no node "crmm" in ` + cfg + " (nodes: crm, hubspot)"},
		{"unknown node to uninstall", []string{"-c", cfg, "uninstall", "nope"}, `tandem: no node "nope" in ` + cfg + " (nodes: crm, hubspot)"},
		{"unknown flag", []string{"-c", cfg, "install", "crm", "--dry-run"}, "tandem: install: flag provided but not defined: -dry-run"},
		{"status with an argument", []string{"-c", cfg, "status", "crm"}, "tandem: status takes no arguments"},
		{"migrate with an argument", []string{"-c", cfg, "migrate", "up"}, "tandem: migrate takes no arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := run(t, urls("", "", ""), c.args...)
			require.Equal(t, cli.ExitUsage, r.code, r)
			require.Contains(t, r.stderr, c.want)
			require.Empty(t, r.stdout)
		})
	}
}
