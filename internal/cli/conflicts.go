package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandem-sync/tandem/internal/engine"
)

const conflictsUsage = "conflicts takes list [--all] [--sync ID], show ID, or resolve ID --take source|target | --value JSON"

// runConflicts is `tandem conflicts list | show ID | resolve ID ...`.
func runConflicts(ctx context.Context, cfgPath string, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{conflictsUsage}
	}
	switch args[0] {
	case "list":
		return conflictsList(ctx, cfgPath, args[1:], env)
	case "show":
		return conflictsShow(ctx, cfgPath, args[1:], env)
	case "resolve":
		return conflictsResolve(ctx, cfgPath, args[1:], env)
	}
	return usageError{fmt.Sprintf("unknown conflicts command %q; %s", args[0], conflictsUsage)}
}

// conflictsList is `tandem conflicts list [--all] [--sync ID]`.
func conflictsList(ctx context.Context, cfgPath string, args []string, env Env) error {
	fs := flag.NewFlagSet("conflicts list", flag.ContinueOnError)
	all := fs.Bool("all", false, "resolved conflicts too")
	syncID := fs.String("sync", "", "only this sync's conflicts")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"conflicts list takes no arguments, only --all and --sync ID"}
	}
	eng, closeAll, err := controlEngine(ctx, cfgPath, env)
	if err != nil {
		return err
	}
	defer closeAll()
	list, err := eng.Conflicts(ctx, *syncID, *all)
	if err != nil {
		return err
	}
	if len(list) == 0 {
		msg := "no open conflicts"
		if *all {
			msg = "no conflicts"
		}
		if *syncID != "" {
			msg += " in sync " + *syncID
		}
		fmt.Fprintln(env.Stdout, msg)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSYNC\tKIND\tSTATUS\tFIELDS\tCREATED")
	for _, c := range list {
		fields := strings.Join(c.Fields, ",")
		if fields == "" {
			fields = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.SyncID, c.Kind, c.Status, fields, stamp(c.CreatedAt))
	}
	return tw.Flush()
}

// conflictsShow is `tandem conflicts show ID`.
func conflictsShow(ctx context.Context, cfgPath string, args []string, env Env) error {
	id, err := conflictID("show", args)
	if err != nil {
		return err
	}
	eng, closeAll, err := controlEngine(ctx, cfgPath, env)
	if err != nil {
		return err
	}
	defer closeAll()
	c, err := eng.Conflict(ctx, id)
	if err != nil {
		return err
	}
	w := env.Stdout
	fmt.Fprintf(w, "conflict %d\n", c.ID)
	line := func(label, value string) { fmt.Fprintf(w, "%-14s%s\n", label+":", value) }
	line("sync", c.SyncID)
	line("run", strconv.FormatInt(c.RunID, 10))
	line("kind", c.Kind)
	line("status", c.Status)
	line("resolution", orDash(c.Resolution))
	line("fields", orDash(strings.Join(c.Fields, ", ")))
	line("created", stamp(c.CreatedAt))
	resolved := "-"
	if c.ResolvedAt != nil {
		resolved = stamp(*c.ResolvedAt)
		if c.ResolvedBy != "" {
			resolved += " by " + c.ResolvedBy
		}
	}
	line("resolved", resolved)
	for _, part := range []struct {
		label string
		value map[string]any
	}{
		{"source key", c.SourceKey}, {"target key", c.TargetKey},
		{"source change", c.SourceChange}, {"target change", c.TargetChange},
		{"base", c.Base}, {"kept", c.Kept}, {"lost", c.Lost},
	} {
		if err := showJSON(w, part.label, part.value); err != nil {
			return err
		}
	}
	return nil
}

// showJSON prints a label and a value as indented JSON below it, or a dash.
func showJSON(w io.Writer, label string, v map[string]any) error {
	if v == nil {
		fmt.Fprintf(w, "%-14s-\n", label+":")
		return nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // read by people, not put into HTML
	enc.SetIndent("  ", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("showing %s: %w", label, err)
	}
	fmt.Fprintf(w, "%s:\n  %s", label, b.String())
	return nil
}

// conflictsResolve is `tandem conflicts resolve ID --take source|target | --value JSON`.
func conflictsResolve(ctx context.Context, cfgPath string, args []string, env Env) error {
	fs := flag.NewFlagSet("conflicts resolve", flag.ContinueOnError)
	take := fs.String("take", "", "the side whose values stand: source or target")
	raw := fs.String("value", "", `the values that stand, as a JSON object of source columns: {"phone": "555"}`)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	id, err := conflictID("resolve", pos)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["take"] == set["value"] {
		return usageError{"conflicts resolve takes exactly one of --take source|target and --value JSON"}
	}
	var value map[string]any
	done := "took " + *take
	if set["value"] {
		if value, err = parseValue(*raw); err != nil {
			return err
		}
		done = "took the given value"
	} else if *take != "source" && *take != "target" {
		return usageError{fmt.Sprintf("--take is source or target, not %q", *take)}
	}
	by, ok := env.Getenv("USER")
	if !ok || by == "" {
		by = "cli"
	}
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		return err
	}
	eng, closeAll, err := openEngine(ctx, cfg, slog.New(slog.NewTextHandler(env.Stderr, nil)))
	if err != nil {
		return err
	}
	defer closeAll()
	if err := eng.ResolveConflict(ctx, id, *take, value, by); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "conflict %d resolved: %s\n", id, done)
	return nil
}

// parseValue reads --value: a JSON object, its numbers kept exactly.
func parseValue(raw string) (map[string]any, error) {
	d := json.NewDecoder(strings.NewReader(raw))
	d.UseNumber()
	var v map[string]any
	err := d.Decode(&v)
	if err == nil && d.More() {
		err = fmt.Errorf("more than one JSON value")
	}
	if err != nil || v == nil {
		if err == nil {
			err = fmt.Errorf("null")
		}
		return nil, usageError{fmt.Sprintf(`--value must be a JSON object of source column values, like {"phone": "555"}: %v`, err)}
	}
	return v, nil
}

// conflictID reads the one positional argument of `conflicts show|resolve`.
func conflictID(cmd string, pos []string) (int64, error) {
	if len(pos) != 1 {
		return 0, usageError{fmt.Sprintf("conflicts %s takes exactly one conflict id", cmd)}
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError{fmt.Sprintf("conflict id must be a positive number, not %q", pos[0])}
	}
	return id, nil
}

// controlEngine is an engine with the control database only: reading
// conflicts needs no node.
func controlEngine(ctx context.Context, cfgPath string, env Env) (*engine.Engine, func(), error) {
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		return nil, nil, err
	}
	ctl, err := openPool(ctx, "control database", cfg.Control)
	if err != nil {
		return nil, nil, err
	}
	return &engine.Engine{Config: cfg, Control: ctl}, ctl.Close, nil
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
