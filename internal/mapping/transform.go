package mapping

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/tandem-sync/tandem/internal/config"
)

// badValue says which input value of a conversion failed, and why. The field turns it
// into a FieldError naming the column.
type badValue struct {
	at     int
	reason string
}

// convert maps a field's values on one side, in column order, to the other side's
// values, in column order.
type convert func(in []any) ([]any, *badValue)

// transform is what one transform does in each direction, in Go and in SQL (sql.go).
type transform struct {
	targets int // target columns for its one source column
	forward convert
	reverse convert // identity when the transform declares no reverse (a DESIGN.md contract)
	// sqlForward and sqlReverse are forward and reverse as SQL expressions over the
	// from side's column expressions.
	sqlForward, sqlReverse sqlConvert
	// numeric: which direction's SQL computes a numeric of its own (to_number), by the
	// side it maps from.
	numeric [2]bool
	// normalises: forward normalises text (case, whitespace), and a natural key compares
	// through it on both sides.
	normalises bool
}

var transforms = map[string]transform{
	config.TransformRename: {targets: 1, forward: identity, reverse: identity, sqlForward: sqlIdentity, sqlReverse: sqlIdentity},
	config.TransformUppercase: {targets: 1, forward: text(config.TransformUppercase, strings.ToUpper), reverse: identity,
		sqlForward: sqlFunc("upper"), sqlReverse: sqlIdentity, normalises: true},
	config.TransformLowercase: {targets: 1, forward: text(config.TransformLowercase, strings.ToLower), reverse: identity,
		sqlForward: sqlFunc("lower"), sqlReverse: sqlIdentity, normalises: true},
	config.TransformTrim: {targets: 1, forward: text(config.TransformTrim, strings.TrimSpace), reverse: identity,
		sqlForward: sqlOne(sqlTrim), sqlReverse: sqlIdentity, normalises: true},
	config.TransformToNumber: {targets: 1, forward: scalar(toNumber), reverse: scalar(toString),
		sqlForward: sqlOne(sqlToNumber), sqlReverse: sqlOne(sqlText), numeric: [2]bool{Source: true}},
	config.TransformToString: {targets: 1, forward: scalar(toString), reverse: scalar(toNumber),
		sqlForward: sqlOne(sqlText), sqlReverse: sqlOne(sqlToNumber), numeric: [2]bool{Target: true}},
	config.TransformSplitName: {targets: 2, forward: splitName, reverse: joinName,
		sqlForward: sqlSplitName, sqlReverse: sqlJoinName},
}

// converter returns the field's conversion from side from, or why the field cannot be
// mapped at all. The config checks both already; this keeps a hand-built Field from
// panicking on a column count its transform does not expect.
func (f *Field) converter(from Side) (convert, string) {
	t, ok := transforms[f.Transform]
	if !ok {
		return nil, fmt.Sprintf("unknown transform %q", f.Transform)
	}
	if len(f.Source) != 1 || len(f.Target) != t.targets {
		return nil, fmt.Sprintf("maps 1 source column to %d target columns, but this field has %d source and %d target",
			t.targets, len(f.Source), len(f.Target))
	}
	if from == Source {
		return t.forward, ""
	}
	return t.reverse, ""
}

func identity(in []any) ([]any, *badValue) { return in, nil }

// scalar lifts a one-value conversion, which reports failure with a non-empty reason.
func scalar(fn func(v any) (any, string)) convert {
	return func(in []any) ([]any, *badValue) {
		out, reason := fn(in[0])
		if reason != "" {
			return nil, &badValue{0, reason}
		}
		return []any{out}, nil
	}
}

// text lifts a string function into a transform named name, which only takes text.
func text(name string, fn func(string) string) convert {
	return scalar(func(v any) (any, string) {
		switch v := v.(type) {
		case nil:
			return nil, ""
		case string:
			return fn(v), ""
		}
		return nil, name + " needs text, got " + describe(v)
	})
}

// numberLiteral is a JSON number, what a jsonb number accepts, and none of the other
// spellings strconv takes (hex, inf, a leading +). Its groups are the sign, the integer
// digits, the fraction digits and the exponent, which [parseDecimal] reads.
var numberLiteral = regexp.MustCompile(`^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$`)

func toNumber(v any) (any, string) {
	switch v := v.(type) {
	case nil, json.Number:
		return v, ""
	case string:
		if s := strings.TrimSpace(v); numberLiteral.MatchString(s) {
			return json.Number(s), ""
		}
	}
	return nil, describe(v) + " is not a number"
}

func toString(v any) (any, string) {
	switch v := v.(type) {
	case nil, string:
		return v, ""
	case json.Number:
		return string(v), ""
	case bool:
		return strconv.FormatBool(v), ""
	}
	return nil, describe(v) + " cannot become text"
}

// splitName splits a full name at its first run of whitespace: "Mary Ann Lee" is "Mary"
// and "Ann Lee". A single word is a first name with no last name.
func splitName(in []any) ([]any, *badValue) {
	var s string
	switch v := in[0].(type) {
	case nil:
		return []any{nil, nil}, nil
	case string:
		s = strings.TrimSpace(v)
	default:
		return nil, &badValue{0, config.TransformSplitName + " needs text, got " + describe(v)}
	}
	if s == "" {
		return []any{nil, nil}, nil
	}
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return []any{s, nil}, nil
	}
	return []any{s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace)}, nil
}

// joinName is split_name's reverse: the non-empty parts, trimmed, joined with one space;
// NULL when there are none.
func joinName(in []any) ([]any, *badValue) {
	var parts []string
	for i, v := range in {
		switch v := v.(type) {
		case nil:
		case string:
			if p := strings.TrimSpace(v); p != "" {
				parts = append(parts, p)
			}
		default:
			return nil, &badValue{i, "a name part must be text, got " + describe(v)}
		}
	}
	if len(parts) == 0 {
		return []any{nil}, nil
	}
	return []any{strings.Join(parts, " ")}, nil
}
