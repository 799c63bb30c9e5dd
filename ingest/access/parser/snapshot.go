package parser

import (
	"bytes"
	"fmt"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Snapshot formats describe a whole file that its daemon rewrites: the
// OpenVPN status file, DHCP lease databases and `kubectl get pods -A -o
// json` output. ParseSnapshot turns one version of the file into the
// session-start events of every binding it lists; the collector
// (ingest/access) re-reads the file when it changes and turns the
// difference between two versions into start, update and stop events.
const (
	FormatOpenVPNStatus Format = "openvpn_status" // OpenVPN --status file, versions 1, 2 and 3
	FormatDHCPLeases    Format = "dhcp_leases"    // dnsmasq leases file, ISC dhcpd.leases, Kea memfile CSV
	FormatK8sPods       Format = "k8s_pods"       // kubectl get pods -A -o json (a v1 List or PodList)
)

var snapshotFormats = []Format{FormatOpenVPNStatus, FormatDHCPLeases, FormatK8sPods}

// IsSnapshot reports whether f is a snapshot format (ParseSnapshot), not
// a line format (New).
func IsSnapshot(f Format) bool {
	for _, s := range snapshotFormats {
		if s == f {
			return true
		}
	}
	return false
}

// MaxSnapshotBytes bounds a snapshot file.
const MaxSnapshotBytes = 256 << 20

// ParseSnapshot parses one version of a snapshot file into one event per
// binding (Binding start, SessionID identifying the entry), in file
// order. meta.Received is the file's modification time: it is the time
// of entries that carry none. Malformed entries fail the whole snapshot
// with a *ParseError naming the line, so a half-written file never ends
// every session.
func ParseSnapshot(f Format, data []byte, meta Meta) ([]schemas.AccessEvent, error) {
	if len(data) > MaxSnapshotBytes {
		return nil, &ParseError{Format: f, Reason: ReasonTooLong, Err: fmt.Errorf("snapshot larger than %d bytes", MaxSnapshotBytes)}
	}
	switch f {
	case FormatOpenVPNStatus:
		return parseOpenVPNStatus(data, &meta)
	case FormatDHCPLeases:
		return parseDHCPLeases(data, &meta)
	case FormatK8sPods:
		return parseK8sPods(data, &meta)
	}
	return nil, fmt.Errorf("%q is not a snapshot format (valid: openvpn_status, dhcp_leases, k8s_pods)", f)
}

// snapshotEvent returns a session-start event of source for a snapshot.
func snapshotEvent(source string, meta *Meta) schemas.AccessEvent {
	var ev schemas.AccessEvent
	reset(&ev, source, meta)
	ev.Binding = schemas.BindingStart
	ev.Action = schemas.ActionSessionOpen
	ev.Outcome = schemas.OutcomeSuccess
	return ev
}

// NextRecord finds the first record of data for format f as a file tailer
// reads it. Every format's records are lines, except radius: a FreeRADIUS
// detail record (a ctime header line, then its attribute lines) ends at
// its blank line. It returns the record without its terminator and how
// many bytes it spans with it; ok is false when data holds no complete
// record yet (with final, whatever is left is the record).
func NextRecord(f Format, data []byte, final bool) (rec []byte, advance int, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if final && len(data) > 0 {
			return data, len(data), true
		}
		return nil, 0, false
	}
	if f != FormatRADIUS || !isDetailHeader(bytes.TrimRight(data[:i], "\r")) {
		return data[:i], i + 1, true
	}
	for j := i + 1; ; {
		k := bytes.IndexByte(data[j:], '\n')
		if k < 0 {
			if final {
				return data, len(data), true
			}
			return nil, 0, false
		}
		if len(bytes.TrimSpace(data[j:j+k])) == 0 {
			return data[:j], j + k + 1, true
		}
		j += k + 1
	}
}

// isDetailHeader reports whether l is a detail file's record header: a
// ctime date, or any line without "=" that is followed by indented
// attribute lines ("Wed Dec  2 01:00:00 2026").
func isDetailHeader(l []byte) bool {
	_, _, ok := ctime(bytes.TrimSpace(l), time.UTC)
	return ok
}
