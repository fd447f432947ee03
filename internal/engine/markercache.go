package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// When both sides' backlogs write the same columns, every window reads the
// markers after it that write them (readLater), and the markers after a
// window are all the applies made since the backlog began: parsing each
// one's list again per window made the time grow with the square of the
// backlog. change_log rows never change, so a marker is parsed once, its
// writes kept by key, within a budget of writes per engine; a marker past
// the budget is parsed for the window that reads it and dropped.

// markerIndex is one marker's writes by key text, each in the order of the
// list, with its values as the raw JSON they came in (decoded for the keys a
// window asks for).
type markerIndex struct {
	byKey  map[string][]markerWrite
	writes int
	// Whose marker it is, where: once a window of the sync on its node
	// and table ends past it, no window reads it after itself again.
	node, table, origin string
}

// markerWrite is a markedWrite as kept: the key as listed, not decoded
// (a map per write would double what the cache holds).
type markerWrite struct {
	n    int // place in the list, from 1
	op   string
	key  json.RawMessage
	vals json.RawMessage
}

// markerCache holds parsed markers by change_log id, within a budget of
// writes. The markers after a window are the ones after the window before
// and the newest: a marker is dropped once a window ends past it, and one
// that does not fit is not kept (dropping older ones to make room would
// have every window parse again what the next one needs).
type markerCache struct {
	mu     sync.Mutex
	byID   map[int64]*markerIndex
	writes int
	budget int
	parsed int64 // markers parsed (tests)
}

func (m *markerCache) get(id int64) *markerIndex {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[id]
}

// put keeps x as marker id's if it fits.
func (m *markerCache) put(id int64, x *markerIndex) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parsed++
	if m.budget == 0 {
		m.budget = markerCacheWrites
	}
	if m.writes+x.writes > m.budget || m.byID[id] != nil {
		return
	}
	if m.byID == nil {
		m.byID = map[int64]*markerIndex{}
	}
	m.byID[id], m.writes = x, m.writes+x.writes
}

// drop forgets sync origin's markers of node's table up to id through.
func (m *markerCache) drop(node, table, origin string, through int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, x := range m.byID {
		if id <= through && x.node == node && x.table == table && x.origin == origin {
			delete(m.byID, id)
			m.writes -= x.writes
		}
	}
}

// markerCacheWrites is the engine's budget of parsed marker writes: five
// default windows' applies, about 30 MB.
const markerCacheWrites = 5 * DefaultWindow

// markedWrite is one write of an apply's marker list: its op, its key
// (decoded, and as canonical text) and its values as the raw JSON of the
// list (decoded only for the writes a window wants).
type markedWrite struct {
	op   string
	key  Values
	text string
	raw  json.RawMessage // the key as listed
	vals json.RawMessage
}

// parseMarkerList decodes the list of marker id (new #>> '{}': the text of
// a JSON string, or from earlier versions an object), in its order.
func parseMarkerList(id int64, doc []byte) ([]markedWrite, error) {
	var d struct {
		Writes []struct {
			Op   string          `json:"op"`
			Key  json.RawMessage `json:"key"`
			Vals json.RawMessage `json:"vals"`
		} `json:"writes"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("change_log %d: marker: %w", id, err)
	}
	out := make([]markedWrite, len(d.Writes))
	for i, w := range d.Writes {
		key, text, err := decodeKey(w.Key)
		if err != nil || key == nil {
			return nil, fmt.Errorf("change_log %d: marker: key %s: %v", id, w.Key, err)
		}
		out[i] = markedWrite{op: w.Op, key: key, text: text, raw: w.Key, vals: w.Vals}
	}
	return out, nil
}

// echo returns write w of marker m as the change the trigger would have
// captured for it.
func (w markedWrite) echo(m change) (change, error) {
	c := m
	c.Op, c.KeyVals, c.Key = w.op, w.key, w.text
	var err error
	if c.New, err = decodeFlat(w.vals); err != nil {
		return c, fmt.Errorf("change_log %d: marker: values of %s: %w", m.ID, w.text, err)
	}
	return c, nil
}

// parseMarker indexes a marker's list by key text.
func parseMarker(id int64, node, table, origin string, doc []byte) (*markerIndex, error) {
	ws, err := parseMarkerList(id, doc)
	if err != nil {
		return nil, err
	}
	x := &markerIndex{byKey: make(map[string][]markerWrite, len(ws)), writes: len(ws), node: node, table: table, origin: origin}
	for i, w := range ws {
		x.byKey[w.text] = append(x.byKey[w.text], markerWrite{n: i + 1, op: w.op, key: w.raw, vals: w.vals})
	}
	return x, nil
}

// markedLater returns the writes to the keys in pending of the sync's
// markers on side s in ids (through, own] whose summary says they may write
// one of cols or a whole row, each as the echo the trigger would have
// captured, in capture order (by id, then by place in the list).
func (r *syncRun) markedLater(ctx context.Context, q pgx.Tx, s *side, keys, cols []string, through, own int64) ([]change, error) {
	type markerRef struct {
		id  int64
		at  time.Time
		org string
	}
	// A marker's list is the text of a JSON string (earlier versions: an
	// object); its writes are in the order they were made. Its summary
	// (old; none from earlier versions) says whether it may write a column
	// of cols or a whole row, without parsing the list.
	rows, err := q.Query(ctx, `SELECT c.id, c.captured_at, c.origin FROM tandem.change_log c
		WHERE c.node = $1 AND c.table_name = $2 AND c.origin = $5 AND c.op = 'applied' AND c.id > $3 AND c.id <= $4
		  AND (c.old IS NULL OR (c.old ->> 'rows')::boolean OR c.old -> 'cols' ?| $6)
		ORDER BY c.id`, s.Node, s.Table, through, own, r.cfg.ID, cols)
	if err != nil {
		return nil, err
	}
	refs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (markerRef, error) {
		var m markerRef
		return m, row.Scan(&m.id, &m.at, &m.org)
	})
	if err != nil {
		return nil, err
	}
	cache := &r.e.markers
	index := make(map[int64]*markerIndex, len(refs))
	var missing []int64
	for _, m := range refs {
		if x := cache.get(m.id); x != nil {
			index[m.id] = x
		} else {
			missing = append(missing, m.id)
		}
	}
	if len(missing) > 0 {
		rows, err := q.Query(ctx, `SELECT id, new #>> '{}' FROM tandem.change_log WHERE id = ANY ($1)`, missing)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int64
			var doc []byte
			if err := rows.Scan(&id, &doc); err != nil {
				rows.Close()
				return nil, err
			}
			x, err := parseMarker(id, s.Node, s.Table, r.cfg.ID, doc)
			if err != nil {
				rows.Close()
				return nil, err
			}
			index[id] = x
			cache.put(id, x)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	var out []change
	type placed struct {
		c change
		n int
	}
	var found []placed
	for _, m := range refs {
		x := index[m.id]
		if x == nil {
			return nil, fmt.Errorf("change_log %d: marker listed but not read", m.id)
		}
		found = found[:0]
		for _, k := range keys {
			for _, w := range x.byKey[k] {
				key, err := decodeFlat(w.key)
				if err != nil {
					return nil, fmt.Errorf("change_log %d: marker: key %s: %w", m.id, w.key, err)
				}
				c, err := markedWrite{op: w.op, key: key, text: k, vals: w.vals}.echo(change{ID: m.id, CapturedAt: m.at, Origin: m.org})
				if err != nil {
					return nil, err
				}
				if c.Op == opUpdate && !slices.ContainsFunc(cols, func(col string) bool { _, ok := c.New[col]; return ok }) {
					continue
				}
				found = append(found, placed{c, w.n})
			}
		}
		slices.SortFunc(found, func(a, b placed) int { return cmp.Compare(a.n, b.n) })
		for _, f := range found {
			out = append(out, f.c)
		}
	}
	return out, nil
}
