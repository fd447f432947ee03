package mapping

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/config"
)

type num = json.Number

// newField is a field at line 14 from column src to column dst, or to firstname and
// lastname for split_name.
func newField(transform string) *Field {
	f := &Field{Line: 14, Transform: transform, Source: []string{"src"}, Target: []string{"dst"}}
	if transform == config.TransformSplitName {
		f.Target = []string{"firstname", "lastname"}
	}
	return f
}

func TestFieldMap(t *testing.T) {
	t.Parallel()
	obj := map[string]any{"a": num("1")}
	tests := []struct {
		name      string
		transform string
		from      Side
		in, want  Values
	}{
		{"rename text", config.TransformRename, Source, Values{"src": "x"}, Values{"dst": "x"}},
		{"rename null", config.TransformRename, Source, Values{"src": nil}, Values{"dst": nil}},
		{"rename object", config.TransformRename, Source, Values{"src": obj}, Values{"dst": obj}},
		{"rename reverse", config.TransformRename, Target, Values{"dst": num("1.50")}, Values{"src": num("1.50")}},
		{"rename ignores other columns", config.TransformRename, Source, Values{"src": "x", "id": num("1")}, Values{"dst": "x"}},

		{"uppercase", config.TransformUppercase, Source, Values{"src": "Émile b"}, Values{"dst": "ÉMILE B"}},
		{"uppercase null", config.TransformUppercase, Source, Values{"src": nil}, Values{"dst": nil}},
		{"uppercase reverse is identity", config.TransformUppercase, Target, Values{"dst": "abc"}, Values{"src": "abc"}},
		{"uppercase reverse keeps non-text", config.TransformUppercase, Target, Values{"dst": num("42")}, Values{"src": num("42")}},
		{"lowercase", config.TransformLowercase, Source, Values{"src": "Ann@Example.COM"}, Values{"dst": "ann@example.com"}},
		{"lowercase null", config.TransformLowercase, Source, Values{"src": nil}, Values{"dst": nil}},
		{"lowercase reverse is identity", config.TransformLowercase, Target, Values{"dst": "ABC"}, Values{"src": "ABC"}},
		{"trim", config.TransformTrim, Source, Values{"src": " \ta b \n"}, Values{"dst": "a b"}},
		{"trim null", config.TransformTrim, Source, Values{"src": nil}, Values{"dst": nil}},
		{"trim reverse is identity", config.TransformTrim, Target, Values{"dst": "  a "}, Values{"src": "  a "}},

		{"to_number text", config.TransformToNumber, Source, Values{"src": " 42 "}, Values{"dst": num("42")}},
		{"to_number exponent", config.TransformToNumber, Source, Values{"src": "-1.5e3"}, Values{"dst": num("-1.5e3")}},
		{"to_number number", config.TransformToNumber, Source, Values{"src": num("7")}, Values{"dst": num("7")}},
		{"to_number null", config.TransformToNumber, Source, Values{"src": nil}, Values{"dst": nil}},
		{"to_number reverse number", config.TransformToNumber, Target, Values{"dst": num("3.10")}, Values{"src": "3.10"}},
		{"to_number reverse boolean", config.TransformToNumber, Target, Values{"dst": true}, Values{"src": "true"}},
		{"to_number reverse text", config.TransformToNumber, Target, Values{"dst": "x"}, Values{"src": "x"}},
		{"to_number reverse null", config.TransformToNumber, Target, Values{"dst": nil}, Values{"src": nil}},

		{"to_string number", config.TransformToString, Source, Values{"src": num("3.10")}, Values{"dst": "3.10"}},
		{"to_string boolean", config.TransformToString, Source, Values{"src": false}, Values{"dst": "false"}},
		{"to_string text", config.TransformToString, Source, Values{"src": "x"}, Values{"dst": "x"}},
		{"to_string null", config.TransformToString, Source, Values{"src": nil}, Values{"dst": nil}},
		{"to_string reverse text", config.TransformToString, Target, Values{"dst": "12"}, Values{"src": num("12")}},
		{"to_string reverse number", config.TransformToString, Target, Values{"dst": num("1")}, Values{"src": num("1")}},
		{"to_string reverse null", config.TransformToString, Target, Values{"dst": nil}, Values{"src": nil}},

		{"split_name three words", config.TransformSplitName, Source, Values{"src": "Mary Ann Lee"},
			Values{"firstname": "Mary", "lastname": "Ann Lee"}},
		{"split_name first whitespace run", config.TransformSplitName, Source, Values{"src": " Jean\t\tLuc  Picard "},
			Values{"firstname": "Jean", "lastname": "Luc  Picard"}},
		{"split_name one word", config.TransformSplitName, Source, Values{"src": "  Cher "},
			Values{"firstname": "Cher", "lastname": nil}},
		{"split_name blank", config.TransformSplitName, Source, Values{"src": " \t "},
			Values{"firstname": nil, "lastname": nil}},
		{"split_name empty", config.TransformSplitName, Source, Values{"src": ""},
			Values{"firstname": nil, "lastname": nil}},
		{"split_name null", config.TransformSplitName, Source, Values{"src": nil},
			Values{"firstname": nil, "lastname": nil}},
		{"join both", config.TransformSplitName, Target, Values{"firstname": "Mary", "lastname": "Ann Lee"},
			Values{"src": "Mary Ann Lee"}},
		{"join trims", config.TransformSplitName, Target, Values{"firstname": " Mary ", "lastname": nil},
			Values{"src": "Mary"}},
		{"join last only", config.TransformSplitName, Target, Values{"firstname": nil, "lastname": "Lee"},
			Values{"src": "Lee"}},
		{"join empty parts", config.TransformSplitName, Target, Values{"firstname": "", "lastname": "  "},
			Values{"src": nil}},
		{"join nulls", config.TransformSplitName, Target, Values{"firstname": nil, "lastname": nil},
			Values{"src": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := newField(tt.transform).Map(tt.from, tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestFieldMapErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		transform string
		from      Side
		in        Values
		column    string // the column named in the error
		want      string // the whole message
	}{
		{"uppercase number", config.TransformUppercase, Source, Values{"src": num("42")}, "src",
			`field at line 14 (uppercase): column "src": uppercase needs text, got number 42`},
		{"lowercase boolean", config.TransformLowercase, Source, Values{"src": true}, "src",
			`field at line 14 (lowercase): column "src": lowercase needs text, got boolean true`},
		{"trim array", config.TransformTrim, Source, Values{"src": []any{"a", num("1")}}, "src",
			`field at line 14 (trim): column "src": trim needs text, got array ["a",1]`},
		{"to_number letters", config.TransformToNumber, Source, Values{"src": "abc"}, "src",
			`field at line 14 (to_number): column "src": "abc" is not a number`},
		{"to_number empty", config.TransformToNumber, Source, Values{"src": ""}, "src",
			`field at line 14 (to_number): column "src": "" is not a number`},
		{"to_number blank", config.TransformToNumber, Source, Values{"src": "  "}, "src",
			`field at line 14 (to_number): column "src": "  " is not a number`},
		{"to_number hex", config.TransformToNumber, Source, Values{"src": "0x10"}, "src",
			`field at line 14 (to_number): column "src": "0x10" is not a number`},
		{"to_number plus", config.TransformToNumber, Source, Values{"src": "+1"}, "src",
			`field at line 14 (to_number): column "src": "+1" is not a number`},
		{"to_number NaN", config.TransformToNumber, Source, Values{"src": "NaN"}, "src",
			`field at line 14 (to_number): column "src": "NaN" is not a number`},
		{"to_number comma", config.TransformToNumber, Source, Values{"src": "1,5"}, "src",
			`field at line 14 (to_number): column "src": "1,5" is not a number`},
		{"to_number boolean", config.TransformToNumber, Source, Values{"src": true}, "src",
			`field at line 14 (to_number): column "src": boolean true is not a number`},
		{"to_number reverse object", config.TransformToNumber, Target, Values{"dst": map[string]any{"a": num("1")}}, "dst",
			`field at line 14 (to_number): column "dst": object {"a":1} cannot become text`},
		{"to_string array", config.TransformToString, Source, Values{"src": []any{num("1"), "<b>"}}, "src",
			`field at line 14 (to_string): column "src": array [1,"<b>"] cannot become text`},
		{"to_string reverse letters", config.TransformToString, Target, Values{"dst": "abc"}, "dst",
			`field at line 14 (to_string): column "dst": "abc" is not a number`},
		{"split_name number", config.TransformSplitName, Source, Values{"src": num("5")}, "src",
			`field at line 14 (split_name): column "src": split_name needs text, got number 5`},
		{"join boolean", config.TransformSplitName, Target, Values{"firstname": "Mary", "lastname": false}, "lastname",
			`field at line 14 (split_name): column "lastname": a name part must be text, got boolean false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := newField(tt.transform).Map(tt.from, tt.in)
			require.Nil(t, got)
			require.EqualError(t, err, tt.want)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.column, fe.Column)
			require.Equal(t, tt.in[tt.column], fe.Value)
			require.NotErrorIs(t, err, ErrMissing)
		})
	}
}

func TestFieldMapMissing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		transform string
		from      Side
		in        Values
		want      string
	}{
		{"rename", config.TransformRename, Source, Values{"other": "x"},
			`field at line 14: column "src": missing from the values`},
		{"to_number", config.TransformToNumber, Target, Values{},
			`field at line 14 (to_number): column "dst": missing from the values`},
		{"join without firstname", config.TransformSplitName, Target, Values{"lastname": "Lee"},
			`field at line 14 (split_name): column "firstname": missing from the values`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := newField(tt.transform).Map(tt.from, tt.in)
			require.EqualError(t, err, tt.want)
			require.ErrorIs(t, err, ErrMissing)
		})
	}
}

func TestFieldMapInvalidField(t *testing.T) {
	t.Parallel()
	unknown := &Field{Line: 3, Transform: "reverse", Source: []string{"a"}, Target: []string{"b"}}
	_, err := unknown.Map(Source, Values{"a": "x"})
	require.EqualError(t, err, `field at line 3 (reverse): unknown transform "reverse"`)

	arity := &Field{Line: 4, Transform: config.TransformSplitName, Source: []string{"a"}, Target: []string{"b"}}
	_, err = arity.Map(Target, Values{"b": "x"})
	require.EqualError(t, err,
		"field at line 4 (split_name): maps 1 source column to 2 target columns, but this field has 1 source and 1 target")
}

func TestErrorShortensLongValues(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 1000)
	_, err := newField(config.TransformToNumber).Map(Source, Values{"src": long})
	require.Error(t, err)
	msg := err.Error()
	require.Less(t, len(msg), 200)
	require.Contains(t, msg, `…" is not a number`)

	var fe *FieldError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, long, fe.Value, "the error keeps the whole value for sync_errors")
}
