package kafka

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
)

// brokerLogger passes the embedded broker's own log lines to the
// process logger, so a failing disk write or a refused request is in the
// log beside the stage error it causes. kfake's "info" lines are one per
// group event and request failure; they go out at debug level so the
// default log stays quiet.
type brokerLogger struct {
	log     *slog.Logger
	onError func(err error) // called with every error argument of a warning or error line; may be nil
}

func slogLevel(l kfake.LogLevel) slog.Level {
	switch l {
	case kfake.LogLevelError:
		return slog.LevelError
	case kfake.LogLevelWarn:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

func (b *brokerLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slogLevel(level)
	if b.onError != nil && lvl >= slog.LevelWarn {
		for _, a := range args {
			if err, ok := a.(error); ok {
				b.onError(err)
			}
		}
	}
	if !b.log.Enabled(context.Background(), lvl) {
		return
	}
	b.log.Log(context.Background(), lvl, fmt.Sprintf(format, args...), "component", "broker")
}
