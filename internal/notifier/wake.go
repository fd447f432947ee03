package notifier

import (
	"context"
	"time"
)

// Wake says which nodes (and tables) have news. For every node in Nodes,
// Tables holds its set of "schema.table" names, possibly empty (a reconnect,
// or a NOTIFY without payload).
type Wake struct {
	Nodes  map[string]bool            // node name -> true
	Tables map[string]map[string]bool // node -> "schema.table" set
	// Reconnected is true when a node's LISTEN connection was re-established:
	// notifications may have been missed while it was down, so the engine
	// must poll the nodes of this Wake.
	Reconnected bool
}

// event is one thing a listener heard: a notification, or that it listens
// again after a reconnect.
type event struct {
	node        string
	table       string // "" for a reconnect or an empty payload
	reconnected bool
}

func newWake() Wake {
	return Wake{Nodes: map[string]bool{}, Tables: map[string]map[string]bool{}}
}

func (w *Wake) add(e event) {
	w.addNode(e.node)
	if e.table != "" {
		w.Tables[e.node][e.table] = true
	}
	w.Reconnected = w.Reconnected || e.reconnected
}

func (w *Wake) addNode(node string) {
	w.Nodes[node] = true
	if w.Tables[node] == nil {
		w.Tables[node] = map[string]bool{}
	}
}

// merge adds everything of o to w.
func (w *Wake) merge(o Wake) {
	for node := range o.Nodes {
		w.addNode(node)
	}
	for node, tables := range o.Tables {
		w.addNode(node)
		for t := range tables {
			w.Tables[node][t] = true
		}
	}
	w.Reconnected = w.Reconnected || o.Reconnected
}

// send hands e to the collector, or reports false once ctx ends.
func send(ctx context.Context, events chan<- event, e event) bool {
	select {
	case events <- e:
		return true
	case <-ctx.Done():
		return false
	}
}

// collect gathers events into wakes. The first event after a quiet spell
// goes out at once (an isolated change waits for nothing); events arriving
// within debounce of a wake are gathered and go out together when the
// period ends, so a burst is one wake per period. It never blocks on out,
// so listeners never wait on the consumer.
func collect(ctx context.Context, debounce time.Duration, events <-chan event, out chan Wake) {
	timer := time.NewTimer(debounce)
	timer.Stop()
	defer timer.Stop()
	var pending *Wake
	cooling := false // a wake went out less than debounce ago
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			if pending == nil {
				w := newWake()
				pending = &w
			}
			pending.add(e)
			if !cooling {
				deliver(out, *pending)
				pending, cooling = nil, true
				timer.Reset(debounce)
			}
		case <-timer.C:
			if pending == nil {
				cooling = false
				continue
			}
			deliver(out, *pending)
			pending = nil
			timer.Reset(debounce)
		}
	}
}

// deliver puts w on out without blocking: when the consumer has not taken
// the previous Wake yet, w is merged into it. deliver must be out's only
// sender, so once the buffer has been emptied the send cannot block.
func deliver(out chan Wake, w Wake) {
	select {
	case out <- w:
		return
	default:
	}
	select {
	case old := <-out: // the consumer never saw old: safe to reuse
		old.merge(w)
		w = old
	default: // the consumer took it meanwhile
	}
	out <- w
}
