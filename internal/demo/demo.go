package demo

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
	"github.com/tandem-sync/tandem/internal/control"
	"github.com/tandem-sync/tandem/internal/engine"
	"github.com/tandem-sync/tandem/internal/pgtest"
)

// configYAML is the demo's tandem.yaml; its ${VAR}s are the throwaway
// cluster's database URLs.
//
//go:embed tandem.yaml
var configYAML []byte

// configName is the name the config is parsed under: it appears in messages.
const configName = "demo/tandem.yaml"

// waitTimeout bounds every wait for a change to show on the other side.
const waitTimeout = 30 * time.Second

// databases the demo creates, and the tables in each.
var schema = map[string]string{
	"crm": `CREATE TABLE contacts (
    id         bigserial PRIMARY KEY,
    full_name  text,
    email      text UNIQUE,
    phone      text,
    updated_at timestamptz DEFAULT now());
CREATE TABLE companies (id bigserial PRIMARY KEY, name text, domain text);`,
	"hubspot": `CREATE TABLE hs_contacts (
    id           bigserial PRIMARY KEY,
    firstname    text,
    lastname     text,
    email        text UNIQUE,
    phone_number text,
    lifecycle    text);
CREATE TABLE hs_companies (id bigserial PRIMARY KEY, company_name text, website text);`,
}

// demo is one run of the demo: the cluster, the engine and the daemon, and
// the demo's own connections, which play the applications.
type demo struct {
	out     io.Writer
	cluster *pgtest.Cluster
	urls    map[string]string        // by database: control, crm, hubspot
	read    map[string]*pgxpool.Pool // the demo's reads, by database
	cfg     *config.Config
	eng     *engine.Engine
	engDB   []*pgxpool.Pool // the engine's pools
	daemon  *daemonRun
	cleaned bool

	conflict int64 // the manual conflict, once queued
}

// daemonRun is the daemon running in a goroutine.
type daemonRun struct {
	cancel context.CancelFunc
	done   chan error
}

// step is one numbered step of the story.
type step struct {
	title string
	run   func(context.Context) error
}

// Run runs the demo and prints it to w. ctx cancelled (Ctrl-C) stops it;
// whatever happens, the daemon and the cluster are stopped and the cluster's
// directory removed before Run returns. The error names the step that
// failed.
func Run(ctx context.Context, w io.Writer) error {
	d := &demo{out: &syncWriter{w: w}, urls: map[string]string{}, read: map[string]*pgxpool.Pool{}}
	steps := d.steps()
	d.printf("tandem demo: two-way sync between a CRM and a HubSpot mirror, on a throwaway PostgreSQL.\n")
	defer d.cleanup() // after a failure or Ctrl-C; the last step does it otherwise
	for i, s := range steps {
		d.printf("\n[%d/%d] %s\n", i+1, len(steps), s.title)
		start := time.Now()
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted: %w", err)
			}
			d.printf("    FAILED: %v\n\nCleaning up after the failure:\n", err)
			return fmt.Errorf("demo step %d (%s) failed: %w", i+1, s.title, err)
		}
		d.printf("    ok (%d ms)\n", ms(time.Since(start)))
	}
	d.printf("\nDemo complete: all %d steps succeeded.\n", len(steps))
	return nil
}

func (d *demo) steps() []step {
	return []step{
		{"Start a throwaway PostgreSQL cluster with databases control, crm and hubspot", d.startCluster},
		{"Load the configuration (tandem.yaml, embedded in the binary)", d.loadConfig},
		{"Migrate the control database and install capture on both nodes", d.install},
		{"Start the daemon (tandem run)", d.startDaemonStep},
		{"Insert a contact in crm: it appears in hubspot, its name split", d.insertInCRM},
		{"Edit the contact in hubspot: the change flows back to crm", d.editInHubSpot},
		{"Conflict, latest_wins: both sides change the same phone while the daemon is paused", d.latestWins},
		{"Conflict, manual: both sides change a company's domain; tandem queues it for a person", d.manualQueued},
		{"Resume the daemon and resolve the manual conflict (take hubspot's value)", d.manualResolved},
		{fmt.Sprintf("Bulk: insert %s contacts in crm in one statement", thousands(bulkContacts)), d.bulkInsert},
		{fmt.Sprintf("Update %d of them in crm: the run writes %d rows, not %s", bulkUpdated, bulkUpdated, thousands(bulkContacts)), d.bulkUpdate},
		{"Stop the daemon, then read what the runs recorded: tandem.sync_runs", d.printRuns},
		{"Stop the cluster and remove its temporary directory", func(context.Context) error { return d.cleanup() }},
	}
}

// startCluster starts the cluster and creates the databases and tables.
func (d *demo) startCluster(ctx context.Context) error {
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		return err
	}
	d.cluster = c
	d.printf("    server binaries: %s\n", c.BinDir)
	d.printf("    cluster:         %s (Unix socket only, no TCP port)\n", c.Socket)
	for _, db := range []string{"control", "crm", "hubspot"} {
		if err := c.CreateDB(ctx, db); err != nil {
			return err
		}
		d.urls[db] = c.URL(db)
		pool, err := pgxpool.New(ctx, d.urls[db])
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", db, err)
		}
		d.read[db] = pool
	}
	for _, db := range []string{"crm", "hubspot"} {
		if _, err := d.read[db].Exec(ctx, schema[db]); err != nil {
			return fmt.Errorf("creating the tables of %s: %w", db, err)
		}
		d.printf("\n    %s=# %s\n", db, strings.ReplaceAll(schema[db], "\n", "\n    "))
	}
	return nil
}

// loadConfig prints and parses the embedded config.
func (d *demo) loadConfig(ctx context.Context) error {
	d.printf("    %s\n", strings.ReplaceAll(strings.TrimSpace(string(configYAML)), "\n", "\n    "))
	env := map[string]string{"CONTROL_URL": d.urls["control"], "CRM_URL": d.urls["crm"], "HUBSPOT_URL": d.urls["hubspot"]}
	cfg, err := config.Parse(configName, configYAML, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		return err
	}
	d.cfg = cfg
	d.printf("\n")
	for _, k := range []string{"CONTROL_URL", "CRM_URL", "HUBSPOT_URL"} {
		d.printf("    %s=%s\n", k, env[k])
	}
	for _, s := range cfg.Syncs {
		d.printf("    sync %-9s %s.%s <-> %s.%s, %s, conflict %s\n", s.ID, s.Source.Node, s.Source.Table,
			s.Target.Node, s.Target.Table, s.Direction, s.Conflict)
	}
	return nil
}

// install migrates the control database, installs capture on both nodes
// and builds the engine.
func (d *demo) install(ctx context.Context) error {
	applied, err := control.Migrate(ctx, d.read["control"])
	if err != nil {
		return err
	}
	d.printf("    control: schema tandem created, migrations %v applied (sync_runs, sync_conflicts, change_log, links, ...)\n", applied)
	for _, node := range d.cfg.NodeNames {
		conn, err := pgx.Connect(ctx, d.urls[node])
		if err != nil {
			return fmt.Errorf("node %s: connecting: %w", node, err)
		}
		p, err := capture.Install(ctx, conn, node, d.cfg.TablesOnNode(node), configName)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		d.printf("    node %s: capture version %d installed in %d statements: schema tandem, tandem.change_queue,\n", node, p.ToVersion, len(p.Statements))
		d.printf("        4 statement-level triggers (insert, update, delete, truncate) on each of %s\n", strings.Join(p.Added, ", "))
	}
	d.eng = &engine.Engine{Config: d.cfg, Nodes: map[string]*pgxpool.Pool{},
		Logger: slog.New(slog.NewTextHandler(d.out, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, db := range []string{"control", "crm", "hubspot"} {
		pool, err := engine.OpenNodePool(ctx, d.urls[db])
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", db, err)
		}
		d.engDB = append(d.engDB, pool)
		if db == "control" {
			d.eng.Control = pool
		} else {
			d.eng.Nodes[db] = pool
		}
	}
	return nil
}

func (d *demo) startDaemonStep(ctx context.Context) error {
	took, err := d.startDaemon(ctx)
	if err != nil {
		return err
	}
	d.printf("    ready after %d ms: it LISTENs on crm and hubspot and runs a sync when a NOTIFY says it has changes\n", ms(took))
	d.printf("    (its log goes here too, from level WARN up)\n")
	return nil
}

// startDaemon runs the daemon in a goroutine and waits until it listens.
func (d *demo) startDaemon(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	dctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	run := &daemonRun{cancel: cancel, done: make(chan error, 1)}
	dm := &engine.Daemon{Engine: d.eng, Ready: func() { close(ready) }}
	go func() { run.done <- dm.Run(dctx) }()
	d.daemon = run
	select {
	case <-ready:
		return time.Since(start), nil
	case err := <-run.done:
		d.daemon = nil
		cancel()
		if err == nil {
			err = errors.New("it returned")
		}
		return 0, fmt.Errorf("the daemon stopped before it was ready: %w", err)
	case <-time.After(waitTimeout):
		return 0, fmt.Errorf("the daemon was not ready within %s", waitTimeout)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// stopDaemon stops the daemon; the run in hand, if any, finishes first.
func (d *demo) stopDaemon() error {
	if d.daemon == nil {
		return nil
	}
	d.daemon.cancel()
	err := <-d.daemon.done
	d.daemon = nil
	return err
}

// cleanup stops the daemon and the cluster and removes the cluster's
// directory. It runs once; later calls do nothing.
func (d *demo) cleanup() error {
	if d.cleaned {
		return nil
	}
	d.cleaned = true
	var errs []error
	if d.daemon != nil {
		if err := d.stopDaemon(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the daemon: %w", err))
		}
		d.printf("    daemon stopped\n")
	}
	for _, p := range d.engDB {
		p.Close()
	}
	for _, p := range d.read {
		p.Close()
	}
	if d.cluster != nil {
		d.cluster.Stop()
		if _, err := os.Stat(d.cluster.Socket); !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("the cluster's directory %s is still there", d.cluster.Socket))
		} else {
			d.printf("    cluster stopped, %s removed\n", d.cluster.Socket)
		}
	}
	return errors.Join(errs...)
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// syncWriter serializes writes: the daemon's logger shares the output.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// thousands formats n with comma separators: 10000 -> 10,000.
func thousands(n int64) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
