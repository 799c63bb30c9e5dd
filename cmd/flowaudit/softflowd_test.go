package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/internal/testutil/pcapgen"
)

var (
	softflowdExported = regexp.MustCompile(`Flows exported: (\d+) \((\d+) records\) in (\d+) packets`)
	softflowdTCP      = regexp.MustCompile(`tcp \(6\):\s+(\d+)\s+(\d+)`)
)

// TestSoftflowdCrossCheck has an exporter nobody here wrote, softflowd,
// export a capture of 20,000 distinct TCP flows as one burst in IPFIX, v9
// and v5; ClickHouse must hold exactly softflowd's own octet and packet
// totals for each: zero loss with the machine's default sysctls.
func TestSoftflowdCrossCheck(t *testing.T) {
	bin, err := exec.LookPath("softflowd")
	if err != nil {
		if testutil.RequireExternal() {
			t.Fatal("softflowd not installed: apt-get install softflowd")
		}
		t.Skip("softflowd not installed (apt-get install softflowd)")
	}
	ch := testutil.StartClickHouse(t)
	p := newPipeline(t, ch, pipelineOptions{})
	p.Start()
	dir := t.TempDir()
	for i, tc := range []struct {
		version   string
		flowType  string
		ipv6Share float64
	}{
		{"10", "ipfix", 0.2},
		{"9", "netflow_v9", 0.2},
		{"5", "netflow_v5", 0}, // v5 carries IPv4 only
	} {
		t.Run(tc.flowType, func(t *testing.T) {
			// softflowd changes directory before opening the capture: the
			// path must be absolute.
			pcap := filepath.Join(dir, tc.flowType+".pcap")
			sum, err := pcapgen.WriteFile(pcap, pcapgen.Options{Flows: 20000, Seed: int64(i + 1), IPv6Share: tc.ipv6Share,
				Start: time.Now().Add(-time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			// Not -c: with -r it re-enables the control socket and
			// softflowd 1.1.0 then waits forever in accept().
			out, err := exec.Command(bin, "-r", pcap, "-n", p.NetFlowAddr, "-v", tc.version, "-m", "65536", "-d",
				"-p", filepath.Join(dir, "softflowd.pid")).CombinedOutput()
			if err != nil {
				t.Fatalf("softflowd: %v\n%s", err, out)
			}
			exp, tcp := softflowdExported.FindSubmatch(out), softflowdTCP.FindSubmatch(out)
			if exp == nil || tcp == nil {
				t.Fatalf("softflowd printed no statistics:\n%s", out)
			}
			num := func(b []byte) uint64 { n, _ := strconv.ParseUint(string(b), 10, 64); return n }
			want := typeTotals{Flows: num(exp[1]), Bytes: num(tcp[1]), Packets: num(tcp[2])}
			if want.Flows != sum.Flows || want.Bytes != sum.Bytes || want.Packets != sum.Packets {
				t.Fatalf("softflowd's statistics %+v differ from the capture's %+v:\n%s", want, sum, out)
			}
			got := waitCount(t, ch, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE flow_type = '"+tc.flowType+"'", want.Flows, 60*time.Second)
			if got != want.Flows {
				t.Errorf("rows = %d, want %d (kernel drops: %v, lost flows: %v)", got, want.Flows,
					p.Metric("flowaudit_ingest_socket_drops"), p.Metric("flowaudit_ingest_lost_flows_total"))
			}
			if diff := cmp.Diff(flowTotals(t, ch)[tc.flowType], want); diff != "" {
				t.Errorf("ClickHouse vs softflowd (-got +want):\n%s", diff)
			}
			t.Logf("after -v %s: lost datagrams %v, lost flows %v", tc.version, p.Metric("flowaudit_ingest_lost_datagrams_total"), p.Metric("flowaudit_ingest_lost_flows_total"))
			t.Logf("softflowd -v %s: %d flows, %d octets, %d packets; ClickHouse agrees", tc.version, want.Flows, want.Bytes, want.Packets)
		})
	}
	if got := p.Metric("flowaudit_ingest_lost_datagrams_total") + p.Metric("flowaudit_ingest_lost_flows_total"); got != 0 {
		t.Errorf("sequence tracking reports %v lost, want 0", got)
	}
}
