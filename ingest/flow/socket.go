package flow

import (
	"net"

	"github.com/flowaudit/flowaudit/internal/udpsock"
)

// listenUDP opens one reader's socket (SO_REUSEPORT, receive buffer of
// rcvbuf bytes) and returns the effective buffer size.
func listenUDP(addr string, rcvbuf int) (*net.UDPConn, int, error) {
	return udpsock.Listen(addr, rcvbuf)
}

// socketDrops sums the kernel's drop counters of the sockets bound to port.
func socketDrops(port int) (uint64, error) { return udpsock.Drops(port) }
