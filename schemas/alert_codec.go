package schemas

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of alert.proto's Alert.
const (
	fieldAlertID          = 1
	fieldAlertTime        = 2
	fieldAlertKind        = 3
	fieldAlertSeverity    = 4
	fieldAlertSrcAddr     = 5
	fieldAlertDstAddr     = 6
	fieldAlertSrcSegment  = 7
	fieldAlertDstSegment  = 8
	fieldAlertSrcIdentity = 9
	fieldAlertDstPort     = 10
	fieldAlertProto       = 11
	fieldAlertFirstSeen   = 12
	fieldAlertLastSeen    = 13
	fieldAlertCount       = 14
	fieldAlertBytes       = 15
	fieldAlertSummary     = 16
	fieldAlertEvidence    = 17
	fieldAlertUpdate      = 18
)

// AppendAlert appends the protobuf encoding of a (alert.proto) to dst.
func AppendAlert(dst []byte, a *Alert) []byte {
	dst = appendStringField(dst, fieldAlertID, a.ID)
	dst = appendVarintField(dst, fieldAlertTime, a.Time)
	dst = appendStringField(dst, fieldAlertKind, a.Kind)
	dst = appendVarintField(dst, fieldAlertSeverity, uint64(a.Severity))
	dst = appendAddrField(dst, fieldAlertSrcAddr, &a.SrcAddr)
	dst = appendAddrField(dst, fieldAlertDstAddr, &a.DstAddr)
	dst = appendStringField(dst, fieldAlertSrcSegment, a.SrcSegment)
	dst = appendStringField(dst, fieldAlertDstSegment, a.DstSegment)
	dst = appendStringField(dst, fieldAlertSrcIdentity, a.SrcIdentity)
	dst = appendVarintField(dst, fieldAlertDstPort, uint64(a.DstPort))
	dst = appendVarintField(dst, fieldAlertProto, uint64(a.Proto))
	dst = appendVarintField(dst, fieldAlertFirstSeen, a.FirstSeen)
	dst = appendVarintField(dst, fieldAlertLastSeen, a.LastSeen)
	dst = appendVarintField(dst, fieldAlertCount, a.Count)
	dst = appendVarintField(dst, fieldAlertBytes, a.Bytes)
	dst = appendStringField(dst, fieldAlertSummary, a.Summary)
	dst = appendStringField(dst, fieldAlertEvidence, a.Evidence)
	if a.Update {
		dst = appendVarintField(dst, fieldAlertUpdate, 1)
	}
	return dst
}

// UnmarshalAlert decodes an alert.proto Alert into a. Unknown fields are
// skipped. Errors wrap ErrMalformed.
func UnmarshalAlert(data []byte, a *Alert) error {
	*a = Alert{}
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: alert tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		data = data[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return fmt.Errorf("%w: alert field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			switch num {
			case fieldAlertTime:
				a.Time = v
			case fieldAlertSeverity:
				a.Severity = Severity(v)
			case fieldAlertDstPort:
				a.DstPort = uint16(v)
			case fieldAlertProto:
				a.Proto = uint8(v)
			case fieldAlertFirstSeen:
				a.FirstSeen = v
			case fieldAlertLastSeen:
				a.LastSeen = v
			case fieldAlertCount:
				a.Count = v
			case fieldAlertBytes:
				a.Bytes = v
			case fieldAlertUpdate:
				a.Update = v != 0
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: alert field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			switch num {
			case fieldAlertID:
				a.ID = string(v)
			case fieldAlertKind:
				a.Kind = string(v)
			case fieldAlertSrcAddr:
				a.SrcAddr = AddrFromSlice(v)
			case fieldAlertDstAddr:
				a.DstAddr = AddrFromSlice(v)
			case fieldAlertSrcSegment:
				a.SrcSegment = string(v)
			case fieldAlertDstSegment:
				a.DstSegment = string(v)
			case fieldAlertSrcIdentity:
				a.SrcIdentity = string(v)
			case fieldAlertSummary:
				a.Summary = string(v)
			case fieldAlertEvidence:
				a.Evidence = string(v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return fmt.Errorf("%w: alert field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
		}
	}
	return nil
}
