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
