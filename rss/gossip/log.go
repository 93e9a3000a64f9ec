package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// newLogLogger returns a *log.Logger for memberlist whose lines go to l
// at the level of their "[LEVEL]" prefix.
func newLogLogger(l *slog.Logger) *log.Logger {
	return log.New(&logWriter{log: l.With("lib", "memberlist")}, "", 0)
}

// logWriter turns memberlist's "[LEVEL] memberlist: message" lines into
// slog records.
type logWriter struct {
	log *slog.Logger
}

// Write logs one line p.
func (w *logWriter) Write(p []byte) (int, error) {
	level, msg := parseLine(p)
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// parseLine splits a memberlist log line into its level (Info when it has
// no known prefix) and message.
func parseLine(p []byte) (slog.Level, string) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if rest, ok := bytes.CutPrefix(line, []byte(l.prefix)); ok {
			level, line = l.level, bytes.TrimSpace(rest)
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	return level, string(line)
}
