// Package udpsock opens the UDP sockets of the collectors (flows and
// syslog) with a large kernel receive buffer, and reads the kernel's
// per-socket drop counters.
package udpsock

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen opens one UDP socket with SO_REUSEPORT, so several readers can
// share a port and the kernel spreads exporters over them, and asks for a
// receive buffer of rcvbuf bytes. It returns the effective buffer size.
func Listen(addr string, rcvbuf int) (*net.UDPConn, int, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, 0, err
	}
	conn := pc.(*net.UDPConn)
	effective := 0
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	_ = raw.Control(func(fd uintptr) {
		if rcvbuf > 0 {
			// SO_RCVBUFFORCE ignores net.core.rmem_max but needs
			// CAP_NET_ADMIN; without it SO_RCVBUF is capped silently.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}
		}
		// The kernel reports twice the usable size (it books overhead).
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
			effective = v
		}
	})
	return conn, effective, nil
}

// Drops sums the kernel's drop counters of every UDP socket bound to
// port, from /proc/net/udp and /proc/net/udp6.
func Drops(port int) (uint64, error) {
	var total uint64
	for _, path := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		n, err := procUDPDrops(path, port)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return 0, err
		}
		total += n
	}
	return total, nil
}

func procUDPDrops(path string, port int) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	var total uint64
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
		if len(fields) < 13 || !strings.HasSuffix(fields[1], want) {
			continue
		}
		d, err := strconv.ParseUint(fields[12], 10, 64)
		if err == nil {
			total += d
		}
	}
	return total, sc.Err()
}
