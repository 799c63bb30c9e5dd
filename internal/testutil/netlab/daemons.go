package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// need finds a daemon's binary or reports the Debian package to install.
func need(bin, pkg string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, bin); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: apt-get install %s", bin, pkg)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// StartNginx runs a real nginx in the host of segment on port, answering
// every request with 200 "ok" (and 403 under /admin), and waits until it
// accepts connections.
func (l *Lab) StartNginx(segment string, port uint16) error {
	bin, err := need("nginx", "nginx-light")
	if err != nil {
		return err
	}
	h, ok := l.Hosts[segment]
	if !ok {
		return fmt.Errorf("no segment %q in the lab", segment)
	}
	dir := filepath.Join(l.Dir, fmt.Sprintf("nginx-%s-%d", segment, port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
        location /admin { return 403; }
        location / { return 200 "ok\n"; }
    }
}
`, dir, netip.AddrPortFrom(h.Host, port))
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := l.Start(h.NS, bin, "-c", file, "-p", dir); err != nil {
		return err
	}
	return l.WaitTCP(h.NS, netip.AddrPortFrom(h.Host, port), 10*time.Second)
}

// StartSSHD runs a real OpenSSH server in the host of segment on port
// (key authentication only) and waits until it accepts connections.
func (l *Lab) StartSSHD(segment string, port uint16) error {
	bin, err := need("sshd", "openssh-server")
	if err != nil {
		return err
	}
	keygen, err := need("ssh-keygen", "openssh-client")
	if err != nil {
		return err
	}
	h, ok := l.Hosts[segment]
	if !ok {
		return fmt.Errorf("no segment %q in the lab", segment)
	}
	dir := filepath.Join(l.Dir, fmt.Sprintf("sshd-%s-%d", segment, port))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// sshd's privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	key := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	conf := fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile %s/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
`, netip.AddrPortFrom(h.Host, port), key, dir)
	file := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := l.Start(h.NS, bin, "-D", "-e", "-f", file); err != nil {
		return err
	}
	return l.WaitTCP(h.NS, netip.AddrPortFrom(h.Host, port), 10*time.Second)
}

// Softflowd is a softflowd capturing one router interface.
type Softflowd struct {
	l       *Lab
	ctl     string
	bin     string
	segment string
	Addr    string // where it exports, inside the router namespace
}

// StartSoftflowd runs `softflowd -i` on the router's interface towards
// segment, exporting IPFIX to collector (an address in the test's
// namespace, reached through a relay).
func (l *Lab) StartSoftflowd(segment, collector string) (*Softflowd, error) {
	bin, err := need("softflowd", "softflowd")
	if err != nil {
		return nil, err
	}
	ctlBin, err := need("softflowctl", "softflowd")
	if err != nil {
		return nil, err
	}
	h, ok := l.Hosts[segment]
	if !ok {
		return nil, fmt.Errorf("no segment %q in the lab", segment)
	}
	relay, err := l.RelayUDP(l.Router, collector)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(l.Dir, "softflowd-"+segment)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Softflowd{l: l, ctl: filepath.Join(dir, "ctl"), bin: ctlBin, segment: segment, Addr: relay}
	if err := l.Start(l.Router, bin, "-d", "-i", h.RouterIf, "-n", relay, "-v", "10", "-p", filepath.Join(dir, "pid"),
		"-c", s.ctl, "-t", "maxlife=60"); err != nil {
		return nil, err
	}
	// The control socket appears once the capture is open.
	deadline := time.Now().Add(10 * time.Second)
	for !fileExists(s.ctl) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("softflowd on %s: no control socket after 10 s", h.RouterIf)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, nil
}

// ExpireAll makes softflowd export every flow it has seen so far.
//
// softflowd 1.1.0 does not ask libpcap for immediate mode, and libpcap's
// TPACKET_V3 ring then hands packets over only when a 256 KiB block is
// full: a few probes sit in the kernel unseen. So a burst of filler
// datagrams (UDP to the discard port of the router's own address on the
// segment, intra-segment traffic) goes through the interface first, then
// expire-all is asked for (retried: softflowd answers its control socket
// between captures).
func (s *Softflowd) ExpireAll() error {
	h := s.l.Hosts[s.segment]
	var conn net.Conn
	if err := s.l.InNS(h.NS, func() (err error) {
		conn, err = net.Dial("udp", netip.AddrPortFrom(h.Router, 9).String())
		return err
	}); err != nil {
		return err
	}
	filler := make([]byte, 1400)
	for i := 0; i < 1024; i++ {
		_, _ = conn.Write(filler) // ICMP port unreachable may refuse some writes
	}
	conn.Close()
	var err error
	for i := 0; i < 50; i++ {
		if _, err = s.l.Exec(s.l.Router, s.bin, "-c", s.ctl, "expire-all"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
