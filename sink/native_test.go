package sink

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/testutil/modernch"
	"github.com/flowaudit/flowaudit/schemas"
)

// nativeConn carries the sink's own batches to the modern engine: its
// PrepareBatch gives a batch of clickhouse-go's column types (the ones the
// driver sends to a server of that generation), and Send serializes it as
// a Native-format block (clickhouse-go's own encoder) into a file that the
// engine inserts with INSERT ... FROM INFILE ... FORMAT Native. chdb has
// no native-protocol server, so this is the only way the bytes the sink
// produces reach a modern ClickHouse here. Only PrepareBatch is provided:
// the writers' insert paths use nothing else.
type nativeConn struct {
	driver.Conn
	t      *testing.T
	e      modernch.Engine
	dir    string
	blocks int
}

var insertRE = regexp.MustCompile(`^INSERT INTO (\S+)\.(\w+) \(([^)]*)\)$`)

func (c *nativeConn) PrepareBatch(_ context.Context, query string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	m := insertRE.FindStringSubmatch(query)
	if m == nil {
		return nil, fmt.Errorf("nativeConn: not an INSERT with a column list: %q", query)
	}
	var table schemas.Table
	for _, t := range schemas.Tables() {
		if t.Name == m[2] {
			table = t
		}
	}
	if table.Name == "" {
		return nil, fmt.Errorf("nativeConn: unknown table %s", m[2])
	}
	modern := schemas.ServerVersion{Major: 26, Minor: 7}
	block := proto.NewBlock()
	for _, name := range strings.Split(m[3], ", ") {
		col, ok := table.Column(name)
		if !ok {
			return nil, fmt.Errorf("nativeConn: %s has no column %s", table.Name, name)
		}
		if err := block.AddColumn(name, column.Type(col.SQLType(modern))); err != nil {
			return nil, fmt.Errorf("nativeConn: column %s: %w", name, err)
		}
	}
	return &nativeBatch{conn: c, target: m[1] + "." + m[2] + " (" + m[3] + ")", block: block}, nil
}

type nativeBatch struct {
	driver.Batch
	conn   *nativeConn
	target string
	block  *proto.Block
	sent   bool
}

func (b *nativeBatch) Abort() error          { return nil }
func (b *nativeBatch) Append(v ...any) error { return b.block.Append(v...) }
func (b *nativeBatch) Rows() int             { return b.block.Rows() }
func (b *nativeBatch) Column(i int) driver.BatchColumn {
	return nativeColumn{b.block.Columns[i]}
}

func (b *nativeBatch) Send() error {
	var buf chproto.Buffer
	// Revision 0: the Native format's framing (no block info, no
	// per-column serialization flags), as ClickHouse reads it from a file.
	if err := b.block.Encode(&buf, 0); err != nil {
		return err
	}
	b.conn.blocks++
	path := filepath.Join(b.conn.dir, "block-"+strconv.Itoa(b.conn.blocks)+".native")
	if err := os.WriteFile(path, buf.Buf, 0o644); err != nil {
		return err
	}
	if _, err := b.conn.e.Query("INSERT INTO "+b.target+" FROM INFILE '"+path+"' FORMAT Native", "TSV"); err != nil {
		return fmt.Errorf("modern engine rejects the sink's Native block for %s: %w", b.target, err)
	}
	b.sent = true
	return nil
}

type nativeColumn struct{ c column.Interface }

func (c nativeColumn) Append(v any) error {
	_, err := c.c.Append(v)
	return err
}
func (c nativeColumn) AppendRow(v any) error { return c.c.AppendRow(v) }

// selectExpr reads column c as text independent of the generation's type:
// addresses as IPv6NumToString, times as Unix seconds or milliseconds.
func selectExpr(c schemas.Column) string {
	switch c.Type {
	case schemas.TypeAddr:
		return "IPv6NumToString(" + c.Name + ")"
	case schemas.TypeDateTime64ms:
		return "toUnixTimestamp64Milli(" + c.Name + ")"
	case schemas.TypeDateTime:
		return "toUnixTimestamp(" + c.Name + ")"
	}
	return c.Name
}

// readRows returns every stored column of table, ordered by orderBy, as
// one map (column name to text) per row.
func readRows(t *testing.T, e modernch.Engine, db string, table schemas.Table, orderBy string) []map[string]string {
	t.Helper()
	var exprs, names []string
	for _, c := range table.Columns {
		if c.Alias == "" && c.Type != schemas.TypeAggregate {
			exprs, names = append(exprs, selectExpr(c)), append(names, c.Name)
		}
	}
	out, err := e.Query("SELECT "+strings.Join(exprs, ", ")+" FROM "+db+"."+table.Name+" ORDER BY "+orderBy, "TabSeparated")
	if err != nil {
		t.Fatalf("read %s: %v", table.Name, err)
	}
	var rows []map[string]string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) != len(names) {
			t.Fatalf("%s row has %d fields, want %d: %q", table.Name, len(fields), len(names), line)
		}
		row := map[string]string{}
		for i, n := range names {
			row[n] = fields[i]
		}
		rows = append(rows, row)
	}
	return rows
}

func compareRow(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: column %s not read back", what, name)
			continue
		}
		if g != w {
			t.Errorf("%s: %s = %q, want %q", what, name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: column %s read back but not checked", what, name)
		}
	}
}

func addr(s string) schemas.Addr { return schemas.AddrFromNetip(netip.MustParseAddr(s)) }

func u(v uint64) string { return strconv.FormatUint(v, 10) }

// TestNativeRoundTripModern sends the sink's own batches (flowWriter,
// accessWriter, alertWriter, policyVersionWriter, for a modern server)
// as Native blocks to ClickHouse 26.7 and reads every column back: IPv4
// mapped and IPv6 addresses in IPv6 columns, DateTime64(3) milliseconds,
// LowCardinality(String), and what the materialized views made of them.
func TestNativeRoundTripModern(t *testing.T) {
	e := modernch.Open(t)
	db := modernch.Database(t, e)
	for _, sql := range schemas.DDL(db, schemas.ServerVersion{Major: 26, Minor: 7}, 0) {
		if _, err := e.Query(sql, "TSV"); err != nil {
			t.Fatalf("%v\n%s", err, sql)
		}
	}
	conn := &nativeConn{t: t, e: e, dir: t.TempDir()}
	ctx := context.Background()
	received := uint64(time.Date(2026, 12, 1, 10, 0, 7, 0, time.UTC).UnixNano())

	t.Run("flows", func(t *testing.T) {
		batch := schemas.FlowBatch{TimeReceived: received + 123456789, Exporter: addr("192.0.2.10"), Type: schemas.FlowTypeIPFIX, ObservationID: 77}
		batch.Flows = []schemas.Flow{{
			TimeStart: received - 5_250_000_000, TimeEnd: received - 1_001_000_000,
			SrcAddr: addr("10.1.0.5"), DstAddr: addr("10.2.0.10"), NextHop: addr("10.0.0.1"),
			Bytes: 1 << 40, Packets: 1<<32 + 5, SamplingRate: 100, InIf: 3, OutIf: 4_000_000_000, SrcAS: 64512, DstAS: 4_200_000_000,
			SrcPort: 51234, DstPort: 5432, EtherType: 0x0800, Proto: 6, TCPFlags: 0x1b, IPTos: 0xb8, Direction: 1,
			FwAction: schemas.FwActionForwarded, SrcPortXlate: 40000, DstPortXlate: 5433,
			SrcAddrXlate: addr("203.0.113.7"), DstAddrXlate: addr("198.51.100.9"),
			Verdict: schemas.VerdictAllowed, SrcSegment: "web", DstSegment: "db", SrcWorkload: "shop-web", DstWorkload: "orders-db",
			SrcIdentity: "alice", DstIdentity: "svc-orders", Rule: "web-to-db-postgres", SrcCountry: "DE", DstCountry: "FR",
			StagedVerdict: schemas.VerdictViolation, StagedRule: "tighten-db", ServiceSide: schemas.ServiceDst, ServicePort: 5432,
			SrcIdentitySource: "radius", DstIdentitySource: "inventory", SrcDevice: "aa:bb:cc:dd:ee:ff", DstDevice: "db-host-1",
		}, {
			// IPv6 throughout, no exported times (dated by arrival).
			SrcAddr: addr("2001:db8:1::5"), DstAddr: addr("2001:db8:2::a"), NextHop: addr("fe80::1"),
			SrcAddrXlate: addr("::"), Bytes: 64, Packets: 1, SamplingRate: 1, SrcPort: 443, DstPort: 60001, EtherType: 0x86dd, Proto: 17,
			Verdict: schemas.VerdictViolation, SrcSegment: "web", DstSegment: "external", StagedVerdict: schemas.VerdictViolation,
			ServiceSide: schemas.ServiceSrc, ServicePort: 443,
		}}
		w := newFlowWriter("flowaudit.enriched.v1", true, func() {})
		rec := &kgo.Record{Partition: 2, Offset: 41, Value: schemas.AppendFlowBatch(nil, &batch),
			Headers: []kgo.RecordHeader{kafka.Source{Partition: 7, Offset: 9001, Chunks: 1}.Header()}}
		if n, err := w.add(rec); err != nil || n != 2 {
			t.Fatalf("add = %d, %v", n, err)
		}
		if err := w.insert(ctx, conn, db); err != nil {
			t.Fatalf("sink's flows insert on ClickHouse 26.7: %v", err)
		}
		rows := readRows(t, e, db, schemas.FlowsTable, "source_offset, src_port DESC")
		if len(rows) != 2 {
			t.Fatalf("flows holds %d rows, want 2", len(rows))
		}
		recvS := u((received + 123456789) / 1e9)
		common := map[string]string{
			"time_received": recvS, "flow_type": "ipfix", "exporter": "::ffff:192.0.2.10", "observation_id": "77",
			"kafka_partition": "2", "source_partition": "7", "source_offset": "9001",
		}
		want := []map[string]string{{
			"time_start": u((received - 5_250_000_000) / 1e6), "time_end": u((received - 1_001_000_000) / 1e6),
			"src_addr": "::ffff:10.1.0.5", "dst_addr": "::ffff:10.2.0.10", "next_hop": "::ffff:10.0.0.1",
			"bytes": u(1 << 40), "packets": u(1<<32 + 5), "sampling_rate": "100", "in_if": "3", "out_if": "4000000000",
			"src_as": "64512", "dst_as": "4200000000", "src_port": "51234", "dst_port": "5432", "ether_type": "2048",
			"proto": "6", "tcp_flags": "27", "ip_tos": "184", "direction": "1",
			"fw_action": "forwarded", "src_port_xlate": "40000", "dst_port_xlate": "5433",
			"src_addr_xlate": "::ffff:203.0.113.7", "dst_addr_xlate": "::ffff:198.51.100.9",
			"verdict": "allowed", "src_segment": "web", "dst_segment": "db", "src_workload": "shop-web", "dst_workload": "orders-db",
			"src_identity": "alice", "dst_identity": "svc-orders", "rule": "web-to-db-postgres", "src_country": "DE", "dst_country": "FR",
			"staged_verdict": "violation", "staged_rule": "tighten-db", "service_side": "dst", "service_port": "5432",
			"src_identity_source": "radius", "dst_identity_source": "inventory", "src_device": "aa:bb:cc:dd:ee:ff", "dst_device": "db-host-1",
		}, {
			"time_start": u((received + 123456789) / 1e6), "time_end": u((received + 123456789) / 1e6),
			"src_addr": "2001:db8:1::5", "dst_addr": "2001:db8:2::a", "next_hop": "fe80::1",
			"bytes": "64", "packets": "1", "sampling_rate": "1", "in_if": "0", "out_if": "0",
			"src_as": "0", "dst_as": "0", "src_port": "443", "dst_port": "60001", "ether_type": "34525",
			"proto": "17", "tcp_flags": "0", "ip_tos": "0", "direction": "0",
			"fw_action": "", "src_port_xlate": "0", "dst_port_xlate": "0", "src_addr_xlate": "::", "dst_addr_xlate": "::",
			"verdict": "violation", "src_segment": "web", "dst_segment": "external", "src_workload": "", "dst_workload": "",
			"src_identity": "", "dst_identity": "", "rule": "", "src_country": "", "dst_country": "",
			"staged_verdict": "violation", "staged_rule": "", "service_side": "src", "service_port": "443",
			"src_identity_source": "", "dst_identity_source": "", "src_device": "", "dst_device": "",
		}}
		for i := range want {
			for k, v := range common {
				want[i][k] = v
			}
			compareRow(t, "flows row "+strconv.Itoa(i), rows[i], want[i])
		}
		// The views ran within the INSERT of the Native block.
		for _, check := range []struct{ sql, want string }{
			{"SELECT kafka_partition, source_partition, maxMerge(source_offset) FROM " + db + ".sink_progress GROUP BY kafka_partition, source_partition", "2\t7\t9001"},
			{"SELECT sum(flows), sum(bytes) FROM " + db + ".segment_matrix_1m", "2\t" + u(1<<40+64)},
			{"SELECT IPv6NumToString(src_addr), countMerge(flows), sumMerge(bytes) FROM " + db + ".audit_edges_1d GROUP BY src_addr ORDER BY src_addr", "::ffff:10.1.0.5\t1\t" + u(1<<40) + "\n2001:db8:1::5\t1\t64"},
			{"SELECT client_segment, server_segment, service_port, sum(flows) FROM " + db + ".rule_hits_1h GROUP BY client_segment, server_segment, service_port ORDER BY service_port", "external\tweb\t443\t1\nweb\tdb\t5432\t1"},
		} {
			out, err := e.Query(check.sql, "TSV")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out)); got != check.want {
				t.Errorf("%s\n got %q, want %q", check.sql, got, check.want)
			}
		}
	})

	t.Run("access_events", func(t *testing.T) {
		evs := []schemas.AccessEvent{{
			Time: received - 999_000_000, Received: received, Source: "sshd", Host: "bastion-1", User: "alice",
			SrcAddr: addr("10.1.0.5"), SrcPort: 50022, DstAddr: addr("10.2.0.10"), DstPort: 22, DstHost: "db-1",
			Resource: "shell", Action: "login", Outcome: schemas.OutcomeSuccess, SessionID: "s-1", AuthMethod: "publickey",
			Status: 0, PeerAddr: addr("10.9.0.1"), Listener: "udp://0.0.0.0:5514",
			Binding: schemas.BindingStart, Device: "52:54:00:ab:cd:ef", DeviceName: "alice-laptop",
			Expires: received + 3600e9, OuterAddr: addr("2001:db8:ff::9"), Labels: "app=shell,tier=admin",
		}, {
			Time: received + 1_500_000, Received: received + 2e9, Source: "nginx", Host: "web-1", User: "bob",
			SrcAddr: addr("2001:db8:1::7"), SrcPort: 61000, DstAddr: addr("2001:db8:1::80"), DstPort: 443, DstHost: "shop.example",
			Resource: "/admin", Action: "GET", Outcome: schemas.OutcomeDenied, Status: 403, UserAgent: "curl/8",
			ForwardedFor: "2001:db8:1::7, 10.0.0.2", PeerAddr: addr("2001:db8::53"), Listener: "https://127.0.0.1:8080", Untrusted: true,
		}}
		w := &accessWriter{name: "flowaudit.access.v1", modern: true}
		for i := range evs {
			if _, err := w.add(&kgo.Record{Partition: 0, Offset: int64(i), Value: schemas.AppendAccessEvent(nil, &evs[i])}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.insert(ctx, conn, db); err != nil {
			t.Fatalf("sink's access_events insert on ClickHouse 26.7: %v", err)
		}
		rows := readRows(t, e, db, schemas.AccessEventsTable, "time")
		if len(rows) != 2 {
			t.Fatalf("access_events holds %d rows, want 2", len(rows))
		}
		want := []map[string]string{{
			"time": u((received - 999_000_000) / 1e6), "received": u(received / 1e9), "source": "sshd", "host": "bastion-1", "user": "alice",
			"src_addr": "::ffff:10.1.0.5", "src_port": "50022", "dst_addr": "::ffff:10.2.0.10", "dst_host": "db-1", "dst_port": "22",
			"resource": "shell", "action": "login", "outcome": "success", "session_id": "s-1", "auth_method": "publickey", "status": "0",
			"user_agent": "", "forwarded_for": "", "peer_addr": "::ffff:10.9.0.1", "listener": "udp://0.0.0.0:5514", "trusted": "1",
			"binding": "start", "device": "52:54:00:ab:cd:ef", "device_name": "alice-laptop", "expires": u(received/1e9 + 3600),
			"outer_addr": "2001:db8:ff::9", "labels": "app=shell,tier=admin",
		}, {
			"time": u((received + 1_500_000) / 1e6), "received": u((received + 2e9) / 1e9), "source": "nginx", "host": "web-1", "user": "bob",
			"src_addr": "2001:db8:1::7", "src_port": "61000", "dst_addr": "2001:db8:1::80", "dst_host": "shop.example", "dst_port": "443",
			"resource": "/admin", "action": "GET", "outcome": "denied", "session_id": "", "auth_method": "", "status": "403",
			"user_agent": "curl/8", "forwarded_for": "2001:db8:1::7, 10.0.0.2", "peer_addr": "2001:db8::53", "listener": "https://127.0.0.1:8080", "trusted": "0",
			"binding": "", "device": "", "device_name": "", "expires": "0", "outer_addr": "::", "labels": "",
		}}
		for i := range want {
			compareRow(t, "access_events row "+strconv.Itoa(i), rows[i], want[i])
		}
	})

	t.Run("alerts", func(t *testing.T) {
		a := schemas.Alert{ID: "a-1", Time: received, Kind: "policy_violation", Severity: schemas.SeverityHigh,
			SrcAddr: addr("10.1.0.5"), DstAddr: addr("2001:db8:2::a"), SrcSegment: "web", DstSegment: "db", SrcIdentity: "alice",
			DstPort: 5432, Proto: 6, FirstSeen: received - 60e9, LastSeen: received + 250e6, Count: 12, Bytes: 3400,
			Summary: "web reached db", Evidence: `{"flows":12}`}
		w := &alertWriter{name: "flowaudit.alerts.v1", modern: true}
		if _, err := w.add(&kgo.Record{Value: schemas.AppendAlert(nil, &a)}); err != nil {
			t.Fatal(err)
		}
		if err := w.insert(ctx, conn, db); err != nil {
			t.Fatalf("sink's alerts insert on ClickHouse 26.7: %v", err)
		}
		rows := readRows(t, e, db, schemas.AlertsTable, "alert_id")
		if len(rows) != 1 {
			t.Fatalf("alerts holds %d rows, want 1", len(rows))
		}
		compareRow(t, "alert", rows[0], map[string]string{
			"alert_id": "a-1", "time": u(received / 1e6), "kind": "policy_violation", "severity": "high",
			"src_addr": "::ffff:10.1.0.5", "dst_addr": "2001:db8:2::a", "src_segment": "web", "dst_segment": "db", "src_identity": "alice",
			"dst_port": "5432", "proto": "6", "first_seen": u((received - 60e9) / 1e6), "last_seen": u((received + 250e6) / 1e6),
			"count": "12", "bytes": "3400", "summary": "web reached db", "evidence": `{"flows":12}`, "version": u(received + 250e6),
		})
	})

	t.Run("policy_versions", func(t *testing.T) {
		content := []byte("segments: []\n")
		v := schemas.PolicyVersion{Version: schemas.PolicyVersionOf(content), LoadedAt: received + 7e6, Path: "/etc/flowaudit/policy.yaml",
			Content: content, Host: "enrich-1", Summary: "0 segments, 0 rules, default deny"}
		data, err := schemas.MarshalPolicyVersion(&v)
		if err != nil {
			t.Fatal(err)
		}
		w := &policyVersionWriter{name: "flowaudit.policy.v1"}
		if _, err := w.add(&kgo.Record{Value: data}); err != nil {
			t.Fatal(err)
		}
		if err := w.insert(ctx, conn, db); err != nil {
			t.Fatalf("sink's policy_versions insert on ClickHouse 26.7: %v", err)
		}
		rows := readRows(t, e, db, schemas.PolicyVersionsTable, "version")
		if len(rows) != 1 {
			t.Fatalf("policy_versions holds %d rows, want 1", len(rows))
		}
		compareRow(t, "policy version", rows[0], map[string]string{
			"version": v.Version, "loaded_at": u((received + 7e6) / 1e6), "path": v.Path, "content": `segments: []\n`,
			"host": "enrich-1", "summary": v.Summary,
		})
	})
}
