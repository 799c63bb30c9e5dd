package schemas

// Severity ranks an alert. The string form is the value stored in
// ClickHouse's alerts.severity column and used in alerts.webhooks
// min_severity.
type Severity uint8

// Severities, lowest first. Numbers are part of the protobuf contract.
const (
	SeverityUnknown  Severity = 0
	SeverityLow      Severity = 1
	SeverityMedium   Severity = 2
	SeverityHigh     Severity = 3
	SeverityCritical Severity = 4
)

// String returns the ClickHouse value for s.
func (s Severity) String() string {
	switch s {
	case SeverityLow:
		return "low"
	case SeverityMedium:
		return "medium"
	case SeverityHigh:
		return "high"
	case SeverityCritical:
		return "critical"
	}
	return "unknown"
}

// ParseSeverity parses a severity name; ok is false for anything else.
func ParseSeverity(s string) (Severity, bool) {
	for v := SeverityLow; v <= SeverityCritical; v++ {
		if v.String() == s {
			return v, true
		}
	}
	return SeverityUnknown, false
}

// Alert kinds (DESIGN.md contract).
const (
	AlertPolicyViolation    = "policy_violation"
	AlertNewEdge            = "new_edge"
	AlertAddressScan        = "address_scan"
	AlertPortScan           = "port_scan"
	AlertVolumeSpike        = "volume_spike"
	AlertAuthBruteforce     = "auth_bruteforce"
	AlertUnattributedAccess = "unattributed_access"
	AlertLateralChain       = "lateral_chain"
	// AlertSegmentationBreach is raised by `flowaudit probe`, not by a
	// detector: an active probe reached what the policy denies.
	AlertSegmentationBreach = "segmentation_breach"
)

// AlertKinds lists every kind the detectors raise, in a stable order
// (AlertSegmentationBreach comes from the prober).
var AlertKinds = []string{AlertPolicyViolation, AlertNewEdge, AlertAddressScan, AlertPortScan,
	AlertVolumeSpike, AlertAuthBruteforce, AlertUnattributedAccess, AlertLateralChain}

// Alert is one finding of a detector. ID is deterministic — derived from
// the detector, its key and its window — so reprocessing the same input,
// or several detector instances, never produce two different alerts for
// one finding; a later emission with the same ID (Update set) carries
// the final counts of the window and replaces the earlier one. It is the
// payload of flowaudit.alerts.v1, keyed by ID. Times are Unix ns.
type Alert struct {
	ID          string
	Time        uint64 // when the finding was made, from event times (deterministic)
	Kind        string
	Severity    Severity
	SrcAddr     Addr
	DstAddr     Addr
	SrcSegment  string
	DstSegment  string
	SrcIdentity string
	DstPort     uint16
	Proto       uint8
	FirstSeen   uint64
	LastSeen    uint64
	Count       uint64 // flows, hosts, ports or attempts, per Kind
	Bytes       uint64
	Summary     string // one human sentence
	Evidence    string // JSON object with the detector's details
	Update      bool   // a re-emission of ID with final counts; webhooks skip it
}
