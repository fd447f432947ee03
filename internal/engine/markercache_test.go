package engine

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The cache keeps markers while they fit its budget of writes, and
// forgets a node's table's markers once a window ends past them.
func TestMarkerCacheKeepsWhatFitsUntilWindowsPassIt(t *testing.T) {
	m := &markerCache{budget: 5}
	of := func(n int, table string) *markerIndex {
		return &markerIndex{writes: n, node: "crm", table: table, origin: "s"}
	}
	held := func() []int64 {
		var ids []int64
		for _, id := range []int64{1, 2, 3, 4, 5} {
			if m.get(id) != nil {
				ids = append(ids, id)
			}
		}
		return ids
	}
	m.put(1, of(3, "a"))
	m.put(2, of(1, "b"))
	m.put(3, of(2, "a")) // does not fit
	require.Equal(t, []int64{1, 2}, held())
	m.drop("crm", "a", "s", 2)
	require.Equal(t, []int64{2}, held())
	m.put(4, of(3, "a"))
	m.put(5, of(6, "a")) // larger than the budget
	require.Equal(t, []int64{2, 4}, held())
	m.drop("hubspot", "b", "s", 9)
	m.drop("crm", "b", "other", 9)
	require.Equal(t, []int64{2, 4}, held())
	require.Equal(t, 4, m.writes)
	require.Equal(t, int64(5), m.parsed)
}

// A marker's writes are found by key text, in the order of its list.
func TestParseMarkerIndexesWritesByKey(t *testing.T) {
	doc := []byte(`{"writes":[{"op":"update","key":{"id":1},"vals":{"a":"x"}},{"op":"delete","key":{"id":2}},{"op":"update","key":{"id":1},"vals":{"b":2}}]}`)
	x, err := parseMarker(7, "crm", "a", "s", doc)
	require.NoError(t, err)
	require.Equal(t, 3, x.writes)
	one := x.byKey[`{"id":1}`]
	require.Len(t, one, 2)
	require.Equal(t, []int{1, 3}, []int{one[0].n, one[1].n})
	require.JSONEq(t, `{"b":2}`, string(one[1].vals))
	require.Equal(t, "delete", x.byKey[`{"id":2}`][0].op)
	_, err = parseMarker(7, "crm", "a", "s", []byte(`{"writes":[{"op":"update","key":"nope"}]}`))
	require.ErrorContains(t, err, "change_log 7")
}
