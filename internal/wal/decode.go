package wal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

// relation is what a RELATION message said of a table, plus its key.
type relation struct {
	table  string // schema.name, as change rows name it
	cols   []*pglogrepl.RelationMessageColumn
	key    []int // indexes into cols of the key columns
	keyErr error // the key could not be found: every change of the table fails with it
}

// row is one change bound for tandem.change_log, its documents already
// JSON (the shape trigger capture gives them: to_jsonb of the row). The
// transaction's commit time and origin are the stream's to add.
type row struct {
	table, op      string
	keys, old, new []byte // nil: SQL NULL
}

// decoder turns pgoutput tuples into change rows.
type decoder struct {
	types *pgtype.Map
}

func newDecoder() *decoder { return &decoder{types: pgtype.NewMap()} }

// object renders the columns of a tuple picked by keep as a JSON object;
// columns sent as unchanged TOAST ('u') are left out.
func (d *decoder) object(rel *relation, t *pglogrepl.TupleData, keep func(i int) bool) ([]byte, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Columns) != len(rel.cols) {
		return nil, fmt.Errorf("%s: tuple has %d columns, relation %d", rel.table, len(t.Columns), len(rel.cols))
	}
	b := append(make([]byte, 0, 128), '{')
	first := true
	for i, c := range t.Columns {
		if c.DataType == pglogrepl.TupleDataTypeToast || (keep != nil && !keep(i)) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, rel.cols[i].Name)
		b = append(b, ':')
		var err error
		if b, err = d.value(b, rel.cols[i].DataType, c); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", rel.table, rel.cols[i].Name, err)
		}
	}
	return append(b, '}'), nil
}

// value appends one column's value as to_jsonb would render it.
func (d *decoder) value(b []byte, oid uint32, c *pglogrepl.TupleDataColumn) ([]byte, error) {
	if c.DataType == pglogrepl.TupleDataTypeNull {
		return append(b, "null"...), nil
	}
	if c.DataType != pglogrepl.TupleDataTypeText {
		return nil, fmt.Errorf("unexpected tuple data kind %q (binary output is not requested)", c.DataType)
	}
	return d.text(b, oid, c.Data)
}

// text appends a value given in its text form as to_jsonb would render it:
// numbers and booleans as JSON numbers and booleans, json and jsonb as
// themselves, timestamps in ISO 8601, arrays as JSON arrays of their
// elements so rendered, anything else as the string of its text form.
func (d *decoder) text(b []byte, oid uint32, text []byte) ([]byte, error) {
	switch oid {
	case pgtype.BoolOID:
		if string(text) == "t" {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return append(b, text...), nil
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		switch string(text) {
		case "NaN", "Infinity", "-Infinity":
			return appendString(b, string(text)), nil
		}
		return append(b, text...), nil
	case pgtype.JSONOID, pgtype.JSONBOID:
		var buf bytes.Buffer
		if err := json.Compact(&buf, text); err != nil {
			return nil, fmt.Errorf("invalid json value: %w", err)
		}
		return append(b, buf.Bytes()...), nil
	case pgtype.TimestampOID, pgtype.TimestamptzOID:
		return appendString(b, isoTimestamp(string(text), oid == pgtype.TimestamptzOID)), nil
	}
	if t, ok := d.types.TypeForOID(oid); ok {
		if ac, isArray := t.Codec.(*pgtype.ArrayCodec); isArray {
			// The array literal's syntax is the same whatever the element
			// type: parse it as text[], render each element by its type.
			var arr pgtype.Array[*string]
			if err := d.types.Scan(pgtype.TextArrayOID, pgtype.TextFormatCode, text, &arr); err != nil {
				return nil, fmt.Errorf("decoding array: %w", err)
			}
			return d.array(b, ac.ElementType.OID, arr.Elements, arr.Dims)
		}
	}
	return appendString(b, string(text)), nil
}

// array appends elements shaped by dims as nested JSON arrays.
func (d *decoder) array(b []byte, elemOID uint32, elems []*string, dims []pgtype.ArrayDimension) ([]byte, error) {
	b = append(b, '[')
	if len(dims) == 0 {
		return append(b, ']'), nil
	}
	n := int(dims[0].Length)
	per := len(elems) / max(n, 1)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if len(dims) > 1 {
			b, err = d.array(b, elemOID, elems[i*per:(i+1)*per], dims[1:])
		} else if elems[i] == nil {
			b = append(b, "null"...)
		} else {
			b, err = d.text(b, elemOID, []byte(*elems[i]))
		}
		if err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// isoTimestamp turns a timestamp in DateStyle ISO ("2024-01-02
// 03:04:05.5+00") into to_jsonb's form ("2024-01-02T03:04:05.5+00:00").
func isoTimestamp(s string, zone bool) string {
	if len(s) < 19 || s[10] != ' ' {
		return s // infinity, BC dates: as PostgreSQL wrote them
	}
	out := []byte(s)
	out[10] = 'T'
	if zone {
		// The offset is +HH, +HH:MM or +HH:MM:SS: to_jsonb writes +HH:MM.
		if i := bytes.LastIndexAny(out[19:], "+-"); i >= 0 && len(out)-(19+i) == 3 {
			out = append(out, ":00"...)
		}
	}
	return string(out)
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			j, _ := json.Marshal(s)
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// keyIndexes returns the indexes of the named columns, in the order named.
func keyIndexes(cols []*pglogrepl.RelationMessageColumn, names []string) ([]int, error) {
	out := make([]int, 0, len(names))
	for _, n := range names {
		i := slices.IndexFunc(cols, func(c *pglogrepl.RelationMessageColumn) bool { return c.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("key column %s is not in the table", strconv.Quote(n))
		}
		out = append(out, i)
	}
	return out, nil
}

func (rel *relation) isKey(i int) bool { return slices.Contains(rel.key, i) }

// keysOf renders the key columns of a tuple.
func (d *decoder) keysOf(rel *relation, t *pglogrepl.TupleData) ([]byte, error) {
	for _, i := range rel.key {
		if i >= len(t.Columns) || t.Columns[i].DataType == pglogrepl.TupleDataTypeToast {
			return nil, fmt.Errorf("%s: key column %s is not in the change (check the table's REPLICA IDENTITY)", rel.table, rel.cols[min(i, len(rel.cols)-1)].Name)
		}
	}
	return d.object(rel, t, rel.isKey)
}

func (d *decoder) insert(rel *relation, m *pglogrepl.InsertMessage) ([]row, error) {
	keys, err := d.keysOf(rel, m.Tuple)
	if err != nil {
		return nil, err
	}
	n, err := d.object(rel, m.Tuple, nil)
	if err != nil {
		return nil, err
	}
	return []row{{table: rel.table, op: "insert", keys: keys, new: n}}, nil
}

// identity picks the columns an old tuple really holds: all of them for a
// full old row ('O'), the replica identity's for a key ('K'), whose other
// columns come as nulls.
func identity(rel *relation, kind uint8) func(int) bool {
	if kind == pglogrepl.UpdateMessageTupleTypeOld {
		return nil
	}
	return func(i int) bool { return rel.cols[i].Flags&1 == 1 }
}

func (d *decoder) delete(rel *relation, m *pglogrepl.DeleteMessage) ([]row, error) {
	if m.OldTuple == nil {
		return nil, fmt.Errorf("%s: delete without the old row's identity (check the table's REPLICA IDENTITY)", rel.table)
	}
	keys, err := d.keysOf(rel, m.OldTuple)
	if err != nil {
		return nil, err
	}
	old, err := d.object(rel, m.OldTuple, identity(rel, m.OldTupleType))
	if err != nil {
		return nil, err
	}
	return []row{{table: rel.table, op: "delete", keys: keys, old: old}}, nil
}

// update renders an UPDATE as trigger capture does: only the columns whose
// value changed (when the old row is known: REPLICA IDENTITY FULL; else
// every column sent), nothing when none changed, and a delete of the old
// key plus an insert of the new row when the key changed.
func (d *decoder) update(rel *relation, m *pglogrepl.UpdateMessage) ([]row, error) {
	n := m.NewTuple
	keys, err := d.keysOf(rel, n)
	if err != nil {
		return nil, err
	}
	o := m.OldTuple
	if o == nil {
		vals, err := d.object(rel, n, nil)
		if err != nil {
			return nil, err
		}
		return []row{{table: rel.table, op: "update", keys: keys, new: vals}}, nil
	}
	okeys, err := d.keysOf(rel, o)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(okeys, keys) {
		// A full old row fills in what the new one left out as unchanged TOAST.
		full := n
		if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld {
			full = &pglogrepl.TupleData{ColumnNum: n.ColumnNum, Columns: slices.Clone(n.Columns)}
			for i, c := range full.Columns {
				if c.DataType == pglogrepl.TupleDataTypeToast && i < len(o.Columns) {
					full.Columns[i] = o.Columns[i]
				}
			}
		}
		old, err := d.object(rel, o, identity(rel, m.OldTupleType))
		if err != nil {
			return nil, err
		}
		vals, err := d.object(rel, full, nil)
		if err != nil {
			return nil, err
		}
		return []row{
			{table: rel.table, op: "delete", keys: okeys, old: old},
			{table: rel.table, op: "insert", keys: keys, new: vals},
		}, nil
	}
	if m.OldTupleType != pglogrepl.UpdateMessageTupleTypeOld {
		vals, err := d.object(rel, n, nil) // a key tuple says nothing of the other columns
		if err != nil {
			return nil, err
		}
		return []row{{table: rel.table, op: "update", keys: keys, new: vals}}, nil
	}
	changed := func(i int) bool {
		if i >= len(o.Columns) {
			return true
		}
		nc, oc := n.Columns[i], o.Columns[i]
		return nc.DataType != pglogrepl.TupleDataTypeToast && (nc.DataType != oc.DataType || !bytes.Equal(nc.Data, oc.Data))
	}
	some := false
	for i := range n.Columns {
		some = some || changed(i)
	}
	if !some {
		return nil, nil
	}
	vals, err := d.object(rel, n, changed)
	if err != nil {
		return nil, err
	}
	old, err := d.object(rel, o, changed)
	if err != nil {
		return nil, err
	}
	return []row{{table: rel.table, op: "update", keys: keys, old: old, new: vals}}, nil
}
