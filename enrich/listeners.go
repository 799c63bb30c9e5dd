package enrich

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"

	"github.com/flowaudit/flowaudit/schemas"
)

// listenerTable remembers, per flow end (address, port, protocol), the
// evidence that the end accepts connections: a TCP SYN without ACK reached
// it, or several distinct peers talked to it (fan-in). It feeds
// policy.ServiceQuery's SrcListens/DstListens for flows whose ports do not
// decide the service side (two ephemeral or two registered ports).
//
// It is direct-mapped and lossy: each slot holds one end, a newer end
// evicts an older one with the same slot, and concurrent workers may lose
// each other's updates (plain atomic loads and stores, no retry). That
// only weakens a heuristic; it never blocks the hot path or allocates.
//
// A slot is tag (high 32 bits of the end's hash) << 32 | listening bit
// (bit 31) | a 16-bit set of peers (one bit per peer address hash).
type listenerTable struct {
	slots []atomic.Uint64
	mask  uint64
}

// listenerSlots is the table size: 128 Ki ends, 1 MiB.
const listenerSlots = 1 << 17

// fanInPeers is how many distinct peers (as 16 hash buckets) make an end
// a listener.
const fanInPeers = 4

const listeningBit = 1 << 31

func newListenerTable() *listenerTable {
	return &listenerTable{slots: make([]atomic.Uint64, listenerSlots), mask: listenerSlots - 1}
}

// endHash hashes an end: address, port and protocol.
func endHash(a *schemas.Addr, port uint16, proto uint8) uint64 {
	h := binary.LittleEndian.Uint64(a[0:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:16])
	h ^= uint64(port)<<8 | uint64(proto)
	h *= 0xff51afd7ed558ccd
	return h ^ h>>29
}

func peerBit(a *schemas.Addr) uint64 {
	h := binary.LittleEndian.Uint64(a[8:16]) * 0xc4ceb9fe1a85ec53
	return 1 << (h >> 60)
}

// observe records that peer talked to end h, and returns whether end h is
// now known to listen.
func (t *listenerTable) observe(h uint64, peer *schemas.Addr) bool {
	slot := &t.slots[h&t.mask]
	tag := h >> 32 << 32
	old := slot.Load()
	v := old
	if old&^0xffffffff != tag {
		v = tag
	}
	v |= peerBit(peer)
	if v != old {
		slot.Store(v)
	}
	return v&listeningBit != 0 || bits.OnesCount16(uint16(v)) >= fanInPeers
}

// markListening records that end h accepted a connection attempt.
func (t *listenerTable) markListening(h uint64) {
	slot := &t.slots[h&t.mask]
	tag := h >> 32 << 32
	old := slot.Load()
	v := old
	if old&^0xffffffff != tag {
		v = tag
	}
	v |= listeningBit
	if v != old {
		slot.Store(v)
	}
}
