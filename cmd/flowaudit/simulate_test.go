package main

import (
	"flag"
	"io"
	"net"
	"regexp"
	"testing"
	"time"
)

func TestCountOverridesDuration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{}, 10 * time.Second},
		{[]string{"--count", "500"}, 0},
		{[]string{"--count", "500", "--duration", "2s"}, 2 * time.Second},
		{[]string{"--duration", "3s"}, 3 * time.Second},
		{[]string{"--count", "0"}, 10 * time.Second},
	} {
		fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		duration := fs.Duration("duration", 10*time.Second, "")
		count := fs.Int("count", 0, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		countOverridesDuration(fs, *count, duration)
		if *duration != tc.want {
			t.Errorf("%v: duration = %s, want %s", tc.args, *duration, tc.want)
		}
	}
}

// TestSimulateCountBeyondDefaultDuration sends more flows than the
// default --duration of 10 s allows at the given rate: --count alone wins.
func TestSimulateCountBeyondDefaultDuration(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	res := runCLI(t, "simulate", "--count", "10500", "--rate", "1000", "--target", pc.LocalAddr().String(), "--protocol", "v9", "--quiet")
	if res.code != 0 {
		t.Fatalf("simulate exited %d; stderr:\n%s", res.code, res.stderr)
	}
	if m := regexp.MustCompile(` flows=(\d+) `).FindStringSubmatch(res.stdout); m == nil || m[1] != "10500" {
		t.Errorf("simulate --count 10500 --rate 1000 printed %q, want flows=10500", res.stdout)
	}
}
