// Package report builds compliance evidence packs: what flowaudit observed
// (flows, access events, alerts, probe runs, retention) checked against
// the controls of PCI DSS 4.0, SOC 2 and ISO/IEC 27001:2022 that network
// flows can evidence, rendered as one self-contained HTML page, a PDF, a
// JSON document with stable fields and CSV files holding the rows behind
// every number, with a SHA-256 manifest (ed25519-signed when a key is
// configured) that `flowaudit report verify` and `sha256sum -c` check.
//
// Build is a pure function from the rows of query/ and the policy to a
// Pack; Write renders a Pack into a directory; Component writes packs on
// report.schedule inside `flowaudit run`.
package report

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/audit"
	"github.com/flowaudit/flowaudit/policy"
	"github.com/flowaudit/flowaudit/query"
)

// Frameworks.
const (
	PCIDSS4  = "pci-dss-4"
	SOC2     = "soc2"
	ISO27001 = "iso27001"
)

var frameworkTitles = map[string]string{
	PCIDSS4:  "PCI DSS v4.0",
	SOC2:     "SOC 2 (Trust Services Criteria 2017)",
	ISO27001: "ISO/IEC 27001:2022 Annex A",
}

// Frameworks returns the framework names, sorted.
func Frameworks() []string {
	out := make([]string, 0, len(frameworkTitles))
	for f := range frameworkTitles {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Results of a check and of a control (the worst of its checks).
const (
	Met           = "met"
	Findings      = "findings"
	NotAssessable = "not_assessable"
)

// CDETags are the segment tags that put a segment in the cardholder-data
// environment (the scope the CDE checks are about).
var CDETags = []string{"pci-cde", "cde"}

// SchemaVersion is report.json's schema_version. Fields may be added
// without changing it; it changes when one is renamed or removed.
const SchemaVersion = 1

// Report is report.json: every field is a stable contract.
type Report struct {
	SchemaVersion  int        `json:"schema_version"`
	ReportID       string     `json:"report_id"`
	Framework      string     `json:"framework"`
	FrameworkTitle string     `json:"framework_title"`
	GeneratedAt    time.Time  `json:"generated_at"`
	Window         Span       `json:"window"`
	Policy         PolicyInfo `json:"policy"`
	CDESegments    []string   `json:"cde_segments"`
	Summary        Summary    `json:"summary"`
	Controls       []Control  `json:"controls"`
	DataFlow       DataFlow   `json:"data_flow"`
	Evidence       []string   `json:"evidence"` // paths of the evidence files, relative to the pack
}

// Span is a time range [From, To).
type Span struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// PolicyInfo identifies the policy the pack was checked against.
type PolicyInfo struct {
	File     string `json:"file"`
	SHA256   string `json:"sha256"`
	Segments int    `json:"segments"`
	Rules    int    `json:"rules"`
	Default  string `json:"default"`
}

// Summary is the executive summary: the headline numbers, each the sum
// of an evidence file's rows (named in the comment).
type Summary struct {
	Flows                 uint64 `json:"flows"`                   // segment_edges.csv + intra-segment: every flow of the window
	FlowsIntoCDE          uint64 `json:"flows_into_cde"`          // cde_inbound.csv
	FlowsOutOfCDE         uint64 `json:"flows_out_of_cde"`        // cde_outbound.csv
	Violations            uint64 `json:"violations"`              // violations.csv
	CDEViolations         uint64 `json:"cde_violations"`          // violations.csv rows touching the CDE
	UnusedRules           uint64 `json:"unused_rules"`            // rules.csv with hits 0
	IdentitiesReachingCDE uint64 `json:"identities_reaching_cde"` // identities.csv distinct identity
	UnattributedIntoCDE   uint64 `json:"unattributed_flows_into_cde"`
	FailedLogins          uint64 `json:"failed_logins"`       // failed_access.csv
	Alerts                uint64 `json:"alerts"`              // alerts.csv
	ProbeRuns             uint64 `json:"probe_runs"`          // probe_runs.csv
	OldestRetainedDay     string `json:"oldest_retained_day"` // flows, YYYY-MM-DD; "" when empty
	RetainedDays          uint64 `json:"retained_days"`
	ControlsMet           int    `json:"controls_met"`
	ControlsFindings      int    `json:"controls_findings"`
	ControlsNotAssessable int    `json:"controls_not_assessable"`
}

// Control is one requirement of the framework and the checks evidencing
// it. Result is the worst of its checks: findings over not assessable
// over met.
type Control struct {
	ID     string  `json:"id"`
	Title  string  `json:"title"`
	Result string  `json:"result"`
	Checks []Check `json:"checks"`
}

// Check is one thing flowaudit verified from its data.
type Check struct {
	Check    string            `json:"check"`   // stable name, shared by every framework
	Title    string            `json:"title"`   // what it is about
	Checked  string            `json:"checked"` // what was checked, how
	Result   string            `json:"result"`
	Reason   string            `json:"reason"` // why that result
	Numbers  map[string]uint64 `json:"numbers"`
	Findings []string          `json:"findings"` // one line each, at most maxFindings (the evidence has all)
	Evidence []string          `json:"evidence"` // evidence file paths
}

// DataFlow is the data-flow diagram of 1.2.3/1.2.4: the segments and the
// observed edges between them, in the service orientation.
type DataFlow struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// Node is a segment of the diagram.
type Node struct {
	Segment  string `json:"segment"`
	CDE      bool   `json:"cde"`
	External bool   `json:"external"`
}

// Edge is the traffic from clients in one segment to servers in another.
type Edge struct {
	Client     string `json:"client"`
	Server     string `json:"server"`
	Flows      uint64 `json:"flows"`
	Bytes      uint64 `json:"bytes"`
	Violations uint64 `json:"violations"`
	CDE        bool   `json:"cde"` // one end is in the CDE
}

// Table is one evidence file: evidence/NAME.
type Table struct {
	Name   string // file name, such as "cde_inbound.csv"
	Header []string
	Rows   [][]string
	// Raw, when set, is the file's content as another writer rendered it
	// (Header and Rows are then unused).
	Raw []byte
}

// Pack is a built report and its evidence, ready to be written.
type Pack struct {
	Report   Report
	Evidence []Table
}

// Inputs are what a pack is built from: the policy and the rows of
// query/ over Window.
type Inputs struct {
	Framework   string
	GeneratedAt time.Time
	Window      query.Window
	Policy      *policy.Matcher
	PolicyFile  string
	PolicySHA   string

	Services       []query.ServiceRow
	AccessSources  []query.AccessSource
	FailedAccess   []query.FailedAccess
	Alerts         []query.Alert
	Retention      []query.Retained
	ProbeRuns      []query.ProbeRun // over ProbeWindow
	ProbeWindow    query.Window
	PolicyVersions []query.PolicyVersion

	// RetentionTTL is clickhouse.retention (0: kept forever).
	RetentionTTL time.Duration

	// Gaps and Identities are the audit layer's rule-gap analysis
	// (audit gaps) and identity access review (audit identities) over
	// Window, folded into the rule review (1.2.7) and the access review
	// (7.2.4); nil leaves them out.
	Gaps       *audit.GapReport
	Identities *audit.IdentityReview
}

// maxFindings bounds a check's findings lines in the report; the evidence
// files hold every row.
const maxFindings = 20

// ReportID names a pack: framework and generation time, to the second.
func ReportID(framework string, at time.Time) string {
	return framework + "-" + at.UTC().Format("20060102T150405Z")
}

// FrameworkTitle returns the framework's display name ("" when unknown).
func FrameworkTitle(f string) string { return frameworkTitles[f] }

// Build checks in against the controls of in.Framework.
func Build(in Inputs) (*Pack, error) {
	if _, ok := frameworkTitles[in.Framework]; !ok {
		return nil, fmt.Errorf("report: framework %q is not one of %s", in.Framework, strings.Join(Frameworks(), ", "))
	}
	if in.Policy == nil {
		return nil, fmt.Errorf("report: no policy (set policy.file)")
	}
	b := newBuilder(in)
	checks := b.checks()
	rep := Report{
		SchemaVersion:  SchemaVersion,
		ReportID:       ReportID(in.Framework, in.GeneratedAt),
		Framework:      in.Framework,
		FrameworkTitle: frameworkTitles[in.Framework],
		GeneratedAt:    in.GeneratedAt.UTC().Truncate(time.Second),
		Window:         Span{From: in.Window.From.UTC(), To: in.Window.To.UTC()},
		Policy: PolicyInfo{File: in.PolicyFile, SHA256: in.PolicySHA, Segments: len(in.Policy.Policy().Segments),
			Rules: len(in.Policy.Policy().Rules), Default: in.Policy.Policy().Default},
		CDESegments: b.cdeList,
		Summary:     b.summary,
		DataFlow:    b.dataFlow,
	}
	if rep.CDESegments == nil {
		rep.CDESegments = []string{}
	}
	for _, def := range frameworkControls[in.Framework] {
		c := Control{ID: def.id, Title: def.title}
		for _, name := range def.checks {
			c.Checks = append(c.Checks, checks[name])
		}
		c.Result = worst(c.Checks)
		switch c.Result {
		case Met:
			rep.Summary.ControlsMet++
		case Findings:
			rep.Summary.ControlsFindings++
		default:
			rep.Summary.ControlsNotAssessable++
		}
		rep.Controls = append(rep.Controls, c)
	}
	for _, t := range b.tables {
		rep.Evidence = append(rep.Evidence, "evidence/"+t.Name)
	}
	return &Pack{Report: rep, Evidence: b.tables}, nil
}

func worst(checks []Check) string {
	r := Met
	for _, c := range checks {
		switch {
		case c.Result == Findings:
			return Findings
		case c.Result == NotAssessable:
			r = NotAssessable
		}
	}
	return r
}

type controlDef struct {
	id, title string
	checks    []string
}

// frameworkControls maps each framework's requirements to the checks
// that evidence them; SOC 2 and ISO 27001 reuse the PCI DSS evidence.
var frameworkControls = map[string][]controlDef{
	PCIDSS4: {
		{"1.2.3/1.2.4", "Network diagram and data-flow diagram", []string{checkDataFlow}},
		{"1.2.5", "Allowed services, protocols and ports are identified, approved and have a defined business need", []string{checkServices}},
		{"1.2.7", "Configurations of network security controls are reviewed at least once every six months", []string{checkRuleReview}},
		{"1.3.1/1.3.2", "Inbound and outbound traffic of the CDE is restricted to what is necessary", []string{checkCDETraffic}},
		{"1.4.x", "Network connections between trusted and untrusted networks are controlled", []string{checkUntrusted}},
		{"7.2.4/7.2.5.1", "User and system accounts and their access privileges are reviewed", []string{checkIdentities}},
		{"10.2.1/10.2.2", "Audit logs are enabled and record the required details, including invalid access attempts", []string{checkLogging}},
		{"10.4.1", "Audit logs and security events are reviewed", []string{checkAlerts}},
		{"10.5.1", "Audit log history is retained for at least 12 months, three months immediately available", []string{checkRetention}},
		{"11.4.5", "Segmentation controls are tested (penetration tests of segmentation)", []string{checkSegTests}},
	},
	SOC2: {
		{"CC6.1", "Logical access security: access to protected information assets is restricted", []string{checkIdentities, checkServices, checkRuleReview}},
		{"CC6.6", "Boundary protection against threats from outside the system boundaries", []string{checkDataFlow, checkCDETraffic, checkUntrusted}},
		{"CC7.2", "System components are monitored for anomalies indicative of malicious acts", []string{checkLogging, checkAlerts, checkRetention, checkSegTests}},
	},
	ISO27001: {
		{"A.8.20", "Networks security", []string{checkDataFlow, checkCDETraffic}},
		{"A.8.21", "Security of network services", []string{checkServices, checkRuleReview}},
		{"A.8.22", "Segregation of networks", []string{checkUntrusted, checkSegTests}},
		{"A.8.15", "Logging", []string{checkLogging, checkAlerts, checkRetention}},
		{"A.5.18", "Access rights", []string{checkIdentities}},
	},
}

// Check names.
const (
	checkDataFlow   = "data_flow"
	checkServices   = "services"
	checkRuleReview = "rule_review"
	checkCDETraffic = "cde_traffic"
	checkUntrusted  = "untrusted"
	checkIdentities = "identities"
	checkLogging    = "logging"
	checkAlerts     = "alert_review"
	checkRetention  = "retention"
	checkSegTests   = "segmentation_tests"
)
