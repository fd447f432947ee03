package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// WAL capture (capture: wal) names. A wal node has schema tandem like a
// trigger node (tandem.applied records applies) but no capture triggers:
// its changes come from a logical replication slot through publication
// Publication, decoded with pgoutput.
const (
	// Publication is the publication of a wal node's synced tables.
	Publication = "tandem"
	// OriginPrefix is the prefix of the transactional logical message
	// (pg_logical_emit_message) with which tandem's own writes to a wal
	// node name their origin (the sync) at the start of the transaction.
	OriginPrefix = "tandem.origin"
)

// SlotName is the replication slot through which a control database (by
// its instance id) reads a wal node. Slot names are per server, not per
// database, and one server may hold several nodes: the name carries the
// node's name (lowercased, for reading) and a digest of both.
func SlotName(instanceID, node string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(node) {
		if b.Len() == 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(strings.ToLower(instanceID) + "/" + node))
	return slotPrefix + b.String() + "_" + hex.EncodeToString(sum[:8])
}
