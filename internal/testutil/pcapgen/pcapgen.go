// Package pcapgen writes synthetic packet captures with a known number of
// TCP flows, packets and bytes, to cross-check flowaudit's collector
// against an independent exporter (softflowd) reading the same capture.
//
// The capture is a classic libpcap file (magic 0xa1b2c3d4, microsecond
// timestamps, LINKTYPE_ETHERNET). Each flow is one client→server TCP
// connection on a distinct 5-tuple: SYN, PacketsPerFlow-2 data segments
// (PSH|ACK, 1-1400 payload bytes), FIN|ACK. Only the client→server
// direction is captured: softflowd tracks a connection as one
// bidirectional flow and exports one record per direction that carried
// packets, so replies would double the record count. Flows are
// interleaved four at a time and each is complete before later flows
// start, so softflowd's flow table never holds more than a handful of
// open connections.
//
// How the cross-check test should run softflowd (verified with softflowd
// 1.1.0, see pcapgen_test.go):
//
//	softflowd -r FILE -n 127.0.0.1:PORT -v 10 -m 65536 -d
//
// -m 65536 raises the flow table above the default 8192 so no flow is
// ever force-expired early; with -r softflowd reads the whole file,
// expires every flow at end of file, exports them, prints its statistics
// and exits. softflowd counts octets as the IP total length (IPv4 total
// length, IPv6 payload length + 40), which is what Summary.Bytes sums.
package pcapgen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"
)

// Options describes the capture to write.
type Options struct {
	// Flows is the number of distinct TCP flows (5-tuples); at least 1.
	Flows int
	// PacketsPerFlow is the number of packets of each flow, at least 2
	// (SYN and FIN|ACK); 0 means 3.
	PacketsPerFlow int
	// Seed makes payload sizes and server addresses reproducible.
	Seed int64
	// IPv6Share is the fraction of flows (0..1) sent over IPv6; 0 means
	// IPv4 only.
	IPv6Share float64
	// Start is the timestamp of the first packet; zero means
	// 2026-01-01T00:00:00Z. Packets are spread evenly over 3 s.
	Start time.Time
	// Clients is the number of distinct client hosts the flows come from
	// (10.1.0.1, 10.1.0.2, ... and 2001:db8:1::1, ...), flow i from client
	// i mod Clients on its own source port; 0 means 60000. At most 28000
	// flows per client.
	Clients int
}

// Summary is what the capture holds, counted as a NetFlow/IPFIX exporter
// counts it.
type Summary struct {
	Flows   uint64 // distinct 5-tuples, one exported record each
	Packets uint64 // packets in the capture
	Bytes   uint64 // sum of IP total lengths (IPv4 total length, IPv6 payload length + 40)
	// First and Last are the timestamps of the first and last packet, as
	// stored (microseconds).
	First, Last time.Time
}

const (
	defaultPacketsPerFlow = 3
	interleave            = 4 // flows open at the same time
	spread                = 3 * time.Second
	maxClients            = 60000
	maxFlowsPerClient     = 28000 // source ports from 32768
	maxFlows              = maxClients * maxFlowsPerClient
)

// Write writes the capture to w and returns what it contains.
func Write(w io.Writer, opts Options) (Summary, error) {
	var sum Summary
	if opts.Flows < 1 || opts.Flows > maxFlows {
		return sum, fmt.Errorf("pcapgen: Flows %d out of range: want 1-%d", opts.Flows, maxFlows)
	}
	if opts.PacketsPerFlow == 0 {
		opts.PacketsPerFlow = defaultPacketsPerFlow
	}
	if opts.PacketsPerFlow < 2 {
		return sum, fmt.Errorf("pcapgen: PacketsPerFlow %d too small: want at least 2 (SYN and FIN)", opts.PacketsPerFlow)
	}
	if opts.Clients == 0 {
		opts.Clients = maxClients
	}
	if opts.Clients < 0 || opts.Clients > maxClients || opts.Flows > opts.Clients*maxFlowsPerClient {
		return sum, fmt.Errorf("pcapgen: Clients %d out of range: want 1-%d and at most %d flows per client", opts.Clients, maxClients, maxFlowsPerClient)
	}
	if opts.IPv6Share < 0 || opts.IPv6Share > 1 {
		return sum, fmt.Errorf("pcapgen: IPv6Share %g out of range: want 0-1", opts.IPv6Share)
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}

	bw := bufio.NewWriterSize(w, 1<<16)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535) // snaplen
	binary.LittleEndian.PutUint32(hdr[20:], 1)     // LINKTYPE_ETHERNET
	if _, err := bw.Write(hdr[:]); err != nil {
		return sum, fmt.Errorf("pcapgen: writing file header: %w", err)
	}

	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0x70636170)) // "pcap"
	totalPackets := opts.Flows * opts.PacketsPerFlow
	step := spread / time.Duration(totalPackets)
	var pkt []byte
	written := 0
	group := make([]flow, 0, interleave)
	for first := 0; first < opts.Flows; first += interleave {
		group = group[:0]
		for i := first; i < min(first+interleave, opts.Flows); i++ {
			group = append(group, newFlow(i, opts.Clients, rng, opts.IPv6Share))
		}
		// Round-robin: packet k of every flow in the group, then k+1.
		for k := range opts.PacketsPerFlow {
			for g := range group {
				f := &group[g]
				payload := 0
				var flags uint8
				switch k {
				case 0:
					flags = tcpSYN
				case opts.PacketsPerFlow - 1:
					flags = tcpFIN | tcpACK
				default:
					flags = tcpPSH | tcpACK
					payload = 1 + rng.IntN(1400)
				}
				var ipLen int
				pkt, ipLen = f.packet(pkt[:0], flags, payload)
				ts := opts.Start.Add(time.Duration(written) * step).Truncate(time.Microsecond)
				if written == 0 {
					sum.First = ts
				}
				sum.Last = ts
				var rec [16]byte
				binary.LittleEndian.PutUint32(rec[0:], uint32(ts.Unix()))
				binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()/1000))
				binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
				binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
				if _, err := bw.Write(rec[:]); err != nil {
					return sum, fmt.Errorf("pcapgen: writing packet %d: %w", written, err)
				}
				if _, err := bw.Write(pkt); err != nil {
					return sum, fmt.Errorf("pcapgen: writing packet %d: %w", written, err)
				}
				written++
				sum.Packets++
				sum.Bytes += uint64(ipLen)
			}
		}
		sum.Flows += uint64(len(group))
	}
	if err := bw.Flush(); err != nil {
		return sum, fmt.Errorf("pcapgen: flushing: %w", err)
	}
	return sum, nil
}

// WriteFile writes the capture to path (created or truncated).
func WriteFile(path string, opts Options) (Summary, error) {
	f, err := os.Create(path)
	if err != nil {
		return Summary{}, fmt.Errorf("pcapgen: %w", err)
	}
	sum, err := Write(f, opts)
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("pcapgen: closing %s: %w", path, cerr)
	}
	if err != nil {
		return Summary{}, errors.Join(err, os.Remove(path))
	}
	return sum, nil
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// flow is one client→server TCP connection being written.
type flow struct {
	v6       bool
	src, dst [16]byte // IPv4 in the first 4 bytes
	sport    uint16
	dport    uint16
	seq      uint32
	ipID     uint16
}

// newFlow builds flow i: the client (address, port) pair is unique per i,
// which makes the 5-tuple unique.
func newFlow(i, clients int, rng *rand.Rand, v6Share float64) flow {
	host := i % clients
	f := flow{
		sport: uint16(32768 + i/clients),
		dport: 443,
		seq:   rng.Uint32(),
		ipID:  uint16(rng.Uint32()),
	}
	server := byte(1 + rng.IntN(250))
	if v6Share > 0 && rng.Float64() < v6Share {
		f.v6 = true
		f.src = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, byte(host >> 8), byte(host)}
		f.dst = [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, server}
	} else {
		// 10.1.0.0/16 holds 60000 hosts from 10.1.0.1 on, skipping .0 and .255.
		f.src = [16]byte{10, 1, byte(host / 254), byte(1 + host%254)}
		f.dst = [16]byte{10, 2, 0, server}
	}
	return f
}

// packet appends one Ethernet frame of f to b and returns it with the IP
// total length.
func (f *flow) packet(b []byte, flags uint8, payload int) ([]byte, int) {
	b = append(b, 0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01) // dst, src MAC
	var ipLen int
	if f.v6 {
		ipLen = 40 + 20 + payload
		b = append(b, 0x86, 0xdd)
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(20+payload))
		b = append(b, 6, 64)
		b = append(b, f.src[:]...)
		b = append(b, f.dst[:]...)
	} else {
		ipLen = 20 + 20 + payload
		b = append(b, 0x08, 0x00)
		ipStart := len(b)
		b = append(b, 0x45, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ipLen))
		b = binary.BigEndian.AppendUint16(b, f.ipID)
		b = append(b, 0x40, 0, 64, 6, 0, 0) // DF, TTL 64, TCP, checksum below
		b = append(b, f.src[:4]...)
		b = append(b, f.dst[:4]...)
		binary.BigEndian.PutUint16(b[ipStart+10:], checksum(0, b[ipStart:ipStart+20]))
		f.ipID++
	}
	tcpStart := len(b)
	b = binary.BigEndian.AppendUint16(b, f.sport)
	b = binary.BigEndian.AppendUint16(b, f.dport)
	b = binary.BigEndian.AppendUint32(b, f.seq)
	ack := uint32(0)
	if flags&tcpACK != 0 {
		ack = 1
	}
	b = binary.BigEndian.AppendUint32(b, ack)
	b = append(b, 5<<4, flags)
	b = binary.BigEndian.AppendUint16(b, 64240) // window
	b = append(b, 0, 0, 0, 0)                   // checksum (below), urgent
	for j := range payload {
		b = append(b, byte('a'+j%26))
	}

	// TCP checksum over the pseudo-header and segment.
	segLen := len(b) - tcpStart
	var pseudo uint32
	if f.v6 {
		pseudo = sum16(pseudo, f.src[:])
		pseudo = sum16(pseudo, f.dst[:])
	} else {
		pseudo = sum16(pseudo, f.src[:4])
		pseudo = sum16(pseudo, f.dst[:4])
	}
	pseudo += 6 + uint32(segLen)
	binary.BigEndian.PutUint16(b[tcpStart+16:], checksum(pseudo, b[tcpStart:]))

	// Sequence space consumed: payload, plus one for SYN and FIN.
	f.seq += uint32(payload)
	if flags&(tcpSYN|tcpFIN) != 0 {
		f.seq++
	}
	return b, ipLen
}

// sum16 adds b as big-endian 16-bit words (odd length padded with zero).
func sum16(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// checksum returns the Internet checksum of b, starting from a partial sum.
func checksum(partial uint32, b []byte) uint16 {
	s := sum16(partial, b)
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
