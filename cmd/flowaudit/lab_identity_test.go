package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/netlab"
)

// Lab tests of the identity sources (README "Identity sources"): real
// daemons in network namespaces, their logs or files read by "flowaudit
// run", flows from the bound address before, during and after the
// session, and the attribution read back from ClickHouse. Root only;
// .ci/run installs the daemons.

func identityLab(t *testing.T, names ...string) *netlab.Lab {
	t.Helper()
	var segs []netlab.SegmentSpec
	for i, n := range names {
		third := fmt.Sprint(i + 1)
		segs = append(segs, netlab.SegmentSpec{Name: n, Prefix: netip.MustParsePrefix("10.72." + third + ".0/24"),
			Host: netip.MustParseAddr("10.72." + third + ".10"), Router: netip.MustParseAddr("10.72." + third + ".1")})
	}
	return netlab.New(t, segs)
}

func needBin(t *testing.T, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if testutil.RequireExternal() {
			t.Fatalf("%s not found: apt-get install %s", bin, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", bin, pkg)
	}
	return p
}

// attribution is one group of flows of an address in ClickHouse.
type attribution struct {
	Identity, Source, Device string
	Flows                    uint64
}

func attributions(t *testing.T, ch *testutil.ClickHouseServer, addr string) []attribution {
	t.Helper()
	rows, err := ch.Conn(t).Query(context.Background(), `SELECT src_identity, src_identity_source, src_device, toUInt64(count())
		FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:`+addr+`'
		GROUP BY src_identity, src_identity_source, src_device ORDER BY src_identity_source, src_identity`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []attribution
	for rows.Next() {
		var a attribution
		if err := rows.Scan(&a.Identity, &a.Source, &a.Device, &a.Flows); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// nextSecond waits for the wall clock's next second: the daemons log
// whole seconds, so a flow and a stop logged within one second could not
// be told apart.
func nextSecond() {
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
}

// identityPhases sends before flows, starts the session, sends during
// flows, stops it, sends after flows, waiting for the enricher to have
// applied each step's access events (events counts the metric's total
// after start and after stop), then returns the attribution in ClickHouse.
func identityPhases(t *testing.T, ch *testutil.ClickHouseServer, p *pipeline, addr string, start, stop func(), eventsAfterStart, eventsAfterStop float64) []attribution {
	t.Helper()
	fs := newFlowSender(t, p.NetFlowAddr)
	fs.send(addr, 40000, "192.0.2.80", 443, 2) // before: nobody
	nextSecond()
	start()
	p.WaitMetric("flowaudit_enrich_access_events_total", eventsAfterStart, 30*time.Second)
	nextSecond()
	fs.send(addr, 40001, "192.0.2.80", 443, 5) // during
	nextSecond()
	stop()
	p.WaitMetric("flowaudit_enrich_access_events_total", eventsAfterStop, 30*time.Second)
	nextSecond()
	fs.send(addr, 40002, "192.0.2.80", 443, 3) // after: nobody again
	q := "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:" + addr + "'"
	if got := waitCount(t, ch, q, 10, 60*time.Second); got != 10 {
		t.Fatalf("%d flows of %s in ClickHouse, want 10", got, addr)
	}
	return attributions(t, ch, addr)
}

// TestLabIdentityDHCP: dnsmasq in the router namespace leases an address
// to busybox udhcpc in a host namespace; flowaudit tails dnsmasq's log
// (format dhcp). Flows from the leased address carry the client's MAC
// and host name while the lease is held, none before or after the
// release.
func TestLabIdentityDHCP(t *testing.T) {
	dnsmasq := needBin(t, "dnsmasq", "dnsmasq")
	busybox := needBin(t, "busybox", "busybox")
	lab := identityLab(t, "lan")
	h := lab.Hosts["lan"]
	out, err := lab.Exec(h.NS, "cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	mac := strings.TrimSpace(out)
	const leased = "10.72.1.100"
	logPath := filepath.Join(lab.Dir, "dnsmasq.log")
	if err := lab.Start(lab.Router, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--bind-interfaces",
		"--interface="+h.RouterIf, "--dhcp-range=10.72.1.100,10.72.1.150,1h", "--dhcp-host="+mac+","+leased, "--dhcp-authoritative",
		"--dhcp-leasefile="+filepath.Join(lab.Dir, "dnsmasq.leases"), "--log-facility="+logPath,
		"--pid-file="+filepath.Join(lab.Dir, "dnsmasq.pid")); err != nil {
		t.Fatal(err)
	}

	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{accessYAML: "    tail_poll_interval: 50ms\n    files:\n      - {path: " + logPath + ", format: dhcp}\n"})
	p.Start()

	// udhcpc stays in the foreground holding the lease; SIGUSR2 makes it
	// send a DHCPRELEASE.
	script := filepath.Join(lab.Dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/24\" dev \"$interface\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	client := lab.Command(h.NS, busybox, "udhcpc", "-i", "eth0", "-f", "-t", "10", "-T", "1", "-s", script, "-x", "hostname:laptop-7")
	var clientOut strings.Builder
	client.Stdout, client.Stderr = &clientOut, &clientOut
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("dnsmasq log:\n%s\nudhcpc:\n%s", log, clientOut.String())
		}
		if client.Process != nil {
			_ = client.Process.Kill()
			_ = client.Wait()
		}
	})
	got := identityPhases(t, ch, p, leased, func() {
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := client.Process.Signal(syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
	}, 1, 2)
	want := []attribution{
		{"", "", "", 2 + 3},
		{"", "dhcp", mac + " laptop-7", 5},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("flows of %s (-got +want):\n%s", leased, diff)
	}
}

// TestLabIdentityRADIUS: FreeRADIUS in one namespace receives accounting
// Start and Stop from radclient in another (a NAS) and writes its detail
// file, which flowaudit tails (format radius). Flows from the
// Framed-IP-Address carry the user and the Calling-Station-Id between the
// Start and the Stop only.
func TestLabIdentityRADIUS(t *testing.T) {
	labRADIUS(t, "Stop")
}

// TestLabIdentityRADIUSNASRestart: as TestLabIdentityRADIUS, but the
// session is never stopped: the NAS reboots and sends Accounting-On,
// which ends every session it reported.
func TestLabIdentityRADIUSNASRestart(t *testing.T) {
	labRADIUS(t, "Accounting-On")
}

// labRADIUS runs the RADIUS lab with end ("Stop" or "Accounting-On") as
// the event that ends the session.
func labRADIUS(t *testing.T, end string) {
	freeradius := needBin(t, "freeradius", "freeradius")
	radclient := needBin(t, "radclient", "freeradius-utils")
	if _, err := os.Stat("/etc/freeradius/3.0/radiusd.conf"); err != nil {
		t.Skipf("no FreeRADIUS configuration: %v", err)
	}
	lab := identityLab(t, "nas", "aaa")
	nas, aaa := lab.Hosts["nas"], lab.Hosts["aaa"]
	raddb := filepath.Join(lab.Dir, "raddb")
	if out, err := exec.Command("cp", "-a", "/etc/freeradius/3.0", raddb).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	conf, err := os.ReadFile(filepath.Join(raddb, "radiusd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	acct := filepath.Join(lab.Dir, "radacct")
	var lines []string
	for _, l := range strings.Split(string(conf), "\n") {
		switch k := strings.TrimSpace(l); {
		case strings.HasPrefix(k, "radacctdir ="):
			l = "radacctdir = " + acct
		case strings.HasPrefix(k, "logdir ="):
			l = "logdir = " + lab.Dir
		case strings.HasPrefix(k, "user =") || strings.HasPrefix(k, "group ="):
			l = "#" + l // stay root: the detail directory is the test's
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(filepath.Join(raddb, "radiusd.conf"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(raddb, "clients.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\nclient lab-nas {\n\tipaddr = %s\n\tsecret = lab-secret\n}\n", nas.Host)
	f.Close()
	if err := lab.Start(aaa.NS, freeradius, "-f", "-l", "stdout", "-d", raddb); err != nil {
		t.Fatal(err)
	}
	// The detail module's file: radacct/CLIENT/detail-YYYYMMDD (local time).
	detail := filepath.Join(acct, nas.Host.String(), "detail-"+time.Now().Format("20060102"))

	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{accessYAML: "    tail_poll_interval: 50ms\n    files:\n      - {path: " + detail + ", format: radius, host: radius-1}\n"})
	p.Start()

	const framed = "10.72.9.50"
	send := func(status string) {
		t.Helper()
		cmd := lab.Command(nas.NS, radclient, "-r", "5", "-t", "2", aaa.Host.String()+":1813", "acct", "lab-secret")
		attrs := fmt.Sprintf(`Acct-Status-Type = %s, User-Name = "alice@corp", Framed-IP-Address = %s, Calling-Station-Id = "02-00-5E-10-00-01", Acct-Session-Id = "lab-0001", NAS-Port-Type = Ethernet, NAS-IP-Address = %s`, status, framed, nas.Host)
		if status == "Accounting-On" {
			attrs = fmt.Sprintf(`Acct-Status-Type = Accounting-On, NAS-IP-Address = %s, Acct-Session-Id = "lab-on-1"`, nas.Host)
		}
		cmd.Stdin = strings.NewReader(attrs)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("radclient %s: %v: %s", status, err, out)
		}
	}
	got := identityPhases(t, ch, p, framed, func() { send("Start") }, func() { send(end) }, 1, 2)
	want := []attribution{
		{"", "", "", 2 + 3},
		{"alice@corp", "radius", "02:00:5e:10:00:01", 5},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		b, _ := os.ReadFile(detail)
		t.Errorf("flows of %s (-got +want):\n%s\ndetail file:\n%s", framed, diff, b)
	}
}

// TestLabIdentityKerberos: kinit in one namespace against an MIT krb5kdc
// in another, whose log file flowaudit tails (format kerberos). A wrong
// password (PREAUTH_FAILED) binds nothing; the ticket issued for the
// right one binds the client's address to alice@EXAMPLE.COM, so flows
// before the login are unattributed and flows after carry her principal.
func TestLabIdentityKerberos(t *testing.T) {
	krb5kdc := needBin(t, "krb5kdc", "krb5-kdc")
	kdb5util := needBin(t, "kdb5_util", "krb5-kdc")
	kadmin := needBin(t, "kadmin.local", "krb5-admin-server")
	kinit := needBin(t, "kinit", "krb5-user")
	lab := identityLab(t, "client", "kdc")
	client, kdc := lab.Hosts["client"], lab.Hosts["kdc"]
	dir := lab.Dir
	logPath := filepath.Join(dir, "krb5kdc.log")
	files := map[string]string{
		"kdc.conf":  fmt.Sprintf("[kdcdefaults]\n kdc_ports = 88\n kdc_tcp_ports = 88\n[realms]\n EXAMPLE.COM = {\n  database_name = %[1]s/principal\n  key_stash_file = %[1]s/stash\n  acl_file = %[1]s/kadm5.acl\n }\n[logging]\n kdc = FILE:%[2]s\n", dir, logPath),
		"krb5.conf": fmt.Sprintf("[libdefaults]\n default_realm = EXAMPLE.COM\n dns_lookup_kdc = false\n dns_lookup_realm = false\n rdns = false\n[realms]\n EXAMPLE.COM = {\n  kdc = %s\n }\n", kdc.Host),
		"kadm5.acl": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"KRB5_CONFIG=" + filepath.Join(dir, "krb5.conf"), "KRB5_KDC_PROFILE=" + filepath.Join(dir, "kdc.conf"), "KRB5CCNAME=FILE:" + filepath.Join(dir, "ccache")}
	run := func(stdin string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("", kdb5util, "create", "-s", "-r", "EXAMPLE.COM", "-P", "lab-master-key"); err != nil {
		t.Fatalf("kdb5_util create: %v: %s", err, out)
	}
	if out, err := run("", kadmin, "-r", "EXAMPLE.COM", "-q", "addprinc +requires_preauth -pw alice-secret alice"); err != nil {
		t.Fatalf("kadmin.local: %v: %s", err, out)
	}
	if err := lab.Start(kdc.NS, "env", append(env, krb5kdc, "-n", "-r", "EXAMPLE.COM")...); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitTCP(client.NS, netip.AddrPortFrom(kdc.Host, 88), 10*time.Second); err != nil {
		t.Fatal(err)
	}

	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{accessYAML: "    tail_poll_interval: 50ms\n    files:\n      - {path: " + logPath + ", format: kerberos}\n"})
	p.Start()
	login := func(password string) (string, error) {
		return run(password+"\n", "ip", append([]string{"netns", "exec", client.NS, "env"}, append(env, kinit, "alice@EXAMPLE.COM")...)...)
	}
	addr := client.Host.String()
	fs := newFlowSender(t, p.NetFlowAddr)
	fs.send(addr, 40000, "192.0.2.80", 443, 2) // before any login
	nextSecond()
	if out, err := login("wrong"); err == nil {
		t.Fatalf("kinit with a wrong password succeeded: %s", out)
	}
	p.WaitMetric("flowaudit_enrich_access_events_total", 1, 30*time.Second) // PREAUTH_FAILED
	fs.send(addr, 40001, "192.0.2.80", 443, 3)                              // still nobody
	nextSecond()
	if out, err := login("alice-secret"); err != nil {
		t.Fatalf("kinit: %v: %s", err, out)
	}
	p.WaitMetric("flowaudit_enrich_access_events_total", 2, 30*time.Second) // ISSUE
	nextSecond()
	fs.send(addr, 40002, "192.0.2.80", 443, 5) // alice
	q := "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:" + addr + "'"
	if got := waitCount(t, ch, q, 10, 60*time.Second); got != 10 {
		t.Fatalf("%d flows of %s in ClickHouse, want 10", got, addr)
	}
	want := []attribution{
		{"", "", "", 2 + 3},
		{"alice@EXAMPLE.COM", "kerberos", "", 5},
	}
	if diff := cmp.Diff(attributions(t, ch, addr), want); diff != "" {
		b, _ := os.ReadFile(logPath)
		t.Errorf("flows of %s (-got +want):\n%s\nKDC log:\n%s", addr, diff, b)
	}
	// The access events as the KDC logged them.
	if n := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events WHERE source = 'kerberos' AND user = 'alice@EXAMPLE.COM' AND outcome = 'failure'", 1, 30*time.Second); n != 1 {
		t.Errorf("%d kerberos failures in access_events, want 1", n)
	}
}

// TestLabIdentityOpenVPN: an OpenVPN server in one namespace and a client
// (certificate CN alice) in another; traffic goes through the tunnel and
// flowaudit tails the server's --log file (format openvpn). Flows from the
// client's virtual address carry alice while the tunnel is up and nobody
// after the client exits (explicit exit notification).
func TestLabIdentityOpenVPN(t *testing.T) {
	openvpn := needBin(t, "openvpn", "openvpn")
	openssl := needBin(t, "openssl", "openssl")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	lab := identityLab(t, "remote", "vpn")
	remote, vpn := lab.Hosts["remote"], lab.Hosts["vpn"]
	dir := lab.Dir
	pki := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	pki("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=lab-ca")
	for _, n := range []struct{ name, eku string }{{"server", "serverAuth"}, {"alice", "clientAuth"}} {
		if err := os.WriteFile(filepath.Join(dir, n.name+".ext"), []byte("extendedKeyUsage="+n.eku+"\nkeyUsage=digitalSignature\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		pki("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", n.name+".key", "-out", n.name+".csr", "-subj", "/CN="+n.name)
		pki("x509", "-req", "-in", n.name+".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", n.name+".crt", "-days", "2", "-extfile", n.name+".ext")
	}
	logPath := filepath.Join(dir, "openvpn.log")
	if err := lab.Start(vpn.NS, openvpn, "--server", "10.8.72.0", "255.255.255.0", "--topology", "subnet", "--dev", "tun", "--proto", "udp",
		"--local", vpn.Host.String(), "--port", "1194", "--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "server.crt"),
		"--key", filepath.Join(dir, "server.key"), "--dh", "none", "--keepalive", "1", "10", "--verb", "3", "--log", logPath); err != nil {
		t.Fatal(err)
	}

	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{accessYAML: "    tail_poll_interval: 50ms\n    files:\n      - {path: " + logPath + ", format: openvpn, host: vpn-1}\n"})
	p.Start()
	// caughtUp waits until the enricher applied every access event in
	// ClickHouse once one matching cond is there.
	caughtUp := func(cond string) {
		t.Helper()
		if n := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.access_events WHERE source = 'openvpn' AND "+cond, 1, 60*time.Second); n == 0 {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("no openvpn access event with %s; server log:\n%s", cond, b)
		}
		all := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.access_events")
		p.WaitMetric("flowaudit_enrich_access_events_total", float64(all), 30*time.Second)
	}

	const virtual = "10.8.72.2" // the pool's first address
	fs := newFlowSender(t, p.NetFlowAddr)
	fs.send(virtual, 40000, "192.0.2.80", 443, 2) // before the tunnel
	nextSecond()
	client := lab.Command(remote.NS, openvpn, "--client", "--dev", "tun", "--proto", "udp", "--remote", vpn.Host.String(), "1194",
		"--nobind", "--ca", filepath.Join(dir, "ca.crt"), "--cert", filepath.Join(dir, "alice.crt"), "--key", filepath.Join(dir, "alice.key"),
		"--remote-cert-tls", "server", "--explicit-exit-notify", "1", "--verb", "3")
	var clientOut strings.Builder
	client.Stdout, client.Stderr = &clientOut, &clientOut
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Process.Kill()
		_ = client.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server log:\n%s\nclient:\n%s", b, clientOut.String())
		}
	})
	// Traffic through the tunnel: a TCP connection to the server's end,
	// refused (a RST come back through the tunnel) or accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := lab.InNS(remote.NS, func() error {
			c, err := net.DialTimeout("tcp", "10.8.72.1:9", time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil
			}
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the tunnel after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	caughtUp("user = 'alice' AND action = 'session_open' AND IPv6NumToString(src_addr) = '::ffff:" + virtual + "'")
	nextSecond()
	fs.send(virtual, 40001, "192.0.2.80", 443, 5) // alice, through the tunnel
	nextSecond()
	if err := client.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	caughtUp("user = 'alice' AND action = 'disconnect'")
	nextSecond()
	fs.send(virtual, 40002, "192.0.2.80", 443, 3) // after the exit
	q := "SELECT toUInt64(count()) FROM flowaudit.flows WHERE IPv6NumToString(src_addr) = '::ffff:" + virtual + "'"
	if got := waitCount(t, ch, q, 10, 60*time.Second); got != 10 {
		t.Fatalf("%d flows of %s in ClickHouse, want 10", got, virtual)
	}
	want := []attribution{
		{"", "", "", 2 + 3},
		{"alice", "openvpn", "", 5},
	}
	if diff := cmp.Diff(attributions(t, ch, virtual), want); diff != "" {
		t.Errorf("flows of %s (-got +want):\n%s", virtual, diff)
	}
}
