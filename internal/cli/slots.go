package cli

// What `tandem status` shows of the replication slots of capture: wal
// nodes: the slot a node is read through retains WAL until tandem confirms
// it, so an operator needs to see that it is active and keeping up.

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tandem-sync/tandem/internal/capture"
	"github.com/tandem-sync/tandem/internal/config"
)

// slotStatus is a wal node's slot as the node and the control database see it.
type slotStatus struct {
	node, slot string
	exists     bool
	active     bool
	retained   int64   // pg_current_wal_lsn() - confirmed_flush_lsn
	confirmed  *string // the slot's confirmed_flush_lsn
	walStatus  *string // reserved, extended, unreserved, lost
	err        error   // the node could not be read
}

// readSlotStatus reads the slot of a wal node.
func readSlotStatus(ctx context.Context, node *config.Node, slot string) slotStatus {
	st := slotStatus{node: node.Name, slot: slot}
	conn, err := connectNode(ctx, node)
	if err != nil {
		st.err = err
		return st
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT active, coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, 0),
		confirmed_flush_lsn::text, wal_status FROM pg_replication_slots WHERE slot_name = $1`, slot)
	if err != nil {
		st.err = fmt.Errorf("node %s: reading replication slot %s: %w", node.Name, slot, err)
		return st
	}
	defer rows.Close()
	for rows.Next() {
		st.exists = true
		if err := rows.Scan(&st.active, &st.retained, &st.confirmed, &st.walStatus); err != nil {
			st.err = fmt.Errorf("node %s: reading replication slot %s: %w", node.Name, slot, err)
		}
	}
	if err := rows.Err(); err != nil {
		st.err = fmt.Errorf("node %s: reading replication slot %s: %w", node.Name, slot, err)
	}
	return st
}

// printSlots prints the slot table of the config's wal nodes (nothing when
// there is none), and a warning per slot that is missing, lost or over its
// node's max_retained_wal. instance is the control database's id ("" when
// it could not be read: the slots cannot be named).
func printSlots(ctx context.Context, env Env, cfg *config.Config, instance string, taken map[string]cursorStatus) {
	var walNodes []*config.Node
	for _, name := range cfg.NodeNames {
		if n := cfg.Nodes[name]; n.Capture == config.CaptureWAL {
			walNodes = append(walNodes, n)
		}
	}
	if len(walNodes) == 0 || instance == "" {
		return
	}
	fmt.Fprintln(env.Stdout)
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSLOT\tACTIVE\tRETAINED WAL\tCONFIRMED LSN\tWRITTEN LSN\tLAST WRITTEN")
	var warnings []string
	for _, n := range walNodes {
		st := readSlotStatus(ctx, n, capture.SlotName(instance, n.Name))
		cur := taken[n.Name]
		switch {
		case st.err != nil:
			fmt.Fprintf(tw, "%s\t%s\tunavailable\n", n.Name, st.slot)
			warnings = append(warnings, st.err.Error())
			continue
		case !st.exists:
			fmt.Fprintf(tw, "%s\t%s\tmissing\n", n.Name, st.slot)
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s does not exist: run `tandem install %s`", n.Name, st.slot, n.Name))
			continue
		}
		last := cur.last
		if last == "" {
			last = "-" // nothing written yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, st.slot, yesNo(st.active), humanBytes(st.retained),
			orText(st.confirmed, "-"), orText(cur.lsn, "-"), last)
		if st.walStatus != nil && *st.walStatus == "lost" {
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s has lost WAL it needed (max_slot_wal_keep_size): drop it with `tandem uninstall %s` and install again", n.Name, st.slot, n.Name))
		}
		if n.MaxRetainedWAL > 0 && st.retained > n.MaxRetainedWAL {
			warnings = append(warnings, fmt.Sprintf("node %s: replication slot %s holds back %s of WAL, over max_retained_wal (%s): its syncs fail until it catches up",
				n.Name, st.slot, humanBytes(st.retained), humanBytes(n.MaxRetainedWAL)))
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
