package pcapgen

import (
	"bytes"
	"encoding/binary"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/netsampler/goflow2/v2/decoders/netflow"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"
)

// readBack parses a capture written by Write and checks every packet:
// IPv4 header and TCP checksums, flags sequence per flow, timestamps.
func readBack(t *testing.T, b []byte, ppf int) Summary {
	t.Helper()
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("bad pcap header % x", b[:min(24, len(b))])
	}
	var sum Summary
	type tuple struct {
		src, dst     string
		sport, dport uint16
	}
	seen := map[tuple][]uint8{} // flags in order
	var lastTS time.Time
	var first time.Time
	for off := 24; off < len(b); {
		ts := time.Unix(int64(binary.LittleEndian.Uint32(b[off:])), int64(binary.LittleEndian.Uint32(b[off+4:]))*1000)
		capLen := int(binary.LittleEndian.Uint32(b[off+8:]))
		if origLen := int(binary.LittleEndian.Uint32(b[off+12:])); origLen != capLen {
			t.Fatalf("packet at %d truncated: %d of %d", off, capLen, origLen)
		}
		pkt := b[off+16 : off+16+capLen]
		off += 16 + capLen
		if first.IsZero() {
			first = ts
		}
		if ts.Before(lastTS) || ts.Sub(first) > 3*time.Second {
			t.Fatalf("packet %d at %s: timestamps not monotonic within 3 s", sum.Packets, ts)
		}
		lastTS = ts

		var ip, seg []byte
		var src, dst string
		var pseudo uint32
		switch binary.BigEndian.Uint16(pkt[12:]) {
		case 0x0800:
			ip = pkt[14:]
			total := int(binary.BigEndian.Uint16(ip[2:]))
			if total != len(ip) || checksum(0, ip[:20]) != 0 {
				t.Fatalf("packet %d: bad IPv4 header (length %d of %d, checksum)", sum.Packets, total, len(ip))
			}
			seg = ip[20:]
			src, dst = net.IP(ip[12:16]).String(), net.IP(ip[16:20]).String()
			pseudo = sum16(sum16(0, ip[12:16]), ip[16:20])
			sum.Bytes += uint64(total)
		case 0x86dd:
			ip = pkt[14:]
			if int(binary.BigEndian.Uint16(ip[4:]))+40 != len(ip) {
				t.Fatalf("packet %d: bad IPv6 payload length", sum.Packets)
			}
			seg = ip[40:]
			src, dst = net.IP(ip[8:24]).String(), net.IP(ip[24:40]).String()
			pseudo = sum16(sum16(0, ip[8:24]), ip[24:40])
			sum.Bytes += uint64(len(ip))
		default:
			t.Fatalf("packet %d: ethertype %#x", sum.Packets, binary.BigEndian.Uint16(pkt[12:]))
		}
		if checksum(pseudo+6+uint32(len(seg)), seg) != 0 {
			t.Fatalf("packet %d: bad TCP checksum", sum.Packets)
		}
		k := tuple{src, dst, binary.BigEndian.Uint16(seg[0:]), binary.BigEndian.Uint16(seg[2:])}
		seen[k] = append(seen[k], seg[13])
		sum.Packets++
	}
	for k, flags := range seen {
		want := []uint8{tcpSYN}
		for range ppf - 2 {
			want = append(want, tcpPSH|tcpACK)
		}
		want = append(want, tcpFIN|tcpACK)
		if diff := cmp.Diff(flags, want); diff != "" {
			t.Fatalf("flow %+v flags (-got +want):\n%s", k, diff)
		}
	}
	sum.Flows = uint64(len(seen))
	sum.First, sum.Last = first, lastTS
	return sum
}

// clientCount returns how many distinct source addresses a capture
// written by Write holds.
func clientCount(t *testing.T, b []byte) int {
	t.Helper()
	srcs := map[string]bool{}
	for off := 24; off < len(b); {
		capLen := int(binary.LittleEndian.Uint32(b[off+8:]))
		pkt := b[off+16 : off+16+capLen]
		off += 16 + capLen
		if binary.BigEndian.Uint16(pkt[12:]) == 0x0800 {
			srcs[net.IP(pkt[14+12:14+16]).String()] = true
		} else {
			srcs[net.IP(pkt[14+8:14+24]).String()] = true
		}
	}
	return len(srcs)
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"ipv4-default", Options{Flows: 100, Seed: 1}},
		{"mixed-5-packets", Options{Flows: 61, PacketsPerFlow: 5, Seed: 2, IPv6Share: 0.5}},
		{"ipv6-only", Options{Flows: 10, PacketsPerFlow: 2, IPv6Share: 1, Start: time.Unix(1700000000, 0)}},
		{"many-flows-reuse-hosts", Options{Flows: 60010, PacketsPerFlow: 2}},
		{"one-client", Options{Flows: 300, Clients: 1, IPv6Share: 0.3, Start: time.Unix(1700000000, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			got, err := Write(&buf, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			ppf := max(tc.opts.PacketsPerFlow, 0)
			if ppf == 0 {
				ppf = defaultPacketsPerFlow
			}
			if got.Flows != uint64(tc.opts.Flows) || got.Packets != uint64(tc.opts.Flows*ppf) {
				t.Errorf("Summary %+v, want %d flows of %d packets", got, tc.opts.Flows, ppf)
			}
			if tc.opts.Clients != 0 {
				if n := clientCount(t, buf.Bytes()); n != tc.opts.Clients*2 && tc.opts.IPv6Share > 0 || n > tc.opts.Clients*2 {
					t.Errorf("%d client addresses, want %d per address family", n, tc.opts.Clients)
				}
			}
			if diff := cmp.Diff(readBack(t, buf.Bytes(), ppf), got); diff != "" {
				t.Errorf("capture content (-read +Summary):\n%s", diff)
			}
			var again bytes.Buffer
			if _, err := Write(&again, tc.opts); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Errorf("same options gave a different capture (err %v)", err)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "Flows 0 out of range"},
		{Options{Flows: 1, PacketsPerFlow: 1}, "PacketsPerFlow 1 too small"},
		{Options{Flows: 1, IPv6Share: 1.5}, "IPv6Share 1.5 out of range"},
		{Options{Flows: 28001, Clients: 1}, "at most 28000 flows per client"},
		{Options{Flows: 1, Clients: -1}, "Clients -1 out of range"},
	} {
		_, err := Write(&bytes.Buffer{}, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write(%+v) error %v, want one containing %q", tc.opts, err, tc.want)
		}
	}
	if _, err := WriteFile(filepath.Join(t.TempDir(), "missing", "x.pcap"), Options{Flows: 1}); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// softflowdStats matches the summary softflowd prints when it exits after
// reading a capture file.
var (
	softflowdExported = regexp.MustCompile(`Flows exported: (\d+) \((\d+) records\) in (\d+) packets \((\d+) failures\)`)
	softflowdTCP      = regexp.MustCompile(`tcp \(6\):\s+(\d+)\s+(\d+)`)
	softflowdForced   = regexp.MustCompile(`Flows expired: (\d+) \((\d+) forced\)`)
)

// TestSoftflowdCrossCheck proves the capture is a sound reference: an
// independent exporter, softflowd, exports exactly Summary's flows,
// packets and octets (octets = IP total length) as IPFIX, decoded here by
// goflow2. Skipped when softflowd is not installed.
func TestSoftflowdCrossCheck(t *testing.T) {
	bin, err := exec.LookPath("softflowd")
	if err != nil {
		t.Skip("softflowd not installed")
	}
	dir := t.TempDir()
	// softflowd chdirs before opening the capture: the path must be absolute.
	path, err := filepath.Abs(filepath.Join(dir, "flows.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := WriteFile(path, Options{Flows: 20000, Seed: 3, IPv6Share: 0.2})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// softflowd sends its ~1 MB of datagrams in one burst at end of file.
	if err := conn.SetReadBuffer(8 << 20); err != nil {
		t.Logf("SetReadBuffer: %v", err)
	}
	received := make(chan []byte, 4096)
	go func() {
		defer close(received)
		for {
			b := make([]byte, 65536)
			n, err := conn.Read(b)
			if err != nil {
				return
			}
			received <- b[:n]
		}
	}()

	// -r implies foreground and no control socket (do not pass -c: it
	// re-enables the socket and softflowd 1.1.0 then blocks in accept).
	cmd := exec.Command(bin, "-r", path, "-n", conn.LocalAddr().String(), "-v", "10",
		"-m", "65536", "-d", "-p", filepath.Join(dir, "softflowd.pid"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softflowd: %v\n%s", err, out)
	}
	m := softflowdExported.FindSubmatch(out)
	tcp := softflowdTCP.FindSubmatch(out)
	forced := softflowdForced.FindSubmatch(out)
	if m == nil || tcp == nil || forced == nil {
		t.Fatalf("softflowd printed no statistics:\n%s", out)
	}
	atoi := func(b []byte) uint64 { n, _ := strconv.ParseUint(string(b), 10, 64); return n }
	type stats struct{ Flows, Records, Failures, Forced, Octets, Packets uint64 }
	gotStats := stats{atoi(m[1]), atoi(m[2]), atoi(m[4]), atoi(forced[2]), atoi(tcp[1]), atoi(tcp[2])}
	wantStats := stats{want.Flows, want.Flows, 0, 0, want.Bytes, want.Packets}
	if diff := cmp.Diff(gotStats, wantStats); diff != "" {
		t.Errorf("softflowd's own statistics (-got +want):\n%s\n%s", diff, out)
	}
	datagrams := int(atoi(m[3]))

	templates := netflow.CreateTemplateSystem()
	var got Summary
	timeout := time.After(10 * time.Second)
	for i := 0; i < datagrams; i++ {
		var b []byte
		select {
		case b = <-received:
		case <-timeout:
			t.Fatalf("received %d of %d datagrams softflowd sent: receive buffer overflow? (check net.core.rmem_max)", i, datagrams)
		}
		var v9 netflow.NFv9Packet
		var ipfix netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(b), templates, &v9, &ipfix); err != nil {
			t.Fatalf("datagram %d: goflow2: %v", i, err)
		}
		msgs, err := protoproducer.ProcessMessageIPFIXConfig(&ipfix, nil, nil)
		if err != nil {
			t.Fatalf("datagram %d: goflow2 producer: %v", i, err)
		}
		for _, msg := range msgs {
			fm := msg.(*protoproducer.ProtoProducerMessage)
			got.Flows++
			got.Packets += fm.Packets
			got.Bytes += fm.Bytes
		}
	}
	got.First, got.Last = want.First, want.Last // not exported as such
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("decoded IPFIX totals (-got +want):\n%s", diff)
	}
	t.Logf("softflowd exported %+v in %d datagrams", got, datagrams)
}
