package mapping

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Equal reports whether two decoded JSON values are the same value. Numbers compare by
// value, exactly ("1", "1.0" and "1e0" are equal), because the two sides of a sync may
// spell one number differently and a no-op write must still be seen as one. Objects and
// arrays compare deeply; nil only equals nil.
func Equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case json.Number:
		bn, ok := b.(json.Number)
		return ok && numbersEqual(a, bn)
	case map[string]any:
		bm, ok := b.(map[string]any)
		return ok && maps.EqualFunc(a, bm, Equal)
	case []any:
		bs, ok := b.([]any)
		return ok && slices.EqualFunc(a, bs, Equal)
	}
	return reflect.DeepEqual(a, b)
}

// numbersEqual compares two numbers exactly. One that is not a JSON number literal only
// equals the same text.
func numbersEqual(a, b json.Number) bool {
	da, okA := parseDecimal(string(a))
	db, okB := parseDecimal(string(b))
	if !okA || !okB {
		return a == b
	}
	return da.neg == db.neg && da.digits == db.digits && da.exp.Cmp(db.exp) == 0
}

// decimal is a number in one canonical form, 0.D1…Dn × 10^exp with D1 and Dn not zero,
// so that equal numbers have equal decimals. Unlike big.Rat it never builds 10^exp, which
// for "1e999999999" would take gigabytes.
type decimal struct {
	neg    bool
	digits string   // significant digits; empty for zero
	exp    *big.Int // the exponent can be any size in JSON
}

func parseDecimal(s string) (decimal, bool) {
	m := numberLiteral.FindStringSubmatch(s)
	if m == nil {
		return decimal{}, false
	}
	all := m[2] + m[3]
	digits := strings.TrimLeft(all, "0")
	point := int64(len(m[2]) - (len(all) - len(digits)))
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return decimal{exp: new(big.Int)}, true // -0 is 0
	}
	exp := new(big.Int)
	if m[4] != "" {
		exp.SetString(m[4], 10) // the pattern only lets through a valid integer
	}
	exp.Add(exp, big.NewInt(point))
	return decimal{neg: m[1] == "-", digits: digits, exp: exp}, true
}

// maxShown bounds how much of a value an error message shows: a poison row may hold a
// megabyte of text, and the message only needs to identify it.
const maxShown = 64

// describe names a value's JSON kind and shows it, for error messages: number 42,
// boolean true, object {"a":1}. Text is shown quoted, without a kind.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(shorten(v))
	case bool:
		return "boolean " + strconv.FormatBool(v)
	case json.Number:
		return "number " + shorten(string(v))
	case []any:
		return "array " + shorten(marshal(v))
	case map[string]any:
		return "object " + shorten(marshal(v))
	}
	return fmt.Sprintf("%T %s", v, shorten(fmt.Sprint(v)))
}

// marshal shows v as compact JSON, with <, > and & as they are: the message is read by
// people, not put into HTML.
func marshal(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// shorten cuts s to about maxShown bytes, at a rune boundary, marking the cut.
func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
