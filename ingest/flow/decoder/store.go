package decoder

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"

	"github.com/flowaudit/flowaudit/schemas"
)

// storeShards is the number of copy-on-write shards of a shardedMap.
const storeShards = 1024

// shardedMap is a map that readers use without locks or allocations: each
// shard is a copy-on-write map behind an atomic pointer, so a change
// copies one shard (about 1/1024 of the entries) rather than the whole
// map, and a flood of new templates costs little per template. Keys are
// spread by a hash seeded at random per process, so a sender cannot aim
// its templates at one shard. Writers must be serialized by the caller.
type shardedMap[K comparable, V any] struct {
	hash   func(K) uint64
	shards [storeShards]atomic.Pointer[map[K]V]
	n      atomic.Int64
}

func newShardedMap[K comparable, V any](hash func(K) uint64) *shardedMap[K, V] {
	return &shardedMap[K, V]{hash: hash}
}

func (m *shardedMap[K, V]) shard(k K) *atomic.Pointer[map[K]V] {
	return &m.shards[m.hash(k)%storeShards]
}

// get returns the value stored for k.
func (m *shardedMap[K, V]) get(k K) (V, bool) {
	if p := m.shard(k).Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// set stores v for k. The caller serializes writers.
func (m *shardedMap[K, V]) set(k K, v V) {
	s := m.shard(k)
	var cur map[K]V
	if p := s.Load(); p != nil {
		cur = *p
	}
	next := make(map[K]V, len(cur)+1)
	for ck, cv := range cur {
		next[ck] = cv
	}
	if _, ok := cur[k]; !ok {
		m.n.Add(1)
	}
	next[k] = v
	s.Store(&next)
}

// delete removes k and reports whether it was there. The caller
// serializes writers.
func (m *shardedMap[K, V]) delete(k K) bool {
	s := m.shard(k)
	p := s.Load()
	if p == nil {
		return false
	}
	if _, ok := (*p)[k]; !ok {
		return false
	}
	next := make(map[K]V, len(*p))
	for ck, cv := range *p {
		if ck != k {
			next[ck] = cv
		}
	}
	s.Store(&next)
	m.n.Add(-1)
	return true
}

// deleteIf removes every entry for which drop returns true and returns
// how many it removed. The caller serializes writers.
func (m *shardedMap[K, V]) deleteIf(drop func(K, V) bool) int {
	removed := 0
	for i := range m.shards {
		s := &m.shards[i]
		p := s.Load()
		if p == nil {
			continue
		}
		n := 0
		for k, v := range *p {
			if drop(k, v) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		next := make(map[K]V, len(*p)-n)
		for k, v := range *p {
			if !drop(k, v) {
				next[k] = v
			}
		}
		s.Store(&next)
		removed += n
	}
	m.n.Add(int64(-removed))
	return removed
}

// each calls fn for every entry (a snapshot per shard).
func (m *shardedMap[K, V]) each(fn func(K, V)) {
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for k, v := range *p {
				fn(k, v)
			}
		}
	}
}

// len returns the number of entries.
func (m *shardedMap[K, V]) len() int { return int(m.n.Load()) }

// mix64 is a 64-bit finalizer (from MurmurHash3): every input bit
// affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func addrHash(a *schemas.Addr, seed uint64) uint64 {
	return mix64(mix64(binary.LittleEndian.Uint64(a[:8])^seed) ^ binary.LittleEndian.Uint64(a[8:]))
}

// newTemplateMap and newDomainMap return the Decoder's stores, each with
// a fresh random seed.
func newTemplateMap() *shardedMap[templateKey, *template] {
	seed := rand.Uint64()
	return newShardedMap[templateKey, *template](func(k templateKey) uint64 {
		return mix64(addrHash(&k.exporter, seed) ^ (uint64(k.domain)<<32 | uint64(k.port)<<16 | uint64(k.id)) ^ uint64(k.version)<<56)
	})
}

func newDomainMap() *shardedMap[domainKey, domainState] {
	seed := rand.Uint64()
	return newShardedMap[domainKey, domainState](func(k domainKey) uint64 {
		return mix64(addrHash(&k.exporter, seed) ^ (uint64(k.domain)<<32 | uint64(k.port)<<16 | uint64(k.version)))
	})
}
