package engine

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
)

// snapshotVersion is the first byte of MarshalBinary's output; bump it
// when the state layout changes incompatibly.
const snapshotVersion = 1

type snapshot struct {
	Sources    []srcState
	Pairs      []pairSnap
	Edges      []Edge
	Vols       []*volOwner
	Idents     map[string]*identState
	Users      map[string]*userAuth
	Supp       map[string]uint64
	LearnStart uint64
	Now        uint64
	NextSweep  uint64
	Stats      Stats
}

type pairSnap struct {
	Src, Dst string
	Buckets  []bucketSnap
	Edges    map[uint32]uint64
	Idents   map[string]uint64
}

type bucketSnap struct {
	Slot                       int
	Minute, Flows, Bytes, Last uint64
}

// MarshalBinary snapshots the whole detector state: open windows,
// suppression marks, the new_edge baseline and learning start, volume
// partials not yet forwarded and EWMA statistics, lateral hops, forward
// caches. Restore it with UnmarshalBinary on an Engine built with the same
// Configuration.
func (e *Engine) MarshalBinary() ([]byte, error) {
	s := snapshot{Idents: e.idents, Users: e.users, Supp: e.supp, Vols: e.volList,
		LearnStart: e.learnStart, Now: e.now, NextSweep: e.nextSweep, Stats: e.stats}
	for i := range e.srcs {
		if e.srcs[i].Used {
			s.Sources = append(s.Sources, e.srcs[i])
		}
	}
	for _, p := range e.pairList {
		ps := pairSnap{Src: p.key.src, Dst: p.key.dst, Edges: p.edges, Idents: p.idents}
		for i, b := range p.buckets {
			if b.used {
				ps.Buckets = append(ps.Buckets, bucketSnap{i, b.minute, b.flows, b.bytes, b.last})
			}
		}
		s.Pairs = append(s.Pairs, ps)
	}
	s.Edges = e.Baseline()
	var buf bytes.Buffer
	buf.WriteByte(snapshotVersion)
	if err := gob.NewEncoder(&buf).Encode(&s); err != nil {
		return nil, fmt.Errorf("engine: encoding snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalBinary replaces the engine's state with a snapshot from
// MarshalBinary. Configuration, matcher and callbacks are kept.
func (e *Engine) UnmarshalBinary(data []byte) error {
	if len(data) == 0 {
		return errors.New("engine: empty snapshot")
	}
	if data[0] != snapshotVersion {
		return fmt.Errorf("engine: snapshot version %d unsupported", data[0])
	}
	var s snapshot
	if err := gob.NewDecoder(bytes.NewReader(data[1:])).Decode(&s); err != nil {
		return fmt.Errorf("engine: decoding snapshot: %w", err)
	}
	n := New(e.cfg, e.m, e.emit, e.forward)
	for _, src := range s.Sources {
		if len(n.srcIdx) >= n.cfg.MaxSources {
			break
		}
		src.Used = true
		n.srcs = append(n.srcs, src)
		n.srcIdx[src.Addr] = int32(len(n.srcs) - 1)
		for _, a := range src.Aggs {
			if a.pending() {
				n.pending = append(n.pending, pendingAgg{a, a.Win})
			}
		}
	}
	for _, p := range s.Pairs {
		ps := n.pair(n.seg(p.Dst), p.Src)
		if p.Edges != nil {
			ps.edges = p.Edges
		}
		if p.Idents != nil {
			ps.idents = p.Idents
		}
		for _, b := range p.Buckets {
			if b.Slot >= 0 && b.Slot < len(ps.buckets) {
				ps.buckets[b.Slot] = volBucket{minute: b.Minute, flows: b.Flows, bytes: b.Bytes, last: b.Last, used: true}
			}
		}
	}
	for _, ed := range s.Edges {
		n.edges[edgeKey{ed.SrcSegment, ed.DstSegment, ed.DstPort, ed.Proto}] = ed.LastSeen
	}
	for _, v := range s.Vols {
		n.vols[pairKey{v.Src, v.Dst}] = v
		n.volList = append(n.volList, v)
	}
	if s.Idents != nil {
		n.idents = s.Idents
	}
	if s.Users != nil {
		n.users = s.Users
		for _, u := range n.users {
			if u.Fail == nil {
				u.Fail = &agg{Kind: kAuth, ByUser: true}
			}
			if u.Succ == nil {
				u.Succ = &agg{Kind: kAuth, ByUser: true, Success: true}
			}
			for _, a := range []*agg{u.Fail, u.Succ} {
				if a.pending() {
					n.pending = append(n.pending, pendingAgg{a, a.Win})
				}
			}
		}
	}
	if s.Supp != nil {
		n.supp = s.Supp
	}
	n.learnStart, n.now, n.nextSweep, n.stats = s.LearnStart, s.Now, s.NextSweep, s.Stats
	*e = *n
	return nil
}
