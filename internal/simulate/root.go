// Package simulate is flowaudit's flow exporter simulator: it generates
// deterministic, realistic flows and sends them over UDP as NetFlow v5,
// NetFlow v9, IPFIX or sFlow v5 datagrams, at a given rate, and reports
// exactly what it sent so end-to-end tests can assert totals.
//
// The pieces compose: a Generator fills flows, an Encoder turns a slice of
// flows into one datagram (keeping the protocol's sequence numbers and
// template cadence), and Run paces datagrams onto one UDP socket.
//
// Everything the simulator invents lives in documentation or private
// address space (10.0.0.0/8, 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
// 2001:db8::/32) and documentation AS numbers (64496-64511).
package simulate

import (
	"fmt"
	"strings"
)

// Protocol is an export protocol the simulator speaks. Its string values
// are the ones accepted by `flowaudit simulate --protocol`.
type Protocol string

// Supported protocols.
const (
	ProtocolNetFlowV5 Protocol = "v5"
	ProtocolNetFlowV9 Protocol = "v9"
	ProtocolIPFIX     Protocol = "ipfix"
	ProtocolSFlow     Protocol = "sflow"
)

// Protocols lists the supported protocols in a stable order.
var Protocols = []Protocol{ProtocolNetFlowV5, ProtocolNetFlowV9, ProtocolIPFIX, ProtocolSFlow}

// ParseProtocol parses a protocol name, case-insensitively. "netflow5",
// "netflow9", "v10" and "sflow5" are accepted as aliases. The error lists
// the valid values.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "v5", "netflow5", "netflow-v5", "netflow_v5":
		return ProtocolNetFlowV5, nil
	case "v9", "netflow9", "netflow-v9", "netflow_v9":
		return ProtocolNetFlowV9, nil
	case "ipfix", "v10":
		return ProtocolIPFIX, nil
	case "sflow", "sflow5", "sflow-v5":
		return ProtocolSFlow, nil
	}
	return "", fmt.Errorf("unknown protocol %q: valid values are v5, v9, ipfix, sflow", s)
}

// String returns the protocol name as accepted by ParseProtocol.
func (p Protocol) String() string { return string(p) }

// valid reports whether p is one of the supported protocols.
func (p Protocol) valid() bool {
	switch p {
	case ProtocolNetFlowV5, ProtocolNetFlowV9, ProtocolIPFIX, ProtocolSFlow:
		return true
	}
	return false
}

// maxFlowsPerDatagram bounds FlowsPerDatagram per protocol: v5 by its
// format (30 records), the others so a datagram stays under the 65507-byte
// UDP payload limit (an IPFIX IPv6 record is 104 bytes, an sFlow sample
// about 150) and under goflow2's 1000-samples guard.
func maxFlowsPerDatagram(p Protocol) int {
	switch p {
	case ProtocolNetFlowV5:
		return v5MaxRecords
	default:
		return 400
	}
}

// defaultFlowsPerDatagram is what Config.FlowsPerDatagram = 0 means.
func defaultFlowsPerDatagram(p Protocol) int {
	if p == ProtocolSFlow {
		return 10
	}
	return 30
}
