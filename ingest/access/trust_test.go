package access_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

// provenance is what the trust tests compare per event.
type provenance struct {
	User, Host, Source, Peer, Listener string
	Untrusted                          bool
}

func provenances(evs []schemas.AccessEvent) []provenance {
	out := make([]provenance, len(evs))
	for i, ev := range evs {
		out[i] = provenance{User: ev.User, Host: ev.Host, Source: ev.Source, Peer: ev.PeerAddr.Netip().Unmap().String(),
			Listener: ev.Listener, Untrusted: ev.Untrusted}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// sendFrom sends one datagram or TCP line to addr from the local address
// from (any 127.x address is this host's).
func sendFrom(t *testing.T, network, from, addr, msg string) {
	t.Helper()
	d := net.Dialer{}
	switch network {
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(from)}
	default:
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// TestTrustedSenders sends the same forged-looking sshd accept from a
// trusted and from untrusted addresses: every event is kept with the
// sender's real address, only the trusted one may bind.
func TestTrustedSenders(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.TrustedSenders = []string{"127.0.0.1/32", "::1"}
	c := h.start(cfg)
	udp, tcp := hostPort(t, c.SyslogAddrs()[0]), hostPort(t, c.SyslogAddrs()[1])
	line := func(user string) string {
		return "<38>1 2024-01-02T03:04:05Z bastion-2 sshd 1 - - Accepted publickey for " + user + " from 10.1.2.4 port 5000 ssh2\n"
	}
	sendFrom(t, "udp", "127.0.0.1", udp, line("trusted-udp"))
	sendFrom(t, "udp", "127.0.0.2", udp, line("forged-udp"))
	sendFrom(t, "tcp", "127.0.0.1", tcp, line("trusted-tcp"))
	sendFrom(t, "tcp", "127.0.0.3", tcp, line("forged-tcp"))
	h.wait(4, 0)
	h.settle()
	want := []provenance{
		{User: "forged-tcp", Host: "bastion-2", Source: "sshd", Peer: "127.0.0.3", Listener: "tcp://127.0.0.1:0", Untrusted: true},
		{User: "forged-udp", Host: "bastion-2", Source: "sshd", Peer: "127.0.0.2", Listener: "udp://127.0.0.1:0", Untrusted: true},
		{User: "trusted-tcp", Host: "bastion-2", Source: "sshd", Peer: "127.0.0.1", Listener: "tcp://127.0.0.1:0"},
		{User: "trusted-udp", Host: "bastion-2", Source: "sshd", Peer: "127.0.0.1", Listener: "udp://127.0.0.1:0"},
	}
	if diff := cmp.Diff(provenances(h.events), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	for _, l := range []string{"udp://127.0.0.1:0", "tcp://127.0.0.1:0"} {
		waitMetric(t, h.r, "flowaudit_access_untrusted_events_total", map[string]string{"listener": l}, 1)
	}
}

// TestHTTPTokenHosts checks that a token's events may claim only the
// hosts and sources http_token_hosts gives it.
func TestHTTPTokenHosts(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPTokens = []string{"plain-token"}
	cfg.HTTPTokenHosts = map[string][]string{
		"web-token": {"web-1/nginx", "*/k8s_audit"},
		"any-token": {"*"},
	}
	c := h.start(cfg)
	url := "http://" + c.HTTPAddr() + "/v1/access"
	ev := func(user, host, source string) string {
		return fmt.Sprintf(`{"user":%q,"host":%q,"source":%q,"src_addr":"10.1.2.4","action":"login","outcome":"success"}`+"\n", user, host, source)
	}
	for _, r := range []struct {
		token, body string
	}{
		{"web-token", ev("web1-nginx", "web-1", "nginx") + ev("web1-sshd", "web-1", "sshd") + ev("web2-nginx", "WEB-2", "nginx") +
			ev("any-k8s", "cluster-a", "k8s_audit") + ev("web1-upper", "WEB-1", "nginx")},
		{"any-token", ev("any-token", "bastion-2", "sshd")},
		{"plain-token", ev("plain-token", "web-1", "nginx")},
	} {
		if res := post(t, url, r.token, "application/x-ndjson", r.body); res.code != http.StatusOK {
			t.Fatalf("POST with %s: %d %+v", r.token, res.code, res.resp)
		}
	}
	if res := post(t, url, "nobody", "application/x-ndjson", ev("x", "web-1", "nginx")); res.code != http.StatusUnauthorized {
		t.Errorf("POST with an unknown token: %d, want 401", res.code)
	}
	h.wait(7, 0)
	h.settle()
	l := "http://" + c.HTTPAddr()
	want := []provenance{
		{User: "any-k8s", Host: "cluster-a", Source: "k8s_audit", Peer: "127.0.0.1", Listener: l},
		{User: "any-token", Host: "bastion-2", Source: "sshd", Peer: "127.0.0.1", Listener: l},
		{User: "plain-token", Host: "web-1", Source: "nginx", Peer: "127.0.0.1", Listener: l, Untrusted: true},
		{User: "web1-nginx", Host: "web-1", Source: "nginx", Peer: "127.0.0.1", Listener: l},
		{User: "web1-sshd", Host: "web-1", Source: "sshd", Peer: "127.0.0.1", Listener: l, Untrusted: true},
		{User: "web1-upper", Host: "WEB-1", Source: "nginx", Peer: "127.0.0.1", Listener: l},
		{User: "web2-nginx", Host: "WEB-2", Source: "nginx", Peer: "127.0.0.1", Listener: l, Untrusted: true},
	}
	if diff := cmp.Diff(provenances(h.events), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

// testCA is a certificate authority for client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10), Subject: pkix.Name{CommonName: "flowaudit test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// client issues a client certificate.
func (ca *testCA) client(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTLSClientCA requires client certificates on tls:// syslog and
// HTTPS: a sender without one, or with one from another CA, is refused.
func TestTLSClientCA(t *testing.T) {
	h := newHarness(t)
	certFile, keyFile, pool := selfSigned(t)
	ca, other := newTestCA(t), newTestCA(t)
	cfg := testConfiguration()
	cfg.SyslogListen = []string{"tls://127.0.0.1:0"}
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = certFile, keyFile, ca.file
	c := h.start(cfg)
	addr := hostPort(t, c.SyslogAddrs()[0])
	good, foreign := ca.client(t, "relay-1"), other.client(t, "intruder")

	send := func(certs []tls.Certificate, user string) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, Certificates: certs})
		if err != nil {
			return err
		}
		defer conn.Close()
		msg := "<38>1 2024-01-02T03:04:05Z bastion sshd 1 - - Accepted password for " + user + " from 10.1.2.3 port 52222 ssh2\n"
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		// TLS 1.3 clients learn of a refused certificate on their
		// first read: the server's alert, or EOF; a kept connection
		// times out instead.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{{"no certificate", nil}, {"another CA", []tls.Certificate{foreign}}} {
		if err := send(tc.certs, "refused"); err == nil || isTimeout(err) {
			t.Errorf("%s: connection kept (%v), want it refused", tc.name, err)
		}
	}
	if err := send([]tls.Certificate{good}, "alice"); !isTimeout(err) {
		t.Errorf("with a client certificate of tls_client_ca: %v, want the connection kept", err)
	}

	post := func(certs []tls.Certificate) (int, error) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		defer client.CloseIdleConnections()
		res, err := client.Post("https://"+c.HTTPAddr()+"/v1/access", "application/x-ndjson",
			strings.NewReader(`{"user":"bob","src_addr":"10.1.2.4","action":"login","outcome":"success"}`))
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}
	if code, err := post(nil); err == nil {
		t.Errorf("HTTPS without a client certificate: %d, want the handshake refused", code)
	}
	if code, err := post([]tls.Certificate{good}); err != nil || code != http.StatusOK {
		t.Errorf("HTTPS with a client certificate: %d, %v; want 200", code, err)
	}
	h.wait(2, 0)
	h.settle()
	if diff := cmp.Diff(users(h.events), []string{"alice", "bob"}); diff != "" {
		t.Errorf("users (-got +want): only the senders with a certificate:\n%s", diff)
	}
}
