package schemas

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// This file is the one description of every ClickHouse table. DDL for
// both server generations is generated from it (see DESIGN.md, "Two
// ClickHouse generations, one schema source"): modern servers (>= 23.8) get
// IPv6, LowCardinality, DateTime64, codecs and TTL; Debian's 18.16 gets the
// fallbacks. Column names are a public contract: analysts' queries and
// dashboards use them.

// ColumnType is a column's logical type. Its SQL type depends on the server
// generation (Column.SQLType).
type ColumnType int

// Logical column types.
const (
	TypeDateTime     ColumnType = iota + 1 // seconds; DateTime on both
	TypeDateTime64ms                       // DateTime64(3); old: DateTime (seconds)
	TypeDate                               // Date on both
	TypeAddr                               // IPv6; old: FixedString(16), IPv4 mapped
	TypeLowString                          // LowCardinality(String); old: String
	TypeString
	TypeUInt8
	TypeUInt16
	TypeUInt32
	TypeUInt64
	TypeInt64
	// TypeAggregate is an AggregateFunction(...) state column; the
	// column's Aggregate gives the function and argument types.
	TypeAggregate
)

var columnTypeNames = map[ColumnType]string{
	TypeDateTime:     "DateTime",
	TypeDateTime64ms: "DateTime64ms",
	TypeDate:         "Date",
	TypeAddr:         "Addr",
	TypeLowString:    "LowString",
	TypeString:       "String",
	TypeUInt8:        "UInt8",
	TypeUInt16:       "UInt16",
	TypeUInt32:       "UInt32",
	TypeUInt64:       "UInt64",
	TypeInt64:        "Int64",
	TypeAggregate:    "Aggregate",
}

// String returns the logical type's name (not an SQL type).
func (t ColumnType) String() string {
	if s, ok := columnTypeNames[t]; ok {
		return s
	}
	return "ColumnType(" + strconv.Itoa(int(t)) + ")"
}

// isTime reports whether a column of type t can drive a TTL.
func (t ColumnType) isTime() bool {
	return t == TypeDateTime || t == TypeDateTime64ms || t == TypeDate
}

// ServerVersion is a ClickHouse server's major.minor version, as returned
// by SELECT version().
type ServerVersion struct{ Major, Minor int }

// modernVersion is the oldest version given the modern DDL. 23.8 is the
// oldest LTS we support in production; everything older is treated like
// Debian's 18.16, even versions that know some modern types, so that there
// are exactly two DDL shapes to test.
var modernVersion = ServerVersion{23, 8}

// ParseServerVersion parses the output of version(), such as "18.16.1" or
// "23.8.2.7". Only major and minor are kept.
func ParseServerVersion(s string) (ServerVersion, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 3)
	if len(parts) < 2 {
		return ServerVersion{}, fmt.Errorf("parse ClickHouse version %q: want major.minor[...]", s)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err := errors.Join(err1, err2); err != nil || major < 0 || minor < 0 {
		return ServerVersion{}, fmt.Errorf("parse ClickHouse version %q: want numeric major.minor", s)
	}
	return ServerVersion{Major: major, Minor: minor}, nil
}

// Modern reports whether v gets the modern DDL (>= 23.8).
func (v ServerVersion) Modern() bool {
	return v.Major > modernVersion.Major ||
		(v.Major == modernVersion.Major && v.Minor >= modernVersion.Minor)
}

// String returns "major.minor".
func (v ServerVersion) String() string {
	return strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor)
}

// Column describes one column.
type Column struct {
	Name    string
	Type    ColumnType
	Default string // SQL expression for DEFAULT; "" for the type's zero value
	Codec   string // modern servers only, e.g. "ZSTD(1)" or "Delta, LZ4"
	Comment string // emitted on both generations (18.16 accepts COMMENT)
	// Aggregate is the function and argument types of a TypeAggregate
	// column, e.g. "min, DateTime".
	Aggregate string
	// Alias, when set, makes the column an ALIAS of this SQL expression:
	// computed when read, never stored or inserted.
	Alias string
}

// SQLType returns the column's SQL type on a server of version v.
func (c Column) SQLType(v ServerVersion) string {
	modern := v.Modern()
	switch c.Type {
	case TypeDateTime:
		return "DateTime"
	case TypeDateTime64ms:
		if modern {
			return "DateTime64(3)"
		}
		return "DateTime"
	case TypeDate:
		return "Date"
	case TypeAddr:
		if modern {
			return "IPv6"
		}
		return "FixedString(16)"
	case TypeLowString:
		if modern {
			return "LowCardinality(String)"
		}
		return "String"
	case TypeString:
		return "String"
	case TypeUInt8:
		return "UInt8"
	case TypeUInt16:
		return "UInt16"
	case TypeUInt32:
		return "UInt32"
	case TypeUInt64:
		return "UInt64"
	case TypeInt64:
		return "Int64"
	case TypeAggregate:
		return "AggregateFunction(" + c.Aggregate + ")"
	}
	panic(fmt.Sprintf("schemas: column %s has unknown type %d", c.Name, int(c.Type)))
}

// Definition returns the column's declaration as used in CREATE TABLE and
// ALTER TABLE ... ADD COLUMN: name, type, DEFAULT, COMMENT and (modern
// only) CODEC, in the order both generations parse.
func (c Column) Definition(v ServerVersion) string {
	var b strings.Builder
	b.WriteString(QuoteIdent(c.Name))
	b.WriteByte(' ')
	b.WriteString(c.SQLType(v))
	switch {
	case c.Alias != "":
		b.WriteString(" ALIAS ")
		b.WriteString(c.Alias)
	case c.Default != "":
		b.WriteString(" DEFAULT ")
		b.WriteString(c.Default)
	}
	if c.Comment != "" {
		b.WriteString(" COMMENT ")
		b.WriteString(quoteString(c.Comment))
	}
	if c.Codec != "" && c.Alias == "" && v.Modern() {
		b.WriteString(" CODEC(")
		b.WriteString(c.Codec)
		b.WriteByte(')')
	}
	return b.String()
}

// Table describes one table. The zero TTLColumn means the table is never
// expired by TTL.
type Table struct {
	// View, when set, is the SELECT of a materialized view that fills this
	// table from inserts into another one, created as NAME_mv after every
	// table exists; "{db}" stands for the database. It must use SQL both
	// ClickHouse generations accept.
	View        string
	Name        string
	Comment     string // table comment; modern servers only (18.16 has none)
	Columns     []Column
	Engine      string // e.g. "MergeTree", "ReplacingMergeTree(next_offset)"
	PartitionBy string // SQL expression; "" for none
	OrderBy     string // SQL expression, e.g. "(a, b)"; required by MergeTree engines
	TTLColumn   string // time column the retention applies to; "" for no TTL
	// ModernSettings are more table SETTINGS on modern servers only,
	// e.g. "non_replicated_deduplication_window = 1000".
	ModernSettings string
}

// Column returns the column named name.
func (t Table) Column(name string) (Column, bool) {
	for _, c := range t.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// ColumnNames returns the column names in declaration order.
func (t Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// InsertSQL returns "INSERT INTO db.name (col, ...)" for a batch insert
// with every column, in declaration order. The explicit column list is
// required: clickhouse-go cannot prepare "INSERT INTO t" against 18.16.
func (t Table) InsertSQL(database string) string {
	quoted := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		quoted[i] = QuoteIdent(c.Name)
	}
	return "INSERT INTO " + QualifiedName(database, t.Name) + " (" + strings.Join(quoted, ", ") + ")"
}

// CreateSQL returns the CREATE TABLE IF NOT EXISTS statement for a server
// of version v. ttl is the retention applied to TTLColumn on modern servers
// (0 for none); old servers have no TTL and retention is done by dropping
// partitions. A ttl that is not a whole number of days is rounded down to
// seconds (at least one).
func (t Table) CreateSQL(database string, v ServerVersion, ttl time.Duration) string {
	modern := v.Modern()
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS ")
	b.WriteString(QualifiedName(database, t.Name))
	b.WriteString("\n(\n")
	for i, c := range t.Columns {
		b.WriteString("    ")
		b.WriteString(c.Definition(v))
		if i < len(t.Columns)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(")\nENGINE = ")
	b.WriteString(t.Engine)
	if t.PartitionBy != "" {
		b.WriteString("\nPARTITION BY ")
		b.WriteString(t.PartitionBy)
	}
	if t.OrderBy != "" {
		b.WriteString("\nORDER BY ")
		b.WriteString(t.OrderBy)
	}
	if modern {
		if ttl := t.TTL(ttl); ttl != "" {
			b.WriteString("\nTTL ")
			b.WriteString(ttl)
		}
		b.WriteString("\nSETTINGS index_granularity = 8192")
		if t.ModernSettings != "" {
			b.WriteString(", ")
			b.WriteString(t.ModernSettings)
		}
		if t.Comment != "" {
			b.WriteString("\nCOMMENT ")
			b.WriteString(quoteString(t.Comment))
		}
	}
	return b.String()
}

// TTL returns the table's TTL expression for a retention of ttl, such as
// "toDateTime(time_received) + INTERVAL 30 DAY", or "" when the table has
// no TTL column or ttl <= 0. Only modern servers accept it.
func (t Table) TTL(ttl time.Duration) string {
	if t.TTLColumn == "" || ttl <= 0 {
		return ""
	}
	interval := strconv.FormatInt(max(int64(ttl/time.Second), 1), 10) + " SECOND"
	if ttl%(24*time.Hour) == 0 {
		interval = strconv.FormatInt(int64(ttl/(24*time.Hour)), 10) + " DAY"
	}
	return "toDateTime(" + QuoteIdent(t.TTLColumn) + ") + INTERVAL " + interval
}

// Validate checks the description itself: names are identifiers and
// unique, types are known, the engine and order are set, and TTLColumn is a
// time column.
func (t Table) Validate() error {
	if !identRE.MatchString(t.Name) {
		return fmt.Errorf("table %q: name is not a plain identifier", t.Name)
	}
	if t.Engine == "" || t.OrderBy == "" {
		return fmt.Errorf("table %s: Engine and OrderBy are required", t.Name)
	}
	if len(t.Columns) == 0 {
		return fmt.Errorf("table %s: no columns", t.Name)
	}
	seen := make(map[string]bool, len(t.Columns))
	for _, c := range t.Columns {
		if !identRE.MatchString(c.Name) {
			return fmt.Errorf("table %s: column %q: name is not a plain identifier", t.Name, c.Name)
		}
		if seen[c.Name] {
			return fmt.Errorf("table %s: column %s declared twice", t.Name, c.Name)
		}
		seen[c.Name] = true
		if _, ok := columnTypeNames[c.Type]; !ok {
			return fmt.Errorf("table %s: column %s: unknown type %v", t.Name, c.Name, c.Type)
		}
	}
	if t.TTLColumn != "" {
		c, ok := t.Column(t.TTLColumn)
		if !ok {
			return fmt.Errorf("table %s: TTLColumn %s is not a column", t.Name, t.TTLColumn)
		}
		if !c.Type.isTime() {
			return fmt.Errorf("table %s: TTLColumn %s has type %v, want a time type", t.Name, t.TTLColumn, c.Type)
		}
	}
	return nil
}

// FlowsTable holds one row per flow, enriched. Addresses are 16 bytes with
// IPv4 mapped into IPv6; bytes and packets are as exported, sampling_rate
// beside them (multiply in queries).
//
// Partitions are days, so retention on old servers is DROP PARTITION and
// every query with a time range reads only the days it covers.
//
// The sorting key serves the audit questions analysts ask of raw flows,
// always within a time range: "what crossed from segment A to segment B",
// then "what did host X talk to". The hour bucket first keeps time-range
// pruning nearly as good as sorting by time_received alone, while inside
// each hour rows of one segment pair, and within it one source address,
// sit together, so those filters read few granules. time_received last
// keeps each source's flows in time order (and compresses well). The key
// uses only functions 18.16 has (toStartOfHour, not toStartOfInterval).
var FlowsTable = Table{
	Name:    "flows",
	Comment: "One row per enriched flow (flowaudit.enriched.v1)",
	Columns: []Column{
		{Name: "time_received", Type: TypeDateTime, Codec: "Delta, ZSTD(1)", Comment: "when the collector read the datagram"},
		{Name: "time_start", Type: TypeDateTime64ms, Codec: "Delta, ZSTD(1)", Comment: "first packet; epoch when not exported"},
		{Name: "time_end", Type: TypeDateTime64ms, Codec: "Delta, ZSTD(1)", Comment: "last packet; epoch when not exported"},
		{Name: "flow_type", Type: TypeLowString, Comment: "netflow_v5, netflow_v9, ipfix or sflow"},
		{Name: "exporter", Type: TypeAddr, Codec: "ZSTD(1)", Comment: "source address of the datagram"},
		{Name: "observation_id", Type: TypeUInt32, Comment: "v9 source id, IPFIX observation domain, sFlow sub-agent"},
		{Name: "sampling_rate", Type: TypeUInt32, Comment: "1-in-N; bytes and packets are not multiplied by it"},
		{Name: "src_addr", Type: TypeAddr, Codec: "ZSTD(1)"},
		{Name: "dst_addr", Type: TypeAddr, Codec: "ZSTD(1)"},
		{Name: "next_hop", Type: TypeAddr, Codec: "ZSTD(1)"},
		{Name: "src_port", Type: TypeUInt16},
		{Name: "dst_port", Type: TypeUInt16},
		{Name: "proto", Type: TypeUInt8},
		{Name: "bytes", Type: TypeUInt64, Codec: "T64, ZSTD(1)", Comment: "as exported (sampled)"},
		{Name: "packets", Type: TypeUInt64, Codec: "T64, ZSTD(1)", Comment: "as exported (sampled)"},
		{Name: "tcp_flags", Type: TypeUInt8},
		{Name: "ip_tos", Type: TypeUInt8},
		{Name: "in_if", Type: TypeUInt32},
		{Name: "out_if", Type: TypeUInt32},
		{Name: "src_as", Type: TypeUInt32},
		{Name: "dst_as", Type: TypeUInt32},
		{Name: "ether_type", Type: TypeUInt16, Comment: "0x0800 IPv4, 0x86dd IPv6"},
		{Name: "direction", Type: TypeUInt8, Comment: "0 ingress, 1 egress"},
		{Name: "src_segment", Type: TypeLowString, Default: "''"},
		{Name: "dst_segment", Type: TypeLowString, Default: "''"},
		{Name: "src_workload", Type: TypeLowString, Default: "''"},
		{Name: "dst_workload", Type: TypeLowString, Default: "''"},
		{Name: "src_identity", Type: TypeLowString, Default: "''"},
		{Name: "dst_identity", Type: TypeLowString, Default: "''"},
		{Name: "verdict", Type: TypeLowString, Default: "'unknown'", Comment: "allowed, violation, intra_segment or unknown"},
		{Name: "rule", Type: TypeLowString, Default: "''", Comment: "policy rule that decided the verdict"},
		{Name: "src_country", Type: TypeLowString, Default: "''", Comment: "ISO 3166 code from GeoIP"},
		{Name: "dst_country", Type: TypeLowString, Default: "''"},
		{Name: "fw_action", Type: TypeLowString, Default: "''", Comment: "what the exporting device did: forwarded, dropped or denied; empty when it did not say"},
		{Name: "src_addr_xlate", Type: TypeAddr, Codec: "ZSTD(1)", Comment: "source address after NAT; :: when not exported"},
		{Name: "dst_addr_xlate", Type: TypeAddr, Codec: "ZSTD(1)", Comment: "destination address after NAT; :: when not exported"},
		{Name: "src_port_xlate", Type: TypeUInt16, Comment: "source port after NAPT; 0 when not exported"},
		{Name: "dst_port_xlate", Type: TypeUInt16, Comment: "destination port after NAPT; 0 when not exported"},
		{Name: "staged_verdict", Type: TypeLowString, Default: "'unknown'", Comment: "the verdict had the staged rules been enforced too"},
		{Name: "staged_rule", Type: TypeLowString, Default: "''", Comment: "the rule that decided staged_verdict"},
		{Name: "service_side", Type: TypeLowString, Default: "''", Comment: "which end offers the service: dst, src (the flow is a reply) or empty when unknown"},
		{Name: "service_port", Type: TypeUInt16, Comment: "port of the serving end; 0 when unknown"},
		{Name: "src_identity_source", Type: TypeLowString, Default: "''", Comment: "source that attributed src_identity (openvpn, radius, kerberos, windows, sshd, k8s_pods, inventory…), else that of src_device (dhcp)"},
		{Name: "dst_identity_source", Type: TypeLowString, Default: "''", Comment: "source that attributed dst_identity, else that of dst_device"},
		{Name: "src_device", Type: TypeLowString, Default: "''", Comment: "device behind src_addr: MAC or DUID and DHCP host name, Calling-Station-Id, namespace/pod"},
		{Name: "dst_device", Type: TypeLowString, Default: "''", Comment: "device behind dst_addr"},
		{Name: "kafka_partition", Type: TypeUInt16, Comment: "partition of the sink's input topic the row was read from"},
		{Name: "source_partition", Type: TypeUInt16, Default: "65535", Comment: "flows-topic partition the row came from (65535: the input record itself)"},
		{Name: "source_offset", Type: TypeInt64, Default: "-1", Codec: "T64, ZSTD(1)", Comment: "offset of that record; see sink_progress"},
	},
	Engine:      "MergeTree",
	PartitionBy: "toYYYYMMDD(time_received)",
	OrderBy:     "(toStartOfHour(time_received), src_segment, dst_segment, src_addr, time_received)",
	TTLColumn:   "time_received",
	// Modern servers also drop a retried INSERT carrying the same
	// insert_deduplication_token.
	ModernSettings: "non_replicated_deduplication_window = 1000",
}

// SinkProgressTable holds, per sink input partition and source
// partition, the highest source offset inserted into flows. A
// materialized view fills it within the INSERT of the flows rows, so it
// never lags a finished insert (unlike a second INSERT, which a crash can
// lose): a restarted sink reads it to skip records ClickHouse already
// has, whether the sink or the enrich stage crashed. Read with
// maxMerge(source_offset) GROUP BY the key.
var SinkProgressTable = Table{
	Name:    "sink_progress",
	Comment: "Highest source offset in flows per input and source partition, filled from flows",
	Columns: []Column{
		{Name: "kafka_partition", Type: TypeUInt16},
		{Name: "source_partition", Type: TypeUInt16},
		{Name: "source_offset", Type: TypeAggregate, Aggregate: "max, Int64"},
	},
	Engine:  "AggregatingMergeTree",
	OrderBy: "(kafka_partition, source_partition)",
	View: `SELECT kafka_partition, source_partition, maxState(source_offset) AS source_offset
FROM {db}.flows
GROUP BY kafka_partition, source_partition`,
}

// KafkaOffsetsTable records, after each successful insert, the next Kafka
// offset per partition the sink has written, so a restarted sink skips
// records ClickHouse already has. Rows are only ever inserted; the engine
// keeps the highest next_offset per key on merge, and readers take
// max(next_offset) (or FINAL) because merges are lazy.
var KafkaOffsetsTable = Table{
	Name:    "kafka_offsets",
	Comment: "Next Kafka offset per partition already written by the sink",
	Columns: []Column{
		{Name: "consumer_group", Type: TypeString},
		{Name: "topic", Type: TypeString},
		{Name: "partition", Type: TypeUInt32},
		{Name: "next_offset", Type: TypeInt64, Comment: "offset of the first record not yet in ClickHouse"},
		{Name: "updated", Type: TypeDateTime, Default: "now()"},
	},
	Engine:  "ReplacingMergeTree(next_offset)",
	OrderBy: "(consumer_group, topic, partition)",
}

// AccessEventsTable holds one row per access-log event (sshd logins,
// web requests, Kubernetes audit events, gateway sessions). Ordered by
// hour then source address, because the commonest question is "who was
// behind this address around then".
var AccessEventsTable = Table{
	Name:    "access_events",
	Comment: "Access-log events, one row per event",
	Columns: []Column{
		{Name: "time", Type: TypeDateTime64ms, Codec: "Delta, ZSTD(1)", Comment: "when the access happened, from the log line"},
		{Name: "received", Type: TypeDateTime, Codec: "Delta, ZSTD(1)", Comment: "when flowaudit received the line"},
		{Name: "source", Type: TypeLowString, Comment: "sshd, nginx, apache, k8s_audit, gateway, json"},
		{Name: "host", Type: TypeLowString, Comment: "host that wrote the log line"},
		{Name: "user", Type: TypeLowString},
		{Name: "src_addr", Type: TypeAddr, Codec: "ZSTD(1)"},
		{Name: "src_port", Type: TypeUInt16},
		{Name: "dst_addr", Type: TypeAddr, Codec: "ZSTD(1)"},
		{Name: "dst_host", Type: TypeLowString},
		{Name: "dst_port", Type: TypeUInt16},
		{Name: "resource", Type: TypeString, Codec: "ZSTD(1)"},
		{Name: "action", Type: TypeLowString, Comment: "login, logout, session_open, session_close, disconnect, or the verb"},
		{Name: "outcome", Type: TypeLowString, Comment: "success, failure, denied or unknown"},
		{Name: "session_id", Type: TypeString, Codec: "ZSTD(1)"},
		{Name: "auth_method", Type: TypeLowString},
		{Name: "status", Type: TypeUInt16, Comment: "HTTP status or Kubernetes response code; 0 when none"},
		{Name: "user_agent", Type: TypeLowString},
		{Name: "forwarded_for", Type: TypeString, Codec: "ZSTD(1)", Comment: "X-Forwarded-For chain of a web request, client first; empty for direct clients"},
		{Name: "peer_addr", Type: TypeAddr, Codec: "ZSTD(1)", Comment: "real address of the sender (syslog or HTTP peer); :: for tailed files"},
		{Name: "listener", Type: TypeLowString, Comment: "listener the event came through (udp://0.0.0.0:5514, https://…, file:///…)"},
		{Name: "trusted", Type: TypeUInt8, Default: "1", Comment: "1 when the sender may bind identities (ingest.access.trusted_senders, http_token_hosts)"},
		// Identity sources (VPN, RADIUS, logons, DHCP, Kubernetes pods).
		{Name: "binding", Type: TypeLowString, Comment: "start, update or stop of a session binding of src_addr; empty: none"},
		{Name: "device", Type: TypeString, Codec: "ZSTD(1)", Comment: "device behind src_addr: MAC, DUID, Calling-Station-Id or namespace/pod"},
		{Name: "device_name", Type: TypeLowString, Comment: "the device's host name (DHCP client hostname)"},
		{Name: "expires", Type: TypeDateTime, Comment: "when the binding ends by itself (DHCP lease expiry); 1970-01-01: no expiry given"},
		{Name: "outer_addr", Type: TypeAddr, Codec: "ZSTD(1)", Comment: "where a tunnel session came from (OpenVPN real address); :: when none"},
		{Name: "labels", Type: TypeString, Codec: "ZSTD(1)", Comment: "Kubernetes pod labels, key=value sorted by key, comma-separated"},
	},
	Engine:      "MergeTree",
	PartitionBy: "toYYYYMMDD(time)",
	OrderBy:     "(toStartOfHour(time), src_addr, time)",
	TTLColumn:   "time",
}

// SegmentMatrixTable is the per-minute segment matrix: flows, bytes and
// packets per (source segment, destination segment, port, protocol,
// verdict), filled by a materialized view on every insert into flows.
// Sums are as exported (sampled); multiply by the flows' sampling rate in
// flows for estimates.
var SegmentMatrixTable = Table{
	Name:    "segment_matrix_1m",
	Comment: "Per-minute segment matrix, filled from flows",
	Columns: []Column{
		{Name: "minute", Type: TypeDateTime},
		{Name: "src_segment", Type: TypeLowString},
		{Name: "dst_segment", Type: TypeLowString},
		{Name: "dst_port", Type: TypeUInt16},
		{Name: "proto", Type: TypeUInt8},
		{Name: "verdict", Type: TypeLowString},
		// No DEFAULT: a column added to the sorting key of an existing
		// table may have none (rows from before it read '').
		{Name: "staged_verdict", Type: TypeLowString, Comment: "the verdict had the staged rules been enforced too"},
		{Name: "flows", Type: TypeUInt64},
		{Name: "bytes", Type: TypeUInt64},
		{Name: "packets", Type: TypeUInt64},
	},
	Engine:      "SummingMergeTree((flows, bytes, packets))",
	PartitionBy: "toYYYYMMDD(minute)",
	OrderBy:     "(minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict)",
	TTLColumn:   "minute",
	View: `SELECT toStartOfMinute(time_received) AS minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict,
    count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets
FROM {db}.flows
GROUP BY minute, src_segment, dst_segment, dst_port, proto, verdict, staged_verdict`,
}

// RuleHitsTable counts, per hour, the flows each rule decided: deciding
// rule and verdict (and their staged counterparts), the segment pair and
// the service, filled by a materialized view on every insert into flows.
// It is the hit count gap analysis and compliance evidence read.
//
// Rows are in the service orientation: client_segment (read as
// src_segment) is the end that did not offer the service and
// server_segment (dst_segment) the end that did, service_port (dst_port)
// the serving end's port. For a flow with service_side 'src' (a reply)
// the ends are swapped, so a connection's two directions count on one
// row; flows whose service side is unknown (”) keep their own
// orientation and dst_port. src_segment, dst_segment and dst_port are
// ALIAS columns of the stored ones, because a view cannot swap two columns
// under their own names on 18.16 ("cyclic aliases").
//
// Read with sum(flows), sum(bytes), maxMerge(last_hit) GROUP BY the key:
// merges are lazy. Sums are as exported (sampled).
var RuleHitsTable = Table{
	Name:    "rule_hits_1h",
	Comment: "Hourly hit counts per deciding rule, in the service orientation, filled from flows",
	Columns: []Column{
		{Name: "hour", Type: TypeDateTime},
		{Name: "rule", Type: TypeLowString, Comment: "the rule that decided verdict; empty when none did"},
		{Name: "verdict", Type: TypeLowString},
		{Name: "staged_rule", Type: TypeLowString},
		{Name: "staged_verdict", Type: TypeLowString},
		{Name: "client_segment", Type: TypeLowString, Comment: "segment of the end that did not offer the service"},
		{Name: "server_segment", Type: TypeLowString, Comment: "segment of the end that offered the service"},
		{Name: "client_workload", Type: TypeLowString},
		{Name: "server_workload", Type: TypeLowString},
		{Name: "client_identity", Type: TypeLowString, Comment: "user or service account of the client end"},
		{Name: "service_port", Type: TypeUInt16, Comment: "port of the serving end; the destination port when the side is unknown"},
		{Name: "proto", Type: TypeUInt8},
		{Name: "service_side", Type: TypeLowString, Comment: "service_side of the flows: dst, src (replies, swapped) or empty (unknown, not swapped)"},
		{Name: "flows", Type: TypeUInt64},
		{Name: "bytes", Type: TypeUInt64},
		{Name: "last_hit", Type: TypeAggregate, Aggregate: "max, DateTime", Comment: "latest time_received; read with maxMerge"},
		{Name: "src_segment", Type: TypeLowString, Alias: "client_segment"},
		{Name: "dst_segment", Type: TypeLowString, Alias: "server_segment"},
		{Name: "dst_port", Type: TypeUInt16, Alias: "service_port"},
	},
	// No column list: flows and bytes are summed, last_hit is merged as
	// its aggregate (an explicit list would leave it unmerged on 18.16).
	Engine:      "SummingMergeTree",
	PartitionBy: "toYYYYMM(hour)",
	OrderBy:     "(hour, rule, verdict, client_segment, server_segment, service_port, proto, staged_rule, staged_verdict, client_workload, server_workload, client_identity, service_side)",
	TTLColumn:   "hour",
	View: `SELECT toStartOfHour(time_received) AS hour, rule, verdict, staged_rule, staged_verdict,
    if(service_side = 'src', dst_segment, src_segment) AS client_segment,
    if(service_side = 'src', src_segment, dst_segment) AS server_segment,
    if(service_side = 'src', dst_workload, src_workload) AS client_workload,
    if(service_side = 'src', src_workload, dst_workload) AS server_workload,
    if(service_side = 'src', dst_identity, src_identity) AS client_identity,
    if(service_side = '', dst_port, service_port) AS service_port,
    proto, service_side,
    count() AS flows, sum(bytes) AS bytes, maxState(time_received) AS last_hit
FROM {db}.flows
GROUP BY hour, rule, verdict, staged_rule, staged_verdict, client_segment, server_segment,
    client_workload, server_workload, client_identity, service_port, proto, service_side`,
}

// ConsoleEdgesTable is the console's per-minute rollup of segment edges,
// in the service orientation of RuleHitsTable (client_segment is the end
// that did not offer the service, service_port the serving end's port):
// flows and bytes per minute, segment and workload pair, service, client
// identity, verdict and deciding rule (enforced and staged), filled by a
// materialized view. The console reads it for windows on whole minutes
// that rule_hits_1h's hours are too coarse for (the map, the explorer's
// series and Sankey and an edge's detail over the last hour). Read with
// sum(flows), sum(bytes) GROUP BY the key: merges are lazy. Sums are as
// exported (sampled).
var ConsoleEdgesTable = Table{
	Name:    "console_edges_1m",
	Comment: "Per-minute segment edges in the service orientation for the console, filled from flows",
	Columns: []Column{
		{Name: "minute", Type: TypeDateTime},
		{Name: "client_segment", Type: TypeLowString, Comment: "segment of the end that did not offer the service"},
		{Name: "server_segment", Type: TypeLowString, Comment: "segment of the end that offered the service"},
		{Name: "service_port", Type: TypeUInt16, Comment: "port of the serving end; the destination port when the side is unknown"},
		{Name: "proto", Type: TypeUInt8},
		{Name: "verdict", Type: TypeLowString},
		{Name: "staged_verdict", Type: TypeLowString},
		{Name: "client_identity", Type: TypeLowString, Comment: "user or service account of the client end"},
		{Name: "rule", Type: TypeLowString},
		{Name: "staged_rule", Type: TypeLowString},
		{Name: "client_workload", Type: TypeLowString},
		{Name: "server_workload", Type: TypeLowString},
		{Name: "flows", Type: TypeUInt64},
		{Name: "bytes", Type: TypeUInt64},
	},
	Engine:      "SummingMergeTree((flows, bytes))",
	PartitionBy: "toYYYYMMDD(minute)",
	OrderBy:     "(minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict, client_identity, rule, staged_rule, client_workload, server_workload)",
	TTLColumn:   "minute",
	View: `SELECT toStartOfMinute(time_received) AS minute,
    if(service_side = 'src', dst_segment, src_segment) AS client_segment,
    if(service_side = 'src', src_segment, dst_segment) AS server_segment,
    if(service_side = '', dst_port, service_port) AS service_port,
    proto, verdict, staged_verdict,
    if(service_side = 'src', dst_identity, src_identity) AS client_identity,
    rule, staged_rule,
    if(service_side = 'src', dst_workload, src_workload) AS client_workload,
    if(service_side = 'src', src_workload, dst_workload) AS server_workload,
    count() AS flows, sum(bytes) AS bytes
FROM {db}.flows
GROUP BY minute, client_segment, server_segment, service_port, proto, verdict, staged_verdict,
    client_identity, rule, staged_rule, client_workload, server_workload`,
}

// PolicyVersionsTable records every policy an enricher applied (at start
// and on each reload): the file's SHA-256, when and by whom it was
// applied, and its content, for drift and review. The enricher produces
// one record per application to flowaudit.policy.v1 and the sink writes
// it here, so a version applied while ClickHouse is down is still
// recorded. Duplicates of one application (redelivery) collapse on merge.
var PolicyVersionsTable = Table{
	Name:    "policy_versions",
	Comment: "Every policy file an enricher applied",
	Columns: []Column{
		{Name: "version", Type: TypeString, Comment: "SHA-256 of the file, hex"},
		{Name: "loaded_at", Type: TypeDateTime64ms, Comment: "when the enricher applied it"},
		{Name: "path", Type: TypeString},
		{Name: "content", Type: TypeString, Codec: "ZSTD(3)"},
		{Name: "host", Type: TypeLowString, Comment: "host name of the enricher that applied it"},
		{Name: "summary", Type: TypeString, Comment: "one-line summary: segments, rules, default"},
	},
	Engine:  "ReplacingMergeTree",
	OrderBy: "(version, loaded_at, host)",
}

// ObservedEdgesTable records every edge ever seen — (source segment,
// destination segment, port, protocol, source identity) — with its first
// and last sighting, filled by a materialized view. Read it with
// minMerge(first_seen), maxMerge(last_seen), countMerge(flows) GROUP BY
// the key: merges are lazy.
var ObservedEdgesTable = Table{
	Name:    "observed_edges",
	Comment: "First and last sighting of each segment edge, filled from flows",
	Columns: []Column{
		{Name: "src_segment", Type: TypeLowString},
		{Name: "dst_segment", Type: TypeLowString},
		{Name: "dst_port", Type: TypeUInt16},
		{Name: "proto", Type: TypeUInt8},
		{Name: "src_identity", Type: TypeLowString},
		{Name: "first_seen", Type: TypeAggregate, Aggregate: "min, DateTime"},
		{Name: "last_seen", Type: TypeAggregate, Aggregate: "max, DateTime"},
		{Name: "flows", Type: TypeAggregate, Aggregate: "count"},
	},
	Engine:  "AggregatingMergeTree",
	OrderBy: "(src_segment, dst_segment, dst_port, proto, src_identity)",
	View: `SELECT src_segment, dst_segment, dst_port, proto, src_identity,
    minState(time_received) AS first_seen, maxState(time_received) AS last_seen, countState() AS flows
FROM {db}.flows
GROUP BY src_segment, dst_segment, dst_port, proto, src_identity`,
}

// AuditEdgesTable is the daily address-pair rollup the audit layer reads
// (`audit simulate` and `audit recommend`): flows, bytes and first/last
// flow time per (day, source and destination address, ports, protocol,
// service side, identities, verdict, rule), filled by a materialized
// view. The client's port — the end that does not offer the service by
// service_side, or the higher port when the side is unknown — is stored
// as 32768 when it is 32768 or more: those are ephemeral ports, which
// would otherwise make one row per flow. The service port and ICMP's type
// and code stay exact. A policy whose port specs draw no boundary above
// 32768 therefore decides every flow of a row alike, so a replay over rows
// is exact (the read side falls back to flows for other policies). Read
// with countMerge, sumMerge, minMerge and maxMerge GROUP BY the key:
// merges are lazy.
var AuditEdgesTable = Table{
	Name:    "audit_edges_1d",
	Comment: "Daily address-pair rollup for audit recommend and simulate, filled from flows",
	Columns: []Column{
		{Name: "day", Type: TypeDate},
		{Name: "src_addr", Type: TypeAddr},
		{Name: "dst_addr", Type: TypeAddr},
		{Name: "src_port_key", Type: TypeUInt16, Comment: "src_port, or 32768 for a client port >= 32768"},
		{Name: "dst_port_key", Type: TypeUInt16, Comment: "dst_port, or 32768 for a client port >= 32768"},
		{Name: "proto", Type: TypeUInt8},
		{Name: "service_side", Type: TypeLowString, Comment: "as in flows: dst, src or empty"},
		{Name: "src_identity", Type: TypeLowString},
		{Name: "dst_identity", Type: TypeLowString},
		{Name: "verdict", Type: TypeLowString},
		{Name: "rule", Type: TypeLowString},
		{Name: "flows", Type: TypeAggregate, Aggregate: "count"},
		{Name: "bytes", Type: TypeAggregate, Aggregate: "sum, UInt64"},
		{Name: "first_seen", Type: TypeAggregate, Aggregate: "min, DateTime", Comment: "flow time (start, else end, else receipt)"},
		{Name: "last_seen", Type: TypeAggregate, Aggregate: "max, DateTime"},
	},
	Engine:      "AggregatingMergeTree",
	PartitionBy: "toYYYYMM(day)",
	OrderBy:     "(day, src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule)",
	TTLColumn:   "day",
	View: `SELECT toDate(time_received) AS day, src_addr, dst_addr, service_side,
    ` + AuditSrcPortKeySQL + ` AS src_port_key,
    ` + AuditDstPortKeySQL + ` AS dst_port_key,
    proto, src_identity, dst_identity, verdict, rule,
    countState() AS flows, sumState(bytes) AS bytes,
    minState(` + FlowTimeSQL + `) AS first_seen, maxState(` + FlowTimeSQL + `) AS last_seen
FROM {db}.flows
GROUP BY day, src_addr, dst_addr, src_port_key, dst_port_key, proto, service_side, src_identity, dst_identity, verdict, rule`,
}

// AuditPortClamp is the port from which AuditEdgesTable stores client
// ports as this value.
const AuditPortClamp = 32768

// AuditReplySQL is, over flows or the rollup (after the port keys AS sp
// and dp), 1 when the source end offers the service (the flow is a
// reply): the enricher's service_side, else the lower port is the
// service.
const AuditReplySQL = "toUInt8(multiIf(service_side = 'src', 1, service_side = 'dst', 0, " +
	"proto IN (6, 17, 132) AND sp < dp, 1, 0))"

// AuditSrcPortKeySQL and AuditDstPortKeySQL are AuditEdgesTable's port
// keys over flows: the client's port capped at 32768 — without a service
// side, the higher port capped just above the other when that is higher,
// so the lower port still tells the service.
const (
	AuditSrcPortKeySQL = "toUInt16(multiIf(proto NOT IN (6, 17, 132), src_port, service_side = 'dst', least(src_port, 32768), " +
		"service_side = '' AND src_port > dst_port, least(src_port, greatest(32768, dst_port + 1)), src_port))"
	AuditDstPortKeySQL = "toUInt16(multiIf(proto NOT IN (6, 17, 132), dst_port, service_side = 'src', least(dst_port, 32768), " +
		"service_side = '' AND dst_port > src_port, least(dst_port, greatest(32768, src_port + 1)), dst_port))"
)

// FlowTimeSQL is FlowSpan's start in SQL over flows, to the second:
// time_start, else time_end, else time_received. On 18.16 time_start is a
// DateTime, on modern servers a DateTime64(3); toDateTime takes both.
// The CAST keeps the type a plain DateTime (toDateTime attaches the
// server's time zone to it, which aggregate state columns reject).
const FlowTimeSQL = "CAST(multiIf(toUInt32(toDateTime(time_start)) != 0, toDateTime(time_start), " +
	"toUInt32(toDateTime(time_end)) != 0, toDateTime(time_end), time_received) AS DateTime)"

// AlertsTable holds detector findings. An alert may be written twice —
// when first raised and with the final counts of its window — under the
// same deterministic alert_id; the engine keeps the row with the highest
// version (the latest last_seen). Read with FINAL, or argMax(x, version)
// GROUP BY alert_id, to see each alert once.
var AlertsTable = Table{
	Name:    "alerts",
	Comment: "Detector findings; one row per alert_id after merges",
	Columns: []Column{
		{Name: "alert_id", Type: TypeString},
		{Name: "time", Type: TypeDateTime64ms, Comment: "when the finding was made (event time)"},
		{Name: "kind", Type: TypeLowString},
		{Name: "severity", Type: TypeLowString, Comment: "low, medium, high or critical"},
		{Name: "src_addr", Type: TypeAddr},
		{Name: "dst_addr", Type: TypeAddr},
		{Name: "src_segment", Type: TypeLowString},
		{Name: "dst_segment", Type: TypeLowString},
		{Name: "src_identity", Type: TypeLowString},
		{Name: "dst_port", Type: TypeUInt16},
		{Name: "proto", Type: TypeUInt8},
		{Name: "first_seen", Type: TypeDateTime64ms},
		{Name: "last_seen", Type: TypeDateTime64ms},
		{Name: "count", Type: TypeUInt64},
		{Name: "bytes", Type: TypeUInt64},
		{Name: "summary", Type: TypeString},
		{Name: "evidence", Type: TypeString, Codec: "ZSTD(1)", Comment: "JSON"},
		{Name: "version", Type: TypeUInt64, Comment: "last_seen in Unix ns: the highest wins on merge"},
	},
	Engine:    "ReplacingMergeTree(version)",
	OrderBy:   "alert_id",
	TTLColumn: "time",
}

// ProbeResultsTable holds one row per active segmentation-test attempt
// (`flowaudit probe`): what the policy expects between the prober and a
// target on one port, what the connection attempt observed, and whether
// that passes. It is compliance evidence (PCI DSS 11.4.5 asks for the
// tests of the last 12 months), so it has no TTL. Ordered by hour then
// run, because runs are read whole ("show the last test") and by period.
var ProbeResultsTable = Table{
	Name:    "probe_results",
	Comment: "Active segmentation tests, one row per attempt",
	Columns: []Column{
		{Name: "time", Type: TypeDateTime64ms, Codec: "Delta, ZSTD(1)", Comment: "when the attempt started"},
		{Name: "run_id", Type: TypeString, Comment: "one probe run; its start time and prober"},
		{Name: "prober", Type: TypeLowString, Comment: "host name of the prober"},
		{Name: "src_addr", Type: TypeAddr, Comment: "local address of the attempt"},
		{Name: "src_segment", Type: TypeLowString},
		{Name: "dst_addr", Type: TypeAddr},
		{Name: "dst_segment", Type: TypeLowString},
		{Name: "dst_workload", Type: TypeLowString, Default: "''"},
		{Name: "dst_port", Type: TypeUInt16, Comment: "0 for ICMP echo"},
		{Name: "proto", Type: TypeUInt8},
		{Name: "expected", Type: TypeLowString, Comment: "allow or deny, from the policy"},
		{Name: "observed", Type: TypeLowString, Comment: "open, closed, filtered or error"},
		{Name: "result", Type: TypeLowString, Comment: "pass, breach or blocked"},
		{Name: "rule", Type: TypeLowString, Default: "''", Comment: "the rule that allows it; '' when denied"},
		{Name: "rtt_ms", Type: TypeUInt32, Comment: "time to the answer (or to the timeout)"},
		{Name: "detail", Type: TypeString, Default: "''", Comment: "the error of an attempt that observed error"},
	},
	Engine:      "MergeTree",
	PartitionBy: "toYYYYMM(time)",
	OrderBy:     "(toStartOfHour(time), run_id, dst_segment, dst_addr, dst_port, proto)",
}

// ReportsTable indexes the compliance evidence packs written by
// `flowaudit report` and report.schedule: one row per pack, where it was
// written, the SHA-256 of its MANIFEST.sha256 (which names every file's
// hash), and its summary as JSON. It is compliance evidence itself, so it
// has no TTL.
var ReportsTable = Table{
	Name:    "reports",
	Comment: "Compliance evidence packs, one row per pack",
	Columns: []Column{
		{Name: "report_id", Type: TypeString, Comment: "framework and generation time, as the pack's directory name"},
		{Name: "framework", Type: TypeLowString, Comment: "pci-dss-4, soc2 or iso27001"},
		{Name: "generated_at", Type: TypeDateTime},
		{Name: "window_from", Type: TypeDateTime, Comment: "start of the history the pack covers"},
		{Name: "window_to", Type: TypeDateTime, Comment: "end of it (exclusive)"},
		{Name: "path", Type: TypeString, Comment: "directory of the pack on the host that wrote it"},
		{Name: "sha256", Type: TypeString, Comment: "SHA-256 of the pack's MANIFEST.sha256, hex"},
		{Name: "summary", Type: TypeString, Comment: "the summary object of report.json"},
	},
	Engine:  "ReplacingMergeTree",
	OrderBy: "(framework, generated_at, report_id)",
}

// Tables returns every table, in creation order.
func Tables() []Table {
	return []Table{FlowsTable, AccessEventsTable, AlertsTable, KafkaOffsetsTable, SegmentMatrixTable, ObservedEdgesTable,
		RuleHitsTable, PolicyVersionsTable, ProbeResultsTable, SinkProgressTable, AuditEdgesTable, ReportsTable,
		ConsoleEdgesTable}
}

// ViewSQL returns the CREATE MATERIALIZED VIEW statement of a table with
// a View, or "" for other tables. Both generations accept it.
func (t Table) ViewSQL(database string) string {
	if t.View == "" {
		return ""
	}
	return "CREATE MATERIALIZED VIEW IF NOT EXISTS " + QualifiedName(database, t.Name+"_mv") +
		" TO " + QualifiedName(database, t.Name) + " AS\n" + strings.ReplaceAll(t.View, "{db}", QuoteIdent(database))
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// QuoteIdent backquotes name unless it is a plain identifier, so that the
// generated DDL stays readable for the names we choose and still safe for
// a configured database name.
func QuoteIdent(name string) string {
	if identRE.MatchString(name) {
		return name
	}
	r := strings.NewReplacer("\\", "\\\\", "`", "\\`")
	return "`" + r.Replace(name) + "`"
}

// QualifiedName returns database.table, each quoted as needed.
func QualifiedName(database, table string) string {
	return QuoteIdent(database) + "." + QuoteIdent(table)
}

// quoteString returns s as a single-quoted SQL string literal.
func quoteString(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "'", "\\'")
	return "'" + r.Replace(s) + "'"
}
