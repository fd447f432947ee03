package config

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func topKeys() []string {
	return []string{"control", "nodes", "syncs", "change_log_retention", "window"}
}
func nodeKeys() []string     { return []string{"dsn", "capture", "queue_limit", "max_retained_wal"} }
func queueKeys() []string    { return []string{"rows", "age"} }
func captureModes() []string { return []string{CaptureTrigger, CaptureWAL} }

// config reads the whole file. Nodes are read before syncs, wherever they stand, so that
// syncs can be checked against them.
func (d *decoder) config(root *yaml.Node) {
	if root.Kind != yaml.MappingNode {
		d.probs.Add(root.Line, "", "the file must be a mapping with keys control, nodes and syncs, found %s", kindName(root))
		return
	}
	obj, _ := d.object(root, "", topKeys())
	d.control(obj["control"], root.Line)
	d.nodes(obj["nodes"], root.Line)
	d.syncs(obj["syncs"])
	d.retention(obj["change_log_retention"].val)
	d.window(obj["window"].val)
}

// window reads how many changes per side one run takes.
func (d *decoder) window(v *yaml.Node) {
	const path = "window"
	if isNull(v) {
		return
	}
	s, ok := d.scalar(v, path)
	if !ok {
		return
	}
	n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
	switch {
	case err != nil:
		d.probs.Add(v.Line, path, "bad number %q: want a whole number like %d", s, DefaultWindow)
	case n < MinWindow || n > MaxWindow:
		d.probs.Add(v.Line, path, "%d is out of range: a run takes from %d to %d changes per side (leave it out for %d)", n, MinWindow, MaxWindow, DefaultWindow)
	default:
		d.cfg.Window = n
	}
}

// retention reads how long tandem.change_log keeps changes the syncs are done with.
func (d *decoder) retention(v *yaml.Node) {
	const path = "change_log_retention"
	d.cfg.ChangeLogRetention = DefaultChangeLogRetention
	if isNull(v) {
		return
	}
	keep, ok := d.duration(v, path)
	switch {
	case !ok:
	case keep < 0:
		d.probs.Add(v.Line, path, "%s is negative: use a duration like 168h, or 0 to keep every change", keep)
	default:
		d.cfg.ChangeLogRetention = keep
	}
}

// control reads the control database's DSN. Its value never appears in a message.
func (d *decoder) control(e entry, rootLine int) {
	const hint = "set it to the control database's connection string, e.g. control: ${TANDEM_CONTROL_URL}"
	if isNull(e.val) {
		d.probs.Add(lineOf(e, rootLine), "control", "missing: %s", hint)
		return
	}
	s, ok := d.scalar(e.val, "control")
	if ok && s == "" {
		d.probs.Add(e.val.Line, "control", "empty: %s", hint)
	}
	d.cfg.Control = s
}

func (d *decoder) nodes(e entry, rootLine int) {
	const hint = `define at least one, e.g. nodes: { crm: { dsn: "${CRM_URL}" } }`
	switch {
	case isNull(e.val):
		d.probs.Add(lineOf(e, rootLine), "nodes", "no nodes: %s", hint)
		return
	case e.val.Kind != yaml.MappingNode:
		d.probs.Add(e.val.Line, "nodes", "want a mapping from node name to its settings, found %s", kindName(e.val))
		return
	}
	list := d.entries(e.val, "nodes")
	if len(list) == 0 {
		d.probs.Add(e.val.Line, "nodes", "no nodes: %s", hint)
	}
	for _, ne := range list {
		d.node(ne)
	}
}

func (d *decoder) node(e entry) {
	n := &Node{Name: e.key.Value, Capture: CaptureTrigger, Line: e.key.Line}
	path := "nodes." + n.Name
	if n.Name == "" {
		d.probs.Add(n.Line, "nodes", "empty node name: give each node a name, like crm")
	}
	d.cfg.Nodes[n.Name] = n
	d.cfg.NodeNames = append(d.cfg.NodeNames, n.Name)
	if isNull(e.val) {
		d.probs.Add(n.Line, path, `no settings: give at least its dsn, e.g. { dsn: "${CRM_URL}" }`)
		return
	}
	obj, ok := d.object(e.val, path, nodeKeys())
	if !ok {
		return
	}
	n.DSN = d.dsn(obj["dsn"], path+".dsn", n.Line)
	n.Capture = d.oneOf(obj["capture"].val, path+".capture", "capture mode", captureModes(), CaptureTrigger)
	n.QueueLimit = d.queueLimit(obj["queue_limit"].val, path+".queue_limit")
	if v := obj["max_retained_wal"].val; !isNull(v) {
		n.MaxRetainedWAL = d.size(v, path+".max_retained_wal")
		if n.Capture != CaptureWAL {
			d.probs.Add(v.Line, path+".max_retained_wal", "only a node with capture: wal has a replication slot to cap; remove it or set capture: wal")
		}
	}
}

// dsn reads a node's connection string. Its value never appears in a message.
func (d *decoder) dsn(e entry, path string, nodeLine int) string {
	const hint = `set it to the node's connection string, e.g. dsn: "${CRM_URL}"`
	if isNull(e.val) {
		d.probs.Add(lineOf(e, nodeLine), path, "missing: %s", hint)
		return ""
	}
	s, ok := d.scalar(e.val, path)
	if ok && s == "" {
		d.probs.Add(e.val.Line, path, "empty: %s", hint)
	}
	return s
}

func (d *decoder) queueLimit(v *yaml.Node, path string) QueueLimit {
	if isNull(v) {
		return QueueLimit{}
	}
	obj, ok := d.object(v, path, queueKeys())
	if !ok {
		return QueueLimit{}
	}
	limit := QueueLimit{Rows: d.count(obj["rows"].val, path+".rows")}
	if age, ok := d.duration(obj["age"].val, path+".age"); ok {
		if age < 0 {
			d.probs.Add(obj["age"].val.Line, path+".age", "%s is negative: use a positive duration like 24h, or 0 for no limit", age)
		}
		limit.Age = max(age, 0)
	}
	return limit
}

// knownNodes lists the node names for messages, in file order.
func (d *decoder) knownNodes() string {
	if len(d.cfg.NodeNames) == 0 {
		return "no nodes are defined"
	}
	return "known: " + strings.Join(d.cfg.NodeNames, ", ")
}
