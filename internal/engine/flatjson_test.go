package engine

import (
	"encoding/json"
	"strings"
	"testing"

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
	if len(got) == 1 { // the fast path of canonicalKey
		require.Equal(t, wantText, canonicalKey(got), "%q", b)
	}
}
