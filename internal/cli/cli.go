// Package cli implements tandem's commands: it parses arguments, loads
// tandem.yaml and calls the packages that do the work (internal/capture,
// internal/control). cmd/tandem only hands it the process's arguments,
// streams and environment, so commands are tested in-process.
//
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config, 3 drift
// found (verify).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tandem-sync/tandem/internal/config"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	ExitDrift   = 3 // verify found the two tables of a sync differ
)

// Env is what a command gets from its process.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) (string, bool)
}

const usage = `tandem keeps tables in several PostgreSQL databases in step, both ways.

Usage:
  tandem [-c FILE] COMMAND [ARGS]

Commands:
  migrate                 create or upgrade the control schema (schema tandem)
  install NODE [--print]  install change capture on a node; --print shows the SQL only
  uninstall NODE [--print] remove everything tandem created on a node
  run [--once] [--resync SYNC] [SYNC...]
                          keep the syncs in step (the daemon); --once: one run of each, then exit;
                          --resync: first pair and compare every row of SYNC again (initial sync)
  status                  per sync: last run, pending changes, open conflicts; per node: capture queues
  conflicts list [--all] [--sync ID]
                          conflicts waiting for a person (--all: resolved ones too)
  conflicts show ID       one conflict: both changes, the base, what was kept and lost
  conflicts resolve ID --take source|target | --value JSON
                          settle a conflict on both sides: one side's values, or the given
                          source column values
  verify SYNC [--repair] [--chunk N]
                          compare the sync's two tables through the mapping; exit 3 on drift;
                          --repair: fix the drift by the sync's strategy, then verify again
  demo                    the whole story on a throwaway local PostgreSQL (nothing to configure)

Flags:
  -c, --config FILE       configuration (default ./tandem.yaml, or $TANDEM_CONFIG)
`

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Run runs one tandem command and returns its exit code.
func Run(ctx context.Context, args []string, env Env) int {
	cfgPath, rest, err := globalFlags(args, env.Getenv)
	if err == nil && len(rest) == 0 {
		err = usageError{"no command given"}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "tandem: %v\n\n%s", err, usage)
		return ExitUsage
	}
	cmd, cmdArgs := rest[0], rest[1:]
	var run func(context.Context, string, []string, Env) error
	switch cmd {
	case "migrate":
		run = runMigrate
	case "install":
		run = runInstall
	case "uninstall":
		run = runUninstall
	case "run":
		run = runRun
	case "status":
		run = runStatus
	case "conflicts":
		run = runConflicts
	case "verify":
		run = runVerify
	case "demo":
		run = runDemo
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "tandem: unknown command %q\n\n%s", cmd, usage)
		return ExitUsage
	}
	return exitCode(run(ctx, cfgPath, cmdArgs, env), env)
}

func exitCode(err error, env Env) int {
	if err == nil {
		return ExitOK
	}
	var ue usageError
	var probs *config.Problems
	var drift driftError
	if errors.As(err, &probs) && err == error(probs) {
		// Each line starts FILE:LINE:, as editors and grep read it; a
		// "tandem: " prefix would hide the first one.
		fmt.Fprintln(env.Stderr, probs)
		return ExitUsage
	}
	fmt.Fprintf(env.Stderr, "tandem: %v\n", err)
	if errors.As(err, &ue) || errors.As(err, &probs) {
		return ExitUsage
	}
	if errors.As(err, &drift) {
		return ExitDrift
	}
	return ExitFailure
}

// globalFlags takes -c/--config from anywhere in args (before or after the
// command) and returns the config path and the other arguments.
func globalFlags(args []string, getenv func(string) (string, bool)) (string, []string, error) {
	path := "tandem.yaml"
	if p, ok := getenv("TANDEM_CONFIG"); ok && p != "" {
		path = p
	}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" || a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return "", nil, usageError{a + " needs a file name"}
			}
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="), strings.HasPrefix(a, "-c="):
			path = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return path, rest, nil
}

// parseFlags parses a command's own flags (anywhere among its arguments)
// and returns its positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func loadConfig(path string, env Env) (*config.Config, error) {
	cfg, err := config.Load(path, env.Getenv)
	if err != nil {
		var probs *config.Problems
		if errors.As(err, &probs) {
			return nil, err
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, usageError{fmt.Sprintf("no configuration at %s: pass -c FILE or set TANDEM_CONFIG", path)}
		}
		return nil, err
	}
	return cfg, nil
}
