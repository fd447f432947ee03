package cli

// What `tandem status` shows of the replication slots of capture: wal
// nodes: the slot a node is read through retains WAL until tandem confirms
// it, so an operator needs to see that it is active and keeping up.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/internal/config"
)

// slotStatus is a wal node's slot as the node sees it.
type slotStatus struct {
	name      string
	exists    bool
	active    bool
	retained  int64   // pg_current_wal_lsn() - confirmed_flush_lsn
	confirmed *string // the slot's confirmed_flush_lsn
	walStatus *string // reserved, extended, unreserved, lost
}

// readSlotStatus reads a replication slot of the node conn is connected to.
func readSlotStatus(ctx context.Context, conn *pgx.Conn, node, slot string) (*slotStatus, error) {
	st := &slotStatus{name: slot}
	err := conn.QueryRow(ctx, `SELECT active, coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, 0),
		confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&st.active, &st.retained, &st.confirmed, &st.walStatus)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("node %s: reading replication slot %s: %w", node, slot, err)
	}
	st.exists = true
	return st, nil
}

// printSlots prints the slot table of the config's wal nodes whose slot was
// read (nothing when there is none), and a warning per slot that is
// missing, lost or over its node's max_retained_wal.
func printSlots(env Env, cfg *config.Config, slots map[string]*slotStatus, taken map[string]cursorStatus) {
	var read []*config.Node
	for _, name := range cfg.NodeNames {
		if slots[name] != nil {
			read = append(read, cfg.Nodes[name])
		}
	}
	if len(read) == 0 {
		return
	}
	fmt.Fprintln(env.Stdout)
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSLOT\tACTIVE\tRETAINED WAL\tCONFIRMED LSN\tWRITTEN LSN\tLAST WRITTEN")
	var warnings []string
	for _, n := range read {
		st, cur := slots[n.Name], taken[n.Name]
		if !st.exists {
			fmt.Fprintf(tw, "%s\t%s\tmissing\n", n.Name, st.name)
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s does not exist: run `tandem install %s`", n.Name, st.name, n.Name))
			continue
		}
		last := cur.last
		if last == "" {
			last = "-" // nothing written yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, st.name, yesNo(st.active), humanBytes(st.retained),
			orText(st.confirmed, "-"), orText(cur.lsn, "-"), last)
		if st.walStatus != nil && *st.walStatus == "lost" {
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s has lost WAL it needed (max_slot_wal_keep_size): drop it with `tandem uninstall %s` and install again", n.Name, st.name, n.Name))
		}
		if n.MaxRetainedWAL > 0 && st.retained > n.MaxRetainedWAL {
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s holds back %s of WAL, over max_retained_wal (%s): its syncs fail until it catches up",
				n.Name, st.name, humanBytes(st.retained), humanBytes(n.MaxRetainedWAL)))
		}
	}
	tw.Flush()
	printWarnings(env.Stderr, warnings)
}

func printWarnings(w io.Writer, msgs []string) {
	for _, m := range msgs {
		fmt.Fprintf(w, "WARNING: %s\n", m)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
