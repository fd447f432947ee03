package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/engine"
)

// runRun is `tandem run [--once] [SYNC...]`.
func runRun(ctx context.Context, cfgPath string, args []string, env Env) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	once := fs.Bool("once", false, "run each sync once, then exit")
	var resync []string
	fs.Func("resync", "run the initial sync of `SYNC` again before anything else (repeatable)", func(v string) error {
		resync = append(resync, v)
		return nil
	})
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	eng, closeAll, err := syncsEngine(ctx, cfgPath, env, append(slices.Clone(rest), resync...))
	if err != nil {
		return err
	}
	defer closeAll()
	cfg, log := eng.Config, eng.Logger
	if err := recordConfigs(ctx, eng.Control, cfg); err != nil {
		return err
	}
	eng.Progress = progressReporter(env, log)
	for _, id := range resync {
		res, err := eng.Resync(ctx, id)
		if err != nil {
			return err
		}
		if res.Busy {
			return fmt.Errorf("sync %s: another tandem process is running it; stop it to resync", id)
		}
	}
	if !*once {
		d := &engine.Daemon{Engine: eng, Syncs: rest}
		return d.Run(ctx)
	}
	ids := rest
	if len(ids) == 0 {
		for _, s := range cfg.Syncs {
			ids = append(ids, s.ID)
		}
	}
	var failed []error
	for _, id := range ids {
		res, err := eng.RunSync(ctx, id, "once")
		if err != nil {
			failed = append(failed, err)
			continue
		}
		if res.Busy {
			fmt.Fprintf(env.Stdout, "sync %s: skipped: another tandem process is running it\n", id)
			continue
		}
		fmt.Fprintf(env.Stdout, "sync %s: %d synced (%d created, %d updated, %d deleted), %d conflicts, %d errors\n",
			id, res.Synced(), res.Created, res.Updated, res.Deleted, res.Conflicts, res.Errors)
	}
	if err := eng.PruneAndLog(ctx); err != nil { // the exit code is the runs'
		log.Error("pruning tandem.change_log failed", "err", err)
	}
	return errors.Join(failed...)
}

// syncsEngine loads the config, checks that it has the syncs ids names,
// and opens an engine on it that logs to stderr.
func syncsEngine(ctx context.Context, cfgPath string, env Env, ids []string) (*engine.Engine, func(), error) {
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		return nil, nil, err
	}
	for _, id := range ids {
		if _, ok := cfg.SyncByID(id); !ok {
			return nil, nil, usageError{fmt.Sprintf("no sync %q in %s", id, cfg.Path)}
		}
	}
	return openEngine(ctx, cfg, slog.New(slog.NewTextHandler(env.Stderr, nil)))
}

// openEngine connects to the control database and every node.
func openEngine(ctx context.Context, cfg *config.Config, log *slog.Logger) (*engine.Engine, func(), error) {
	var pools []*pgxpool.Pool
	closeAll := func() {
		for _, p := range pools {
			p.Close()
		}
	}
	ctl, err := openPool(ctx, "control database", cfg.Control)
	if err != nil {
		return nil, nil, err
	}
	pools = append(pools, ctl)
	nodes := map[string]*pgxpool.Pool{}
	for _, name := range cfg.NodeNames {
		p, err := openNodePool(ctx, name, cfg.Nodes[name].DSN)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		pools = append(pools, p)
		nodes[name] = p
	}
	// A pull's control transaction moves at most a window of queue rows.
	e := &engine.Engine{Config: cfg, Control: ctl, Nodes: nodes, Logger: log, Window: cfg.Window, PullBatch: cfg.Window}
	return e, func() { e.Close(); closeAll() }, nil
}

// recordConfigs writes the syncs as loaded to tandem.sync_configs, for
// analysts joining runs to what they synced.
func recordConfigs(ctx context.Context, ctl *pgxpool.Pool, cfg *config.Config) error {
	for _, s := range cfg.Syncs {
		fields, err := json.Marshal(map[string]any{"fields": s.Fields, "match": s.Match, "interval": s.Interval.String()})
		if err != nil {
			return err
		}
		_, err = ctl.Exec(ctx, `INSERT INTO tandem.sync_configs (sync_id, entity, source_node, source_table, target_node,
			target_table, direction, conflict, config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (sync_id) DO UPDATE SET entity = excluded.entity, source_node = excluded.source_node,
			source_table = excluded.source_table, target_node = excluded.target_node, target_table = excluded.target_table,
			direction = excluded.direction, conflict = excluded.conflict, config = excluded.config, updated_at = now()`,
			s.ID, s.Entity, s.Source.Node, s.Source.Table, s.Target.Node, s.Target.Table, s.Direction, s.Conflict, string(fields))
		if err != nil {
			return fmt.Errorf("control database: recording sync %s (run `tandem migrate`?): %w", s.ID, err)
		}
	}
	return nil
}
