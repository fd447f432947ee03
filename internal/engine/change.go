package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tandem-sync/tandem/internal/mapping"
)

// Values is a row's columns as decoded from jsonb.
type Values = mapping.Values

// Change ops as captured.
const (
	opInsert   = "insert"
	opUpdate   = "update"
	opDelete   = "delete"
	opTruncate = "truncate"
	// opApplied is an apply's marker row: the engine's writes to a table,
	// listed once instead of captured row by row.
	opApplied = "applied"
)

// change is one row of tandem.change_log.
type change struct {
	ID         int64
	Op         string
	Key        string // canonical text of KeyVals
	KeyVals    Values
	Old, New   Values
	CapturedAt time.Time
	Origin     string
	// Quiet: one of the sync's own writes after the window, added to say
	// what the side holds now (withOwnAfter), whose overwrite of an
	// application write a later window records, if any: it records none.
	Quiet bool
	// LostOnly: such an insert or delete overwrote only these columns of
	// the window's (the application replaced the others first): the loss
	// it records is of them (nil: the whole row).
	LostOnly []string
}

// Net ops: what a side's changes to one entity amount to.
const (
	netNone   = ""
	netUpsert = "upsert"
	netDelete = "delete"
)

// netChange is what one side's changes to one entity in a window amount to.
type netChange struct {
	Side    mapping.Side
	Key     string
	KeyVals Values
	Op      string // netNone, netUpsert or netDelete
	// Created: the entity did not exist before the window; Vals is then the
	// whole row.
	Created bool
	Vals    Values               // new values of the changed columns
	Old     Values               // values before the window of the changed columns
	At      map[string]time.Time // per column: capture time of its last change
	Last    time.Time            // capture time of the last change
	Lost    []lostWrite          // application writes our own applies overwrote
	// Extra holds current values of unchanged columns that a multi-column
	// field needs (read from the node).
	Extra Values

	seen    bool // a change was folded in
	existed bool // the entity existed before the window
}

// lostWrite is an application write on a side that the sync's own apply
// then overwrote: recorded as a concurrent_apply conflict.
type lostWrite struct {
	Lost Values // the application's values (nil: its delete was undone)
	Kept Values // what the sync wrote over them (nil: the sync deleted the row)
	At   time.Time
}

// collapse folds one side's window, in capture order, into a net change per
// entity, in order of first appearance. Changes with origin self are the
// sync's own applies coming back.
func collapse(side mapping.Side, changes []change, self string) []*netChange {
	byKey := make(map[string]*netChange, len(changes))
	order := make([]*netChange, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		if c.Op == opTruncate {
			continue // handled by the caller
		}
		n := byKey[c.Key]
		if n == nil {
			n = &netChange{Side: side, Key: c.Key, KeyVals: c.KeyVals, At: map[string]time.Time{}}
			byKey[c.Key] = n
			order = append(order, n)
		}
		if !n.seen {
			n.seen, n.existed = true, c.Op != opInsert
		}
		if c.Origin == self {
			n.echo(c)
		} else {
			n.add(c)
		}
	}
	return slices.DeleteFunc(order, func(n *netChange) bool { return n.Op == netNone && len(n.Lost) == 0 })
}

// add folds in an application change.
func (n *netChange) add(c *change) {
	n.Last = c.CapturedAt
	switch c.Op {
	case opInsert:
		n.Op, n.Created = netUpsert, !n.existed
		n.Vals = maps.Clone(c.New)
		clear(n.At)
		for col := range c.New {
			n.At[col] = c.CapturedAt
		}
	case opUpdate:
		if n.Op != netUpsert {
			n.Op = netUpsert
		}
		if n.Vals == nil {
			n.Vals = make(Values, len(c.New))
		}
		if n.Old == nil {
			n.Old = make(Values, len(c.New))
		}
		for col, v := range c.New {
			if _, ok := n.Old[col]; !ok && !n.Created {
				n.Old[col] = c.Old[col]
			}
			n.Vals[col] = v
			n.At[col] = c.CapturedAt
		}
	case opDelete:
		if n.Created {
			// Inserted and deleted in the window: nothing happened, unless an
			// initial sync read the row in between and created it on the other
			// side. So it is a delete, which only a linked entity passes on.
			n.Op, n.Created, n.Vals, n.Old = netDelete, false, nil, maps.Clone(c.Old)
			clear(n.At)
			return
		}
		if n.Old == nil {
			n.Old = Values{}
		}
		for col, v := range c.Old {
			if _, ok := n.Old[col]; !ok {
				n.Old[col] = v
			}
		}
		n.Op, n.Vals = netDelete, nil
		clear(n.At)
	}
}

// echo folds in one of the sync's own applies: application changes it
// overwrote are lost to the sync (recorded), and it is not itself a change
// to propagate.
func (n *netChange) echo(c *change) {
	n.existed = n.existed || c.Op != opDelete
	switch c.Op {
	case opInsert, opDelete:
		if n.Op != netNone && !c.Quiet {
			lost := n.Vals
			if c.LostOnly != nil {
				lost = Values{}
				for _, col := range c.LostOnly {
					if v, ok := n.Vals[col]; ok {
						lost[col] = v
					}
				}
			}
			n.Lost = append(n.Lost, lostWrite{Lost: lost, Kept: c.New, At: n.Last})
		}
		n.Op, n.Created, n.Vals, n.Old = netNone, false, nil, nil
		clear(n.At)
	case opUpdate:
		if n.Op != netUpsert {
			return
		}
		lost, kept := Values{}, Values{}
		for col, v := range c.New {
			old, ok := n.Vals[col]
			if !ok || !c.Quiet && mapping.Equal(old, v) {
				// Not written by the application, or not changed by the apply
				// (a quiet echo says the side holds the sync's value, after an
				// application write of another: the column goes, equal or not).
				continue
			}
			lost[col], kept[col] = old, v
			if n.Created {
				n.Vals[col] = v // the row to create elsewhere is the row as it is here
			} else {
				delete(n.Vals, col)
				delete(n.At, col)
			}
		}
		if len(lost) > 0 && !c.Quiet {
			n.Lost = append(n.Lost, lostWrite{Lost: lost, Kept: kept, At: n.Last})
		}
		if !n.Created && len(n.Vals) == 0 {
			n.Op = netNone
		}
	}
}

// row returns the values a mapping reads: the changed columns over Extra.
func (n *netChange) row() Values {
	if len(n.Extra) == 0 {
		return n.Vals
	}
	r := maps.Clone(n.Extra)
	maps.Copy(r, n.Vals)
	return r
}

// decodeJSON decodes a jsonb object; numbers stay json.Number so no
// precision is lost on the way to the other side.
func decodeJSON(b []byte) (Values, error) {
	if b == nil {
		return nil, nil
	}
	var v Values
	if err := decodeNumbers(b, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeNumbers decodes JSON into v with numbers kept as json.Number, as
// every key and value the engine handles keeps them.
func decodeNumbers(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// canonicalKey renders a key object the same way whatever produced it:
// compact JSON with sorted keys.
func canonicalKey(v Values) string {
	return string(appendJSON(nil, v))
}

// encodeJSON renders values for a jsonb parameter.
func encodeJSON(v any) []byte {
	switch x := v.(type) {
	case []rowWrite:
		return appendRowWrites(nil, x)
	case markerDoc:
		return appendMarkerDoc(nil, x)
	case *applyResult:
		return appendApplyResult(nil, x)
	}
	return appendJSON(nil, v)
}

// encodeJSONReflect renders v with encoding/json, HTML escaping off.
func encodeJSONReflect(v any) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		panic(fmt.Sprintf("tandem: encoding %T: %v", v, err)) // values come from decoded JSON
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
