package kafka

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestBrokerLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	var seen []error
	l := &brokerLogger{log: logger, onError: func(err error) { seen = append(seen, err) }}
	l.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", "flowaudit.flows.v1", 3, error(syscall.ENOSPC))
	l.Logf(kfake.LogLevelError, "persist to disk: %v", errors.New("boom"))
	l.Logf(kfake.LogLevelInfo, "consumerJoin: group=%s", "g") // debug: not shown at info
	l.Logf(kfake.LogLevelDebug, "RECONCILE SEND")

	want := `level=WARN msg="persist batch flowaudit.flows.v1-3: no space left on device" component=broker
level=ERROR msg="persist to disk: boom" component=broker
`
	if diff := cmp.Diff(buf.String(), want); diff != "" {
		t.Errorf("log (-got +want):\n%s", diff)
	}
	if len(seen) != 2 || !errors.Is(seen[0], syscall.ENOSPC) || !strings.Contains(seen[1].Error(), "boom") {
		t.Errorf("onError got %v, want the ENOSPC and the boom errors", seen)
	}
}

func TestSourceHeader(t *testing.T) {
	want := Source{Partition: 3, Offset: 1<<40 + 5, Chunk: 1, Chunks: 2}
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "other", Value: []byte("x")}, want.Header()}}
	got, ok, err := RecordSource(rec)
	if err != nil || !ok {
		t.Fatalf("RecordSource: ok %v, err %v", ok, err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("RecordSource (-got +want):\n%s", diff)
	}
	if _, ok, err := RecordSource(&kgo.Record{}); ok || err != nil {
		t.Errorf("RecordSource without header: ok %v, err %v; want false, nil", ok, err)
	}
	bad := want.Header()
	bad.Value[15] = 0 // zero chunks
	if _, _, err := RecordSource(&kgo.Record{Headers: []kgo.RecordHeader{bad}}); err == nil {
		t.Error("RecordSource with zero chunks: no error")
	}
}
