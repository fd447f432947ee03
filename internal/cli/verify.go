package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandem-sync/tandem/internal/engine"
)

// driftError is verify's outcome when drift remains (exit 3).
type driftError struct {
	sync  string
	drift int64
}

func (e driftError) Error() string {
	return fmt.Sprintf("sync %s: drift found: %d rows differ between the two tables", e.sync, e.drift)
}

// shownDrift bounds the drifting rows verify prints.
const shownDrift = 50

// runVerify is `tandem verify SYNC [--repair] [--chunk N]`.
func runVerify(ctx context.Context, cfgPath string, args []string, env Env) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	repair := fs.Bool("repair", false, "fix the drift by the sync's strategy, then verify again")
	chunk := fs.Int("chunk", engine.DefaultVerifyChunk, "linked rows per checksum query")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"verify takes exactly one sync id"}
	}
	if *chunk <= 0 {
		return usageError{fmt.Sprintf("--chunk must be a positive number of rows, not %d", *chunk)}
	}
	id := pos[0]
	eng, closeAll, err := syncsEngine(ctx, cfgPath, env, []string{id})
	if err != nil {
		return err
	}
	defer closeAll()
	log := eng.Logger
	verify := func() (*engine.VerifyReport, error) {
		p := newProgress(env.Stderr, log, "verifying "+id, time.Now())
		rep, err := eng.Verify(ctx, id, engine.VerifyOptions{ChunkRows: *chunk, Progress: p.report})
		p.end()
		if err != nil {
			return nil, err
		}
		printReport(env.Stdout, rep)
		return rep, nil
	}
	rep, err := verify()
	if err != nil || rep.Clean() || !*repair {
		return driftOf(rep, err)
	}
	res, err := eng.Repair(ctx, id, rep)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "\nrepaired: %d rows written (%d created, %d updated, %d deleted), %d errors; verifying again\n\n",
		res.Synced(), res.Created, res.Updated, res.Deleted, res.Errors)
	return driftOf(verify())
}

// driftOf is verify's error: err, or a driftError when rep has drift.
func driftOf(rep *engine.VerifyReport, err error) error {
	if err != nil {
		return err
	}
	if !rep.Clean() {
		return driftError{rep.Sync, rep.Drifted()}
	}
	return nil
}

// printReport prints a verify's summary, then the drifting rows (at most
// shownDrift).
func printReport(w io.Writer, rep *engine.VerifyReport) {
	fmt.Fprintf(w, "sync %s: verified in %s\n", rep.Sync, rep.Elapsed.Round(time.Millisecond))
	line := func(label string, n int64) { fmt.Fprintf(w, "  %-19s%d\n", label+":", n) }
	line("rows compared", rep.Compared)
	line("source rows", rep.SourceRows)
	line("target rows", rep.TargetRows)
	line("missing on source", rep.MissingOnSource)
	line("missing on target", rep.MissingOnTarget)
	line("differing", rep.Differing)
	if rep.CaughtUp > 0 {
		fmt.Fprintf(w, "  %-19s%d (in step once the sync's pending changes were applied)\n", "caught up:", rep.CaughtUp)
	}
	if rep.InFlight > 0 {
		fmt.Fprintf(w, "  %-19s%d (changed again by applications at every re-check: not drift, not verified; verify again)\n",
			"in flight:", rep.InFlight)
	}
	if rep.RowByRow > 0 {
		fmt.Fprintf(w, "  %-19s%d (linked rows whose bucket's checksums differed)\n", "read row by row:", rep.RowByRow)
	}
	if rep.Clean() {
		fmt.Fprintln(w, "in step: both tables hold the same mapped data")
		return
	}
	fmt.Fprintf(w, "drift: %d rows\n", rep.Drifted())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tSOURCE KEY\tTARGET KEY\tFIELDS\tNOTE")
	for i, d := range rep.Rows {
		if i == shownDrift {
			break
		}
		note := "-"
		switch {
		case d.Conflict != 0:
			note = fmt.Sprintf("open conflict %d", d.Conflict)
		case !d.Linked:
			note = "not linked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.ReplaceAll(d.Kind, "_", " "), keyJSON(d.SourceKey), keyJSON(d.TargetKey),
			orDash(strings.Join(d.Fields, ", ")), note)
	}
	tw.Flush()
	if more := rep.Drifted() - int64(min(len(rep.Rows), shownDrift)); more > 0 {
		fmt.Fprintf(w, "... and %d more\n", more)
	}
}

// keyJSON shows a key as compact JSON, or a dash.
func keyJSON(k map[string]any) string {
	if k == nil {
		return "-"
	}
	b, err := json.Marshal(k)
	if err != nil {
		return fmt.Sprint(k)
	}
	return string(b)
}
