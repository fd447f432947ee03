package engine

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// appendJSON appends v rendered as encoding/json renders it with HTML
// escaping off (object keys sorted), without reflection for what decoded
// rows and the engine's own documents hold: objects, arrays, strings,
// numbers, booleans and null. Anything else goes through encoding/json.
func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return appendJSONString(b, x)
	case json.Number:
		if validNumber(string(x)) {
			return append(b, x...)
		}
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case map[string]any:
		return appendObject(b, x, appendJSON)
	case []any:
		return appendArray(b, x, appendJSON)
	case []string:
		return appendArray(b, x, appendJSONString)
	case []Values:
		return appendArray(b, x, func(b []byte, v Values) []byte { return appendJSON(b, v) })
	case map[string]Values: // a conflict's kept and lost values, by side
		return appendObject(b, x, func(b []byte, v Values) []byte { return appendJSON(b, v) })
	case time.Time: // as its MarshalJSON renders it, for years it can render
		if y := x.Year(); y >= 0 && y <= 9999 {
			return append(x.AppendFormat(append(b, '"'), time.RFC3339Nano), '"')
		}
	}
	return append(b, encodeJSONReflect(v)...)
}

// appendObject appends m as a JSON object (null when nil), its keys
// sorted, each value rendered by elem.
func appendObject[V any](b []byte, m map[string]V, elem func([]byte, V) []byte) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	if len(m) == 1 { // a one-column key, the common case: nothing to sort
		for k, v := range m {
			b = appendJSONString(append(b, '{'), k)
			return append(elem(append(b, ':'), v), '}')
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(append(appendJSONString(b, k), ':'), m[k])
	}
	return append(b, '}')
}

// appendArray appends xs as a JSON array (null when nil), each element
// rendered by elem.
func appendArray[T any](b []byte, xs []T, elem func([]byte, T) []byte) []byte {
	if xs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, ']')
}

// appendJSONString appends s as a JSON string. ASCII is escaped here;
// a string with other bytes goes through encoding/json (which also mends
// invalid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	if plainString(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return append(b, encodeJSONReflect(s)...)
		}
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// field appends `"name":` after a comma when the object has a field
// already.
func appendField(b []byte, first bool, name string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendRowWrites renders the rows a set-based apply statement reads, as
// encoding/json renders []rowWrite.
func appendRowWrites(b []byte, ws []rowWrite) []byte {
	return appendArray(b, ws, func(b []byte, w rowWrite) []byte {
		b = appendJSONString(appendField(append(b, '{'), true, "ref"), w.Ref)
		b = appendValuesField(b, "key", w.Key)
		return append(appendValuesField(b, "vals", w.Vals), '}')
	})
}

// appendMarkerDoc renders an apply's marker, as encoding/json renders
// markerDoc.
func appendMarkerDoc(b []byte, d markerDoc) []byte {
	b = appendArray(append(b, `{"writes":`...), d.Writes, func(b []byte, m marked) []byte {
		b = appendJSONString(appendField(append(b, '{'), true, "op"), m.Op)
		b = appendField(b, false, "key")
		if len(m.Key) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, m.Key...)
		}
		return append(appendValuesField(b, "vals", m.Vals), '}')
	})
	return append(b, '}')
}

// appendValuesField appends `,"name":{...}` unless v is empty (omitempty).
func appendValuesField(b []byte, name string, v Values) []byte {
	if len(v) == 0 {
		return b
	}
	return appendJSON(appendField(b, false, name), v)
}

// appendApplyResult renders what an apply did, as encoding/json renders
// applyResult.
func appendApplyResult(b []byte, r *applyResult) []byte {
	b = append(b, '{')
	first := true
	if len(r.Created) > 0 {
		b = appendField(b, first, "created")
		first = false
		b = appendArray(b, r.Created, func(b []byte, c [2]string) []byte {
			return appendArray(b, c[:], appendJSONString)
		})
	}
	if len(r.Failed) > 0 {
		b = appendField(b, first, "failed")
		first = false
		b = append(b, encodeJSONReflect(r.Failed)...)
	}
	for _, f := range []struct {
		name string
		refs []string
	}{{"missing", r.Missing}, {"done", r.Done}} {
		if len(f.refs) > 0 {
			b = appendField(b, first, f.name)
			first = false
			b = appendJSON(b, f.refs)
		}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"inserted", r.Inserted}, {"updated", r.Updated}, {"deleted", r.Deleted}} {
		b = appendField(b, first, f.name)
		first = false
		b = strconv.AppendInt(b, int64(f.n), 10)
	}
	return append(b, '}')
}
