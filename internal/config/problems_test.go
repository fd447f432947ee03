package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProblems(t *testing.T) {
	t.Parallel()
	var empty Problems
	require.NoError(t, empty.Err())

	p := &Problems{File: "tandem.yaml"}
	p.Add(12, "syncs[0].source.node", "unknown node %q (known: %s)", "crmm", "crm, hubspot")
	p.Add(3, "nodes.crm.dsn", "missing")
	p.Add(0, "", "no line")
	p.Add(3, "", "second on line %d", 3)
	err := p.Err()
	require.Same(t, p, err)
	require.Equal(t, `tandem.yaml: no line
tandem.yaml:3: nodes.crm.dsn: missing
tandem.yaml:3: second on line 3
tandem.yaml:12: syncs[0].source.node: unknown node "crmm" (known: crm, hubspot)`, err.Error())

	noFile := &Problems{List: []Problem{{Line: 4, Path: "control", Msg: "m"}, {Msg: "n"}}}
	require.Equal(t, "4: control: m\nn", noFile.Error())
}
