package wal

import "testing"

func TestWidenXidCrossesEpochs(t *testing.T) {
	const epoch = uint64(1) << 32
	for _, c := range []struct {
		ref  uint64
		xid  uint32
		want uint64
	}{
		{ref: 1000, xid: 990, want: 990},                                  // a little older
		{ref: 1000, xid: 5000, want: 5000},                                // newer
		{ref: 7*epoch + 5, xid: 0xFFFFFFF0, want: 7*epoch - 16},           // older, in the epoch before
		{ref: 8*epoch - 3, xid: 4, want: 8*epoch + 4},                     // newer, in the next epoch
		{ref: 3*epoch + 1<<31 - 1, xid: 0, want: 3 * epoch},               // 2^31-1 older
		{ref: 3 * epoch, xid: 1<<31 - 1, want: 3*epoch + 1<<31 - 1},       // 2^31-1 newer
		{ref: 2*epoch + 100, xid: 100 + 1<<31, want: epoch + 100 + 1<<31}, // 2^31 away: taken as older
	} {
		if got := widenXid(c.ref, c.xid); got != c.want {
			t.Errorf("widenXid(%d, %d) = %d, want %d", c.ref, c.xid, got, c.want)
		}
	}
}
