package enrich

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/flowaudit/flowaudit/schemas"
)

// The identity store holds up to millions of bindings that every flow
// reads twice. They are kept in a table with no Go pointers in it (so the
// garbage collector never scans it): addresses are fixed-size keys,
// names are strRefs into a stringPool, and the probing is a Swiss table's
// (groups of 8 slots, one control byte per slot, all 8 matched with one
// 64-bit word), so that looking up an address that is not bound costs one
// load of a small control array, and one that is bound one more cache
// line: its slot holds the address's newest event.

// strRef names a string of a stringPool: chunk<<40 | offset<<16 | length.
// 0 is "". Equal strings of one pool have equal refs (they are interned).
type strRef uint64

const (
	poolChunkBits = 20 // 1 MiB chunks
	poolChunkSize = 1 << poolChunkBits
	poolMaxChunks = 1 << 14
	// poolMaxString bounds a name: longer ones are cut, at a rune boundary
	// (no user, device or source name is that long; a hostile one must not
	// fill the pool).
	poolMaxString = 4096
)

// stringPool interns the names of bindings into large byte chunks that are
// never written again where a string was placed, so the strings it hands
// out (unsafe.String into a chunk) stay valid and immutable for as long as
// anyone holds them. intern is serialized by mu; str needs no lock once
// the ref was published to the reader through another lock (a shard's):
// chunks only gains entries.
type stringPool struct {
	mu     sync.Mutex
	chunks [poolMaxChunks]*[poolChunkSize]byte
	n      int      // chunks in use
	used   int      // bytes used in chunks[n-1]
	index  []strRef // open addressing by content hash; 0 is empty
	count  int      // strings in index
	bytes  int      // bytes interned (padding included)
	seed   maphash.Seed
}

func newStringPool() *stringPool {
	return &stringPool{index: make([]strRef, 64), seed: maphash.MakeSeed()}
}

// str returns the string r names.
func (p *stringPool) str(r strRef) string {
	if r == 0 {
		return ""
	}
	c := p.chunks[r>>40]
	return unsafe.String(&c[(r>>16)&(poolChunkSize-1)], int(r&0xffff))
}

// intern returns the ref of s, adding it when new. It returns 0 for ""
// and when the pool is full (16 GiB of names).
func (p *stringPool) intern(s string) strRef {
	if s == "" {
		return 0
	}
	if len(s) > poolMaxString {
		n := poolMaxString
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if 2*(p.count+1) > len(p.index) {
		p.growIndex()
	}
	mask := uint64(len(p.index) - 1)
	i := maphash.String(p.seed, s) & mask
	for ; p.index[i] != 0; i = (i + 1) & mask {
		if p.str(p.index[i]) == s {
			return p.index[i]
		}
	}
	r := p.add(s)
	if r != 0 {
		p.index[i] = r
		p.count++
	}
	return r
}

// add copies s into the current chunk. Strings start on 8-byte
// boundaries, so that no two share a word the race detector watches.
func (p *stringPool) add(s string) strRef {
	if p.n == 0 || p.used+len(s) > poolChunkSize {
		if p.n == poolMaxChunks {
			return 0
		}
		p.chunks[p.n] = new([poolChunkSize]byte)
		p.n++
		p.used = 0
	}
	off := p.used
	copy(p.chunks[p.n-1][off:], s)
	p.used = (off + len(s) + 7) &^ 7
	p.bytes += p.used - off
	return strRef(uint64(p.n-1)<<40 | uint64(off)<<16 | uint64(len(s)))
}

func (p *stringPool) growIndex() {
	old := p.index
	p.index = make([]strRef, 2*len(old))
	mask := uint64(len(p.index) - 1)
	for _, r := range old {
		if r == 0 {
			continue
		}
		i := maphash.String(p.seed, p.str(r)) & mask
		for p.index[i] != 0 {
			i = (i + 1) & mask
		}
		p.index[i] = r
	}
}

// bindEvent is an identityEvent in the table: names as strRefs.
type bindEvent struct {
	time   uint64 // Unix ns: bind start, or close time
	until  uint64 // bind: end of the interval (exclusive); 0 for a close
	user   strRef // close: 0 ends every binding of the kinds it names
	device strRef // the device behind the address (0 for user-only events)
	source strRef // the access event's Source (openvpn, radius, dhcp…)
	kind   uint8  // kindUser and/or kindDevice: what the event binds or ends

	// In a slot's newest event only, in what would be padding: the rest of
	// the address's history.
	hasDevice bool   // some event binds a device: resolve that kind too
	nOlder    uint8  // events in the older block
	class     uint8  // size class of the older block (olderCaps), when nOlder > 0
	older     uint32 // index of the older block in the shard's olderEvents
}

func (e *bindEvent) isClose() bool { return e.until == 0 }

// bindingSlot is one address and its newest event: 64 bytes, one cache
// line (the slots array is a large allocation, so page-aligned).
type bindingSlot struct {
	addr schemas.Addr
	last bindEvent
}

// olderCaps are the sizes of the blocks holding an address's older
// events (up to identityHistory-1).
var olderCaps = [...]uint8{1, 3, identityHistory - 1}

// Control bytes: empty, deleted (a tombstone), else the low 7 bits of the
// key's hash.
const (
	ctrlEmpty   = 0x80
	ctrlDeleted = 0xfe
	ctrlLSB     = 0x0101010101010101
	ctrlMSB     = 0x8080808080808080
	ctrlAllFree = ctrlEmpty * ctrlLSB
)

// matchH2 returns the bytes of c equal to h2 (0x80 in each; false
// positives are possible next to a true match, the key decides).
func matchH2(c, h2 uint64) uint64 {
	x := c ^ (ctrlLSB * h2)
	return (x - ctrlLSB) &^ x & ctrlMSB
}

// matchEmpty returns the empty bytes of c.
func matchEmpty(c uint64) uint64 { return c &^ (c << 6) & ctrlMSB }

// matchFree returns the empty or deleted bytes of c.
func matchFree(c uint64) uint64 { return c & ctrlMSB }

// bindShard is one shard's table: ctrl[g] holds the control bytes of
// slots[8g:8g+8], little-endian. len(ctrl) is a power of two. Readers
// hold mu.RLock, writers mu.Lock.
type bindShard struct {
	mu    sync.RWMutex
	ctrl  []uint64
	slots []bindingSlot
	n     int    // addresses
	dead  int    // tombstones
	seed  uint64 // the store's hash seed

	olderEvents []bindEvent
	freeOlder   [len(olderCaps)][]uint32
	_           [64]byte // keep shards' locks off each other's cache lines
}

func (sh *bindShard) init(seed uint64) {
	sh.seed = seed
	sh.ctrl = []uint64{ctrlAllFree}
	sh.slots = make([]bindingSlot, 8)
}

// addrHash mixes a with the store's seed (addresses come from outside:
// an unseeded hash would let a sender choose colliding ones).
func addrHash(a *schemas.Addr, seed uint64) uint64 {
	h := (binary.LittleEndian.Uint64(a[:8]) ^ seed) * 0x9E3779B97F4A7C15
	h ^= binary.LittleEndian.Uint64(a[8:])
	h = (h ^ h>>29) * 0xBF58476D1CE4E5B9
	return h ^ h>>32
}

// find returns the slot index of a, or -1.
func (sh *bindShard) find(a *schemas.Addr, h uint64) int {
	mask := uint64(len(sh.ctrl) - 1)
	h2 := h & 0x7f
	for g := (h >> 7) & mask; ; g = (g + 1) & mask {
		c := sh.ctrl[g]
		for m := matchH2(c, h2); m != 0; m &= m - 1 {
			i := int(g)*8 + bits.TrailingZeros64(m)/8
			if sh.slots[i].addr == *a {
				return i
			}
		}
		if matchEmpty(c) != 0 {
			return -1
		}
	}
}

// add places a, which is not in the table, and returns its slot.
func (sh *bindShard) add(a *schemas.Addr, h uint64) int {
	if c := len(sh.slots); (sh.n+sh.dead+1)*8 > c*7 {
		if (sh.n+1)*2 > c {
			c *= 2
		}
		sh.rehash(c)
	}
	mask := uint64(len(sh.ctrl) - 1)
	for g := (h >> 7) & mask; ; g = (g + 1) & mask {
		if m := matchFree(sh.ctrl[g]); m != 0 {
			b := bits.TrailingZeros64(m) / 8
			if byte(sh.ctrl[g]>>(8*b)) == ctrlDeleted {
				sh.dead--
			}
			sh.ctrl[g] = sh.ctrl[g]&^(0xff<<(8*b)) | (h&0x7f)<<(8*b)
			i := int(g)*8 + b
			sh.slots[i] = bindingSlot{addr: *a}
			sh.n++
			return i
		}
	}
}

// remove frees slot i and its older block.
func (sh *bindShard) remove(i int) {
	sh.freeBlock(&sh.slots[i].last)
	sh.slots[i] = bindingSlot{}
	g, b := i/8, i%8
	tag := uint64(ctrlDeleted)
	if matchEmpty(sh.ctrl[g]) != 0 {
		// A probe for a key further on stops at this group anyway.
		tag = ctrlEmpty
	} else {
		sh.dead++
	}
	sh.ctrl[g] = sh.ctrl[g]&^(0xff<<(8*b)) | tag<<(8*b)
	sh.n--
}

// rehash moves every address into a table of c slots (a power of two ≥ 8),
// dropping the tombstones.
func (sh *bindShard) rehash(c int) {
	oldCtrl, oldSlots := sh.ctrl, sh.slots
	sh.ctrl = make([]uint64, c/8)
	for g := range sh.ctrl {
		sh.ctrl[g] = ctrlAllFree
	}
	sh.slots = make([]bindingSlot, c)
	sh.n, sh.dead = 0, 0
	for g, cw := range oldCtrl {
		for b := range 8 {
			if byte(cw>>(8*b))&0x80 != 0 {
				continue
			}
			s := &oldSlots[g*8+b]
			h := addrHash(&s.addr, sh.seed)
			i := sh.addNoGrow(&s.addr, h)
			sh.slots[i] = *s
		}
	}
}

// addNoGrow is add without the growth check (rehash sized the table).
func (sh *bindShard) addNoGrow(a *schemas.Addr, h uint64) int {
	mask := uint64(len(sh.ctrl) - 1)
	for g := (h >> 7) & mask; ; g = (g + 1) & mask {
		if m := matchEmpty(sh.ctrl[g]); m != 0 {
			b := bits.TrailingZeros64(m) / 8
			sh.ctrl[g] = sh.ctrl[g]&^(0xff<<(8*b)) | (h&0x7f)<<(8*b)
			sh.n++
			return int(g)*8 + b
		}
	}
}

// history copies slot i's events into buf, oldest first.
func (sh *bindShard) history(i int, buf *[identityHistory]bindEvent) []bindEvent {
	last := &sh.slots[i].last
	n := int(last.nOlder)
	if n > 0 {
		copy(buf[:n], sh.olderEvents[last.older:int(last.older)+n])
	}
	buf[n] = *last
	buf[n].hasDevice, buf[n].nOlder, buf[n].class, buf[n].older = false, 0, 0, 0
	return buf[:n+1]
}

// setHistory stores h (oldest first, 1..identityHistory events) as slot
// i's history.
func (sh *bindShard) setHistory(i int, h []bindEvent) {
	s := &sh.slots[i]
	n := len(h) - 1
	last := h[n]
	for j := range h {
		if h[j].kind&kindDevice != 0 && !h[j].isClose() {
			last.hasDevice = true
		}
	}
	if n > 0 {
		c := 0
		for int(olderCaps[c]) < n {
			c++
		}
		if s.last.nOlder > 0 && int(s.last.class) == c {
			last.class, last.older = s.last.class, s.last.older
		} else {
			sh.freeBlock(&s.last)
			last.class, last.older = uint8(c), sh.allocBlock(c)
		}
		last.nOlder = uint8(n)
		copy(sh.olderEvents[last.older:], h[:n])
	} else {
		sh.freeBlock(&s.last)
	}
	s.last = last
}

func (sh *bindShard) allocBlock(c int) uint32 {
	if f := sh.freeOlder[c]; len(f) > 0 {
		sh.freeOlder[c] = f[:len(f)-1]
		return f[len(f)-1]
	}
	i := len(sh.olderEvents)
	sh.olderEvents = append(sh.olderEvents, make([]bindEvent, olderCaps[c])...)
	return uint32(i)
}

// freeBlock returns e's older block, if any, to its free list.
func (sh *bindShard) freeBlock(e *bindEvent) {
	if e.nOlder > 0 {
		sh.freeOlder[e.class] = append(sh.freeOlder[e.class], e.older)
		e.nOlder = 0
	}
}
