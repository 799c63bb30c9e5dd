package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/flowaudit/flowaudit/internal/kafka"
	"github.com/flowaudit/flowaudit/internal/testutil"
	"github.com/flowaudit/flowaudit/schemas"
)

// vmHWM returns a process's peak resident set (VmHWM) in bytes.
func vmHWM(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// TestAccessIntakeBounds is issue 10's HTTP intake attack: 100 concurrent
// 9 MB requests to "flowaudit collect" (its own process, so its memory is
// measured alone; the broker runs in the test) while a UDP syslog stream
// of 4,000 lines arrives. The collector's peak RSS stays under the bound
// the README gives for http_max_concurrent × http_max_body, every request
// is answered 200 with exact counts, and not one UDP line is lost.
func TestAccessIntakeBounds(t *testing.T) {
	const (
		requests  = 100
		bodyBytes = 9 << 20
		udpLines  = 4000
		// README, "Memory": baseline + http_max_concurrent × 2 ×
		// http_max_body + the producers' buffers (64 + 32 MiB).
		maxConcurrent = 8
		maxBody       = 10 << 20
		bound         = 64<<20 + maxConcurrent*2*maxBody + 96<<20
	)
	kcfg := kafka.DefaultConfiguration()
	accessTopic := kcfg.Topic(kafka.TopicAccess)
	_, brokerAddr := testutil.StartBroker(t, 2, accessTopic, kcfg.Topic(kafka.TopicFlows), kcfg.Topic(kafka.TopicDeadLetter))

	dir := t.TempDir()
	udpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "udp"))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	cfg := fmt.Sprintf(`data_dir: %s
kafka:
  brokers: [%s]
ingest:
  flows:
    listen: ["netflow://127.0.0.1:%d"]
    readers: 1
  access:
    syslog_listen: ["udp://%s"]
    http_listen: %s
    http_max_concurrent: %d
    http_max_body: %d
metrics:
  listen: %s
`, filepath.Join(dir, "var"), brokerAddr, freePort(t, "udp"), udpAddr, httpAddr, maxConcurrent, maxBody, metricsAddr)
	config := filepath.Join(dir, "flowaudit.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(binary, "collect", "--config", config)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("flowaudit collect logs:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; {
		if resp, err := http.Get("http://" + metricsAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("collect not ready after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	baseline := vmHWM(t, cmd.Process.Pid)

	// One 9 MB body of sshd lines: noise the parser counts as ignored
	// ("Connection from", LogLevel VERBOSE) and every 1,000th line a
	// login, so the broker is not what the test measures.
	var body bytes.Buffer
	lines, logins := 0, 0
	for body.Len() < bodyBytes-200 {
		lines++
		if lines%1000 == 0 {
			logins++
			fmt.Fprintf(&body, "Accepted password for http-user from 10.5.%d.%d port 40000 ssh2\n", logins/250, logins%250)
		} else {
			fmt.Fprintf(&body, "Connection from 10.6.%d.%d port %d on 10.0.0.1 port 22 rdomain \"\"\n", lines%250, lines/250%250, 1024+lines%60000)
		}
	}
	payload := body.Bytes()

	var wg sync.WaitGroup
	type answer struct {
		code                       int
		accepted, ignored, rejects int
		err                        error
	}
	answers := make(chan answer, requests)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: requests}, Timeout: 5 * time.Minute}
	for range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; ; attempt++ {
				res, err := client.Post("http://"+httpAddr+"/v1/access?format=sshd", "text/plain", bytes.NewReader(payload))
				if err != nil {
					answers <- answer{err: err}
					return
				}
				var r struct{ Accepted, Rejected, Ignored int }
				_ = json.NewDecoder(res.Body).Decode(&r)
				res.Body.Close()
				if res.StatusCode == http.StatusServiceUnavailable && attempt < 20 {
					time.Sleep(time.Second) // Retry-After: 1
					continue
				}
				answers <- answer{code: res.StatusCode, accepted: r.Accepted, ignored: r.Ignored, rejects: r.Rejected}
				return
			}
		}()
	}

	// Meanwhile, a UDP syslog stream, one line per millisecond.
	udp, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	start := time.Now()
	for i := range udpLines {
		msg := fmt.Sprintf("<38>1 %s bastion sshd 1 - - Accepted publickey for udp-%04d from 10.7.%d.%d port 5000 ssh2",
			time.Now().UTC().Format(time.RFC3339Nano), i, i/250, i%250)
		if _, err := udp.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	udpDone := time.Since(start)
	wg.Wait()
	elapsed := time.Since(start)
	close(answers)
	for a := range answers {
		if a.err != nil || a.code != http.StatusOK || a.accepted != logins || a.ignored != lines-logins || a.rejects != 0 {
			t.Errorf("request: %d %+v (err %v); want 200 with %d accepted and %d ignored", a.code, a, a.err, logins, lines-logins)
		}
	}
	peak := vmHWM(t, cmd.Process.Pid)

	// Count the UDP lines on the access topic: every one, exactly once.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr), kgo.ConsumeTopics(accessTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	seen := map[string]int{}
	httpEvents := 0
	for deadline := time.Now().Add(60 * time.Second); (len(seen) < udpLines || httpEvents < requests*logins) && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := consumer.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(rec *kgo.Record) {
			var ev schemas.AccessEvent
			if schemas.UnmarshalAccessEvent(rec.Value, &ev) != nil {
				return
			}
			if strings.HasPrefix(ev.User, "udp-") {
				seen[ev.User]++
			} else {
				httpEvents++
			}
		})
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	metrics := scrape(t, metricsAddr)
	t.Logf("%d requests of %d bytes (%d lines, %d logins each) in %s; %d UDP lines sent in %s",
		requests, len(payload), lines, logins, elapsed.Round(time.Millisecond), udpLines, udpDone.Round(time.Millisecond))
	t.Logf("collect VmHWM: %d MiB at start, %d MiB peak; bound %d MiB", baseline>>20, peak>>20, bound>>20)
	t.Logf("UDP lines on the topic: %d distinct, %d duplicates; HTTP events %d; kernel drops %s; UDP receive buffer %s",
		len(seen), dups, httpEvents, metrics["flowaudit_access_udp_socket_drops_total"], metrics["flowaudit_access_udp_receive_buffer_bytes"])
	if len(seen) != udpLines || dups != 0 {
		t.Errorf("UDP syslog lines on the topic: %d distinct and %d duplicates, want all %d once", len(seen), dups, udpLines)
	}
	if httpEvents != requests*logins {
		t.Errorf("HTTP events on the topic: %d, want %d", httpEvents, requests*logins)
	}
	if peak > bound {
		t.Errorf("collect peak RSS %d MiB, above the documented bound %d MiB", peak>>20, bound>>20)
	}
	if d := metrics["flowaudit_access_udp_socket_drops_total"]; d != "0" {
		t.Errorf("kernel drops on the UDP syslog socket: %s, want 0", d)
	}
}

// scrape returns the value of every unlabelled-or-single sample by
// family name (the last one seen).
func scrape(t *testing.T, addr string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		f := strings.Fields(line)
		out[name] = f[len(f)-1]
	}
	return out
}
