package config

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

func syncKeys() []string {
	return []string{"id", "entity", "source", "target", "direction", "conflict", "initial", "interval", "match", "fields"}
}
func endpointKeys() []string { return []string{"node", "table", "key"} }
func directions() []string {
	return []string{DirectionBidirectional, DirectionSourceToTarget, DirectionTargetToSource}
}
func conflictStrategies() []string {
	return []string{ConflictLatestWins, ConflictSourceWins, ConflictTargetWins, ConflictManual}
}

// tableID names one table on one node.
type tableID struct{ node, schema, name string }

// keyUse is the first key configured for a table, and where.
type keyUse struct {
	key  []string
	line int
}

func (d *decoder) syncs(e entry) {
	if isNull(e.val) {
		return
	}
	if e.val.Kind != yaml.SequenceNode {
		d.probs.Add(e.val.Line, "syncs", "want a list of syncs, found %s", kindName(e.val))
		return
	}
	for i, n := range e.val.Content {
		if s := d.sync(fmt.Sprintf("syncs[%d]", i), deref(n)); s != nil {
			d.cfg.Syncs = append(d.cfg.Syncs, s)
		}
	}
}

func (d *decoder) sync(path string, n *yaml.Node) *Sync {
	obj, ok := d.object(n, path, syncKeys())
	if !ok {
		return nil
	}
	s := &Sync{Line: n.Line, Interval: DefaultInterval}
	s.ID = d.syncID(obj["id"], path+".id", n.Line)
	src, srcOK := d.endpoint(obj["source"], path+".source", n.Line)
	tgt, tgtOK := d.endpoint(obj["target"], path+".target", n.Line)
	s.Source, s.Target = src, tgt
	if srcOK && tgtOK && sameTable(src, tgt) {
		d.probs.Add(tgt.Line, path+".target", "source and target are the same table (%s.%s on node %s): a sync links two different tables",
			tgt.Schema(), tgt.Name(), tgt.Node)
	}
	s.Entity = d.entity(obj["entity"].val, path+".entity", tgt)
	s.Direction = d.oneOf(obj["direction"].val, path+".direction", "direction", directions(), DirectionBidirectional)
	s.Conflict = d.oneOf(obj["conflict"].val, path+".conflict", "conflict strategy", conflictStrategies(), ConflictLatestWins)
	s.Initial = d.oneOf(obj["initial"].val, path+".initial", "initial sync strategy", conflictStrategies(), s.Conflict)
	if iv, ok := d.duration(obj["interval"].val, path+".interval"); ok {
		s.Interval = iv
		if iv <= 0 {
			d.probs.Add(obj["interval"].val.Line, path+".interval", "%s is not positive: give how often to poll, like 5s", iv)
		}
	}
	fields, fieldsOK := d.fields(obj["fields"], path+".fields", n.Line)
	s.Fields = fields
	s.Match = d.match(obj["match"].val, path+".match", fields, fieldsOK)
	return s
}

func (d *decoder) syncID(e entry, path string, syncLine int) string {
	if isNull(e.val) {
		d.probs.Add(lineOf(e, syncLine), path, "missing: give the sync an id like contacts (lowercase letters, digits, _ and -)")
		return ""
	}
	id, ok := d.scalar(e.val, path)
	if !ok {
		return id
	}
	first, dup := d.ids[id]
	switch {
	case !isSyncID(id):
		d.probs.Add(e.val.Line, path, "bad id %q: use lowercase letters, digits, _ and -, starting with a letter or digit", id)
	case dup:
		d.probs.Add(e.val.Line, path, "duplicate sync id %q: it is already used at line %d; give each sync its own id", id, first)
	default:
		d.ids[id] = e.val.Line
	}
	return id
}

// entity reads the sync's reporting label, defaulting to the target table's name.
func (d *decoder) entity(v *yaml.Node, path string, target Endpoint) string {
	if s, _ := d.scalar(v, path); s != "" {
		return s
	}
	return target.Name()
}

// endpoint reads a sync's source or target. ok is true when its node and table are both
// valid, so checks that compare tables can trust them.
func (d *decoder) endpoint(e entry, path string, syncLine int) (Endpoint, bool) {
	line := lineOf(e, syncLine)
	if isNull(e.val) {
		d.probs.Add(line, path, "missing: give { node: NAME, table: schema.table }")
		return Endpoint{Line: line}, false
	}
	obj, ok := d.object(e.val, path, endpointKeys())
	if !ok {
		return Endpoint{Line: line}, false
	}
	ep := Endpoint{Line: lineOf(obj["table"], line)}
	node, nodeOK := d.nodeRef(obj["node"], path+".node", line)
	table, tableOK := d.table(obj["table"], path+".table", line)
	key, keyOK := d.key(obj["key"].val, path+".key")
	ep.Node, ep.Table, ep.Key = node, table, names(key)
	if nodeOK && tableOK && keyOK && len(key) > 0 {
		d.sameKey(ep, key[0].line, path+".key")
	}
	return ep, nodeOK && tableOK
}

func (d *decoder) nodeRef(e entry, path string, line int) (string, bool) {
	if isNull(e.val) {
		d.probs.Add(lineOf(e, line), path, "missing: name the node this table is on (%s)", d.knownNodes())
		return "", false
	}
	name, ok := d.scalar(e.val, path)
	if !ok {
		return name, false
	}
	if _, known := d.cfg.Nodes[name]; !known {
		d.probs.Add(e.val.Line, path, "unknown node %q (%s)", name, d.knownNodes())
		return name, false
	}
	return name, true
}

func (d *decoder) table(e entry, path string, line int) (string, bool) {
	if isNull(e.val) {
		d.probs.Add(lineOf(e, line), path, "missing: name the table, as name or schema.name")
		return "", false
	}
	t, ok := d.scalar(e.val, path)
	if ok && !isTableName(t) {
		d.probs.Add(e.val.Line, path, "bad table name %q: write name or schema.name, each part a letter or _ "+
			"followed by letters, digits or _, at most %d bytes, without quotes", t, maxIdentLen)
		return t, false
	}
	return t, ok
}

// key reads an endpoint's configured key columns. Missing is fine (the primary key is
// used); present but empty, or naming a column twice, is not.
func (d *decoder) key(v *yaml.Node, path string) ([]item, bool) {
	if isNull(v) {
		return nil, true
	}
	cols, ok := d.list(v, path)
	if ok && len(cols) == 0 {
		d.probs.Add(v.Line, path, "lists no columns: list the key columns, or leave key out to use the primary key")
		return nil, false
	}
	for j, c := range cols {
		if slices.ContainsFunc(cols[:j], func(o item) bool { return o.s == c.s }) {
			d.probs.Add(c.line, path, "column %q is listed twice: list each key column once", c.s)
			ok = false
		}
	}
	return cols, ok
}

// sameKey checks that every sync gives a table the same key: a table has one identity.
func (d *decoder) sameKey(ep Endpoint, line int, path string) {
	id := tableID{node: ep.Node, schema: ep.Schema(), name: ep.Name()}
	first, seen := d.keys[id]
	if !seen {
		d.keys[id] = keyUse{key: ep.Key, line: line}
		return
	}
	if !slices.Equal(first.key, ep.Key) {
		d.probs.Add(line, path, "table %s.%s on node %s has key [%s] here but [%s] at line %d: give it the same key everywhere, or leave key out",
			id.schema, id.name, id.node, strings.Join(ep.Key, ", "), strings.Join(first.key, ", "), first.line)
	}
}

func sameTable(a, b Endpoint) bool {
	return a.Node == b.Node && a.Schema() == b.Schema() && a.Name() == b.Name()
}
