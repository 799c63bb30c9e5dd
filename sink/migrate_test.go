package sink

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// testLogger logs to the test output and to the returned buffer, which
// tests inspect to see what Migrate did.
func testLogger(t *testing.T) (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &buf), nil)), &buf
}

type serverColumn struct{ Name, Type string }

// columnsOf returns the server's columns of database.table in position
// order.
func columnsOf(ctx context.Context, t *testing.T, conn driver.Conn, database, table string) []serverColumn {
	t.Helper()
	rows, err := conn.Query(ctx,
		"SELECT name, type FROM system.columns WHERE database = ? AND table = ?", database, table)
	if err != nil {
		t.Fatalf("query system.columns: %v", err)
	}
	defer rows.Close()
	var got []serverColumn
	for rows.Next() {
		var c serverColumn
		if err := rows.Scan(&c.Name, &c.Type); err != nil {
			t.Fatalf("scan system.columns: %v", err)
		}
		got = append(got, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("system.columns: %v", err)
	}
	return got
}

// describedColumns is what system.columns should say for table on a server
// of version v.
func describedColumns(table schemas.Table, v schemas.ServerVersion) []serverColumn {
	want := make([]serverColumn, len(table.Columns))
	for i, c := range table.Columns {
		want[i] = serverColumn{c.Name, c.SQLType(v)}
	}
	return want
}

// TestMigrate runs the generated DDL for real (the old generation on
// Debian's 18.16) against one server; subtests use separate databases.
func TestMigrate(t *testing.T) {
	server := testutil.StartClickHouse(t)
	conn := server.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("create and idempotent", func(t *testing.T) {
		logger, logs := testLogger(t)
		v, err := Migrate(ctx, conn, "flowaudit", 30*24*time.Hour, logger)
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if got := strings.Count(logs.String(), "created table"); got != len(schemas.Tables()) {
			t.Errorf("first Migrate created %d tables, want %d", got, len(schemas.Tables()))
		}
		logs.Reset()
		v2, err := Migrate(ctx, conn, "flowaudit", 30*24*time.Hour, logger)
		if err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if v2 != v {
			t.Errorf("second Migrate version = %v, want %v", v2, v)
		}
		if s := logs.String(); strings.Contains(s, "created table") || strings.Contains(s, "added column") {
			t.Errorf("second Migrate changed the schema:\n%s", s)
		}
		for _, table := range schemas.Tables() {
			got := columnsOf(ctx, t, conn, "flowaudit", table.Name)
			if diff := cmp.Diff(got, describedColumns(table, v)); diff != "" {
				t.Errorf("system.columns of %s (-got +want):\n%s", table.Name, diff)
			}
		}
	})

	t.Run("adds missing columns", func(t *testing.T) {
		const db = "partial"
		v, err := schemas.ParseServerVersion(versionOf(ctx, t, conn))
		if err != nil {
			t.Fatal(err)
		}
		// An older flowaudit's flows: the first 10 columns only, with a row
		// that must keep its values and get the new columns' defaults.
		// INSERT ... SELECT, not VALUES: through clickhouse-go's Exec, an
		// INSERT ... VALUES never completes on 18.16.
		var defs []string
		for _, c := range schemas.FlowsTable.Columns[:10] {
			defs = append(defs, c.Definition(v))
		}
		for _, stmt := range []string{
			"CREATE DATABASE " + db,
			"CREATE TABLE " + db + ".flows (" + strings.Join(defs, ", ") + ") ENGINE = MergeTree ORDER BY time_received",
			"INSERT INTO " + db + ".flows (time_received, flow_type, observation_id) SELECT now(), 'ipfix', 7",
		} {
			if err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}

		logger, logs := testLogger(t)
		if _, err := Migrate(ctx, conn, db, 0, logger); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if got, want := strings.Count(logs.String(), "added column"), len(schemas.FlowsTable.Columns)-10; got != want {
			t.Errorf("Migrate added %d columns, want %d", got, want)
		}
		got := columnsOf(ctx, t, conn, db, "flows")
		if diff := cmp.Diff(got, describedColumns(schemas.FlowsTable, v)); diff != "" {
			t.Errorf("system.columns of flows after Migrate (-got +want):\n%s", diff)
		}

		var flowType, verdict, segment string
		var observationID, srcPort uint64
		err = conn.QueryRow(ctx, "SELECT flow_type, toUInt64(observation_id), toUInt64(src_port), verdict, src_segment FROM "+db+".flows").
			Scan(&flowType, &observationID, &srcPort, &verdict, &segment)
		if err != nil {
			t.Fatalf("read old row: %v", err)
		}
		if flowType != "ipfix" || observationID != 7 || srcPort != 0 || verdict != "unknown" || segment != "" {
			t.Errorf("old row = (%q, %d, %d, %q, %q), want (ipfix, 7, 0, unknown, \"\")",
				flowType, observationID, srcPort, verdict, segment)
		}

		logs.Reset()
		if _, err := Migrate(ctx, conn, db, 0, logger); err != nil {
			t.Fatalf("second Migrate: %v", err)
		}
		if strings.Contains(logs.String(), "added column") {
			t.Errorf("second Migrate added columns again:\n%s", logs.String())
		}
	})

	t.Run("insert and read back", func(t *testing.T) {
		v, err := Migrate(ctx, conn, "flowaudit", 0, nil)
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		received := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
		src := schemas.AddrFrom4([4]byte{10, 1, 2, 3})
		dst := schemas.AddrFromNetip(netip.MustParseAddr("2001:db8::1"))
		// addr converts to what the column type takes: FixedString(16)
		// takes the 16 bytes, IPv6 a netip.Addr.
		addr := func(a schemas.Addr) any {
			if v.Modern() {
				return netip.AddrFrom16(a)
			}
			return a[:]
		}
		values := map[string]any{
			"time_received": received,
			"time_start":    received.Add(-time.Second),
			"time_end":      received,
			"flow_type":     "ipfix",
			"exporter":      addr(schemas.AddrFrom4([4]byte{192, 0, 2, 1})),
			"src_addr":      addr(src),
			"dst_addr":      addr(dst),
			"next_hop":      addr(schemas.Addr{}),
			"src_port":      uint16(51000),
			"dst_port":      uint16(22),
			"proto":         uint8(6),
			"bytes":         uint64(1500),
			"packets":       uint64(3),
			"sampling_rate": uint32(1),
			"verdict":       "violation",
			"src_segment":   "corp",
			"dst_segment":   "prod-db",
		}
		batch, err := conn.PrepareBatch(ctx, schemas.FlowsTable.InsertSQL("flowaudit"))
		if err != nil {
			t.Fatalf("PrepareBatch: %v", err)
		}
		row := make([]any, len(schemas.FlowsTable.Columns))
		for i, c := range schemas.FlowsTable.Columns {
			row[i] = zeroValue(t, c, v)
			if x, ok := values[c.Name]; ok {
				row[i] = x
			}
		}
		if err := batch.Append(row...); err != nil {
			t.Fatalf("Append: %v", err)
		}
		if err := batch.Send(); err != nil {
			t.Fatalf("Send: %v", err)
		}

		var (
			gotReceived       time.Time
			gotSrc, gotDst    string
			gotNextHop        string
			gotBytes, gotPort uint64
			gotVerdict        string
		)
		err = conn.QueryRow(ctx, `SELECT time_received, IPv6NumToString(src_addr), IPv6NumToString(dst_addr),
			IPv6NumToString(next_hop), toUInt64(bytes), toUInt64(dst_port), verdict
			FROM flowaudit.flows WHERE src_segment = 'corp'`).
			Scan(&gotReceived, &gotSrc, &gotDst, &gotNextHop, &gotBytes, &gotPort, &gotVerdict)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		got := []any{gotReceived.UTC(), gotSrc, gotDst, gotNextHop, gotBytes, gotPort, gotVerdict}
		want := []any{received, "::ffff:10.1.2.3", "2001:db8::1", "::", uint64(1500), uint64(22), "violation"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("read back (-got +want):\n%s", diff)
		}
	})

	t.Run("offsets without updated", func(t *testing.T) {
		if _, err := Migrate(ctx, conn, "flowaudit", 0, nil); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		// updated is left to its DEFAULT now().
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO flowaudit.kafka_offsets (consumer_group, topic, partition, next_offset)")
		if err != nil {
			t.Fatalf("PrepareBatch: %v", err)
		}
		for _, off := range []int64{6, 9} {
			if err := batch.Append("g", "t", uint32(2), off); err != nil {
				t.Fatalf("Append: %v", err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got := server.QueryUint64(t, `SELECT toUInt64(max(next_offset)) FROM flowaudit.kafka_offsets
			WHERE consumer_group = 'g' AND topic = 't' AND partition = 2 AND updated > 0`)
		if got != 9 {
			t.Errorf("max(next_offset) = %d, want 9", got)
		}
	})

	t.Run("empty database name", func(t *testing.T) {
		if _, err := Migrate(ctx, conn, "", 0, nil); err == nil {
			t.Fatal("Migrate with an empty database succeeded")
		}
	})
}

func versionOf(ctx context.Context, t *testing.T, conn driver.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&s); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	return s
}

// zeroValue is a Go value clickhouse-go accepts for column c.
func zeroValue(t *testing.T, c schemas.Column, v schemas.ServerVersion) any {
	switch c.Type {
	case schemas.TypeDateTime, schemas.TypeDateTime64ms, schemas.TypeDate:
		return time.Unix(0, 0).UTC()
	case schemas.TypeAddr:
		if v.Modern() {
			return netip.IPv6Unspecified()
		}
		return make([]byte, 16)
	case schemas.TypeLowString, schemas.TypeString:
		return ""
	case schemas.TypeUInt8:
		return uint8(0)
	case schemas.TypeUInt16:
		return uint16(0)
	case schemas.TypeUInt32:
		return uint32(0)
	case schemas.TypeUInt64:
		return uint64(0)
	case schemas.TypeInt64:
		return int64(0)
	}
	t.Fatalf("column %s: no zero value for type %v", c.Name, c.Type)
	return nil
}
