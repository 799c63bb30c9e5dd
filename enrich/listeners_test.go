package enrich

import (
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

// TestServiceSideHistory: flows whose ports do not decide are decided by
// what the enricher saw of their ends: a SYN to the server, many clients
// (fan-in), and the reverse flow follows.
func TestServiceSideHistory(t *testing.T) {
	e := NewEnricher(nil, nil)
	var r Result
	server := addr("10.2.0.10")
	flow := func(src, dst schemas.Addr, sp, dp uint16, flags uint8) (schemas.ServiceSide, uint16) {
		f := schemas.Flow{SrcAddr: src, DstAddr: dst, SrcPort: sp, DstPort: dp, Proto: 6, TCPFlags: flags}
		e.EnrichFlow(&schemas.FlowBatch{}, &f, &r)
		return r.ServiceSide, r.ServicePort
	}
	// Both ports ephemeral: unknown without history.
	if side, _ := flow(server, addr("10.1.0.1"), 40000, 50001, 0x18); side != schemas.ServiceUnknown {
		t.Fatalf("no history: side %v, want unknown", side)
	}
	// A SYN from a client marks the server's end listening; its replies
	// and the rest of the connection follow.
	if side, port := flow(addr("10.1.0.2"), server, 50002, 40000, 0x02); side != schemas.ServiceDst || port != 40000 {
		t.Fatalf("SYN: side %v port %d", side, port)
	}
	if side, port := flow(server, addr("10.1.0.2"), 40000, 50002, 0x1a); side != schemas.ServiceSrc || port != 40000 {
		t.Errorf("reply after SYN: side %v port %d, want src 40000", side, port)
	}
	// Fan-in: an end many peers talk to listens.
	other := addr("10.2.0.11")
	for i := range 8 {
		peer := addr("10.1.1." + string(rune('1'+i)))
		flow(peer, other, uint16(50100+i), 45000, 0x18)
	}
	if side, port := flow(other, addr("10.1.9.9"), 45000, 51000, 0x18); side != schemas.ServiceSrc || port != 45000 {
		t.Errorf("after fan-in: side %v port %d, want src 45000", side, port)
	}
	// Ports that decide never touch the history.
	if side, port := flow(addr("10.1.0.3"), server, 50003, 443, 0); side != schemas.ServiceDst || port != 443 {
		t.Errorf("https: side %v port %d", side, port)
	}
}
