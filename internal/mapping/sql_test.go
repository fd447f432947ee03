package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestFieldSQLMatchesMap runs each transform's SQL in PostgreSQL on values of a column
// type and checks that it gives what Map gives for the same row read through to_jsonb,
// wherever Map takes the value.
func TestFieldSQLMatchesMap(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	texts := []any{"Mary Ann Lee", " Jean\t\tLuc  Picard ", "  Cher ", " \t ", "", nil, "Ann@Example.COM",
		" 42 ", "-1.5e3", "3.10", "0", "abc", "1e999", "+1", "line\nbreak x", "a\vb", "x\fy z"}
	// upper and lower follow the database's collation, which for the test cluster is C:
	// ASCII only. The other transforms take any text.
	unicode := append([]any{"Émile Zoë", "Ünal\tÖz"}, texts...)
	tests := []struct {
		transform string
		from      Side
		typ       string // of the from-side columns
		values    []any  // each a value of the one from-side column, or a []any of both name parts
	}{
		{config.TransformRename, Source, "text", unicode},
		{config.TransformRename, Source, "bigint", []any{"42", "-7", nil}},
		{config.TransformRename, Source, "numeric", []any{"1.50", "1e3", nil}},
		{config.TransformUppercase, Source, "text", texts},
		{config.TransformUppercase, Target, "text", texts},
		{config.TransformLowercase, Source, "text", texts},
		{config.TransformLowercase, Source, "varchar(40)", texts},
		{config.TransformTrim, Source, "text", unicode},
		{config.TransformToNumber, Source, "text", unicode},
		{config.TransformToNumber, Source, "numeric", []any{"1.50", "-0.001", nil}},
		{config.TransformToNumber, Target, "numeric", []any{"1.50", "-0.001", "1e20", nil}},
		{config.TransformToNumber, Target, "boolean", []any{"true", "false"}},
		{config.TransformToString, Source, "numeric", []any{"3.10", "42", "1e-5", nil}},
		{config.TransformToString, Source, "integer", []any{"42", nil}},
		{config.TransformToString, Source, "double precision", []any{"0.1", "1e300", "-2.5"}},
		{config.TransformToString, Source, "boolean", []any{"true", "false", nil}},
		{config.TransformToString, Source, "text", unicode},
		{config.TransformToString, Target, "text", unicode},
		{config.TransformSplitName, Source, "text", unicode},
		{config.TransformSplitName, Source, "varchar(40)", unicode},
		{config.TransformSplitName, Target, "text", []any{
			[]any{"Mary", "Ann Lee"}, []any{" Mary ", nil}, []any{nil, "Lee"}, []any{"", "  "}, []any{nil, nil},
			[]any{"Jean\t", "\nLuc Picard"}, []any{"Cher", ""},
		}},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %s %s", tt.transform, tt.from, tt.typ)
		if tt.transform == "" {
			name = "rename " + tt.from.String() + " " + tt.typ
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newField(tt.transform)
			compared := 0
			for _, v := range tt.values {
				in, ok := v.([]any)
				if !ok {
					in = []any{v}
				}
				row, sqlOut := runFieldSQL(t, db, f, tt.from, tt.typ, in)
				want, err := f.Map(tt.from, row)
				if err != nil {
					continue // SQL gives some value where Map refuses one; verify's row check decides
				}
				for i, col := range f.Columns(tt.from.Other()) {
					require.True(t, Equal(want[col], sqlOut[i]), "%q from %#v: Map gives %#v, SQL gives %#v", col, in, want[col], sqlOut[i])
				}
				compared++
			}
			require.NotZero(t, compared, "Map took none of the values")
			if tt.transform != config.TransformRename { // a rename's type is the column's
				require.Equal(t, f.SQLNumeric(tt.from), sqlType(t, db, f, tt.from, tt.typ) == "numeric", "SQLNumeric")
			}
		})
	}
}

// sqlType is the type of the field's first SQL expression from side from, over columns of typ.
func sqlType(t *testing.T, db *pgtest.DB, f *Field, from Side, typ string) string {
	t.Helper()
	cols := f.Columns(from)
	sel, refs := make([]string, len(cols)), make([]string, len(cols))
	for i, c := range cols {
		sel[i], refs[i] = fmt.Sprintf("NULL::%s AS %s", typ, c), "t."+c
	}
	exprs, err := f.SQL(from, refs)
	require.NoError(t, err)
	var out string
	q := fmt.Sprintf("SELECT pg_typeof(%s)::text FROM (SELECT %s) t", exprs[0], strings.Join(sel, ", "))
	require.NoError(t, db.Pool.QueryRow(context.Background(), q).Scan(&out), q)
	return out
}

// runFieldSQL reads the values in as a row of the from-side columns of typ, and returns
// that row as to_jsonb renders it and the field's SQL over it, each through to_jsonb.
func runFieldSQL(t *testing.T, db *pgtest.DB, f *Field, from Side, typ string, in []any) (Values, []any) {
	t.Helper()
	cols := f.Columns(from)
	sel := make([]string, len(cols))
	refs := make([]string, len(cols))
	args := make([]any, len(cols))
	for i, c := range cols {
		sel[i] = fmt.Sprintf("$%d::text::%s AS %s", i+1, typ, c)
		refs[i] = "t." + c
		args[i] = in[i]
	}
	exprs, err := f.SQL(from, refs)
	require.NoError(t, err)
	for i, e := range exprs {
		exprs[i] = "to_jsonb(" + e + ")"
	}
	q := fmt.Sprintf("SELECT jsonb_build_array(to_jsonb(t), %s) FROM (SELECT %s) t", strings.Join(exprs, ", "), strings.Join(sel, ", "))
	var b []byte
	require.NoError(t, db.Pool.QueryRow(context.Background(), q, args...).Scan(&b), q)
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var out []any
	require.NoError(t, d.Decode(&out))
	row, _ := out[0].(map[string]any)
	return row, out[1:]
}

func TestFieldSQLRefusesAnInvalidField(t *testing.T) {
	t.Parallel()
	_, err := (&Field{Line: 3, Transform: "reverse", Source: []string{"a"}, Target: []string{"b"}}).SQL(Source, []string{"a"})
	require.EqualError(t, err, `field at line 3 (reverse): unknown transform "reverse"`)
	_, err = newField(config.TransformSplitName).SQL(Target, []string{"a"})
	require.EqualError(t, err, "field at line 14 (split_name): SQL of 1 columns given for 2")
}
