package mapping

import (
	"fmt"
	"strings"

	"github.com/tandem-sync/tandem/internal/config"
)

// SQL versions of the transforms, for comparing two tables inside their databases
// (`tandem verify` checksums a node's rows as the other side should hold them).
//
// They follow the Go transforms closely but not exactly: whitespace is ASCII whitespace
// here (strings.TrimSpace also trims Unicode spaces), upper and lower follow the
// database's collation, and a value the Go transform refuses gives some value or NULL
// rather than an error, so that one bad row never fails a query over thousands. A
// caller only uses them to find rows that may differ, and decides with [Field.Map].

// sqlSpace is the whitespace the SQL transforms trim: ASCII's, as unicode.IsSpace has it
// (\x0b is \v, which an escape string does not know).
const sqlSpace = `E' \t\n\r\x0b\f'`

// sqlNumber is the SQL pattern of numberLiteral, the JSON number to_number accepts, with
// exponents of at most three digits: numeric cannot hold every JSON number, and a cast
// that fails would fail the whole query.
const sqlNumber = `'^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]{1,3})?$'`

// SQL returns SQL expressions that compute what [Field.Map] computes from side from: one
// for each of the other side's columns of the field, in column order. cols are SQL
// expressions of the field's columns on side from, in column order (quoted column
// references, such as t."full_name"); they are repeated as they are, so they should be
// cheap. The expressions' types render through to_jsonb as Map's values do: text for text,
// numeric for to_number, NULL for NULL.
func (f *Field) SQL(from Side, cols []string) ([]string, error) {
	if _, reason := f.converter(from); reason != "" {
		return nil, &FieldError{Field: f, Reason: reason}
	}
	if len(cols) != len(f.Columns(from)) {
		return nil, &FieldError{Field: f, Reason: fmt.Sprintf("SQL of %d columns given for %d", len(cols), len(f.Columns(from)))}
	}
	forward := from == Source
	c := cols[0]
	switch f.Transform {
	case config.TransformUppercase, config.TransformLowercase, config.TransformTrim:
		if !forward {
			return cols, nil // no declared reverse: identity
		}
		fn := map[string]string{config.TransformUppercase: "upper", config.TransformLowercase: "lower", config.TransformTrim: "btrim"}[f.Transform]
		if fn == "btrim" {
			return []string{fmt.Sprintf("btrim(%s::text, %s)", paren(c), sqlSpace)}, nil
		}
		return []string{fmt.Sprintf("%s(%s::text)", fn, paren(c))}, nil
	case config.TransformToNumber, config.TransformToString:
		if forward == (f.Transform == config.TransformToNumber) {
			return []string{sqlToNumber(c)}, nil
		}
		return []string{sqlText(c)}, nil
	case config.TransformSplitName:
		if forward {
			return sqlSplitName(c), nil
		}
		return []string{sqlJoinName(cols)}, nil
	}
	return cols, nil // rename
}

// SQLNumeric reports whether SQL from side from computes a numeric of its own (to_number),
// rather than text or the column as it is (rename, and the reverse of the text
// transforms: the column's own type).
func (f *Field) SQLNumeric(from Side) bool {
	switch f.Transform {
	case config.TransformToNumber:
		return from == Source
	case config.TransformToString:
		return from == Target
	}
	return false
}

// Normalises reports whether the field's transform normalises text from the source
// (lowercase, uppercase, trim): a natural key compares through it on both sides.
func (f *Field) Normalises() bool {
	switch f.Transform {
	case config.TransformLowercase, config.TransformUppercase, config.TransformTrim:
		return true
	}
	return false
}

// paren wraps an expression so that a cast or a function applies to all of it.
func paren(expr string) string { return "(" + expr + ")" }

// sqlText is to_string: a value as text the way it reads in JSON, unquoted. A float is a
// number in JSON, as numeric renders it (1e300 is 1 and 300 zeros), not as float8 does.
func sqlText(c string) string { return fmt.Sprintf("(to_jsonb(%s) #>> '{}')", c) }

// sqlToNumber is to_number: the trimmed text as numeric when it is a JSON number, else
// NULL (where Map fails).
func sqlToNumber(c string) string {
	s := fmt.Sprintf("btrim(%s, %s)", sqlText(c), sqlSpace)
	return fmt.Sprintf("CASE WHEN %[1]s ~ %[2]s THEN %[1]s::numeric END", s, sqlNumber)
}

// sqlSplitName is split_name: the trimmed name up to its first whitespace, and the rest
// without its leading whitespace; NULL for a part that is empty. Whitespace is turned
// into spaces (translate keeps every character's place) so that split_part finds the
// first of any kind, without a regular expression, which costs several times more.
func sqlSplitName(c string) []string {
	s := fmt.Sprintf("btrim(%s::text, %s)", paren(c), sqlSpace)
	first := fmt.Sprintf(`split_part(translate(%s, E'\t\n\r\x0b\f', '     '), ' ', 1)`, s)
	return []string{
		fmt.Sprintf("NULLIF(%s, '')", first),
		fmt.Sprintf("NULLIF(ltrim(substr(%s, length(%s) + 1), %s), '')", s, first, sqlSpace),
	}
}

// sqlJoinName is split_name's reverse: the trimmed parts that are not empty, joined with
// one space; NULL when there are none.
func sqlJoinName(cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("NULLIF(btrim(%s::text, %s), '')", paren(c), sqlSpace)
	}
	return "NULLIF(concat_ws(' ', " + strings.Join(parts, ", ") + "), '')"
}
