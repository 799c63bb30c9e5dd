package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
)

// syslogFrom sends one RFC 5424 sshd line over UDP from the local address
// from (every 127.x address is this host's).
func syslogFrom(t *testing.T, from, addr, host, msg string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	line := fmt.Sprintf("<38>1 %s %s sshd 4242 - - %s", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), host, msg)
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
}

// TestForgedIdentity is the forged-login attack of issue 10: a UDP syslog
// line from an address outside ingest.access.trusted_senders claims
// bastion-2 logged bob in from 10.1.2.4. It is stored with the sender's
// real address and trusted = 0, and the flows from 10.1.2.4 that follow
// carry no identity; the same line from a trusted relay binds bob.
func TestForgedIdentity(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, ch, pipelineOptions{
		accessYAML: "    trusted_senders: [127.0.0.1/32]",
		extraYAML:  "policy:\n  file: " + policyPath + "\n",
	})
	p.Start()
	const forged = "Accepted publickey for bob from 10.1.2.4 port 50000 ssh2"
	flows := newFlowSender(t, p.NetFlowAddr)

	syslogFrom(t, "127.0.0.2", p.SyslogUDP, "bastion-2", forged)
	p.WaitMetric("flowaudit_enrich_untrusted_access_events_total", 1, 30*time.Second)
	flows.send("10.1.2.4", 40000, "10.2.0.10", 5432, 5)
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:10.1.2.4'", 5, 30*time.Second); got != 5 {
		t.Fatalf("flows from 10.1.2.4 = %d, want 5", got)
	}
	if n := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE src_identity != ''"); n != 0 {
		t.Errorf("flows with an identity after the forged line = %d, want 0", n)
	}

	syslogFrom(t, "127.0.0.1", p.SyslogUDP, "bastion-2", forged)
	p.WaitMetric("flowaudit_enrich_access_events_total", 2, 30*time.Second)
	flows.send("10.1.2.4", 40001, "10.2.0.10", 5432, 7)
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE src_identity = 'bob'", 7, 30*time.Second); got != 7 {
		t.Errorf("flows attributed to bob after the trusted line = %d, want 7", got)
	}
	if n := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows"); n != 12 {
		t.Errorf("flows = %d, want 12", n)
	}

	type row struct {
		User, Host, Peer, Listener string
		Trusted                    uint8
	}
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events", 2, 30*time.Second); got != 2 {
		t.Fatalf("access_events rows = %d, want 2", got)
	}
	rows, err := ch.Conn(t).Query(context.Background(), "SELECT user, host, IPv6NumToString(peer_addr), listener, trusted FROM flowaudit.access_events ORDER BY trusted")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.User, &r.Host, &r.Peer, &r.Listener, &r.Trusted); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	listener := "udp://" + p.SyslogUDP
	want := []row{
		{User: "bob", Host: "bastion-2", Peer: "::ffff:127.0.0.2", Listener: listener, Trusted: 0},
		{User: "bob", Host: "bastion-2", Peer: "::ffff:127.0.0.1", Listener: listener, Trusted: 1},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("access_events (-got +want):\n%s", diff)
	}
}
