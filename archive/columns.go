package archive

import (
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/flowaudit/flowaudit/schemas"
)

// The Parquet columns carry the ClickHouse columns' names, so the same
// queries read both (addresses are 16 bytes, IPv4 mapped: FixedString(16)
// to ClickHouse's file(), read with IPv6NumToString; times are UTC
// milliseconds: DateTime64(3)). kafka_partition and kafka_offset say which
// input record a row came from; source_partition and source_offset, as in
// flows, which flows-topic record.

var (
	addrType = &arrow.FixedSizeBinaryType{ByteWidth: 16}
	msType   = arrow.FixedWidthTypes.Timestamp_ms
)

// flowRow is what one flow's columns are made from.
type flowRow struct {
	b       *schemas.FlowBatch
	f       *schemas.Flow
	part    int32
	offset  int64
	srcPart uint16
	srcOff  int64
}

// column is one Parquet column: its name, its Arrow type (the schema
// readers see) and put, which appends a row's value to the column's
// buffer in the Parquet physical type's form.
type column[R any] struct {
	name string
	typ  arrow.DataType
	put  func(b *colBuf, r *R)
}

// colBuf holds one column's values of the row group being filled, as the
// Parquet column writer takes them: INT32 (the unsigned 8, 16 and 32 bit
// columns too, bit for bit), INT64 (times in milliseconds, unsigned 64
// bit bit for bit), BYTE_ARRAY (strings: their bytes one after the other
// in data, each one's end in ends) or FIXED_LEN_BYTE_ARRAY (addresses,
// 16 bytes a row in data). Its slices hold no pointers, so the collector
// does not scan them, and are reused from row group to row group, so a
// full archive allocates nothing per row.
type colBuf struct {
	i32  []int32
	i64  []int64
	data []byte
	ends []uint32
}

func (b *colBuf) reset() {
	b.i32, b.i64, b.data, b.ends = b.i32[:0], b.i64[:0], b.data[:0], b.ends[:0]
}

func (b *colBuf) appendString(s string) {
	b.data = append(b.data, s...)
	b.ends = append(b.ends, uint32(len(b.data)))
}

func ms(ns uint64) int64 { return int64(ns / 1e6) }

func strCol[R any](name string, get func(*R) string) column[R] {
	return column[R]{name, arrow.BinaryTypes.String, func(b *colBuf, r *R) { b.appendString(get(r)) }}
}

func addrCol[R any](name string, get func(*R) *schemas.Addr) column[R] {
	return column[R]{name, addrType, func(b *colBuf, r *R) { b.data = append(b.data, get(r)[:]...) }}
}

func timeCol[R any](name string, get func(*R) uint64) column[R] {
	return column[R]{name, msType, func(b *colBuf, r *R) { b.i64 = append(b.i64, ms(get(r))) }}
}

func u8Col[R any](name string, get func(*R) uint8) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Uint8, func(b *colBuf, r *R) { b.i32 = append(b.i32, int32(get(r))) }}
}

func u16Col[R any](name string, get func(*R) uint16) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Uint16, func(b *colBuf, r *R) { b.i32 = append(b.i32, int32(get(r))) }}
}

func u32Col[R any](name string, get func(*R) uint32) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Uint32, func(b *colBuf, r *R) { b.i32 = append(b.i32, int32(get(r))) }}
}

func u64Col[R any](name string, get func(*R) uint64) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Uint64, func(b *colBuf, r *R) { b.i64 = append(b.i64, int64(get(r))) }}
}

func i32Col[R any](name string, get func(*R) int32) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Int32, func(b *colBuf, r *R) { b.i32 = append(b.i32, get(r)) }}
}

func i64Col[R any](name string, get func(*R) int64) column[R] {
	return column[R]{name, arrow.PrimitiveTypes.Int64, func(b *colBuf, r *R) { b.i64 = append(b.i64, get(r)) }}
}

func schemaOf[R any](cols []column[R]) *arrow.Schema {
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.typ}
	}
	return arrow.NewSchema(fields, nil)
}

func flowStart(r *flowRow) uint64 { s, _ := schemas.FlowSpan(r.f, r.b.TimeReceived); return s }
func flowEnd(r *flowRow) uint64   { _, e := schemas.FlowSpan(r.f, r.b.TimeReceived); return e }

var flowColumns = []column[flowRow]{
	timeCol("time_received", func(r *flowRow) uint64 { return r.b.TimeReceived / 1e9 * 1e9 }),
	timeCol("time_start", flowStart),
	timeCol("time_end", flowEnd),
	strCol("flow_type", func(r *flowRow) string { return r.b.Type.String() }),
	addrCol("exporter", func(r *flowRow) *schemas.Addr { return &r.b.Exporter }),
	u32Col("observation_id", func(r *flowRow) uint32 { return r.b.ObservationID }),
	u32Col("sampling_rate", func(r *flowRow) uint32 { return r.f.SamplingRate }),
	addrCol("src_addr", func(r *flowRow) *schemas.Addr { return &r.f.SrcAddr }),
	addrCol("dst_addr", func(r *flowRow) *schemas.Addr { return &r.f.DstAddr }),
	addrCol("next_hop", func(r *flowRow) *schemas.Addr { return &r.f.NextHop }),
	u16Col("src_port", func(r *flowRow) uint16 { return r.f.SrcPort }),
	u16Col("dst_port", func(r *flowRow) uint16 { return r.f.DstPort }),
	u8Col("proto", func(r *flowRow) uint8 { return r.f.Proto }),
	u64Col("bytes", func(r *flowRow) uint64 { return r.f.Bytes }),
	u64Col("packets", func(r *flowRow) uint64 { return r.f.Packets }),
	u8Col("tcp_flags", func(r *flowRow) uint8 { return r.f.TCPFlags }),
	u8Col("ip_tos", func(r *flowRow) uint8 { return r.f.IPTos }),
	u32Col("in_if", func(r *flowRow) uint32 { return r.f.InIf }),
	u32Col("out_if", func(r *flowRow) uint32 { return r.f.OutIf }),
	u32Col("src_as", func(r *flowRow) uint32 { return r.f.SrcAS }),
	u32Col("dst_as", func(r *flowRow) uint32 { return r.f.DstAS }),
	u16Col("ether_type", func(r *flowRow) uint16 { return r.f.EtherType }),
	u8Col("direction", func(r *flowRow) uint8 { return r.f.Direction }),
	strCol("src_segment", func(r *flowRow) string { return r.f.SrcSegment }),
	strCol("dst_segment", func(r *flowRow) string { return r.f.DstSegment }),
	strCol("src_workload", func(r *flowRow) string { return r.f.SrcWorkload }),
	strCol("dst_workload", func(r *flowRow) string { return r.f.DstWorkload }),
	strCol("src_identity", func(r *flowRow) string { return r.f.SrcIdentity }),
	strCol("dst_identity", func(r *flowRow) string { return r.f.DstIdentity }),
	strCol("verdict", func(r *flowRow) string { return r.f.Verdict.String() }),
	strCol("rule", func(r *flowRow) string { return r.f.Rule }),
	strCol("src_country", func(r *flowRow) string { return r.f.SrcCountry }),
	strCol("dst_country", func(r *flowRow) string { return r.f.DstCountry }),
	strCol("fw_action", func(r *flowRow) string { return r.f.FwAction.String() }),
	addrCol("src_addr_xlate", func(r *flowRow) *schemas.Addr { return &r.f.SrcAddrXlate }),
	addrCol("dst_addr_xlate", func(r *flowRow) *schemas.Addr { return &r.f.DstAddrXlate }),
	u16Col("src_port_xlate", func(r *flowRow) uint16 { return r.f.SrcPortXlate }),
	u16Col("dst_port_xlate", func(r *flowRow) uint16 { return r.f.DstPortXlate }),
	strCol("staged_verdict", func(r *flowRow) string { return r.f.StagedVerdict.String() }),
	strCol("staged_rule", func(r *flowRow) string { return r.f.StagedRule }),
	strCol("service_side", func(r *flowRow) string { return r.f.ServiceSide.String() }),
	u16Col("service_port", func(r *flowRow) uint16 { return r.f.ServicePort }),
	strCol("src_identity_source", func(r *flowRow) string { return r.f.SrcIdentitySource }),
	strCol("dst_identity_source", func(r *flowRow) string { return r.f.DstIdentitySource }),
	strCol("src_device", func(r *flowRow) string { return r.f.SrcDevice }),
	strCol("dst_device", func(r *flowRow) string { return r.f.DstDevice }),
	i32Col("kafka_partition", func(r *flowRow) int32 { return r.part }),
	i64Col("kafka_offset", func(r *flowRow) int64 { return r.offset }),
	u16Col("source_partition", func(r *flowRow) uint16 { return r.srcPart }),
	i64Col("source_offset", func(r *flowRow) int64 { return r.srcOff }),
}

// accessRow is what one access event's columns are made from.
type accessRow struct {
	e      *schemas.AccessEvent
	part   int32
	offset int64
}

var accessColumns = []column[accessRow]{
	timeCol("time", func(r *accessRow) uint64 { return r.e.Time }),
	timeCol("received", func(r *accessRow) uint64 { return r.e.Received }),
	strCol("source", func(r *accessRow) string { return r.e.Source }),
	strCol("host", func(r *accessRow) string { return r.e.Host }),
	strCol("user", func(r *accessRow) string { return r.e.User }),
	addrCol("src_addr", func(r *accessRow) *schemas.Addr { return &r.e.SrcAddr }),
	u16Col("src_port", func(r *accessRow) uint16 { return r.e.SrcPort }),
	addrCol("dst_addr", func(r *accessRow) *schemas.Addr { return &r.e.DstAddr }),
	strCol("dst_host", func(r *accessRow) string { return r.e.DstHost }),
	u16Col("dst_port", func(r *accessRow) uint16 { return r.e.DstPort }),
	strCol("resource", func(r *accessRow) string { return r.e.Resource }),
	strCol("action", func(r *accessRow) string { return r.e.Action }),
	strCol("outcome", func(r *accessRow) string { return r.e.Outcome.String() }),
	strCol("session_id", func(r *accessRow) string { return r.e.SessionID }),
	strCol("auth_method", func(r *accessRow) string { return r.e.AuthMethod }),
	i32Col("status", func(r *accessRow) int32 { return r.e.Status }),
	strCol("user_agent", func(r *accessRow) string { return r.e.UserAgent }),
	strCol("forwarded_for", func(r *accessRow) string { return r.e.ForwardedFor }),
	addrCol("peer_addr", func(r *accessRow) *schemas.Addr { return &r.e.PeerAddr }),
	strCol("listener", func(r *accessRow) string { return r.e.Listener }),
	u8Col("trusted", func(r *accessRow) uint8 {
		if r.e.Untrusted {
			return 0
		}
		return 1
	}),
	strCol("binding", func(r *accessRow) string { return r.e.Binding.String() }),
	strCol("device", func(r *accessRow) string { return r.e.Device }),
	strCol("device_name", func(r *accessRow) string { return r.e.DeviceName }),
	timeCol("expires", func(r *accessRow) uint64 { return r.e.Expires }),
	addrCol("outer_addr", func(r *accessRow) *schemas.Addr { return &r.e.OuterAddr }),
	strCol("labels", func(r *accessRow) string { return r.e.Labels }),
	i32Col("kafka_partition", func(r *accessRow) int32 { return r.part }),
	i64Col("kafka_offset", func(r *accessRow) int64 { return r.offset }),
}

var (
	flowSchema   = schemaOf(flowColumns)
	accessSchema = schemaOf(accessColumns)
)
