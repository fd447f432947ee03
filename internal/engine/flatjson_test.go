package engine

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowKey is what decodeKey must agree with: encoding/json all the way.
func slowKey(t testing.TB, b []byte) (Values, string, error) {
	v, err := decodeJSON(b)
	if err != nil || v == nil {
		return v, "", err
	}
	var s strings.Builder
	e := json.NewEncoder(&s)
	e.SetEscapeHTML(false)
	require.NoError(t, e.Encode(v))
	return v, strings.TrimSuffix(s.String(), "\n"), nil
}

var flatSeeds = []string{
	`{"id": 1}`, `{"id":-12.5e+3}`, `{"id": "abc"}`, `{"email": "a@x.com", "id": 7, "n": null, "b": true, "f": false}`,
	`{}`, ` { "a" : 1 } `, `{"a": "é"}`, `{"a": "tab\there"}`, `{"a": "q\"uote"}`, `{"a": "\u00e9"}`,
	`{"a": [1, 2]}`, `{"a": {"b": 1}}`, `{"a": 01}`, `{"a": 1.}`, `{"a": -}`, `{"a": 1e}`, `{"a" 1}`, `{"a": 1,}`,
	`{"a": 1} x`, `{"a": tru}`, `{"a": "<&>"}`, `{"a": 1, "a": 2}`, `{"id": 18446744073709551616}`, `{"k": "` + "\x7f" + `"}`,
	`[1]`, `"s"`, `{"a": "\ud83d\ude00"}`, `{"\u2028": 1}`, `{"a": "` + "\xff" + `"}`,
}

func TestDecodeKeyAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range flatSeeds {
		checkFlat(t, []byte(in))
	}
	v, text, err := decodeKey(nil)
	require.NoError(t, err)
	require.Nil(t, v)
	require.Empty(t, text)
}

func FuzzDecodeKey(f *testing.F) {
	for _, in := range flatSeeds {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFlat(t, b) })
}

func checkFlat(t *testing.T, b []byte) {
	t.Helper()
	want, wantText, wantErr := slowKey(t, b)
	got, gotText, err := decodeKey(b)
	if wantErr != nil {
		require.Error(t, err, "%q", b)
		return
	}
	require.NoError(t, err, "%q", b)
	require.Equal(t, want, got, "%q", b)
	require.Equal(t, wantText, gotText, "%q", b)
	if got != nil {
		require.Equal(t, wantText, canonicalKey(got), "%q", b)
		require.Equal(t, wantText, string(encodeJSON(got)), "%q", b)
	}
}

// The engine's own documents render byte for byte as encoding/json renders
// them, whatever their strings hold.
func TestDocumentsEncodeAsEncodingJSON(t *testing.T) {
	odd := []string{"plain", `q"uote`, `back\slash`, "new\nline", "\x01\x1f\x7f", "é", "\u2028", "\xff", "<&>", ""}
	for _, s := range odd {
		vals := Values{"a": s, "n": json.Number("-1.5e3"), "b": true, "z": nil, s: []any{s, json.Number("2"), Values{"x": s}}}
		ws := []rowWrite{{Ref: s, Key: Values{"id": json.Number("1")}, Vals: vals}, {Ref: `{"id":2}`}}
		doc := markerDoc{Writes: []marked{{Op: "update", Key: json.RawMessage(`{"id":1}`), Vals: vals}, {Op: "delete", Key: json.RawMessage(`{"id":2}`)}}}
		res := &applyResult{Created: [][2]string{{s, `{"id":3}`}}, Failed: []applyError{{Ref: s, Reason: s}},
			Missing: []string{s}, Done: []string{s, `{"id":1}`}, Inserted: 1, Updated: 2, Deleted: 3}
		at := time.Date(2026, 11, 26, 1, 2, 3, 450_000_000, time.FixedZone("", 5*3600+1800))
		change := map[string]any{"op": "update", "vals": vals, "at": at}
		kept := map[string]Values{"source": vals, s: nil}
		for _, v := range []any{vals, ws, []rowWrite(nil), doc, markerDoc{}, res, &applyResult{}, []string{s}, s,
			change, kept, map[string]Values(nil), at, time.Time{}, at.UTC()} {
			require.Equal(t, string(encodeJSONReflect(v)), string(encodeJSON(v)), "%#v", v)
		}
	}
}

func FuzzEncodeString(f *testing.F) {
	for _, s := range []string{"a", `"`, "\\", "\n\t", "\x00", "é", "\xff\xfe", "\u2028<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		require.Equal(t, string(encodeJSONReflect(s)), string(appendJSONString(nil, s)), "%q", s)
	})
}

// A side's keyText of a row is canonicalKey of the row's key, whatever the
// key's value: the key texts links, markers and windows compare.
func TestSideKeyTextIsTheCanonicalKey(t *testing.T) {
	one := &side{Key: []string{"id"}}
	two := &side{Key: []string{"sku", "id"}}
	for _, v := range []any{json.Number("7"), json.Number("-1.5e3"), `q"uote`, `back\slash`, "é ✓", "tab\there", "\u2028", "<&>", nil, true} {
		row := Values{"id": v, "sku": v, "other": "x"}
		for _, s := range []*side{one, two} {
			require.Equal(t, canonicalKey(s.keyOf(row)), s.keyText(row), "key %v of %v", s.Key, v)
		}
	}
}
