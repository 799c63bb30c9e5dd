package netlab

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// TestLabEnforcesRuleset: a -> b:80 is accepted by the router's ruleset
// and reaches a real nginx; a -> b:81 is dropped (timeout, not refused);
// after InsertRule opens b:81, the same connect is refused by b itself.
func TestLabEnforcesRuleset(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	l := New(t, []SegmentSpec{
		{Name: "a", Prefix: pfx("10.72.1.0/24"), Host: addr("10.72.1.10"), Router: addr("10.72.1.1")},
		{Name: "b", Prefix: pfx("10.72.2.0/24"), Host: addr("10.72.2.10"), Router: addr("10.72.2.1")},
	})
	if err := l.LoadRuleset(`table inet lab {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ip saddr 10.72.1.0/24 ip daddr 10.72.2.0/24 tcp dport 80 accept
  }
}
`); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNginx("b", 80); err != nil {
		t.Fatal(err)
	}
	dial := func(port uint16) error {
		return l.InNS(l.Hosts["a"].NS, func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr("10.72.2.10"), port).String(), 500*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(80); err != nil {
		t.Errorf("a -> b:80: %v, want connected", err)
	}
	var ne net.Error
	if err := dial(81); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a -> b:81: %v, want a timeout (dropped by the router)", err)
	}
	if err := l.InsertRule("ip saddr 10.72.1.0/24 tcp dport 81 accept"); err != nil {
		t.Fatal(err)
	}
	if err := dial(81); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a -> b:81 after the hole: %v, want connection refused", err)
	}
}

// TestLabSoftflowdExports: softflowd on the router's interface towards a
// exports a's connection attempts to a collector in the test's namespace.
func TestLabSoftflowdExports(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	l := New(t, []SegmentSpec{
		{Name: "a", Prefix: pfx("10.72.1.0/24"), Host: addr("10.72.1.10"), Router: addr("10.72.1.1")},
		{Name: "b", Prefix: pfx("10.72.2.0/24"), Host: addr("10.72.2.10"), Router: addr("10.72.2.1")},
	})
	collector, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	sfd, err := l.StartSoftflowd("a", collector.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = l.InNS(l.Hosts["a"].NS, func() error {
		c, err := net.DialTimeout("tcp", "10.72.2.10:81", time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	if err := sfd.ExpireAll(); err != nil {
		t.Fatal(err)
	}
	_ = collector.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65535)
	n, _, err := collector.ReadFrom(buf)
	if err != nil {
		stats, _ := l.Exec(l.Router, sfd.bin, "-c", sfd.ctl, "statistics")
		t.Fatalf("no IPFIX from softflowd: %v\n%s", err, stats)
	}
	if n < 16 || buf[0] != 0 || buf[1] != 10 {
		t.Errorf("first datagram is not IPFIX: % x", buf[:min(n, 16)])
	}
}
