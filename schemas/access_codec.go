package schemas

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of access.proto's AccessEvent.
const (
	fieldAccessTime       = 1
	fieldAccessReceived   = 2
	fieldAccessSource     = 3
	fieldAccessHost       = 4
	fieldAccessUser       = 5
	fieldAccessSrcAddr    = 6
	fieldAccessSrcPort    = 7
	fieldAccessDstAddr    = 8
	fieldAccessDstPort    = 9
	fieldAccessDstHost    = 10
	fieldAccessResource   = 11
	fieldAccessAction     = 12
	fieldAccessOutcome    = 13
	fieldAccessSessionID  = 14
	fieldAccessAuthMethod = 15
	fieldAccessStatus     = 16
	fieldAccessUserAgent  = 17
	fieldAccessForwarded  = 20
	fieldAccessPeerAddr   = 21
	fieldAccessListener   = 22
	fieldAccessUntrusted  = 23
	fieldAccessBinding    = 24
	fieldAccessDevice     = 25
	fieldAccessDeviceName = 26
	fieldAccessExpires    = 27
	fieldAccessOuterAddr  = 28
	fieldAccessLabels     = 29
)

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// AppendAccessEvent appends the protobuf encoding of e (access.proto's
// AccessEvent) to dst.
func AppendAccessEvent(dst []byte, e *AccessEvent) []byte {
	dst = appendVarintField(dst, fieldAccessTime, e.Time)
	dst = appendVarintField(dst, fieldAccessReceived, e.Received)
	dst = appendStringField(dst, fieldAccessSource, e.Source)
	dst = appendStringField(dst, fieldAccessHost, e.Host)
	dst = appendStringField(dst, fieldAccessUser, e.User)
	dst = appendAddrField(dst, fieldAccessSrcAddr, &e.SrcAddr)
	dst = appendVarintField(dst, fieldAccessSrcPort, uint64(e.SrcPort))
	dst = appendAddrField(dst, fieldAccessDstAddr, &e.DstAddr)
	dst = appendVarintField(dst, fieldAccessDstPort, uint64(e.DstPort))
	dst = appendStringField(dst, fieldAccessDstHost, e.DstHost)
	dst = appendStringField(dst, fieldAccessResource, e.Resource)
	dst = appendStringField(dst, fieldAccessAction, e.Action)
	dst = appendVarintField(dst, fieldAccessOutcome, uint64(e.Outcome))
	dst = appendStringField(dst, fieldAccessSessionID, e.SessionID)
	dst = appendStringField(dst, fieldAccessAuthMethod, e.AuthMethod)
	// int32 is encoded as a varint of its sign extension, as protobuf does.
	dst = appendVarintField(dst, fieldAccessStatus, uint64(int64(e.Status)))
	dst = appendStringField(dst, fieldAccessUserAgent, e.UserAgent)
	dst = appendStringField(dst, fieldAccessForwarded, e.ForwardedFor)
	dst = appendAddrField(dst, fieldAccessPeerAddr, &e.PeerAddr)
	dst = appendStringField(dst, fieldAccessListener, e.Listener)
	if e.Untrusted {
		dst = appendVarintField(dst, fieldAccessUntrusted, 1)
	}
	dst = appendVarintField(dst, fieldAccessBinding, uint64(e.Binding))
	dst = appendStringField(dst, fieldAccessDevice, e.Device)
	dst = appendStringField(dst, fieldAccessDeviceName, e.DeviceName)
	dst = appendVarintField(dst, fieldAccessExpires, e.Expires)
	dst = appendAddrField(dst, fieldAccessOuterAddr, &e.OuterAddr)
	dst = appendStringField(dst, fieldAccessLabels, e.Labels)
	return dst
}

// UnmarshalAccessEvent decodes an access.proto AccessEvent into e.
// Unknown fields are skipped. Errors wrap ErrMalformed.
func UnmarshalAccessEvent(data []byte, e *AccessEvent) error {
	*e = AccessEvent{}
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: access event tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		data = data[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return fmt.Errorf("%w: access event field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			switch num {
			case fieldAccessTime:
				e.Time = v
			case fieldAccessReceived:
				e.Received = v
			case fieldAccessSrcPort:
				e.SrcPort = uint16(v)
			case fieldAccessDstPort:
				e.DstPort = uint16(v)
			case fieldAccessOutcome:
				e.Outcome = Outcome(v)
			case fieldAccessStatus:
				e.Status = int32(v)
			case fieldAccessUntrusted:
				e.Untrusted = v != 0
			case fieldAccessBinding:
				e.Binding = Binding(v)
			case fieldAccessExpires:
				e.Expires = v
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(data)
			if n < 0 {
				return fmt.Errorf("%w: access event field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
			switch num {
			case fieldAccessSource:
				e.Source = string(v)
			case fieldAccessHost:
				e.Host = string(v)
			case fieldAccessUser:
				e.User = string(v)
			case fieldAccessSrcAddr:
				e.SrcAddr = AddrFromSlice(v)
			case fieldAccessDstAddr:
				e.DstAddr = AddrFromSlice(v)
			case fieldAccessDstHost:
				e.DstHost = string(v)
			case fieldAccessResource:
				e.Resource = string(v)
			case fieldAccessAction:
				e.Action = string(v)
			case fieldAccessSessionID:
				e.SessionID = string(v)
			case fieldAccessAuthMethod:
				e.AuthMethod = string(v)
			case fieldAccessUserAgent:
				e.UserAgent = string(v)
			case fieldAccessForwarded:
				e.ForwardedFor = string(v)
			case fieldAccessPeerAddr:
				e.PeerAddr = AddrFromSlice(v)
			case fieldAccessListener:
				e.Listener = string(v)
			case fieldAccessDevice:
				e.Device = string(v)
			case fieldAccessDeviceName:
				e.DeviceName = string(v)
			case fieldAccessOuterAddr:
				e.OuterAddr = AddrFromSlice(v)
			case fieldAccessLabels:
				e.Labels = string(v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, data)
			if n < 0 {
				return fmt.Errorf("%w: access event field %d: %v", ErrMalformed, num, protowire.ParseError(n))
			}
			data = data[n:]
		}
	}
	return nil
}
