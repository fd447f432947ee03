package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/engine"
)

const connectTimeout = 15 * time.Second

func runMigrate(ctx context.Context, cfgPath string, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{"migrate takes no arguments"}
	}
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		return err
	}
	pool, err := openPool(ctx, "control database", cfg.Control)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := control.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	v, err := control.Version(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(env.Stdout, "control schema is current (version %d)\n", v)
		return nil
	}
	fmt.Fprintf(env.Stdout, "control schema migrated to version %d (applied %v)\n", v, applied)
	return nil
}

func runInstall(ctx context.Context, cfgPath string, args []string, env Env) error {
	cfg, node, print, err := nodeCommand("install", cfgPath, args, env)
	if err != nil {
		return err
	}
	if node.Capture != config.CaptureTrigger && node.Capture != config.CaptureWAL {
		return usageError{fmt.Sprintf("node %s: unknown capture %q; use capture: trigger or capture: wal", node.Name, node.Capture)}
	}
	tables := cfg.TablesOnNode(node.Name)
	if len(tables) == 0 {
		return usageError{fmt.Sprintf("node %s: no sync in %s uses a table on this node; nothing to capture", node.Name, cfg.Path)}
	}
	var slot string
	if node.Capture == config.CaptureWAL {
		if slot, err = walSlot(ctx, cfg, node); err != nil {
			return err
		}
	}
	conn, err := connectNode(ctx, node)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var p *capture.Plan
	switch {
	case print && slot == "":
		p, err = capture.PlanInstall(ctx, conn, node.Name, tables, cfg.Path)
	case print:
		p, err = capture.PlanInstallWAL(ctx, conn, node.Name, tables, cfg.Path, slot)
	case slot == "":
		p, err = capture.Install(ctx, conn, node.Name, tables, cfg.Path)
	default:
		p, err = capture.InstallWAL(ctx, conn, node.Name, tables, cfg.Path, slot)
	}
	if err != nil {
		return err
	}
	if print {
		fmt.Fprint(env.Stdout, p.SQL())
		return nil
	}
	if slot == "" {
		printTriggerInstall(env, node, p)
	} else {
		printWALInstall(env, node, p)
	}
	for _, n := range p.Notices {
		fmt.Fprintf(env.Stdout, "NOTICE: %s\n", n)
	}
	return nil
}

// walSlot names a wal node's replication slot. Each control database reads
// a node through a slot of its own, named after its instance id and the
// node, so the
// control database must be migrated before a wal node is installed.
func walSlot(ctx context.Context, cfg *config.Config, node *config.Node) (string, error) {
	const why = "capture: wal names the node's replication slot after the control database"
	pool, err := openPool(ctx, "control database", cfg.Control)
	if err != nil {
		return "", fmt.Errorf("node %s: %s: %w (once it is reachable, run `tandem migrate` first)", node.Name, why, err)
	}
	defer pool.Close()
	id, err := control.InstanceID(ctx, pool)
	if err != nil {
		return "", fmt.Errorf("node %s: %s, which is not migrated: run `tandem migrate` first (%w)", node.Name, why, err)
	}
	return capture.SlotName(id, node.Name), nil
}

func printTriggerInstall(env Env, node *config.Node, p *capture.Plan) {
	if p.Empty() {
		fmt.Fprintf(env.Stdout, "node %s: capture version %d already installed on %s; nothing to do\n", node.Name, p.ToVersion, strings.Join(p.Kept, ", "))
		return
	}
	fmt.Fprintf(env.Stdout, "node %s: capture version %d installed (was %d)\n", node.Name, p.ToVersion, p.FromVersion)
	if len(p.Added) > 0 {
		fmt.Fprintf(env.Stdout, "  capturing now: %s\n", strings.Join(p.Added, ", "))
	}
	if len(p.Kept) > 0 {
		fmt.Fprintf(env.Stdout, "  already captured: %s\n", strings.Join(p.Kept, ", "))
	}
}

func printWALInstall(env Env, node *config.Node, p *capture.Plan) {
	if p.Empty() {
		fmt.Fprintf(env.Stdout, "node %s: capture: wal already installed (capture version %d); nothing to do\n", node.Name, p.ToVersion)
	} else {
		fmt.Fprintf(env.Stdout, "node %s: capture: wal installed (capture version %d, was %d)\n", node.Name, p.ToVersion, p.FromVersion)
	}
	pub := map[string]string{"create": "created", "alter": "updated", "": "unchanged"}[p.Publication]
	fmt.Fprintf(env.Stdout, "  publication %s (%s): %s\n", capture.Publication, pub, strings.Join(p.Published, ", "))
	slot := "already present"
	if p.CreateSlot {
		slot = "created (pgoutput)"
	}
	fmt.Fprintf(env.Stdout, "  replication slot %s: %s\n", p.Slot, slot)
}

func runUninstall(ctx context.Context, cfgPath string, args []string, env Env) error {
	_, node, print, err := nodeCommand("uninstall", cfgPath, args, env)
	if err != nil {
		return err
	}
	conn, err := connectNode(ctx, node)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if print {
		p, err := capture.PlanUninstall(ctx, conn, node.Name)
		if err != nil {
			return err
		}
		fmt.Fprint(env.Stdout, p.SQL())
		return nil
	}
	if s, err := capture.ReadQueueStats(ctx, conn); err == nil && s.Rows > 0 {
		fmt.Fprintf(env.Stderr, "tandem: warning: node %s: dropping about %d queued changes that no consumer has taken\n", node.Name, s.Rows)
	}
	p, err := capture.Uninstall(ctx, conn, node.Name)
	if err != nil {
		return err
	}
	if p.Empty() {
		fmt.Fprintf(env.Stdout, "node %s: capture is not installed; nothing to do\n", node.Name)
		return nil
	}
	fmt.Fprintf(env.Stdout, "node %s: capture removed\n", node.Name)
	if p.Publication == "drop" {
		fmt.Fprintf(env.Stdout, "  publication %s: dropped\n", capture.Publication)
	}
	// Each slot by name: a slot retains WAL, so its fate is never implicit.
	for _, s := range p.DropSlots {
		fmt.Fprintf(env.Stdout, "  replication slot %s: dropped\n", s)
	}
	return nil
}

func runStatus(ctx context.Context, cfgPath string, args []string, env Env) error {
	if len(args) > 0 {
		return usageError{"status takes no arguments"}
	}
	cfg, err := loadConfig(cfgPath, env)
	if err != nil {
		return err
	}
	ctl := readControlStatus(ctx, cfg)
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCAPTURE\tQUEUED\tOLDEST\tQUEUE SIZE\tCONSUMERS\tTAKEN\tLAST TAKEN")
	nodes := map[string]*nodeStatus{}
	slots := map[string]*slotStatus{} // of wal nodes
	var failed []string
	for _, name := range cfg.NodeNames {
		node := cfg.Nodes[name]
		cur := ctl.taken[name]
		var tables []string // whose pending changes the sync table needs
		if ctl.err == nil {
			for _, t := range cfg.TablesOnNode(name) {
				tables = append(tables, t.Schema+"."+t.Name)
			}
		}
		slot := "" // a wal node's slot, when the control database names it
		if node.Capture == config.CaptureWAL && ctl.instance != "" {
			slot = capture.SlotName(ctl.instance, name)
		}
		ns, err := readNodeStatus(ctx, node, tables, ctl.positions[name], slot)
		if ns != nil && ns.slot != nil {
			slots[name] = ns.slot
		}
		if err != nil {
			// The row says so; the (often multi-line) error goes below the table.
			fmt.Fprintf(tw, "%s\t%s\tunavailable (see below)\n", name, node.Capture)
			failed = append(failed, err.Error()) // names the node already
			continue
		}
		nodes[name] = ns
		s := ns.queue
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\n", name, node.Capture, s.Rows, s.OldestAge.Round(time.Second),
			humanBytes(s.Bytes), s.Consumers, cur.rows, cur.last)
		for _, msg := range s.OverLimit(node.QueueLimit.Rows, node.QueueLimit.Age) {
			fmt.Fprintf(env.Stderr, "WARNING: node %s: %s\n", name, msg)
		}
	}
	tw.Flush()
	printSlots(env, cfg, slots, ctl.taken)
	if ctl.err == nil {
		fmt.Fprintln(env.Stdout)
		printSyncs(env, cfg, ctl.syncs, nodes)
	}
	return statusError(ctl.err, failed)
}

type cursorStatus struct {
	rows int64
	last string
	lsn  *string // a wal node's: everything its stream sent up to here is in change_log
}

func readCursors(ctx context.Context, pool *pgxpool.Pool) (map[string]cursorStatus, error) {
	rows, err := pool.Query(ctx, "SELECT node, rows_taken, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS TZ'), lsn::text FROM tandem.cursors")
	if err != nil {
		return nil, err
	}
	out := map[string]cursorStatus{}
	for rows.Next() {
		var n string
		var c cursorStatus
		if err := rows.Scan(&n, &c.rows, &c.last, &c.lsn); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, rows.Err()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// nodeCommand parses `CMD NODE [--print]`, loads the config and finds the
// node.
func nodeCommand(cmd, cfgPath string, args []string, env Env) (cfg *config.Config, node *config.Node, print bool, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.BoolVar(&print, "print", false, "print the SQL, change nothing")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, nil, false, err
	}
	if len(pos) != 1 {
		return nil, nil, false, usageError{fmt.Sprintf("%s takes exactly one node name", cmd)}
	}
	if cfg, err = loadConfig(cfgPath, env); err != nil {
		return nil, nil, false, err
	}
	node, ok := cfg.Nodes[pos[0]]
	if !ok {
		return nil, nil, false, usageError{fmt.Sprintf("no node %q in %s (nodes: %s)", pos[0], cfg.Path, strings.Join(cfg.NodeNames, ", "))}
	}
	return cfg, node, print, nil
}

// connectNode connects to a node; the error names the node and where it is,
// never the password.
func connectNode(ctx context.Context, node *config.Node) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, node.DSN)
	if err != nil {
		return nil, fmt.Errorf("node %s (%s): cannot connect: %w", node.Name, config.RedactDSN(node.DSN), redactErr(err))
	}
	return conn, nil
}

func openPool(ctx context.Context, what, dsn string) (*pgxpool.Pool, error) {
	return openPoolWith(ctx, what, dsn, pgxpool.ParseConfig)
}

// openNodePool opens a node pool for the engine (engine.NodePoolConfig).
func openNodePool(ctx context.Context, node, dsn string) (*pgxpool.Pool, error) {
	return openPoolWith(ctx, "node "+node, dsn, engine.NodePoolConfig)
}

func openPoolWith(ctx context.Context, what, dsn string, parse func(string) (*pgxpool.Config, error)) (*pgxpool.Pool, error) {
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	cfg, err := parse(dsn)
	var pool *pgxpool.Pool
	if err == nil {
		pool, err = pgxpool.NewWithConfig(pctx, cfg)
	}
	if err == nil {
		err = pool.Ping(pctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, fmt.Errorf("%s (%s): cannot connect: %w", what, config.RedactDSN(dsn), redactErr(err))
	}
	return pool, nil
}

// redactErr keeps a connection error's message but drops a DSN parse error's
// echo of the input, which may carry a password; a DSN that cannot be parsed
// is a configuration mistake (exit 2).
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return usageError{"the DSN cannot be parsed (check its syntax)"}
	}
	return err
}
