package simulate

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/schemas"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// fixedClock returns a clock stuck at t.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// encodeStream generates n datagrams of perDatagram flows and returns the
// datagrams and, per datagram, the flows put in it.
func encodeStream(p Protocol, opts EncoderOptions, n, perDatagram int) ([][]byte, [][]schemas.Flow) {
	gen := NewGenerator(42, WithClock(fixedClock(testNow)), ForProtocol(p))
	enc := NewEncoder(p, opts)
	var datagrams [][]byte
	var sent [][]schemas.Flow
	for range n {
		flows := make([]schemas.Flow, perDatagram)
		for i := range flows {
			gen.Next(&flows[i])
		}
		datagrams = append(datagrams, enc.Encode(nil, flows))
		sent = append(sent, flows)
	}
	return datagrams, sent
}

func TestEncodersDecodeWithGoflow2(t *testing.T) {
	for _, tc := range []struct {
		p             Protocol
		samplingRate  uint32
		templateEvery int
	}{
		{ProtocolNetFlowV5, 1, 0},
		{ProtocolNetFlowV5, 1000, 0},
		{ProtocolNetFlowV9, 1, 20},
		{ProtocolNetFlowV9, 100, 0},
		{ProtocolIPFIX, 1, 20},
		{ProtocolIPFIX, 512, 7},
		{ProtocolSFlow, 1, 0},
		{ProtocolSFlow, 2048, 0},
	} {
		t.Run(fmt.Sprintf("%s/rate=%d/every=%d", tc.p, tc.samplingRate, tc.templateEvery), func(t *testing.T) {
			const datagrams, obsID = 45, 0x1234
			per := defaultFlowsPerDatagram(tc.p)
			opts := EncoderOptions{
				ObservationID: obsID,
				SamplingRate:  tc.samplingRate,
				TemplateEvery: tc.templateEvery,
				AgentAddress:  netip.MustParseAddr("192.0.2.77"),
				Clock:         fixedClock(testNow.Add(250 * time.Millisecond)),
			}
			raw, sent := encodeStream(tc.p, opts, datagrams, per)

			dec := newGoflowDecoder(tc.p)
			var dataRecordsBefore uint32 // IPFIX: data records (options included) before each message
			sflowSeq := map[uint32]uint32{}
			for i, b := range raw {
				got, err := dec.decode(b)
				if err != nil {
					t.Fatalf("datagram %d: goflow2 decode: %v", i, err)
				}
				var want []schemas.Flow
				for _, f := range sent[i] {
					want = append(want, asDecoded(tc.p, f, tc.samplingRate))
				}
				if diff := cmp.Diff(got.Flows, want); diff != "" {
					t.Fatalf("datagram %d flows (-got +want):\n%s", i, diff)
				}
				if got.ObservationID != obsID {
					t.Errorf("datagram %d: observation id %#x, want %#x", i, got.ObservationID, obsID)
				}

				var wantSeq uint32
				templatesDue := i == 0 || (tc.templateEvery > 0 && i%tc.templateEvery == 0)
				switch tc.p {
				case ProtocolNetFlowV5:
					wantSeq = uint32(i * per)
					if want := 1<<14 | uint16(tc.samplingRate); got.SamplingV5 != want {
						t.Errorf("datagram %d: sampling_interval %#x, want %#x", i, got.SamplingV5, want)
					}
				case ProtocolNetFlowV9:
					wantSeq = uint32(i)
				case ProtocolIPFIX:
					wantSeq = dataRecordsBefore
					dataRecordsBefore += uint32(got.DataRecords + got.OptionsData)
				case ProtocolSFlow:
					wantSeq = uint32(i + 1)
					if got.Agent != "192.0.2.77" {
						t.Errorf("datagram %d: agent %s, want 192.0.2.77", i, got.Agent)
					}
					for j, s := range got.Samples {
						f := sent[i][j]
						sflowSeq[f.InIf]++
						want := struct{ Seq, SourceID, Pool, Rate uint32 }{sflowSeq[f.InIf], f.InIf, sflowSeq[f.InIf] * tc.samplingRate, tc.samplingRate}
						gotS := struct{ Seq, SourceID, Pool, Rate uint32 }{s.Header.SampleSequenceNumber, s.Header.SourceIdValue, s.SamplePool, s.SamplingRate}
						if diff := cmp.Diff(gotS, want); diff != "" {
							t.Errorf("datagram %d sample %d (-got +want):\n%s", i, j, diff)
						}
					}
				}
				if got.Sequence != wantSeq {
					t.Errorf("datagram %d: sequence %d, want %d", i, got.Sequence, wantSeq)
				}
				if tc.p == ProtocolNetFlowV9 || tc.p == ProtocolIPFIX {
					wantT := struct{ Templates, OptionsData, DataRecords int }{0, 0, per}
					if templatesDue {
						wantT.Templates, wantT.OptionsData = 3, 1
					}
					gotT := struct{ Templates, OptionsData, DataRecords int }{got.Templates, got.OptionsData, got.DataRecords}
					if diff := cmp.Diff(gotT, wantT); diff != "" {
						t.Errorf("datagram %d sets (-got +want):\n%s", i, diff)
					}
				}
			}
		})
	}
}

// TestV9ExactTimes checks the header arithmetic that makes v9 times exact
// to the millisecond even though unix_secs has whole seconds.
func TestV9ExactTimes(t *testing.T) {
	for _, offset := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond} {
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(offset)
		f := schemas.Flow{
			SrcAddr: schemas.AddrFrom4([4]byte{10, 1, 0, 1}), DstAddr: schemas.AddrFrom4([4]byte{10, 2, 0, 1}), NextHop: schemas.AddrFrom4([4]byte{10, 255, 0, 1}),
			TimeStart: uint64(now.Add(-3*time.Second).UnixMilli()) * 1e6, TimeEnd: uint64(now.UnixMilli()) * 1e6,
			Bytes: 100, Packets: 1, Proto: 17, EtherType: 0x0800,
		}
		enc := NewEncoder(ProtocolNetFlowV9, EncoderOptions{Clock: fixedClock(now)})
		got, err := newGoflowDecoder(ProtocolNetFlowV9).decode(enc.Encode(nil, []schemas.Flow{f}))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got.Flows, []schemas.Flow{asDecoded(ProtocolNetFlowV9, f, 1)}); diff != "" {
			t.Errorf("export at %s (-got +want):\n%s", now.Format(time.StampMilli), diff)
		}
	}
}

func TestV5SkipsIPv6(t *testing.T) {
	gen := NewGenerator(7, WithIPv6Share(0.5), WithClock(fixedClock(testNow)))
	flows := make([]schemas.Flow, 30)
	var want []schemas.Flow
	for i := range flows {
		gen.Next(&flows[i])
		if flows[i].SrcAddr.Is4() {
			want = append(want, asDecoded(ProtocolNetFlowV5, flows[i], 1))
		}
	}
	enc := NewEncoder(ProtocolNetFlowV5, EncoderOptions{Clock: fixedClock(testNow)})
	dec := newGoflowDecoder(ProtocolNetFlowV5)
	got, err := dec.decode(enc.Encode(nil, flows))
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || len(want) == len(flows) {
		t.Fatalf("test needs a mix of families, got %d IPv4 of %d", len(want), len(flows))
	}
	if diff := cmp.Diff(got.Flows, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	// The next datagram's flow_sequence counts only the records written.
	got, err = dec.decode(enc.Encode(nil, flows[:0]))
	if err != nil {
		t.Fatal(err)
	}
	if got.Sequence != uint32(len(want)) {
		t.Errorf("flow_sequence %d, want %d", got.Sequence, len(want))
	}
}

func TestNewEncoderUnknownProtocolPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewEncoder(\"v7\") did not panic")
		}
	}()
	NewEncoder("v7", EncoderOptions{})
}

func BenchmarkEncode(b *testing.B) {
	for _, p := range Protocols {
		b.Run(string(p), func(b *testing.B) {
			gen := NewGenerator(1, ForProtocol(p))
			flows := make([]schemas.Flow, defaultFlowsPerDatagram(p))
			for i := range flows {
				gen.Next(&flows[i])
			}
			enc := NewEncoder(p, EncoderOptions{TemplateEvery: 20})
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				buf = enc.Encode(buf[:0], flows)
			}
			b.ReportMetric(float64(b.N*len(flows))/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

func BenchmarkGenerateAndEncode(b *testing.B) {
	for _, p := range Protocols {
		b.Run(string(p), func(b *testing.B) {
			gen := NewGenerator(1, ForProtocol(p))
			flows := make([]schemas.Flow, defaultFlowsPerDatagram(p))
			enc := NewEncoder(p, EncoderOptions{TemplateEvery: 20})
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				for i := range flows {
					gen.Next(&flows[i])
				}
				buf = enc.Encode(buf[:0], flows)
			}
			b.ReportMetric(float64(b.N*len(flows))/b.Elapsed().Seconds(), "flows/s")
		})
	}
}
