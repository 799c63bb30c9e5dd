package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowaudit/flowaudit/ingest/flow/decoder"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// cliResult is one run of the flowaudit binary.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary built by TestMain in a fresh working directory
// (stages create data_dir relative to it) and returns what it printed and
// its exit code.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running flowaudit %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

var commandNames = []string{"run", "collect", "enrich", "detect", "sink", "archive", "broker", "migrate", "policy", "audit", "report", "probe", "console", "simulate", "version"}

func TestCLIHelpListsEveryCommand(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "help"} {
		res := runCLI(t, arg)
		if res.code != 0 {
			t.Errorf("flowaudit %s exited %d, want 0; stderr:\n%s", arg, res.code, res.stderr)
		}
		if !strings.Contains(res.stdout, "Usage: flowaudit COMMAND") {
			t.Errorf("flowaudit %s stdout has no usage line:\n%s", arg, res.stdout)
		}
		for _, name := range commandNames {
			if !regexp.MustCompile(`(?m)^  ` + name + ` +\S`).MatchString(res.stdout) {
				t.Errorf("flowaudit %s does not list command %q with a summary:\n%s", arg, name, res.stdout)
			}
		}
	}
	if got, want := len(commands()), len(commandNames); got != want {
		t.Errorf("commands() has %d commands, the test knows %d: add the new one to commandNames", got, want)
	}
}

func TestCLINoArgumentsIsUsageError(t *testing.T) {
	res := runCLI(t)
	if res.code != 2 {
		t.Errorf("flowaudit with no command exited %d, want 2", res.code)
	}
	if !strings.Contains(res.stderr, "Usage: flowaudit COMMAND") || res.stdout != "" {
		t.Errorf("flowaudit with no command: stdout %q, stderr %q; want usage on stderr only", res.stdout, res.stderr)
	}
}

func TestCLICommandHelp(t *testing.T) {
	for _, name := range commandNames {
		t.Run(name, func(t *testing.T) {
			res := runCLI(t, name, "--help")
			if res.code != 0 {
				t.Errorf("flowaudit %s --help exited %d, want 0; stderr:\n%s", name, res.code, res.stderr)
			}
			if !strings.HasPrefix(res.stderr, "Usage: flowaudit "+name) {
				t.Errorf("flowaudit %s --help does not start with its usage line:\n%s", name, res.stderr)
			}
			if name != "version" && name != "policy" && name != "audit" && !strings.Contains(res.stderr, "Flags:\n  -") {
				t.Errorf("flowaudit %s --help lists no flags:\n%s", name, res.stderr)
			}
			switch name {
			case "run", "collect", "sink", "broker", "migrate":
				for _, flag := range []string{"-config file", "-check"} {
					if !strings.Contains(res.stderr, flag) {
						t.Errorf("flowaudit %s --help does not document %s:\n%s", name, flag, res.stderr)
					}
				}
			case "simulate":
				for _, flag := range []string{"-target", "-protocol", "-rate", "-count", "-duration", "-quiet"} {
					if !strings.Contains(res.stderr, flag) {
						t.Errorf("flowaudit simulate --help does not document %s:\n%s", flag, res.stderr)
					}
				}
			}
		})
	}
}

func TestCLIUnknownCommand(t *testing.T) {
	res := runCLI(t, "frobnicate")
	if res.code != 2 {
		t.Errorf("flowaudit frobnicate exited %d, want 2", res.code)
	}
	if !strings.Contains(res.stderr, `unknown command "frobnicate"`) || !strings.Contains(res.stderr, "Usage: flowaudit COMMAND") {
		t.Errorf("flowaudit frobnicate stderr does not name the command and show usage:\n%s", res.stderr)
	}
}

func TestCLIUnknownFlagAndArgument(t *testing.T) {
	for _, args := range [][]string{{"run", "--nope"}, {"run", "extra"}, {"version", "extra"}} {
		res := runCLI(t, args...)
		if res.code != 2 {
			t.Errorf("flowaudit %s exited %d, want 2; stderr:\n%s", strings.Join(args, " "), res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, "Usage: flowaudit "+args[0]) {
			t.Errorf("flowaudit %s does not print the usage:\n%s", strings.Join(args, " "), res.stderr)
		}
	}
}

func TestCLICheckDefaults(t *testing.T) {
	for _, name := range []string{"run", "collect", "sink", "broker", "migrate"} {
		res := runCLI(t, name, "--check")
		if res.code != 0 || res.stdout != "configuration OK\n" {
			t.Errorf("flowaudit %s --check = exit %d, stdout %q; want 0, \"configuration OK\\n\"; stderr:\n%s", name, res.code, res.stdout, res.stderr)
		}
	}
}

func TestCLICheckUnknownKey(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("kafka:\n  bokers: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "run", "--check", "--config", cfg)
	if res.code != 1 {
		t.Errorf("run --check with an unknown key exited %d, want 1", res.code)
	}
	for _, want := range []string{"kafka.bokers", "line 2", "unknown key", "brokers"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, res.stderr)
		}
	}
	if strings.Contains(res.stdout, "configuration OK") {
		t.Errorf("stdout says OK for an invalid configuration: %q", res.stdout)
	}
}

func TestCLICheckInvalidValueAndMissingFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("ingest:\n  flows:\n    listen: [\"udp://0.0.0.0:2055\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "collect", "--check", "--config", cfg)
	if res.code != 1 || !strings.Contains(res.stderr, "ingest.flows.listen[0]") {
		t.Errorf("collect --check with a bad listener = exit %d, stderr:\n%s\nwant 1 and the key ingest.flows.listen[0]", res.code, res.stderr)
	}
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	res = runCLI(t, "run", "--check", "--config", missing)
	if res.code != 1 || !strings.Contains(res.stderr, "absent.yaml") {
		t.Errorf("run --check with a missing file = exit %d, stderr:\n%s\nwant 1 naming the file", res.code, res.stderr)
	}
}

func TestCLISimulateBadProtocol(t *testing.T) {
	res := runCLI(t, "simulate", "--protocol", "nope", "--count", "1")
	if res.code != 2 {
		t.Errorf("simulate --protocol nope exited %d, want 2", res.code)
	}
	for _, want := range []string{"--protocol", `"nope"`, "v5", "v9", "ipfix", "sflow"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, res.stderr)
		}
	}
}

func TestCLISimulateNeedsALimit(t *testing.T) {
	res := runCLI(t, "simulate", "--duration", "0")
	if res.code != 2 || !strings.Contains(res.stderr, "--duration or --count") {
		t.Errorf("simulate --duration 0 = exit %d, stderr %q; want 2 asking for --duration or --count", res.code, res.stderr)
	}
}

func TestCLIVersion(t *testing.T) {
	res := runCLI(t, "version")
	if res.code != 0 {
		t.Errorf("version exited %d, want 0", res.code)
	}
	if !strings.HasPrefix(res.stdout, "flowaudit ") || !strings.Contains(res.stdout, "go1.") {
		t.Errorf("version printed %q, want \"flowaudit VERSION goX\"", res.stdout)
	}
}

var sentRE = regexp.MustCompile(`^sent protocol=v9 target=(\S+) datagrams=(\d+) flows=(\d+) bytes=(\d+) packets=(\d+) seconds=\S+ flows_per_s=\d+\n$`)

func TestSimulateCommand(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)

	type received struct {
		datagrams, flows, bytes, packets uint64
		errs                             []error
	}
	done := make(chan received, 1)
	var senderDone atomic.Bool
	go func() {
		var r received
		dec := decoder.New()
		var batch schemas.FlowBatch
		buf := make([]byte, 65536)
		for {
			// Poll, so that once the simulator has exited an empty
			// socket ends the count.
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) && !senderDone.Load() {
				continue
			}
			if err != nil {
				done <- r
				return
			}
			r.datagrams++
			if err := dec.DecodeNetFlow(schemas.AddrFromNetip(from.Addr()), from.Port(), 1, buf[:n], &batch); err != nil {
				r.errs = append(r.errs, err)
			}
			if batch.Type != schemas.FlowTypeNetFlowV9 {
				r.errs = append(r.errs, errors.New("datagram of type "+batch.Type.String()+", want netflow_v9"))
			}
			for _, f := range batch.Flows {
				r.flows++
				r.bytes += f.Bytes
				r.packets += f.Packets
			}
		}
	}()

	target := conn.LocalAddr().String()
	res := runCLI(t, "simulate", "--count", "500", "--rate", "0", "--target", target, "--protocol", "v9", "--quiet")
	if res.code != 0 {
		t.Fatalf("simulate exited %d; stderr:\n%s", res.code, res.stderr)
	}
	if res.stderr != "" {
		t.Errorf("simulate --quiet wrote to stderr: %q", res.stderr)
	}
	m := sentRE.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("simulate printed %q, want one line matching %s", res.stdout, sentRE)
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if m[1] != target {
		t.Errorf("printed target=%s, want %s", m[1], target)
	}
	datagrams, flows, bytesSent, packets := num(m[2]), num(m[3]), num(m[4]), num(m[5])
	if flows != 500 {
		t.Errorf("printed flows=%d, want 500", flows)
	}
	if datagrams != 17 { // 16 datagrams of 30 flows and one of 20
		t.Errorf("printed datagrams=%d, want 17", datagrams)
	}

	// Every datagram is in the socket buffer once the simulator exited.
	senderDone.Store(true)
	r := <-done
	if r.datagrams != datagrams {
		t.Errorf("listener received %d datagrams, simulate printed datagrams=%d", r.datagrams, datagrams)
	}
	if len(r.errs) > 0 {
		t.Errorf("%d received datagrams did not decode as NetFlow v9; first: %v", len(r.errs), r.errs[0])
	}
	if r.flows != flows || r.bytes != bytesSent || r.packets != packets {
		t.Errorf("listener decoded flows=%d bytes=%d packets=%d, simulate printed flows=%d bytes=%d packets=%d",
			r.flows, r.bytes, r.packets, flows, bytesSent, packets)
	}
}

// TestCLIMigrate runs "flowaudit migrate" twice against a real server:
// it creates the database, tables and views, then finds nothing to do.
func TestCLIMigrate(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	cfg := filepath.Join(t.TempDir(), "flowaudit.yaml")
	if err := os.WriteFile(cfg, []byte("clickhouse:\n  addr: "+ch.Addr+"\n  database: audit_test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		res := runCLI(t, "migrate", "--config", cfg)
		if res.code != 0 || !strings.Contains(res.stdout, "database audit_test is up to date on ClickHouse 18.16") {
			t.Fatalf("migrate #%d: exit %d, stdout %q, stderr:\n%s", i+1, res.code, res.stdout, res.stderr)
		}
	}
	got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM system.tables WHERE database = 'audit_test'")
	// Every table of the description, and a materialized view per table
	// filled by one.
	want := uint64(len(schemas.Tables()))
	for _, table := range schemas.Tables() {
		if table.View != "" {
			want++
		}
	}
	if got != want {
		t.Errorf("tables in audit_test = %d, want %d", got, want)
	}
}
