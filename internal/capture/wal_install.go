package capture

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tandem-sync/tandem/internal/config"
)

// slotPrefix starts the name of every slot tandem creates (see SlotName):
// uninstall drops the database's logical slots named so.
const slotPrefix = "tandem_"

// validSlot is what PostgreSQL accepts as a replication slot name.
var validSlot = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// publishOptions are publication tandem's options. Every DML kind is
// published; publish_via_partition_root makes a partitioned table's changes
// arrive under its own name (the one in tandem.yaml), not its partitions'.
const publishOptions = "publish = 'insert, update, delete, truncate', publish_via_partition_root = true"

// canReplicateSQL tells whether the current role may create, read and drop
// replication slots: superuser or REPLICATION.
const canReplicateSQL = `coalesce((SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user), false)`

// walServer is what a node offers logical replication.
type walServer struct {
	walLevel     string
	walSenders   int
	usedSlots    int
	maxSlots     int
	role         string
	database     string
	canReplicate bool // superuser or REPLICATION: creating, reading and dropping slots
	canCreate    bool // CREATE on the database: CREATE PUBLICATION
}

func readWALServer(ctx context.Context, q Querier) (*walServer, error) {
	s := &walServer{}
	err := q.QueryRow(ctx, `
		SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int,
		       (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int,
		       current_user, current_database(),
		       `+canReplicateSQL+`,
		       has_database_privilege(current_database(), 'CREATE')`).Scan(
		&s.walLevel, &s.walSenders, &s.usedSlots, &s.maxSlots, &s.role, &s.database, &s.canReplicate, &s.canCreate)
	if err != nil {
		return nil, fmt.Errorf("reading replication settings: %w", err)
	}
	return s, nil
}

// publication is publication tandem as the node has it.
type publication struct {
	allTables bool     // FOR ALL TABLES: not ours to narrow
	options   bool     // publishes every DML kind, via the partition root
	owner     string   // its owner's name
	owned     bool     // the role has its owner's rights (ALTER PUBLICATION needs them)
	explicit  []string // tables listed in it (pg_publication_rel), quoted
	effective []string // tables it publishes, schemas included (pg_publication_tables), quoted
	filtered  bool     // a listed table has a row filter or a column list
}

// readPublication returns publication tandem, or nil when there is none.
func readPublication(ctx context.Context, q Querier) (*publication, error) {
	p := &publication{}
	var oid uint32
	err := q.QueryRow(ctx, `
		SELECT oid, puballtables, pubinsert AND pubupdate AND pubdelete AND pubtruncate AND pubviaroot,
		       pg_get_userbyid(pubowner), pg_has_role(pubowner, 'USAGE')
		FROM pg_publication WHERE pubname = $1`, Publication).Scan(&oid, &p.allTables, &p.options, &p.owner, &p.owned)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading publication %s: %w", Publication, err)
	}
	// prqual and prattrs (row filters, column lists) exist from PostgreSQL
	// 15 on; through to_jsonb the query runs on older servers too.
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, to_jsonb(pr) ->> 'prqual' IS NOT NULL OR to_jsonb(pr) ->> 'prattrs' IS NOT NULL
		FROM pg_publication_rel pr
		JOIN pg_class c ON c.oid = pr.prrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE pr.prpubid = $1`, oid)
	if err != nil {
		return nil, fmt.Errorf("listing the tables of publication %s: %w", Publication, err)
	}
	for rows.Next() {
		var schema, name string
		var filtered bool
		if err := rows.Scan(&schema, &name, &filtered); err != nil {
			return nil, err
		}
		p.explicit = append(p.explicit, pgx.Identifier{schema, name}.Sanitize())
		p.filtered = p.filtered || filtered
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the tables of publication %s: %w", Publication, err)
	}
	rows, err = q.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", Publication)
	if err != nil {
		return nil, fmt.Errorf("listing the tables of publication %s: %w", Publication, err)
	}
	for rows.Next() {
		var schema, name string
		if err := rows.Scan(&schema, &name); err != nil {
			return nil, err
		}
		p.effective = append(p.effective, pgx.Identifier{schema, name}.Sanitize())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the tables of publication %s: %w", Publication, err)
	}
	return p, nil
}

// publishes reports whether the publication publishes exactly tables (quoted
// names), listed one by one, whole.
func (p *publication) publishes(tables []string) bool {
	want := slices.Sorted(slices.Values(tables))
	return !p.filtered &&
		slices.Equal(slices.Sorted(slices.Values(p.explicit)), want) &&
		slices.Equal(slices.Sorted(slices.Values(p.effective)), want)
}

// slot is a replication slot of the server.
type slot struct {
	name, kind, plugin, database string
	ours                         bool // logical, on the current database
	activePID                    int  // 0 when no session uses it
}

// readSlot returns the slot named name, or nil when there is none.
func readSlot(ctx context.Context, q Querier, name string) (*slot, error) {
	s := &slot{name: name}
	err := q.QueryRow(ctx, `
		SELECT slot_type, coalesce(plugin, ''), coalesce(database::text, ''),
		       slot_type = 'logical' AND database = current_database(), coalesce(active_pid, 0)
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&s.kind, &s.plugin, &s.database, &s.ours, &s.activePID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading replication slot %s: %w", name, err)
	}
	return s, nil
}

// PlanInstallWAL inspects a capture: wal node and returns what `tandem
// install` must run: schema tandem at the current capture version (the
// engine records its applies in tandem.applied), no capture trigger (any
// left from capture: trigger are dropped), publication tandem publishing
// exactly tables, and, after the COMMIT, replication slot slot with the
// pgoutput plugin if the node lacks it.
//
// Every problem comes back at once as *config.Problems: wal_level, the
// role's REPLICATION, a free slot, and per table (with its line in file)
// a replica identity that lets its updates and deletes be decoded. A table
// that can be captured with less than field-level merge gets a notice.
func PlanInstallWAL(ctx context.Context, q Querier, node string, tables []config.TableRef, file string, slot string) (*Plan, error) {
	if !validSlot.MatchString(slot) {
		return nil, fmt.Errorf("node %s: %q is not a replication slot name (lower-case letters, digits and _, at most 63)", node, slot)
	}
	st, err := inspect(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: inspecting capture state: %w", node, err)
	}
	srv, err := readWALServer(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	pub, err := readPublication(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	have, err := readSlot(ctx, q, slot)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	probs := &config.Problems{File: file}
	resolved, err := resolveTables(ctx, q, node, tables, st, config.CaptureWAL, probs)
	if err != nil {
		return nil, err
	}
	p, err := planSchema(node, st)
	if err != nil {
		return nil, err
	}
	p.Slot = slot
	checkServer(node, srv, probs)
	for _, t := range resolved {
		notice, err := checkReplicaIdentity(ctx, q, node, t, probs)
		if err != nil {
			return nil, err
		}
		if notice != "" {
			p.Notices = append(p.Notices, notice)
		}
	}
	// Capture triggers left from capture: trigger would fill a queue that
	// nothing reads on a wal node: drop them all, configured table or not.
	for _, k := range slices.Sorted(maps.Keys(st.captured)) {
		c := st.captured[k]
		if !c.owned {
			probs.Add(0, "nodes."+node, "role %s may not drop tandem's capture triggers on table %s (left from capture: trigger): only its owner may; uninstall as the owner, or DROP TRIGGER them as the owner", srv.role, k)
			continue
		}
		p.Statements = append(p.Statements, dropTriggersSQL(c.ident, c.triggers)...)
	}
	planPublication(p, node, resolved, pub, srv, st, probs)
	planSlot(p, node, have, srv, probs)
	if p.CreateSlot && st.infoExists {
		p.Notices = append(p.Notices, fmt.Sprintf("node %s had capture before but no slot %s: the slot streams what is committed from its creation on, not what was written while there was none", node, slot))
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkServer adds what keeps the node from logical replication.
func checkServer(node string, srv *walServer, probs *config.Problems) {
	path := "nodes." + node
	if srv.walLevel != "logical" {
		probs.Add(0, path, "node %s has wal_level = %s; capture: wal needs logical: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL", node, srv.walLevel)
	}
	if srv.walSenders == 0 {
		probs.Add(0, path, "node %s has max_wal_senders = 0, so tandem run cannot stream from it: ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL", node)
	}
	if !srv.canReplicate {
		probs.Add(0, path, "role %s on node %s has neither REPLICATION nor superuser; creating and reading the replication slot needs one: ALTER ROLE %s REPLICATION; (as a superuser)", srv.role, node, srv.role)
	}
}

// planPublication makes publication tandem publish exactly the tables.
func planPublication(p *Plan, node string, tables []table, pub *publication, srv *walServer, st *state, probs *config.Problems) {
	path := "nodes." + node
	idents := make([]string, len(tables))
	for i, t := range tables {
		idents[i] = t.ident()
		p.Published = append(p.Published, t.Qualified())
	}
	name := pgx.Identifier{Publication}.Sanitize()
	switch {
	case pub == nil:
		if len(idents) == 0 {
			break // the tables have problems of their own
		}
		// resolveTables already asked for CREATE when schema tandem is missing.
		if !srv.canCreate && st.schemaExists {
			probs.Add(0, path, "role %s may not create publication %s on node %s: GRANT CREATE ON DATABASE %s TO %s", srv.role, Publication, node, pgx.Identifier{srv.database}.Sanitize(), srv.role)
		}
		p.Publication = "create"
		p.Statements = append(p.Statements, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (%s);", name, strings.Join(idents, ", "), publishOptions))
	case pub.allTables:
		probs.Add(0, path, "publication %s on node %s publishes every table (FOR ALL TABLES); tandem publishes only the synced tables and will not narrow a publication made by hand: DROP PUBLICATION %s; then install again", Publication, node, Publication)
		return
	default:
		if !pub.publishes(idents) && len(idents) > 0 {
			p.Publication = "alter"
			p.Statements = append(p.Statements, fmt.Sprintf("ALTER PUBLICATION %s SET TABLE %s;", name, strings.Join(idents, ", ")))
		}
		if !pub.options {
			p.Publication = "alter"
			p.Statements = append(p.Statements, fmt.Sprintf("ALTER PUBLICATION %s SET (%s);", name, publishOptions))
		}
		if p.Publication != "" && !pub.owned {
			probs.Add(0, path, "publication %s on node %s belongs to role %s, and role %s may not change it: ALTER PUBLICATION %s OWNER TO %s; (as %s or a superuser), or install as %s", Publication, node, pub.owner, srv.role, Publication, srv.role, pub.owner, pub.owner)
		}
	}
	if p.Publication == "" {
		return
	}
	// PostgreSQL lets only a table's owner put it in a publication, and
	// SET TABLE checks every table it lists.
	for _, t := range tables {
		if !t.owned {
			probs.Add(t.line, "table", "role %s may not publish table %s on node %s: only its owner may add it to publication %s; install as the owner (or a member of its role), or ALTER TABLE %s OWNER TO %s;", srv.role, t.Qualified(), node, Publication, t.ident(), srv.role)
		}
	}
}

// planSlot creates the slot after the COMMIT when the node lacks it.
func planSlot(p *Plan, node string, have *slot, srv *walServer, probs *config.Problems) {
	path := "nodes." + node
	drop := fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", quoteLiteral(p.Slot))
	switch {
	case have == nil:
		if srv.usedSlots >= srv.maxSlots {
			probs.Add(0, path, "node %s has no free replication slot (max_replication_slots = %d, all in use; see pg_replication_slots): drop an unused slot, or ALTER SYSTEM SET max_replication_slots = %d; then restart PostgreSQL", node, srv.maxSlots, srv.maxSlots+1)
		}
		p.CreateSlot = true
		p.After = append(p.After, fmt.Sprintf("SELECT pg_create_logical_replication_slot(%s, 'pgoutput');", quoteLiteral(p.Slot)))
	case have.ours && have.plugin == "pgoutput":
		// present: the stream resumes where it stopped
	case have.kind == "logical" && have.database != srv.database:
		// Slot names are per server, and the name carries the node's: the
		// same node name configured for two databases of one server.
		probs.Add(0, path, "replication slot %s already exists for database %s on node %s's server; slot names are per server, and this name is node %s's for this control database: is another database of this server configured as node %s? If that slot is stale, drop it: %s", p.Slot, have.database, node, node, node, drop)
	default:
		probs.Add(0, path, "replication slot %s on node %s is a %s slot (plugin %q), not a pgoutput slot of this database: tandem cannot read through it. If it is stale, drop it: %s", p.Slot, node, have.kind, have.plugin, drop)
	}
}

var identityNames = map[string]string{"d": "DEFAULT", "n": "NOTHING", "i": "USING INDEX", "f": "FULL"}

// checkReplicaIdentity adds a problem for each table (or partition) whose
// updates and deletes could not be decoded into changes with the key, and
// returns a notice when they decode without old values.
//
// pgoutput sends of an update's or delete's old row only its replica
// identity: nothing (NOTHING, or DEFAULT without a primary key: PostgreSQL
// then even refuses UPDATE and DELETE on the published table), the
// identity's columns (DEFAULT, USING INDEX), or the whole row (FULL). A
// delete must carry the sync's key; field-level merge needs the old values.
func checkReplicaIdentity(ctx context.Context, q Querier, node string, t table, probs *config.Problems) (string, error) {
	// Changes of a partitioned table are logged, with their replica
	// identity, by its leaf partitions.
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, c.relreplident::text,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
		       ARRAY(SELECT a.attname::text FROM pg_index i
		             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		             WHERE i.indrelid = c.oid
		               AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END
		             ORDER BY a.attnum)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE (c.oid = $1::oid AND c.relkind = 'r')
		   OR ($2 AND c.oid IN (SELECT relid FROM pg_partition_tree($1::oid::regclass) WHERE isleaf))
		ORDER BY 1, 2`, t.oid, t.kind == "p")
	if err != nil {
		return "", fmt.Errorf("node %s: reading the replica identity of %s: %w", node, t.Qualified(), err)
	}
	defer rows.Close()
	var partial []string // with DEFAULT or USING INDEX: no old values
	for rows.Next() {
		var schema, name, ri string
		var hasPK bool
		var cols []string
		if err := rows.Scan(&schema, &name, &ri, &hasPK, &cols); err != nil {
			return "", fmt.Errorf("node %s: reading the replica identity of %s: %w", node, t.Qualified(), err)
		}
		rel := table{Schema: schema, Name: name}
		where := fmt.Sprintf("table %s on node %s", t.Qualified(), node)
		if rel.Qualified() != t.Qualified() {
			where = fmt.Sprintf("partition %s of %s", rel.Qualified(), where)
		}
		full := fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", rel.ident())
		const undecodable = "its updates and deletes could not be decoded (and PostgreSQL refuses UPDATE and DELETE on a published table without a replica identity)"
		var missing []string
		for _, k := range t.Key {
			if !slices.Contains(cols, k) {
				missing = append(missing, k)
			}
		}
		switch {
		case ri == "f":
		case ri == "d" && !hasPK:
			probs.Add(t.line, "table", "%s has no primary key, so its replica identity (DEFAULT) is empty: %s: add a primary key, or %s", where, undecodable, full)
		case len(cols) == 0: // NOTHING, or USING INDEX of an index since dropped
			probs.Add(t.line, "table", "%s has REPLICA IDENTITY %s, which identifies no row: %s: %s", where, identityNames[ri], undecodable, full)
		case len(missing) > 0:
			probs.Add(t.line, "table", "%s has REPLICA IDENTITY %s on columns %s, without key column(s) %s: a delete could not say which row it removed: %s (or REPLICA IDENTITY USING INDEX of a unique index on the key columns)", where, identityNames[ri], strings.Join(cols, ", "), strings.Join(missing, ", "), full)
		default:
			partial = append(partial, rel.ident())
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("node %s: reading the replica identity of %s: %w", node, t.Qualified(), err)
	}
	if len(partial) == 0 {
		return "", nil
	}
	fix := make([]string, len(partial))
	for i, r := range partial {
		fix[i] = fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", r)
	}
	return fmt.Sprintf("table %s on node %s has replica identity DEFAULT or USING INDEX: its updates carry no old values, so every column counts as changed, and edits of different fields on both sides conflict instead of merging. For field-level merge (at the cost of logging whole old rows): %s",
		t.Qualified(), node, strings.Join(fix, " ")), nil
}

// walLeftovers is what a node has of wal capture, whatever its mode now.
type walLeftovers struct {
	publication  bool
	slots        []slot // logical, on this database, named tandem_*
	role         string
	canReplicate bool
}

func readWALLeftovers(ctx context.Context, q Querier) (*walLeftovers, error) {
	l := &walLeftovers{}
	err := q.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1), current_user, `+canReplicateSQL,
		Publication).Scan(&l.publication, &l.role, &l.canReplicate)
	if err != nil {
		return nil, fmt.Errorf("looking for publication %s: %w", Publication, err)
	}
	rows, err := q.Query(ctx, `
		SELECT slot_name, coalesce(active_pid, 0) FROM pg_replication_slots
		WHERE slot_type = 'logical' AND database = current_database() AND starts_with(slot_name::text, $1)
		ORDER BY 1`, slotPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing tandem's replication slots: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		s := slot{kind: "logical", ours: true}
		if err := rows.Scan(&s.name, &s.activePID); err != nil {
			return nil, err
		}
		l.slots = append(l.slots, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tandem's replication slots: %w", err)
	}
	return l, nil
}

// planWALUninstall adds to an uninstall what wal capture left on the node:
// publication tandem in the transaction, and each tandem slot after it. A
// slot in use blocks the whole uninstall: dropping it would fail after the
// rest is gone, and a slot left behind retains WAL.
func planWALUninstall(ctx context.Context, q Querier, p *Plan) error {
	l, err := readWALLeftovers(ctx, q)
	if err != nil {
		return err
	}
	if l.publication {
		p.Publication = "drop"
		p.Statements = append(p.Statements, fmt.Sprintf("DROP PUBLICATION %s;", pgx.Identifier{Publication}.Sanitize()))
	}
	for _, s := range l.slots {
		p.DropSlots = append(p.DropSlots, s.name)
		p.After = append(p.After, fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", quoteLiteral(s.name)))
		if s.activePID != 0 {
			p.blocked = append(p.blocked, fmt.Sprintf("replication slot %s is in use by PID %d: stop tandem run first (it streams from that slot), then uninstall again", s.name, s.activePID))
		}
	}
	if len(l.slots) > 0 && !l.canReplicate {
		p.blocked = append(p.blocked, fmt.Sprintf("role %s may not drop replication slots %s (it has neither REPLICATION nor superuser): ALTER ROLE %s REPLICATION; or uninstall as a superuser", l.role, strings.Join(p.DropSlots, ", "), l.role))
	}
	return nil
}

// afterError explains a failed After statement: the transaction before it
// is committed, so the node is half done until the command runs again.
func afterError(p *Plan, stmt string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "55006" { // object_in_use: a slot someone streams from
		return fmt.Errorf("node %s: %s: %w; the slot still retains WAL: stop tandem run first, then uninstall again", p.Node, firstLine(stmt), err)
	}
	return fmt.Errorf("node %s: running %s after the COMMIT (the rest is done; run the command again to finish): %w", p.Node, firstLine(stmt), err)
}

// InstallWAL plans and applies capture: wal for tables on a node
// connection, reading the node through replication slot slot.
func InstallWAL(ctx context.Context, conn *pgx.Conn, node string, tables []config.TableRef, file string, slot string) (*Plan, error) {
	p, err := PlanInstallWAL(ctx, conn, node, tables, file, slot)
	if err != nil {
		return nil, err
	}
	return Apply(ctx, conn, p, func(ctx context.Context, tx pgx.Tx) (*Plan, error) {
		return PlanInstallWAL(ctx, tx, node, tables, file, slot)
	})
}
