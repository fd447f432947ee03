package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tandem-sync/tandem/internal/engine"
)

// progressReporter shows an initial sync's progress: one line rewritten in
// place on a terminal, a log line every few seconds otherwise.
func progressReporter(env Env, log *slog.Logger) func(engine.InitialProgress) {
	tty := isTerminal(env.Stderr)
	var last time.Time
	return func(p engine.InitialProgress) {
		now := time.Now()
		elapsed := now.Sub(p.Started)
		rate := 0.0
		if elapsed > 0 {
			rate = float64(p.Done) / elapsed.Seconds()
		}
		eta := "?"
		if rate > 0 && p.Total > p.Done {
			eta = time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		switch {
		case tty && p.Finished:
			fmt.Fprintf(env.Stderr, "\r\033[Ksync %s: initial sync done: %d rows in %s\n", p.Sync, p.Done, elapsed.Round(time.Millisecond))
		case tty:
			fmt.Fprintf(env.Stderr, "\r\033[Ksync %s: initial sync %d/%d rows (%s), %.0f rows/s, ETA %s",
				p.Sync, p.Done, p.Total, percent(p.Done, p.Total), rate, eta)
		case p.Finished:
			log.Info("initial sync done", "sync", p.Sync, "rows", p.Done, "ms", elapsed.Milliseconds())
		case now.Sub(last) >= 5*time.Second:
			last = now
			log.Info("initial sync", "sync", p.Sync, "done", p.Done, "total", p.Total, "rows_per_s", int(rate), "eta", eta)
		}
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
