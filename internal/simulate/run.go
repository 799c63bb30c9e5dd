package simulate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// DefaultTemplateEvery is how often Run resends v9/IPFIX templates, in
// datagrams, when Config.TemplateEvery is 0.
const DefaultTemplateEvery = 20

// Config describes one simulation run. The zero value of every field but
// Target and Protocol is usable.
type Config struct {
	// Target is the collector's UDP address, host:port.
	Target string
	// Protocol is the export protocol.
	Protocol Protocol
	// Rate is the target rate in flows per second (sFlow: samples per
	// second); 0 sends as fast as possible. Pacing is per datagram against
	// the run's start time, so the average rate is exact and a late
	// datagram is caught up by sending the next ones without sleeping.
	Rate int
	// Duration stops the run after this long; 0 means no time limit.
	Duration time.Duration
	// Count stops the run after exactly this many flows; 0 means no count
	// limit. With neither Duration nor Count, Run stops when ctx is done.
	Count int
	// Seed seeds the Generator: the same seed sends the same flows.
	Seed int64
	// FlowsPerDatagram is the number of flows (sFlow: samples) per
	// datagram; 0 means 30 (sFlow: 10). At most 30 for v5 and 400 for the
	// others. v9/IPFIX datagrams of 30 flows are about 2-3 KB, above a
	// 1500-byte MTU: fine on loopback, lower it across a real network.
	FlowsPerDatagram int
	// SamplingRate is the 1-in-N sampling rate announced (see
	// EncoderOptions.SamplingRate); 0 means 1. Counters are never scaled,
	// so totals stay exact whatever the rate. v5 holds at most 16383.
	SamplingRate uint32
	// TemplateEvery is how often (in datagrams) v9/IPFIX templates and
	// sampling options are resent; 0 means DefaultTemplateEvery, a negative
	// value sends them only in the first datagram.
	TemplateEvery int
	// Source is an optional local address (host or host:port) to send
	// from; the sFlow agent address is the socket's local address.
	Source string
	// ObservationID is the exporter's observation domain (see
	// EncoderOptions.ObservationID).
	ObservationID uint32
	// Progress, when set, is called from Run's goroutine about once a
	// second with the totals so far. It must return quickly.
	Progress func(Totals)
}

// Totals is what a run sent, counted the way a decoder counts it: Flows
// are flow records (sFlow: flow samples), Bytes and Packets are the sums
// of the exported counters (sFlow: frame_length, and 1 per sample).
// Only datagrams the socket accepted are counted.
type Totals struct {
	Datagrams uint64
	Flows     uint64
	Bytes     uint64
	Packets   uint64
}

func (t Totals) String() string {
	return fmt.Sprintf("%d datagrams, %d flows, %d bytes, %d packets", t.Datagrams, t.Flows, t.Bytes, t.Packets)
}

// validate checks cfg and fills defaults; errors name the offending field.
func (cfg *Config) validate() error {
	if cfg.Target == "" {
		return errors.New("simulate: Target is empty: want host:port")
	}
	if !cfg.Protocol.valid() {
		_, err := ParseProtocol(string(cfg.Protocol))
		return fmt.Errorf("simulate: Protocol: %w", err)
	}
	if cfg.Rate < 0 {
		return fmt.Errorf("simulate: Rate %d is negative", cfg.Rate)
	}
	if cfg.Duration < 0 {
		return fmt.Errorf("simulate: Duration %s is negative", cfg.Duration)
	}
	if cfg.Count < 0 {
		return fmt.Errorf("simulate: Count %d is negative", cfg.Count)
	}
	if cfg.FlowsPerDatagram == 0 {
		cfg.FlowsPerDatagram = defaultFlowsPerDatagram(cfg.Protocol)
	}
	if m := maxFlowsPerDatagram(cfg.Protocol); cfg.FlowsPerDatagram < 0 || cfg.FlowsPerDatagram > m {
		return fmt.Errorf("simulate: FlowsPerDatagram %d out of range for %s: want 1-%d", cfg.FlowsPerDatagram, cfg.Protocol, m)
	}
	if cfg.SamplingRate == 0 {
		cfg.SamplingRate = 1
	}
	if cfg.Protocol == ProtocolNetFlowV5 && cfg.SamplingRate > v5MaxSamplingInterval {
		return fmt.Errorf("simulate: SamplingRate %d too large for v5: at most %d", cfg.SamplingRate, v5MaxSamplingInterval)
	}
	switch {
	case cfg.TemplateEvery == 0:
		cfg.TemplateEvery = DefaultTemplateEvery
	case cfg.TemplateEvery < 0:
		cfg.TemplateEvery = 0
	}
	return nil
}

// Run sends simulated flows to cfg.Target from one UDP socket until Count
// flows are sent, Duration elapses or ctx is done, whichever comes first,
// and returns exactly what was sent. When ctx is done Run stops between
// datagrams and returns the totals with ctx's error; a send error stops
// the run and is returned with the totals of the datagrams sent before it.
func Run(ctx context.Context, cfg Config) (Totals, error) {
	var tot Totals
	if err := cfg.validate(); err != nil {
		return tot, err
	}
	raddr, err := net.ResolveUDPAddr("udp", cfg.Target)
	if err != nil {
		return tot, fmt.Errorf("simulate: Target %q: %w", cfg.Target, err)
	}
	var laddr *net.UDPAddr
	if cfg.Source != "" {
		src := cfg.Source
		if _, _, err := net.SplitHostPort(src); err != nil {
			src = net.JoinHostPort(src, "0")
		}
		if laddr, err = net.ResolveUDPAddr("udp", src); err != nil {
			return tot, fmt.Errorf("simulate: Source %q: %w", cfg.Source, err)
		}
	}
	conn, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		return tot, fmt.Errorf("simulate: unable to open UDP socket to %s: %w", cfg.Target, err)
	}
	defer conn.Close()
	_ = conn.SetWriteBuffer(4 << 20) // best effort: fewer ENOBUFS at high rates

	agent := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		if a, ok := netip.AddrFromSlice(la.IP); ok && !a.IsUnspecified() {
			agent = a.Unmap()
		}
	}
	enc := NewEncoder(cfg.Protocol, EncoderOptions{
		ObservationID: cfg.ObservationID,
		SamplingRate:  cfg.SamplingRate,
		TemplateEvery: cfg.TemplateEvery,
		AgentAddress:  agent,
	})
	gen := NewGenerator(cfg.Seed, ForProtocol(cfg.Protocol))

	flows := make([]schemas.Flow, cfg.FlowsPerDatagram)
	buf := make([]byte, 0, 64<<10)
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	nextProgress := start.Add(time.Second)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()

	for {
		if err := ctx.Err(); err != nil {
			return tot, err
		}
		n := cfg.FlowsPerDatagram
		if cfg.Count > 0 {
			n = min(n, cfg.Count-int(tot.Flows))
			if n <= 0 {
				return tot, nil
			}
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			return tot, nil
		}
		if cfg.Progress != nil && !now.Before(nextProgress) {
			cfg.Progress(tot)
			nextProgress = now.Add(time.Second)
		}

		// Pace: this datagram is due when the flows already sent would
		// have taken exactly their share of time at Rate.
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(tot.Flows) / float64(cfg.Rate) * float64(time.Second)))
			if !deadline.IsZero() && due.After(deadline) {
				due = deadline
			}
			if wait := due.Sub(now); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return tot, ctx.Err()
				case <-timer.C:
				}
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return tot, nil
				}
			}
		}

		batch := flows[:n]
		for i := range batch {
			gen.Next(&batch[i])
		}
		buf = enc.Encode(buf[:0], batch)
		if err := write(conn, buf); err != nil {
			return tot, fmt.Errorf("simulate: sending datagram %d to %s: %w", tot.Datagrams+1, cfg.Target, err)
		}
		tot.Datagrams++
		for i := range batch {
			b, p := sampledCounters(cfg.Protocol, &batch[i])
			tot.Flows++
			tot.Bytes += b
			tot.Packets += p
		}
	}
}

// write sends one datagram. On a connected UDP socket Linux reports an
// earlier datagram's ICMP port-unreachable on a later send, and that send
// is not performed, so ECONNREFUSED is retried once: the simulator keeps
// going while no collector listens yet. ENOBUFS (full interface queue) is
// retried after a short pause.
func write(conn *net.UDPConn, b []byte) error {
	var err error
	for attempt := range 5 {
		if _, err = conn.Write(b); err == nil {
			return nil
		}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED) && attempt == 0:
		case errors.Is(err, syscall.ENOBUFS):
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return err
}
