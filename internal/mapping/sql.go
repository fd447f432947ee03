package mapping

import (
	"fmt"
	"strings"
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
	t := transforms[f.Transform]
	if from == Source {
		return t.sqlForward(cols), nil
	}
	return t.sqlReverse(cols), nil
}

// SQLNumeric reports whether SQL from side from computes a numeric of its own (to_number),
// rather than text or the column as it is (rename, and the reverse of the text
// transforms: the column's own type).
func (f *Field) SQLNumeric(from Side) bool { return transforms[f.Transform].numeric[from] }

// Normalises reports whether the field's transform normalises text from the source
// (lowercase, uppercase, trim): a natural key compares through it on both sides.
func (f *Field) Normalises() bool { return transforms[f.Transform].normalises }

// sqlConvert is a transform in one direction as SQL: the other side's column
// expressions from the from side's, each in column order.
type sqlConvert func(cols []string) []string

// sqlIdentity is rename, and the reverse of a transform that declares none.
func sqlIdentity(cols []string) []string { return cols }

// sqlOne lifts a one-column expression.
func sqlOne(fn func(c string) string) sqlConvert {
	return func(cols []string) []string { return []string{fn(cols[0])} }
}

// sqlFunc is a text function of one column (upper, lower).
func sqlFunc(name string) sqlConvert {
	return sqlOne(func(c string) string { return fmt.Sprintf("%s(%s::text)", name, paren(c)) })
}

// sqlTrim is trim: ASCII whitespace off both ends.
func sqlTrim(c string) string { return fmt.Sprintf("btrim(%s::text, %s)", paren(c), sqlSpace) }

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
func sqlSplitName(cols []string) []string {
	c := cols[0]
	s := fmt.Sprintf("btrim(%s::text, %s)", paren(c), sqlSpace)
	first := fmt.Sprintf(`split_part(translate(%s, E'\t\n\r\x0b\f', '     '), ' ', 1)`, s)
	return []string{
		fmt.Sprintf("NULLIF(%s, '')", first),
		fmt.Sprintf("NULLIF(ltrim(substr(%s, length(%s) + 1), %s), '')", s, first, sqlSpace),
	}
}

// sqlJoinName is split_name's reverse: the trimmed parts that are not empty, joined with
// one space; NULL when there are none.
func sqlJoinName(cols []string) []string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf("NULLIF(btrim(%s::text, %s), '')", paren(c), sqlSpace)
	}
	return []string{"NULLIF(concat_ws(' ', " + strings.Join(parts, ", ") + "), '')"}
}
