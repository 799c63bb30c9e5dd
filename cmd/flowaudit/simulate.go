package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
)

func cmdSimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("simulate", "--target HOST:PORT --protocol ipfix|v9|v5|sflow [--rate N] [--duration D | --count N]", `
Send realistic simulated flows (several subnets, common service ports,
IPv4 and IPv6, varied sizes) to a collector over UDP, then print exactly
what was sent: datagrams, flows, bytes and packets. NetFlow v5 carries
IPv4 only. sFlow sends one flow sample per simulated packet.`, stderr)
	target := fs.String("target", "127.0.0.1:2055", "collector UDP `address` (host:port); sFlow usually goes to port 6343")
	protocol := fs.String("protocol", "ipfix", "export `protocol`: ipfix, v9, v5 or sflow")
	rate := fs.Int("rate", 1000, "flows per second; 0 sends as fast as possible")
	duration := fs.Duration("duration", 10*time.Second, "stop after this long (0: no time limit)")
	count := fs.Int("count", 0, "stop after exactly this many flows (0: no count limit)")
	seed := fs.Int64("seed", 1, "random seed: the same seed sends the same flows")
	perDatagram := fs.Int("flows-per-datagram", 0, "flows per datagram (0: 30; sFlow: 10 samples)")
	sampling := fs.Uint("sampling-rate", 1, "announced 1-in-N sampling rate (counters are never scaled)")
	obsID := fs.Uint("observation-id", 0, "observation domain / source id / sFlow sub-agent")
	quiet := fs.Bool("quiet", false, "no progress lines, only the final totals")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	p, err := simulate.ParseProtocol(*protocol)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit simulate: --protocol: %v\n", err)
		return 2
	}
	if *duration == 0 && *count == 0 {
		fmt.Fprintln(stderr, "flowaudit simulate: give --duration or --count (or both), otherwise it never stops")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg := simulate.Config{
		Target: *target, Protocol: p, Rate: *rate, Duration: *duration, Count: *count, Seed: *seed,
		FlowsPerDatagram: *perDatagram, SamplingRate: uint32(*sampling), ObservationID: uint32(*obsID),
	}
	start := time.Now()
	if !*quiet {
		fmt.Fprintf(stderr, "sending %s to %s at %s...\n", p, *target, rateText(*rate))
		cfg.Progress = func(t simulate.Totals) {
			fmt.Fprintf(stderr, "  %5.1fs  %s\n", time.Since(start).Seconds(), t)
		}
	}
	totals, err := simulate.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit simulate: %v\n", err)
		if totals.Datagrams == 0 {
			return 1
		}
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "sent protocol=%s target=%s datagrams=%d flows=%d bytes=%d packets=%d seconds=%.1f flows_per_s=%.0f\n",
		p, *target, totals.Datagrams, totals.Flows, totals.Bytes, totals.Packets, el, float64(totals.Flows)/max(el, 1e-9))
	if err != nil {
		return 1
	}
	return 0
}

func rateText(r int) string {
	if r == 0 {
		return "full speed"
	}
	return strings.TrimSpace(fmt.Sprintf("%d flows/s", r))
}
