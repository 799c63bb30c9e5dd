package udpsock

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// procNetUDP is /proc/net/udp as Linux formats it: port 2055 is 0x0807,
// 6343 is 0x18C7, and the last column counts the socket's drops.
const procNetUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41001 2 0000000000000000 17
  101: 0100007F:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41002 2 0000000000000000 25
  102: 00000000:18C7 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41003 2 0000000000000000 1000
  103: 00000000:8807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41004 2 0000000000000000 5
  104: 0100007F:E2A5 00000000:0807 01 00000000:00000000 00:00000000 00000000  1000        0 41005 2 0000000000000000 9
  105: 00000000:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41006 2
  106: 00000000:0807 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41007 2 0000000000000000 x
`

const procNetUDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  200: 00000000000000000000000000000000:0807 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 42001 2 0000000000000000 3
`

func writeFixture(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProcUDPDrops(t *testing.T) {
	udp := writeFixture(t, "udp", procNetUDP)
	udp6 := writeFixture(t, "udp6", procNetUDP6)
	tests := []struct {
		name string
		path string
		port int
		want uint64
	}{
		// Lines 100 and 101; 103 (port 0x8807), 104 (remote port 2055),
		// 105 (no drops column) and 106 (not a number) do not count.
		{"two sockets on 2055", udp, 2055, 17 + 25},
		{"sflow port", udp, 6343, 1000},
		{"port that shares low hex digits", udp, 0x8807, 5},
		{"port nobody uses", udp, 9995, 0},
		{"ipv6 table", udp6, 2055, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := procUDPDrops(tt.path, tt.port)
			if err != nil {
				t.Fatalf("procUDPDrops(%d): %v", tt.port, err)
			}
			if got != tt.want {
				t.Errorf("procUDPDrops(%d) = %d, want %d", tt.port, got, tt.want)
			}
		})
	}
}

func TestProcUDPDropsHeaderOnlyAndMissing(t *testing.T) {
	header := writeFixture(t, "udp", "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n")
	if got, err := procUDPDrops(header, 2055); err != nil || got != 0 {
		t.Errorf("procUDPDrops(header only) = %d, %v; want 0, nil", got, err)
	}
	_, err := procUDPDrops(filepath.Join(t.TempDir(), "absent"), 2055)
	if !os.IsNotExist(err) {
		t.Errorf("procUDPDrops(missing file) error = %v, want a not-exist error", err)
	}
}

func TestSocketDropsOfOpenSocket(t *testing.T) {
	if _, err := os.Stat("/proc/net/udp"); err != nil {
		t.Skip("no /proc/net/udp on this system")
	}
	conn, _, err := Listen("127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A socket nobody overflowed has dropped nothing; this checks that
	// the real file parses.
	got, err := Drops(conn.LocalAddr().(*net.UDPAddr).Port)
	if err != nil || got != 0 {
		t.Errorf("Drops(fresh socket) = %d, %v; want 0, nil", got, err)
	}
}

func TestListenUDPReceiveBuffer(t *testing.T) {
	for _, requested := range []int{0, 1 << 20, 32 << 20} {
		conn, effective, err := Listen("127.0.0.1:0", requested)
		if err != nil {
			t.Fatalf("Listen(rcvbuf=%d): %v", requested, err)
		}
		conn.Close()
		if effective <= 0 {
			t.Errorf("Listen(rcvbuf=%d) effective buffer = %d, want > 0", requested, effective)
		}
	}
}

func TestListenUDPSharesPort(t *testing.T) {
	first, _, err := Listen("127.0.0.1:0", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	port := first.LocalAddr().(*net.UDPAddr).Port
	second, _, err := Listen(first.LocalAddr().String(), 1<<20)
	if err != nil {
		t.Fatalf("second socket on port %d (SO_REUSEPORT): %v", port, err)
	}
	defer second.Close()
	if got := second.LocalAddr().(*net.UDPAddr).Port; got != port {
		t.Fatalf("second socket bound port %d, want %d", got, port)
	}

	// A socket without SO_REUSEPORT cannot join: the option is what lets
	// readers share.
	if plain, err := net.ListenPacket("udp", first.LocalAddr().String()); err == nil {
		plain.Close()
		t.Errorf("plain socket could bind port %d shared by SO_REUSEPORT sockets", port)
	}

	// Datagrams to the port reach one of the two sockets.
	sender, err := net.Dial("udp", first.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	const n = 20
	for i := range n {
		if _, err := sender.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	buf := make([]byte, 16)
	for _, c := range []*net.UDPConn{first, second} {
		for {
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := c.ReadFromUDP(buf); err != nil {
				break
			}
			received++
		}
	}
	if received != n {
		t.Errorf("the two sockets received %d datagrams, want %d", received, n)
	}
}
