package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tandem-sync/tandem/internal/engine"
)

// progress shows how far a long piece of work is (an initial sync, a
// verify): a line rewritten in place on a terminal, at most ten times a
// second, with rows done, rows/s and the time left; otherwise a log line
// every progressLogEvery.
type progress struct {
	w        io.Writer
	log      *slog.Logger
	what     string // "verifying contacts"
	terminal bool
	start    time.Time // when the work began (an initial sync may have begun in another process)
	last     time.Time
	drawn    bool
}

// progressLogEvery spaces progress log lines (not on a terminal).
const progressLogEvery = 5 * time.Second

func newProgress(w io.Writer, log *slog.Logger, what string, start time.Time) *progress {
	return &progress{w: w, log: log, what: what, terminal: isTerminal(w), start: start, last: time.Now()}
}

// report shows done of total rows.
func (p *progress) report(done, total int64) {
	now := time.Now()
	every := progressLogEvery
	if p.terminal {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	rate := 0.0
	if elapsed := now.Sub(p.start); elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	eta := "?"
	if rate > 0 && total > done {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	if !p.terminal {
		p.log.Info(p.what, "done", done, "total", total, "rows_per_s", int64(rate), "eta", eta)
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s: %d of %d rows (%s), %.0f rows/s, ETA %s", p.what, done, total, percent(done, total), rate, eta)
	p.drawn = true
}

// end clears the progress line.
func (p *progress) end() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// progressReporter shows each sync's initial sync as it goes, and a line
// when it is done.
func progressReporter(env Env, log *slog.Logger) func(engine.InitialProgress) {
	shown := map[string]*progress{}
	return func(ip engine.InitialProgress) {
		p := shown[ip.Sync]
		if p == nil {
			p = newProgress(env.Stderr, log, "sync "+ip.Sync+": initial sync", ip.Started)
			shown[ip.Sync] = p
		}
		if !ip.Finished {
			p.report(ip.Done, ip.Total)
			return
		}
		p.end()
		delete(shown, ip.Sync)
		elapsed := time.Since(ip.Started)
		if p.terminal {
			fmt.Fprintf(env.Stderr, "sync %s: initial sync done: %d rows in %s\n", ip.Sync, ip.Done, elapsed.Round(time.Millisecond))
			return
		}
		log.Info("initial sync done", "sync", ip.Sync, "rows", ip.Done, "ms", elapsed.Milliseconds())
	}
}

func percent(done, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%d%%", min(100, done*100/total))
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
