package access

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/flowaudit/flowaudit/ingest/access/parser"
)

// readUDP reads syslog datagrams: one datagram is one message.
func (c *Component) readUDP(name string, conn *net.UDPConn) {
	defer c.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if c.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			c.r.Logger.Error("reading syslog datagram failed", "listener", name, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		msg := trimFrame(buf[:n])
		if len(msg) == 0 {
			continue
		}
		o := c.peerOrigin(name, from)
		o.udp = true
		meta := parser.Meta{Received: time.Now(), Host: o.addr.String(), Location: c.loc}
		c.handleLine(context.Background(), o, syslogFormat, msg, meta, nil)
	}
}

// addrPortOf returns the address and port of a TCP peer (a TLS
// connection reports its TCP peer).
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// trimFrame drops the line ends and NULs some senders append to a
// message.
func trimFrame(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n\x00")
}

// acceptTCP accepts syslog connections until the listener closes.
func (c *Component) acceptTCP(name string, ln net.Listener) {
	defer c.wg.Done()
	table := newConnTable(c.cfg.SyslogMaxConnections, c.cfg.SyslogMaxConnectionsPerSource)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if c.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// EMFILE and friends: back off rather than spin, but keep
			// the listener alive.
			if ok, n := c.sampler.Allow("accept/" + name); ok {
				c.r.Logger.Error("accepting a syslog connection failed", "listener", name, "err", err, "suppressed", n)
			}
			select {
			case <-c.stopCh:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		peer := addrPortOf(conn.RemoteAddr())
		tc, evicted, reasons := table.admit(conn, peer.Addr())
		for i, old := range evicted {
			c.metrics.tcpEvictions.WithLabelValues(reasons[i]).Inc()
			if ok, n := c.sampler.Allow("evict/" + name + "/" + reasons[i]); ok {
				key := "ingest.access.syslog_max_connections"
				if reasons[i] == evictSourceFull {
					key = "ingest.access.syslog_max_connections_per_source"
				}
				c.r.Logger.Warn("syslog listener full: closing the connection idle longest to admit a new one (raise "+key+" if legitimate)",
					"listener", name, "reason", reasons[i], "closed", old.RemoteAddr().String(), "admitted", peer.String(), "suppressed", n)
			}
			old.evict()
		}
		c.mu.Lock()
		if c.stopping.Load() {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.tcpConns[conn] = struct{}{}
		c.mu.Unlock()
		c.metrics.tcpConnections.Inc()
		c.wg.Add(1)
		go func() {
			defer func() {
				table.remove(tc)
				c.mu.Lock()
				delete(c.tcpConns, conn)
				c.mu.Unlock()
				conn.Close()
				c.metrics.tcpConnections.Dec()
				c.wg.Done()
			}()
			c.serveTCP(name, tc)
		}()
	}
}

// serveTCP reads the messages of one syslog connection until it closes,
// idles out or sends garbage it cannot be resynchronised from.
func (c *Component) serveTCP(name string, conn *tcpConn) {
	o := c.peerOrigin(name, addrPortOf(conn.RemoteAddr()))
	host := o.addr.String()
	fr := newFrameReader(conn, c.cfg.MaxLineBytes)
	for {
		conn.armDeadline(c.cfg.SyslogIdleTimeout)
		msg, err := fr.next()
		if err != nil {
			var tl *tooLongError
			if errors.As(err, &tl) {
				conn.touch()
				meta := parser.Meta{Received: time.Now(), Host: host, Location: c.loc}
				c.rejectTooLong(o, tl, meta)
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.stopping.Load() && !conn.evicted.Load() {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.r.Logger.Debug("closing idle syslog connection", "origin", o.String())
				} else if ok, n := c.sampler.Allow("read/" + name); ok {
					c.r.Logger.Warn("syslog connection failed", "origin", o.String(), "err", err, "suppressed", n)
				}
			}
			return
		}
		conn.touch()
		if len(msg) == 0 {
			continue
		}
		meta := parser.Meta{Received: time.Now(), Host: host, Location: c.loc}
		c.handleLine(context.Background(), o, syslogFormat, msg, meta, nil)
	}
}

// rejectTooLong counts and dead-letters the start of a message that
// exceeded max_line_bytes.
func (c *Component) rejectTooLong(o origin, tl *tooLongError, meta parser.Meta) {
	c.metrics.lines.WithLabelValues(o.listener, string(parser.FormatSyslog)).Inc()
	c.metrics.rejected.WithLabelValues(string(parser.FormatSyslog), reasonTooLong).Inc()
	if ok, n := c.sampler.Allow("reject/syslog/" + reasonTooLong); ok {
		c.r.Logger.Warn("access log line rejected", "origin", o.String(), "format", parser.FormatSyslog, "reason", reasonTooLong, "err", tl, "suppressed", n)
	}
	c.deadLetter(context.Background(), o, reasonTooLong, tl, tl.head, nil)
}

// tooLongError reports a message longer than the bound; the reader has
// already skipped it.
type tooLongError struct {
	head []byte // the first max bytes
	size int    // the announced size with octet counting, else 0
	max  int
}

func (e *tooLongError) Error() string {
	if e.size > 0 {
		return fmt.Sprintf("octet-counted message of %d bytes is longer than ingest.access.max_line_bytes (%d)", e.size, e.max)
	}
	return fmt.Sprintf("line is longer than ingest.access.max_line_bytes (%d)", e.max)
}

// frameReader splits a syslog TCP stream into messages. The framing is
// detected per message (RFC 6587): a message starting with a digit whose
// digits are followed by a space is octet-counted (LEN SP MSG); anything
// else runs to the next LF (a trailing CR is dropped). Syslog messages
// start with '<', so the two cannot be confused for compliant senders.
type frameReader struct {
	r   *bufio.Reader
	max int
	buf []byte
}

func newFrameReader(r io.Reader, max int) *frameReader {
	// One more byte than the bound, so that a line of exactly max bytes
	// and its LF fit.
	return &frameReader{r: bufio.NewReaderSize(r, max+1), max: max}
}

// next returns the next message, valid until the following call. An
// empty message (blank line) is returned as such. A *tooLongError means
// the message was skipped and the stream is in sync again.
func (f *frameReader) next() ([]byte, error) {
	first, err := f.r.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] >= '1' && first[0] <= '9' {
		size, ok, err := f.octetCount()
		if err != nil {
			return nil, err
		}
		if ok {
			return f.readCounted(size)
		}
	}
	return f.readLine()
}

// octetCount looks for "LEN SP" at the start of the buffer without
// consuming anything unless it is found. It peeks one byte at a time so
// that it never waits for bytes a short newline-framed message will not
// send.
func (f *frameReader) octetCount() (int, bool, error) {
	const maxDigits = 9 // up to 999,999,999 bytes announced
	size := 0
	for i := 0; i <= maxDigits; i++ {
		b, err := f.r.Peek(i + 1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, false, nil // a final unterminated line of digits
			}
			return 0, false, err
		}
		ch := b[i]
		switch {
		case ch >= '0' && ch <= '9':
			size = size*10 + int(ch-'0')
		case ch == ' ' && i > 0:
			_, _ = f.r.Discard(i + 1)
			return size, true, nil
		default:
			return 0, false, nil
		}
	}
	return 0, false, nil
}

func (f *frameReader) readCounted(size int) ([]byte, error) {
	if size > f.max {
		head := make([]byte, f.max)
		if _, err := io.ReadFull(f.r, head); err != nil {
			return nil, err
		}
		if _, err := f.r.Discard(size - f.max); err != nil {
			return nil, err
		}
		return nil, &tooLongError{head: head, size: size, max: f.max}
	}
	if cap(f.buf) < size {
		f.buf = make([]byte, size)
	}
	f.buf = f.buf[:size]
	if _, err := io.ReadFull(f.r, f.buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("connection closed inside an octet-counted message: %w", err)
		}
		return nil, err
	}
	return trimFrame(f.buf), nil
}

func (f *frameReader) readLine() ([]byte, error) {
	line, err := f.r.ReadSlice('\n')
	switch {
	case err == nil:
		return trimFrame(line), nil
	case errors.Is(err, bufio.ErrBufferFull):
		head := append([]byte(nil), line[:f.max]...)
		// Resynchronise at the next LF.
		for {
			_, err = f.r.ReadSlice('\n')
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, &tooLongError{head: head, max: f.max}
	case errors.Is(err, io.EOF) && len(line) > 0:
		// The peer closed after an unterminated last line: it is
		// complete as far as anyone will know.
		return trimFrame(line), nil
	default:
		return nil, err
	}
}
