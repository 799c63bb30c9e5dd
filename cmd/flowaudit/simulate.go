package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/internal/simulate"
)

func cmdSimulate(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "access" {
		return cmdSimulateAccess(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "scenario" {
		return cmdSimulateScenario(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "flows" {
		args = args[1:]
	}
	fs := newFlagSet("simulate", "[flows] --target HOST:PORT --protocol ipfix|v9|v5|sflow [--rate N] [--duration D | --count N]", `
Send realistic simulated flows (several subnets, common service ports,
IPv4 and IPv6, varied sizes) to a collector over UDP, then print exactly
what was sent: datagrams, flows, bytes and packets. NetFlow v5 carries
IPv4 only. sFlow sends one flow sample per simulated packet.

"flowaudit simulate access --help" simulates access logs instead, and
"flowaudit simulate scenario --help" replays the labelled attack scenario.`, stderr)
	target := fs.String("target", "127.0.0.1:2055", "collector UDP `address` (host:port); sFlow usually goes to port 6343")
	protocol := fs.String("protocol", "ipfix", "export `protocol`: ipfix, v9, v5 or sflow")
	rate := fs.Int("rate", 1000, "flows per second; 0 sends as fast as possible")
	duration := fs.Duration("duration", 10*time.Second, "stop after this long (0: no time limit; with --count and no --duration: none)")
	count := fs.Int("count", 0, "stop after exactly this many flows (0: no count limit); --duration then only applies when given")
	seed := fs.Int64("seed", 1, "random seed: the same seed sends the same flows")
	perDatagram := fs.Int("flows-per-datagram", 0, "flows per datagram (0: 30; sFlow: 10 samples)")
	sampling := fs.Uint("sampling-rate", 1, "announced 1-in-N sampling rate (counters are never scaled)")
	obsID := fs.Uint("observation-id", 0, "observation domain / source id / sFlow sub-agent")
	quiet := fs.Bool("quiet", false, "no progress lines, only the final totals")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	countOverridesDuration(fs, *count, duration)
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

// countOverridesDuration drops the default --duration when --count is
// given alone: "--count N" means N, not "N or 10 s, whichever is first".
func countOverridesDuration(fs *flag.FlagSet, count int, duration *time.Duration) {
	if count <= 0 {
		return
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "duration" })
	if !explicit {
		*duration = 0
	}
}

func rateText(r int) string {
	if r == 0 {
		return "full speed"
	}
	return strings.TrimSpace(fmt.Sprintf("%d flows/s", r))
}

func cmdSimulateAccess(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("simulate access", "--format sshd|nginx|k8s_audit|gateway|openvpn|radius|kerberos|windows|dhcp --target URL [--rate N] [--duration D | --count N]", `
Send realistic simulated access-log lines (logins that succeed and fail,
sessions that open and close, denied requests) to the access-log
collector, then print exactly what was sent, by outcome and action.
Targets: udp://HOST:PORT or tcp://HOST:PORT (syslog RFC 3164, tagged with
the format's program name) or http://HOST:PORT (POST /v1/access).
The identity sources (openvpn, radius, kerberos, windows, dhcp) open
sessions and leases that bind ten of the flow simulator's web hosts each
(10.1.0.10-19, 20-29, 30-39, 40-49, 50-59) and stop every fifth one.`, stderr)
	format := fs.String("format", "sshd", "log `format`: sshd, nginx, k8s_audit, gateway, openvpn, radius, kerberos, windows or dhcp")
	target := fs.String("target", "udp://127.0.0.1:5514", "collector `URL`: udp://, tcp:// (syslog) or http:// (POST /v1/access)")
	rate := fs.Int("rate", 100, "lines per second; 0 sends as fast as possible")
	duration := fs.Duration("duration", 10*time.Second, "stop after this long (0: no time limit; with --count and no --duration: none)")
	count := fs.Int("count", 0, "stop after exactly this many lines (0: no count limit); --duration then only applies when given")
	seed := fs.Int64("seed", 1, "random seed: the same seed sends the same lines")
	hostname := fs.String("hostname", "web-1", "syslog HOSTNAME of the simulated host")
	token := fs.String("token", "", "bearer `token` for an http:// target")
	quiet := fs.Bool("quiet", false, "no progress lines, only the final totals")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	countOverridesDuration(fs, *count, duration)
	f, err := simulate.ParseAccessFormat(*format)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit simulate access: --format: %v\n", err)
		return 2
	}
	if *duration == 0 && *count == 0 {
		fmt.Fprintln(stderr, "flowaudit simulate access: give --duration or --count (or both), otherwise it never stops")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg := simulate.AccessConfig{Target: *target, Format: f, Rate: *rate, Count: *count, Duration: *duration, Seed: *seed, Hostname: *hostname, Token: *token}
	start := time.Now()
	if !*quiet {
		fmt.Fprintf(stderr, "sending %s lines to %s...\n", f, *target)
		cfg.Progress = func(t simulate.AccessTotals) { fmt.Fprintf(stderr, "  %5.1fs  %s\n", time.Since(start).Seconds(), t) }
	}
	tot, err := simulate.RunAccess(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit simulate access: %v\n", err)
	}
	actions := make([]string, 0, len(tot.ByAction))
	for a, n := range tot.ByAction {
		actions = append(actions, fmt.Sprintf("%s:%d", a, n))
	}
	sort.Strings(actions)
	fmt.Fprintf(stdout, "sent format=%s target=%s lines=%d success=%d failure=%d denied=%d actions=%s\n",
		f, *target, tot.Lines, tot.ByOutcome["success"], tot.ByOutcome["failure"], tot.ByOutcome["denied"], strings.Join(actions, ","))
	if err != nil {
		return 1
	}
	return 0
}

func cmdSimulateScenario(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("simulate scenario", "[--flows HOST:PORT] [--syslog HOST:PORT] [--seed N]", `
Replay the labelled detection scenario: normal traffic (all allowed by
deploy/scenario-policy.yaml) plus one instance of each attack —
policy_violation, new_edge, address_scan, port_scan, volume_spike,
auth_bruteforce, unattributed_access, lateral_chain — as IPFIX flows and
RFC 5424 sshd syslog lines. Event time runs --time-scale times faster
than the wall clock (default: 20 minutes of traffic in 20 seconds). Prints
what was sent per label and the alerts the detectors should raise. For
the detectors to match, run flowaudit with deploy/scenario.yaml.`, stderr)
	flows := fs.String("flows", "127.0.0.1:2055", "collector NetFlow/IPFIX `address` (host:port)")
	syslog := fs.String("syslog", "127.0.0.1:5514", "collector syslog UDP `address` (host:port)")
	seed := fs.Int64("seed", 1, "random seed: the same seed sends the same scenario")
	scale := fs.Float64("time-scale", simulate.DefaultScenarioTimeScale, "event seconds per wall second")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	sc := simulate.NewScenario(simulate.ScenarioConfig{Seed: *seed, Start: time.Now(), TimeScale: *scale})
	fmt.Fprintf(stderr, "replaying %s of event time in %s...\n", sc.Duration, time.Duration(float64(sc.Duration) / *scale).Round(time.Second))
	tot, err := simulate.RunScenario(ctx, sc, *flows, *syslog, *scale)
	if err != nil {
		fmt.Fprintf(stderr, "flowaudit simulate scenario: %v\n", err)
		return 1
	}
	labels := make([]string, 0, len(tot.ByLabel))
	for l := range tot.ByLabel {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	fmt.Fprintf(stdout, "sent flows=%d lines=%d\n", tot.Flows, tot.Lines)
	for _, l := range labels {
		name := l
		if name == "" {
			name = "normal"
		}
		fmt.Fprintf(stdout, "  %-20s records=%-8d expected_alerts=%d\n", name, tot.ByLabel[l], sc.Expected[l])
	}
	return 0
}
