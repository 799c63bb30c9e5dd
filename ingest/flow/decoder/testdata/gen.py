#!/usr/bin/env python3
"""Regenerate the NetFlow/IPFIX captures in this directory.

Writes a synthetic pcap of IPv4/IPv6 TCP, UDP and ICMP packets, feeds it
to softflowd (a real, independent exporter) once per export version and
saves every UDP datagram softflowd sends as <name>-<n>.bin.

    cd ingest/flow/decoder/testdata && python3 gen.py
"""
import os, socket, struct, subprocess, tempfile, threading, time, glob

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

def ipv4(src, dst, proto, payload, tos=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), 1, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return b"\x08\x00", h + payload

def ipv6(src, dst, proto, payload):
    h = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64,
                    socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))
    return b"\x86\xdd", h + payload

def tcp(sp, dp, flags, data=b""):
    return struct.pack("!HHIIBBHHH", sp, dp, 1000, 0, 5 << 4, flags, 65535, 0, 0) + data

def udp(sp, dp, data):
    return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data

def icmp(t, c):
    return struct.pack("!BBHI", t, c, 0, 0) + b"ping" * 8

def frame(et_l3):
    et, l3 = et_l3
    return b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + et + l3

def packets():
    t = 1700000000.0
    out = []
    for i in range(40):  # IPv4 TCP sessions, SYN/PSH/FIN
        src, dst = "10.1.%d.%d" % (i // 200, i % 200 + 10), "10.2.0.%d" % (i % 50 + 1)
        for j, fl in enumerate((0x02, 0x18, 0x18, 0x11)):
            out.append((t + i * 0.01 + j * 0.2, frame(ipv4(src, dst, 6, tcp(40000 + i, 443 if i % 2 else 5432, fl, b"x" * (j * 100)), tos=i % 4 * 8))))
    for i in range(30):  # IPv4 UDP (DNS-like)
        out.append((t + 0.5 + i * 0.01, frame(ipv4("10.1.5.%d" % (i + 1), "10.9.9.9", 17, udp(50000 + i, 53, b"q" * (20 + i))))))
        out.append((t + 0.7 + i * 0.01, frame(ipv4("10.1.5.%d" % (i + 1), "10.9.9.9", 17, udp(50000 + i, 53, b"q" * 30)))))
    for i in range(5):  # ICMP echo
        out.append((t + 1 + i * 0.1, frame(ipv4("10.3.0.1", "10.4.0.%d" % (i + 1), 1, icmp(8, 0)))))
    for i in range(25):  # IPv6 TCP
        src, dst = "2001:db8:1::%x" % (i + 1), "2001:db8:2::%x" % (i % 7 + 1)
        for j, fl in enumerate((0x02, 0x18, 0x11)):
            out.append((t + 1.2 + i * 0.01 + j * 0.3, frame(ipv6(src, dst, 6, tcp(33000 + i, 22, fl, b"y" * (j * 64))))))
    for i in range(10):  # IPv6 UDP
        out.append((t + 1.5 + i * 0.01, frame(ipv6("2001:db8:3::%x" % (i + 1), "2001:db8:4::1", 17, udp(5353, 123, b"n" * 48)))))
    out.sort(key=lambda p: p[0])
    return out

def write_pcap(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, fr in packets():
            f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(fr), len(fr)))
            f.write(fr)

def capture(name, args, pcap, tmp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(1.5)
    port = s.getsockname()[1]
    # softflowd 1.1.0 mangles long -r paths and then never exits: run it
    # from the temporary directory with short relative names.
    subprocess.run(["softflowd", "-d", "-r", os.path.basename(pcap), "-n", "127.0.0.1:%d" % port, "-6",
                    "-a", "-p", "sfd.pid", "-c", "sfd.ctl"] + args,
                   cwd=tmp, check=True, timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for old in glob.glob(name + "-*.bin"):
        os.remove(old)
    n = 0
    try:
        while True:
            d, _ = s.recvfrom(65535)
            with open("%s-%d.bin" % (name, n), "wb") as f:
                f.write(d)
            n += 1
    except socket.timeout:
        pass
    print(name, n, "datagrams")

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        pcap = os.path.join(tmp, "in.pcap")
        write_pcap(pcap)
        capture("softflowd-v5", ["-v", "5"], pcap, tmp)
        capture("softflowd-v9", ["-v", "9"], pcap, tmp)
        capture("softflowd-v9-sampled", ["-v", "9", "-s", "100"], pcap, tmp)
        capture("softflowd-ipfix", ["-v", "10"], pcap, tmp)
        capture("softflowd-ipfix-sampled", ["-v", "10", "-s", "100"], pcap, tmp)
        capture("softflowd-ipfix-milli", ["-v", "10", "-A", "milli"], pcap, tmp)
