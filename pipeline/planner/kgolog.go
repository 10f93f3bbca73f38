package planner

import (
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger hands franz-go's log to the planner's: its errors and
// warnings as such, its info lines (joins, rebalances, why a transaction
// ended without committing) at debug.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelInfo }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka client: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka client: "+msg, keyvals...)
	default:
		k.l.Debug("kafka client: "+msg, keyvals...)
	}
}
