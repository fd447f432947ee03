// Package pgtest starts throwaway PostgreSQL clusters for tests and hands
// each test a fresh database cloned from a template.
//
// A test package calls [Main] from TestMain (or simply [NewDB], which starts
// the shared cluster on first use). The cluster is made with the machine's
// own server binaries: initdb into a temporary directory, wal_level=logical,
// fsync=off, and a Unix socket in that directory only (no TCP port, so
// parallel test binaries never race for a port). When the test binary runs
// as root the server runs as the "postgres" (or "nobody") user, since
// PostgreSQL refuses to run as root.
//
// TANDEM_TEST_PG_URL points the tests at an existing server instead; it must
// be a role that may create databases and roles.
//
// A missing server binary fails the run with the command that installs it:
// tests never skip for want of a server.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TemplateDB is the database every test database is cloned from.
const TemplateDB = "tandem_template"

var (
	sharedOnce sync.Once
	shared     *Cluster
	sharedErr  error
)

// Shared returns the cluster shared by the tests of this test binary,
// starting it on first use. With TANDEM_TEST_PG_URL set it is that server.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() {
		if u := os.Getenv("TANDEM_TEST_PG_URL"); u != "" {
			shared, sharedErr = Existing(u)
			return
		}
		shared, sharedErr = Start(Options{})
	})
	if sharedErr != nil {
		t.Fatalf("pgtest: %v", sharedErr)
	}
	return shared
}

// Main runs the tests of a package and stops the shared cluster afterwards.
// Use it from TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// DB is one fresh database of a test.
type DB struct {
	Name    string
	URL     string // connection URL as the cluster's superuser
	Cluster *Cluster
	Pool    *pgxpool.Pool
}

// NewDB creates a fresh database (a clone of the template) on the shared
// cluster, and drops it when the test ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	return Shared(t).NewDB(t)
}

// NewDB creates a fresh database on c for t, cloned from the template, with
// a pool connected to it; both go away when the test ends.
func (c *Cluster) NewDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := UniqueName("t")
	if err := c.CreateDB(ctx, name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	db := &DB{Name: name, URL: c.URL(name), Cluster: c}
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", name, err)
	}
	db.Pool = pool
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.DropDB(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return db
}

// Exec runs SQL statements on the test database and fails the test on error.
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("pgtest: exec on %s: %v\n%s", db.Name, err, sql)
	}
}

// URLAs returns the database's URL for another role (password optional).
func (db *DB) URLAs(role, password string) string {
	u, err := url.Parse(db.URL)
	if err != nil {
		panic(err) // URLs are built by this package
	}
	if password == "" {
		u.User = url.User(role)
	} else {
		u.User = url.UserPassword(role, password)
	}
	return u.String()
}

// CreateDB creates database name as a clone of the template.
func (c *Cluster) CreateDB(ctx context.Context, name string) error {
	c.mu.Lock() // CREATE DATABASE ... TEMPLATE fails if another clone runs at once
	defer c.mu.Unlock()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to cluster: %w", err)
	}
	defer conn.Close(ctx)
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{TemplateDB}.Sanitize()
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

// DropDB drops database name, disconnecting whoever is still connected.
func (c *Cluster) DropDB(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connecting to cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("dropping database %s: %w", name, err)
	}
	return nil
}

// UniqueName returns prefix followed by random hex: a name no other test
// uses (databases, roles, slots, publications).
func UniqueName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}
