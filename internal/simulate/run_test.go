package simulate

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// collector is a UDP listener that decodes what it receives with goflow2
// and counts it the way Totals does.
type collector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  Totals
	err  error
	done chan struct{}
}

func startCollector(t *testing.T, p Protocol) *collector {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	c := &collector{conn: conn, done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-c.done })
	dec := newGoflowDecoder(p)
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			d, err := dec.decode(buf[:n])
			c.mu.Lock()
			if err != nil && c.err == nil {
				c.err = err
			}
			c.got.Datagrams++
			for _, f := range d.Flows {
				c.got.Flows++
				c.got.Bytes += f.Bytes
				c.got.Packets += f.Packets
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) addr() string { return c.conn.LocalAddr().String() }

// wait returns what was received once want.Datagrams arrived or 5 s passed.
func (c *collector) wait(want Totals) (Totals, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got, err := c.got, c.err
		c.mu.Unlock()
		if got.Datagrams >= want.Datagrams || time.Now().After(deadline) {
			return got, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunCountDeliversExactTotals(t *testing.T) {
	for _, p := range Protocols {
		t.Run(string(p), func(t *testing.T) {
			c := startCollector(t, p)
			tot, err := Run(context.Background(), Config{
				Target: c.addr(), Protocol: p, Count: 1000, Rate: 50000, Seed: 5,
				SamplingRate: 1, ObservationID: 7,
			})
			if err != nil {
				t.Fatal(err)
			}
			if tot.Flows != 1000 || tot.Bytes == 0 || tot.Packets < 1000 {
				t.Fatalf("Totals %v, want 1000 flows", tot)
			}
			perDatagram := uint64(defaultFlowsPerDatagram(p))
			if want := (1000 + perDatagram - 1) / perDatagram; tot.Datagrams != want {
				t.Errorf("%d datagrams, want %d", tot.Datagrams, want)
			}
			got, err := c.wait(tot)
			if err != nil {
				t.Fatalf("collector decode: %v", err)
			}
			if diff := cmp.Diff(got, tot); diff != "" {
				t.Errorf("received (-got) vs Totals (+want):\n%s", diff)
			}
		})
	}
}

func TestRunDurationAndProgress(t *testing.T) {
	c := startCollector(t, ProtocolIPFIX)
	var calls int
	tot, err := Run(context.Background(), Config{
		Target: c.addr(), Protocol: ProtocolIPFIX, Rate: 2000, Duration: 1200 * time.Millisecond,
		Progress: func(Totals) { calls++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Counts, not timings: 1.2 s at 2000 flows/s is about 2400 flows; a
	// loaded machine sends fewer, never more.
	if tot.Flows == 0 || tot.Flows > 2400+30 {
		t.Errorf("sent %d flows in 1.2 s at 2000/s", tot.Flows)
	}
	if calls == 0 {
		t.Error("Progress never called in a 1.2 s run")
	}
	got, err := c.wait(tot)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, tot); diff != "" {
		t.Errorf("received (-got) vs Totals (+want):\n%s", diff)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	c := startCollector(t, ProtocolNetFlowV9)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	tot, err := Run(ctx, Config{Target: c.addr(), Protocol: ProtocolNetFlowV9, Rate: 1000})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	got, _ := c.wait(tot)
	if diff := cmp.Diff(got, tot); diff != "" {
		t.Errorf("received (-got) vs Totals (+want):\n%s", diff)
	}
}

func TestParseProtocol(t *testing.T) {
	for in, want := range map[string]Protocol{
		"v5": ProtocolNetFlowV5, "NetFlow5": ProtocolNetFlowV5, "v9": ProtocolNetFlowV9,
		"ipfix": ProtocolIPFIX, "V10": ProtocolIPFIX, "sflow": ProtocolSFlow, " sflow5 ": ProtocolSFlow,
	} {
		got, err := ParseProtocol(in)
		if err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "v7", "netflow", "sflow4"} {
		_, err := ParseProtocol(in)
		if err == nil || !strings.Contains(err.Error(), "v5, v9, ipfix, sflow") || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseProtocol(%q) error %v, want one naming the input and the valid values", in, err)
		}
	}
}

func TestRunConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Protocol: ProtocolIPFIX}, "Target"},
		{Config{Target: "127.0.0.1:1", Protocol: "v7"}, `unknown protocol "v7"`},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolIPFIX, Rate: -1}, "Rate"},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolIPFIX, Count: -1}, "Count"},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolIPFIX, Duration: -time.Second}, "Duration"},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolNetFlowV5, FlowsPerDatagram: 31}, "FlowsPerDatagram 31 out of range for v5: want 1-30"},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolNetFlowV5, SamplingRate: 20000}, "SamplingRate 20000"},
		{Config{Target: "no-port", Protocol: ProtocolIPFIX, Count: 1}, `Target "no-port"`},
		{Config{Target: "127.0.0.1:1", Protocol: ProtocolIPFIX, Count: 1, Source: "not an address"}, `Source "not an address"`},
	} {
		_, err := Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
}
