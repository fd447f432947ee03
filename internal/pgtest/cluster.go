package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// InstallHint is the command that installs the PostgreSQL server binaries.
const InstallHint = "apt-get update && apt-get install -y postgresql"

// Options shape a cluster started by [Start].
type Options struct {
	// Durable keeps fsync on (benchmarks of commit behaviour need it).
	Durable bool
	// Settings are extra postgresql.conf settings (name -> value).
	Settings map[string]string
}

// Cluster is a running PostgreSQL server used by tests.
type Cluster struct {
	Dir     string // data directory, empty for an existing server
	Socket  string // socket directory, empty for an existing server
	BinDir  string // directory of the server binaries, empty for an existing server
	baseURL *url.URL
	cred    *syscall.Credential
	mu      sync.Mutex
}

// URL returns the superuser URL of database name.
func (c *Cluster) URL(name string) string {
	u := *c.baseURL
	u.Path = "/" + name
	return u.String()
}

// Existing wraps a running server at rawURL (a superuser, or a role that
// may create databases and roles) and makes sure the template exists.
func Existing(rawURL string) (*Cluster, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("TANDEM_TEST_PG_URL is not a URL: %w", err)
	}
	c := &Cluster{baseURL: u}
	return c, c.makeTemplate()
}

// Start initdb's and starts a new cluster in a temporary directory.
func Start(opts Options) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-pg-")
	if err != nil {
		return nil, fmt.Errorf("making cluster directory: %w", err)
	}
	c := &Cluster{Dir: filepath.Join(dir, "data"), Socket: dir, BinDir: bin}
	if c.cred, err = serverCredential(); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, fmt.Errorf("handing %s to the server user: %w", dir, err)
		}
	}
	if err := c.run("initdb", "-D", c.Dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.writeConf(opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.run("pg_ctl", "-D", c.Dir, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\nserver log:\n%s", err, log)
	}
	c.baseURL = &url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/postgres",
		RawQuery: url.Values{"host": {dir}, "port": {"5432"}, "sslmode": {"disable"}}.Encode()}
	if err := c.makeTemplate(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) writeConf(opts Options) error {
	settings := map[string]string{
		"listen_addresses":        "''",
		"port":                    "5432",
		"unix_socket_directories": "'" + c.Socket + "'",
		"wal_level":               "logical",
		"max_wal_senders":         "20",
		"max_replication_slots":   "20",
		"max_connections":         "200",
		"fsync":                   "off",
		"full_page_writes":        "off",
		"shared_buffers":          "128MB",
		"log_min_messages":        "warning",
		"logging_collector":       "off",
	}
	if opts.Durable {
		settings["fsync"] = "on"
		settings["full_page_writes"] = "on"
	}
	for k, v := range opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("\n# pgtest\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	defer f.Close()
	_, err = f.Write(b.Bytes())
	return err
}

// Stop stops a cluster started by [Start] and removes its files. It does
// nothing for an existing server.
func (c *Cluster) Stop() {
	if c.Dir == "" {
		return
	}
	_ = c.run("pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop")
	os.RemoveAll(c.Socket)
}

// Restart stops the server (fast shutdown) and starts it again.
func (c *Cluster) Restart() error {
	if c.Dir == "" {
		return errors.New("cannot restart an existing server")
	}
	return c.run("pg_ctl", "-D", c.Dir, "-l", filepath.Join(c.Socket, "server.log"), "-m", "fast", "-w", "-t", "60", "restart")
}

// Bin returns the path of a server binary (pgbench, psql, ...).
func (c *Cluster) Bin(name string) string {
	if c.BinDir == "" {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		if bin, err := BinDir(); err == nil {
			return filepath.Join(bin, name)
		}
		return name
	}
	return filepath.Join(c.BinDir, name)
}

func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) makeTemplate() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to test server: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", TemplateDB).Scan(&exists); err != nil {
		return fmt.Errorf("looking for template database: %w", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{TemplateDB}.Sanitize())
	var pg *pgconn.PgError
	if err != nil && !(errors.As(err, &pg) && pg.Code == "42P04") { // 42P04: another test binary made it first
		return fmt.Errorf("creating template database: %w", err)
	}
	return nil
}

// BinDir finds the PostgreSQL server binaries: $PG_BINDIR, pg_config
// --bindir, the newest /usr/lib/postgresql/*/bin, or initdb on PATH.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb) found; install them with: %s (or `make deps`), or set TANDEM_TEST_PG_URL to a running server", InstallHint)
}

func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// serverCredential returns the user the server runs as when we are root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("running as root and no 'postgres' or 'nobody' user to run the test server as; create one (useradd postgres)")
}
