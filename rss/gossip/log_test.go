package gossip

import (
	"log/slog"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Suspect w2 has failed\n", slog.LevelInfo, "Suspect w2 has failed"},
		{"[WARN] memberlist: Refuting a suspect message\n", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: Failed to send ping\n", slog.LevelError, "Failed to send ping"},
		{"no prefix at all\n", slog.LevelInfo, "no prefix at all"},
	}
	for _, tt := range tests {
		level, msg := parseLine([]byte(tt.line))
		if level != tt.level || msg != tt.msg {
			t.Errorf("parseLine(%q) = %v, %q; want %v, %q", tt.line, level, msg, tt.level, tt.msg)
		}
	}
}
