package kafka

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

func TestDeadLetterRecord(t *testing.T) {
	cfg := DefaultConfiguration()
	payload := []byte("0123456789")
	for _, tc := range []struct {
		name        string
		source, err string
		max         int
		want        string
	}{
		{"whole", "udp://0.0.0.0:2055 from 192.0.2.1", "bad header", -1, "0123456789"},
		{"cut", "x", "e", 4, "0123"},
		{"none", "x", "e", 0, ""},
		{"invalid UTF-8 kept the payload", "\xff", "\xfe", -1, "0123456789"},
	} {
		rec := cfg.DeadLetterRecord("ingest.flows", tc.source, "malformed", errors.New(tc.err), payload, tc.max)
		if rec.Topic != cfg.Topic(TopicDeadLetter) {
			t.Errorf("%s: topic %q", tc.name, rec.Topic)
		}
		var dl pb.DeadLetter
		if err := proto.Unmarshal(rec.Value, &dl); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if dl.Time == 0 {
			t.Errorf("%s: no time", tc.name)
		}
		dl.Time = 0
		want := &pb.DeadLetter{Stage: "ingest.flows", Source: tc.source, Reason: "malformed", Error: tc.err, Payload: []byte(tc.want)}
		if tc.name == "invalid UTF-8 kept the payload" {
			want.Source, want.Error = "", ""
		}
		if diff := cmp.Diff(&dl, want, protocmp.Transform()); diff != "" {
			t.Errorf("%s (-got +want):\n%s", tc.name, diff)
		}
	}
	payload[0] = 'X' // the record owns its copy
	rec := cfg.DeadLetterRecord("s", "", "r", nil, payload[:2], -1)
	payload[1] = 'Y'
	var dl pb.DeadLetter
	_ = proto.Unmarshal(rec.Value, &dl)
	if string(dl.Payload) != "X1" {
		t.Errorf("payload %q, want the copy X1", dl.Payload)
	}
}
