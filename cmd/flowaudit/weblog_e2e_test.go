package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWebLogIdentity runs nginx access lines through "flowaudit run":
// a proxied request whose X-Forwarded-For chain starts with the client
// binds its user to that client only (not to the proxy), and lines with
// shifted fields (an address where IDENT or USER belong) are
// dead-lettered and bind nothing, so the flows of the addresses they name
// carry no identity.
func TestWebLogIdentity(t *testing.T) {
	ch, p, _ := startWithPolicy(t, "")
	conn, err := net.Dial("udp", p.SyslogUDP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	now := time.Now().UTC()
	clf := now.Format("02/Jan/2006:15:04:05 -0700")
	lines := []string{
		`10.1.0.5, 10.0.0.1 - alice [` + clf + `] "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`10.1.0.8 10.1.0.9 - [` + clf + `] "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
		`10.1.0.9 - 10.1.0.8 [` + clf + `] "GET /app HTTP/1.1" 200 10 "-" "agent/1"`,
	}
	for _, l := range lines {
		msg := fmt.Sprintf("<190>1 %s web-1 nginx - - - %s", now.Format("2006-01-02T15:04:05.000Z"), l)
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	p.WaitMetric("flowaudit_access_rejected_total", 2, 30*time.Second)
	p.WaitMetric("flowaudit_enrich_access_events_total", 1, 30*time.Second)

	flows := newFlowSender(t, p.NetFlowAddr)
	flows.send("10.1.0.5", 40000, "10.2.0.10", 5432, 4)
	flows.send("10.0.0.1", 40001, "10.2.0.10", 5432, 3)
	flows.send("10.1.0.8", 40002, "10.2.0.10", 5432, 2)
	flows.send("10.1.0.9", 40003, "10.2.0.10", 5432, 2)
	if got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows", 11, 30*time.Second); got != 11 {
		t.Fatalf("flows = %d, want 11", got)
	}
	type ident struct {
		Src, User string
		N         uint64
	}
	rows, err := ch.Conn(t).Query(context.Background(),
		"SELECT IPv6NumToString(src_addr), src_identity, toUInt64(count()) FROM flowaudit.flows GROUP BY src_addr, src_identity ORDER BY src_addr")
	if err != nil {
		t.Fatal(err)
	}
	var got []ident
	for rows.Next() {
		var r ident
		if err := rows.Scan(&r.Src, &r.User, &r.N); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	rows.Close()
	want := []ident{
		{"::ffff:10.0.0.1", "", 3},
		{"::ffff:10.1.0.5", "alice", 4},
		{"::ffff:10.1.0.8", "", 2},
		{"::ffff:10.1.0.9", "", 2},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows per source and identity (-got +want):\n%s", diff)
	}

	if n := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events", 1, 30*time.Second); n != 1 {
		t.Fatalf("access_events rows = %d, want 1", n)
	}
	var user, src, xff string
	if err := ch.Conn(t).QueryRow(context.Background(),
		"SELECT user, IPv6NumToString(src_addr), forwarded_for FROM flowaudit.access_events").Scan(&user, &src, &xff); err != nil {
		t.Fatal(err)
	}
	if user != "alice" || src != "::ffff:10.1.0.5" || xff != "10.1.0.5, 10.0.0.1" {
		t.Errorf("access event = %q %q %q, want alice ::ffff:10.1.0.5 \"10.1.0.5, 10.0.0.1\"", user, src, xff)
	}
	if n := p.Metric("flowaudit_access_dead_letters_total"); n != 2 {
		t.Errorf("dead letters = %v, want 2", n)
	}
}
