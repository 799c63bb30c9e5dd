package probe

import (
	"testing"
)

// quotedEcho is the IPv4 header and first 8 bytes of an echo request with
// id 0x1234 and seq 7, as an ICMP error quotes it.
func quotedEcho(ihl byte) []byte {
	b := make([]byte, int(ihl)*4+8)
	b[0] = 0x40 | ihl
	icmp := b[int(ihl)*4:]
	icmp[0] = 8
	icmp[4], icmp[5] = 0x12, 0x34
	icmp[6], icmp[7] = 0, 7
	return b
}

func TestEchoInside(t *testing.T) {
	for _, tc := range []struct {
		name   string
		quoted []byte
		proto  int
		want   bool
	}{
		{"ours", quotedEcho(5), 1, true},
		{"ours with IP options", quotedEcho(7), 1, true},
		{"truncated", quotedEcho(5)[:24], 1, false},
		{"empty", nil, 1, false},
		{"bogus IHL", append([]byte{0x4f}, make([]byte, 30)...), 1, false},
		{"IPv6 too short", make([]byte, 40), 58, false},
	} {
		if got := echoInside(tc.quoted, tc.proto, 0x1234, 7); got != tc.want {
			t.Errorf("%s: echoInside = %v, want %v", tc.name, got, tc.want)
		}
	}
	if echoInside(quotedEcho(5), 1, 0x1234, 8) {
		t.Error("another seq matched")
	}
}

// FuzzEchoInside: the quoted datagram of an ICMP error comes from the
// network; no input may crash the matcher.
func FuzzEchoInside(f *testing.F) {
	f.Add(quotedEcho(5), 1)
	f.Add(quotedEcho(15), 1)
	f.Add(make([]byte, 48), 58)
	f.Fuzz(func(t *testing.T, quoted []byte, proto int) {
		_ = echoInside(quoted, proto, 0x1234, 7)
	})
}
