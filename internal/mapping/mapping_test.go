package mapping

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandem-sync/tandem/internal/config"
)

// contacts is the mapping of DESIGN.md's example sync.
func contacts() *Mapping {
	return Compile([]config.Field{
		{Source: []string{"full_name"}, Target: []string{"firstname", "lastname"}, Transform: config.TransformSplitName, Line: 10},
		{Source: []string{"email"}, Target: []string{"email"}, Transform: config.TransformLowercase, Line: 11},
		{Source: []string{"phone"}, Target: []string{"phone_number"}, Line: 12},
	})
}

func TestSide(t *testing.T) {
	t.Parallel()
	require.Equal(t, Target, Source.Other())
	require.Equal(t, Source, Target.Other())
	require.Equal(t, "source", Source.String())
	require.Equal(t, "target", Target.String())
	require.Equal(t, "Side(7)", Side(7).String())
}

func TestCompile(t *testing.T) {
	t.Parallel()
	fields := []config.Field{
		{Source: []string{"a"}, Target: []string{"b"}, Line: 5},
		{Source: []string{"c"}, Target: []string{"d"}, Transform: config.TransformTrim, Line: 6},
	}
	m := Compile(fields)
	require.Len(t, m.Fields, 2)
	require.Equal(t, Field{Index: 1, Line: 6, Transform: config.TransformTrim, Source: []string{"c"}, Target: []string{"d"}}, *m.Fields[1])
	require.Equal(t, []string{"d"}, m.Fields[1].Columns(Target))

	fields[0].Source[0] = "changed"
	require.Equal(t, []string{"a"}, m.Fields[0].Source, "Compile copies the config's columns")
}

func TestMappingColumns(t *testing.T) {
	t.Parallel()
	m := contacts()
	require.Equal(t, []string{"full_name", "email", "phone"}, m.Columns(Source))
	require.Equal(t, []string{"firstname", "lastname", "email", "phone_number"}, m.Columns(Target))
}

func TestTouchedAndNeeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		side    Side
		cols    Values
		touched []int // field indexes
		needs   []string
	}{
		{"lastname alone needs firstname", Target, Values{"lastname": "Lee"}, []int{0}, []string{"firstname"}},
		{"firstname alone needs lastname", Target, Values{"firstname": "Mary"}, []int{0}, []string{"lastname"}},
		{"both name parts", Target, Values{"firstname": "Mary", "lastname": "Lee"}, []int{0}, nil},
		{"a change to NULL touches", Source, Values{"email": nil}, []int{1}, nil},
		{"full_name", Source, Values{"full_name": "Mary Lee"}, []int{0}, nil},
		{"several fields", Target, Values{"phone_number": "555", "lastname": "Lee"}, []int{0, 2}, []string{"firstname"}},
		{"unmapped column", Source, Values{"id": "1"}, nil, nil},
		{"other side's column", Source, Values{"lastname": "Lee"}, nil, nil},
		{"nothing", Target, Values{}, nil, nil},
	}
	m := contacts()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var touched []int
			for _, f := range m.Touched(tt.side, tt.cols) {
				touched = append(touched, f.Index)
			}
			require.Equal(t, tt.touched, touched)
			require.Equal(t, tt.needs, m.Needs(tt.side, tt.cols))
		})
	}
}

func TestMappingMap(t *testing.T) {
	t.Parallel()
	m := contacts()
	got, errs := m.Map(Source, Values{"id": num("1"), "full_name": "Mary Ann Lee", "email": "Mary@Example.com", "phone": nil})
	require.Nil(t, errs)
	require.Equal(t, Values{"firstname": "Mary", "lastname": "Ann Lee", "email": "mary@example.com", "phone_number": nil}, got)

	got, errs = m.Map(Target, Values{"firstname": "Mary", "lastname": "Lee", "email": "MARY@EXAMPLE.COM"})
	require.Nil(t, errs)
	require.Equal(t, Values{"full_name": "Mary Lee", "email": "MARY@EXAMPLE.COM"}, got, "lowercase has no reverse")
}

func TestMappingMapPartial(t *testing.T) {
	t.Parallel()
	m := contacts()
	got, errs := m.Map(Source, Values{"full_name": "Mary Lee", "email": num("42"), "phone": "555"})
	require.Equal(t, Values{"firstname": "Mary", "lastname": "Lee", "phone_number": "555"}, got)
	require.Len(t, errs, 1)
	require.Same(t, m.Fields[1], errs[0].Field)
	require.Equal(t, "email", errs[0].Column)
	require.Equal(t, num("42"), errs[0].Value)
	require.EqualError(t, errs[0], `field at line 11 (lowercase): column "email": lowercase needs text, got number 42`)
}

func TestMappingMapMissingThenFetched(t *testing.T) {
	t.Parallel()
	m := contacts()
	change := Values{"lastname": "Lee", "phone_number": "555"}
	got, errs := m.Map(Target, change)
	require.Equal(t, Values{"phone": "555"}, got)
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], ErrMissing)
	require.Equal(t, "firstname", errs[0].Column)

	current := Values{"firstname": "Mary", "lastname": "Smith", "email": "x", "phone_number": "1"}
	for _, c := range m.Needs(Target, change) {
		change[c] = current[c]
	}
	got, errs = m.Map(Target, change)
	require.Nil(t, errs)
	require.Equal(t, Values{"full_name": "Mary Lee", "phone": "555"}, got)
}
