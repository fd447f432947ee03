package pgtest

import (
	"os"
	"slices"
	"strconv"
)

// EnvInt is the positive integer in the environment variable name (a
// benchmark's size or round count), or def.
func EnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// Median is the median of xs (xs is not reordered).
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
