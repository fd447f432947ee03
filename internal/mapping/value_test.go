package mapping

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"same number", num("1"), num("1"), true},
		{"trailing zero", num("1"), num("1.0"), true},
		{"exponent", num("1"), num("1e0"), true},
		{"negative exponent", num("1"), num("10e-1"), true},
		{"fraction with exponent", num("100"), num("0.1e3"), true},
		{"capital E and plus", num("1200"), num("1.2E+3"), true},
		{"zeros", num("0"), num("-0.0e5"), true},
		{"negative", num("-2.50"), num("-25e-1"), true},
		{"different", num("1"), num("2"), false},
		{"sign", num("-1"), num("1"), false},
		{"beyond float64", num("0.1"), num("0.10000000000000001"), false},
		{"beyond int64", num("12345678901234567890"), num("12345678901234567891"), false},
		{"huge exponent", num("1e999999999"), num("10e999999998"), true},
		{"huge exponents differ", num("1e999999999"), num("1e999999998"), false},
		{"exponent beyond int64", num("1e99999999999999999999"), num("0.1e100000000000000000000"), true},
		{"not a literal equals itself", num("abc"), num("abc"), true},
		{"not a literal", num("abc"), num("abd"), false},
		{"number is not text", num("1"), "1", false},
		{"text", "a", "a", true},
		{"text differs", "a", "A", false},
		{"boolean", true, true, true},
		{"boolean differs", true, false, false},
		{"nil", nil, nil, true},
		{"nil is not empty text", nil, "", false},
		{"nil is not zero", num("0"), nil, false},
		{"nil is not a nil map", nil, map[string]any(nil), false},
		{"maps by value", map[string]any{"a": num("1"), "b": []any{num("2.0")}}, map[string]any{"b": []any{num("2")}, "a": num("1e0")}, true},
		{"maps with other keys", map[string]any{"a": nil}, map[string]any{"b": nil}, false},
		{"map with an extra key", map[string]any{"a": nil}, map[string]any{"a": nil, "b": nil}, false},
		{"map is not array", map[string]any{}, []any{}, false},
		{"arrays", []any{num("1"), "x", nil}, []any{num("1.00"), "x", nil}, true},
		{"arrays in order", []any{num("1"), num("2")}, []any{num("2"), num("1")}, false},
		{"arrays of different length", []any{num("1")}, []any{num("1"), nil}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Equal(tt.a, tt.b))
			require.Equal(t, tt.want, Equal(tt.b, tt.a), "Equal is symmetric")
		})
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"},
		{"a\"b", `"a\"b"`},
		{true, "boolean true"},
		{num("-1.5"), "number -1.5"},
		{[]any{"<&>"}, `array ["<&>"]`},
		{map[string]any{"k": nil}, `object {"k":null}`},
		{3.5, "float64 3.5"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, describe(tt.v))
	}
}
