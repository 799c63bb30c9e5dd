package access_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTPSlowBodyAndSlots holds the only slot (http_max_concurrent 1)
// with a body that stops arriving: a second request waits for the slot,
// the slow one is answered 408 once http_read_idle_timeout passes without
// data, and the waiting one then goes through.
func TestHTTPSlowBodyAndSlots(t *testing.T) {
	h := newHarness(t)
	cfg := testConfiguration()
	cfg.SyslogListen = nil
	cfg.HTTPMaxConcurrent = 1
	cfg.HTTPReadIdleTimeout = 500 * time.Millisecond
	c := h.start(cfg)

	slow, err := net.Dial("tcp", c.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	line := `{"user":"slow","src_addr":"10.0.0.1","action":"login","outcome":"success"}` + "\n"
	fmt.Fprintf(slow, "POST /v1/access HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n%s", line)
	waitMetric(t, h.r, "flowaudit_access_http_in_flight", nil, 1)

	done := make(chan httpResult, 1)
	go func() {
		done <- post(t, "http://"+c.HTTPAddr()+"/v1/access", "", "application/x-ndjson",
			`{"user":"waiting","src_addr":"10.0.0.2","action":"login","outcome":"success"}`+"\n")
	}()
	waitMetric(t, h.r, "flowaudit_access_http_waiting", nil, 1)

	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("slow request: %v, want a 408 answer", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow request: %d, want 408", res.StatusCode)
	}
	if got := <-done; got.code != http.StatusOK || got.resp.Accepted != 1 {
		t.Errorf("waiting request: %d %+v, want 200 with 1 accepted", got.code, got.resp)
	}
	// The slow body's complete first line was taken before the cut.
	h.wait(2, 0)
	h.settle()
	if got := users(h.events); len(got) != 2 || got[0] != "slow" || got[1] != "waiting" {
		t.Errorf("users %v, want [slow waiting]", got)
	}
}
