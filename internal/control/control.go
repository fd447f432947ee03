// Package control reads and writes the control database: schema tandem,
// created and upgraded by goose migrations embedded from migrations/.
//
// The control database holds what tandem knows about its syncs: the change
// log taken from nodes, the read cursors, runs, conflicts, links and errors.
// It may be the same database as a node; the node's capture objects
// (internal/capture, sql/node) use other names in the same schema.
package control

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/tandem-sync/tandem/migrations"
)

// VersionTable is goose's bookkeeping table, kept inside schema tandem.
const VersionTable = "tandem.goose_db_version"

// Migrate creates schema tandem if needed and applies every pending
// migration, under a session advisory lock so concurrent migrates wait for
// each other. It returns the versions it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	if err := createSchema(ctx, pool); err != nil {
		return nil, fmt.Errorf("creating schema tandem in the control database: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrating the control database: %w", err)
	}
	var applied []int64
	for _, r := range results {
		applied = append(applied, r.Source.Version)
	}
	return applied, nil
}

// schemaLockKey serializes CREATE SCHEMA IF NOT EXISTS, which is not safe
// against itself: two at once can both try to create the schema.
const schemaLockKey = 7_305_116_101_110

func createSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLockKey)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS tandem"); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Version returns the control schema's migration version (0 before any).
func Version(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("reading control schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db)
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading control schema version: %w", err)
	}
	return v, nil
}

// Latest is the newest migration version this binary carries.
func Latest() (int64, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return 0, fmt.Errorf("listing control migrations: %w", err)
	}
	var latest int64
	for _, e := range entries {
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("control migration %s: %w", e.Name(), err)
		}
		latest = max(latest, v)
	}
	return latest, nil
}

func provider(db *sql.DB) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("making migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithTableName(VersionTable), goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("loading control migrations: %w", err)
	}
	return p, nil
}

// InstanceID returns this control database's identity, the consumer name it
// registers on nodes.
func InstanceID(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var id string
	if err := pool.QueryRow(ctx, "SELECT id::text FROM tandem.instance").Scan(&id); err != nil {
		return "", fmt.Errorf("reading tandem.instance (has `tandem migrate` run on the control database?): %w", err)
	}
	return id, nil
}
