package config

import (
	"slices"
	"strings"
	"time"
)

// Capture modes: how a node's changes are captured.
const (
	CaptureTrigger = "trigger" // statement-level triggers fill tandem.change_queue
	CaptureWAL     = "wal"     // logical replication
)

// Directions in which a sync copies changes.
const (
	DirectionBidirectional  = "bidirectional"
	DirectionSourceToTarget = "source_to_target"
	DirectionTargetToSource = "target_to_source"
)

// Conflict strategies: what a sync does when both sides changed the same fields.
const (
	ConflictLatestWins = "latest_wins" // by capture time, ties broken by node name
	ConflictSourceWins = "source_wins"
	ConflictTargetWins = "target_wins"
	ConflictManual     = "manual" // queued in tandem.sync_conflicts for a person
)

// Transforms a field may apply on its way from source to target.
const (
	TransformRename    = "" // copy the value as it is
	TransformUppercase = "uppercase"
	TransformLowercase = "lowercase"
	TransformTrim      = "trim"
	TransformToNumber  = "to_number"
	TransformToString  = "to_string"
	TransformSplitName = "split_name" // one name column into first and last name
)

// DefaultInterval is how often a sync polls when no NOTIFY wakes it sooner.
const DefaultInterval = 5 * time.Second

// DefaultChangeLogRetention is how long the control database keeps a change
// in tandem.change_log after it was taken, once every sync that reads its
// table has dealt with it.
const DefaultChangeLogRetention = 7 * 24 * time.Hour

// DefaultSchema is the schema of a table written without one.
const DefaultSchema = "public"

// Config is a loaded and validated tandem.yaml.
type Config struct {
	Path      string           // file path as given to Load, used in messages
	Control   string           // control database DSN
	Nodes     map[string]*Node // by name
	NodeNames []string         // node names in file order
	Syncs     []*Sync          // in file order
	// ChangeLogRetention (yaml key change_log_retention, default
	// DefaultChangeLogRetention; 0: keep every change) is how long a change
	// stays in tandem.change_log once every sync reading its table has
	// dealt with it. Changes a sync has not dealt with are always kept.
	ChangeLogRetention time.Duration
	// Window (yaml key window, MinWindow to MaxWindow; 0 when not set: the
	// engine's DefaultWindow) bounds the changes per side one run takes; an
	// initial sync's run reads half as many rows of a side.
	Window int
}

// DefaultWindow is the engine's window when the file sets none.
const DefaultWindow = 20000

// The bounds of window: a run takes at least two changes per side, and its
// memory grows with the window.
const (
	MinWindow = 2
	MaxWindow = 1000000
)

// Node is one database that takes part in syncs.
type Node struct {
	Name       string
	DSN        string
	Capture    string     // CaptureTrigger (default) or CaptureWAL
	QueueLimit QueueLimit // yaml key queue_limit; zero values mean no limit
	// MaxRetainedWAL (yaml key max_retained_wal, bytes; 0: no limit) caps the
	// WAL a capture: wal node's slot may hold back: past it, the syncs of
	// the node fail loudly instead of the node's disk filling silently.
	MaxRetainedWAL int64
	Line           int // line of the node's key in the file
}

// QueueLimit bounds how much a node's change queue may hold before tandem treats it as
// stuck. Zero means no limit.
type QueueLimit struct {
	Rows int64         // yaml key rows
	Age  time.Duration // yaml key age, a Go duration string like 24h or 90m
}

// Sync is one configured link between a table on a source node and a table on a target
// node.
type Sync struct {
	ID        string
	Entity    string // label for reporting; defaults to the target table's name
	Source    Endpoint
	Target    Endpoint
	Direction string        // one of the Direction constants; default bidirectional
	Conflict  string        // one of the Conflict constants; default latest_wins
	Initial   string        // how the initial sync settles rows that differ; default Conflict
	Interval  time.Duration // fallback poll; default DefaultInterval
	Match     []string      // mapped columns that pair up existing rows on both sides
	Fields    []Field
	Line      int // line of the sync's list item
}

// Endpoint is one side of a sync: a table on a node.
type Endpoint struct {
	Node  string
	Table string   // as written: "schema.table" or "table"
	Key   []string // configured key columns; empty means the primary key
	Line  int      // line of its table key, where catalog problems about the table belong
}

// Schema returns the schema part of the table, DefaultSchema when there is none.
func (e Endpoint) Schema() string {
	if schema, _, ok := strings.Cut(e.Table, "."); ok {
		return schema
	}
	return DefaultSchema
}

// Name returns the table part of the table, without its schema.
func (e Endpoint) Name() string {
	if _, name, ok := strings.Cut(e.Table, "."); ok {
		return name
	}
	return e.Table
}

// Qualified returns the table as schema.table, as capture names it in
// change_queue and change_log.
func (e Endpoint) Qualified() string { return e.Schema() + "." + e.Name() }

// Field maps source columns to target columns, through a transform.
type Field struct {
	Source    []string // in YAML a column name or a list of them
	Target    []string // in YAML a column name or a list of them
	Transform string   // one of the Transform constants
	Line      int      // line of the field's list item
}

// TableRef is one table on one node that some sync reads or writes.
type TableRef struct {
	Node   string
	Schema string
	Name   string
	Key    []string // the configured key, if any sync gives one
	Line   int      // line of the first endpoint that names the table
}

// TablesOnNode returns the tables that syncs use on node, each once, in file order.
// Installing capture needs exactly this list.
func (c *Config) TablesOnNode(node string) []TableRef {
	var refs []TableRef
	index := map[[2]string]int{}
	for _, s := range c.Syncs {
		for _, e := range []Endpoint{s.Source, s.Target} {
			if e.Node != node {
				continue
			}
			id := [2]string{e.Schema(), e.Name()}
			i, seen := index[id]
			if !seen {
				index[id] = len(refs)
				refs = append(refs, TableRef{Node: node, Schema: id[0], Name: id[1], Line: e.Line})
				i = len(refs) - 1
			}
			if refs[i].Key == nil && len(e.Key) > 0 {
				refs[i].Key = slices.Clone(e.Key)
			}
		}
	}
	return refs
}

// SyncByID returns the sync with the given id.
func (c *Config) SyncByID(id string) (*Sync, bool) {
	for _, s := range c.Syncs {
		if s.ID == id {
			return s, true
		}
	}
	return nil, false
}
