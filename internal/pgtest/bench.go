package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
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

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// Pgbench runs script (a pgbench custom script) against database db of c
// with clients clients for seconds seconds, prepared statements, and
// returns its tps.
func (c *Cluster) Pgbench(tb testing.TB, db, script string, clients, seconds int) float64 {
	tb.Helper()
	f := filepath.Join(tb.TempDir(), "script.sql")
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	out, err := exec.Command(c.Bin("pgbench"), "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(clients),
		"-T", strconv.Itoa(seconds), "-f", f, "-d", c.URL(db)).CombinedOutput()
	if err != nil {
		tb.Fatalf("pgtest: pgbench: %v: %s", err, out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("pgtest: no tps in pgbench's output: %s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		tb.Fatalf("pgtest: pgbench tps %q: %v", m[1], err)
	}
	return tps
}
