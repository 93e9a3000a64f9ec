package pebbleutil

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// PrefixEnd returns the smallest key greater than every key with prefix p,
// or nil (no upper bound) when there is none (p is all 0xff).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// Logger adapts l to Pebble's Logger: Pebble's info messages go to Debug,
// errors to Error, and a fatal error (a broken invariant inside Pebble)
// is logged and panics, since library code must not exit the process.
func Logger(l *slog.Logger) pebble.Logger { return logger{l} }

type logger struct{ l *slog.Logger }

func (p logger) Infof(f string, v ...any)  { p.l.Debug(fmt.Sprintf(f, v...)) }
func (p logger) Errorf(f string, v ...any) { p.l.Error(fmt.Sprintf(f, v...)) }
func (p logger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	p.l.Error("pebble fatal", "msg", msg)
	panic("pebble: " + msg)
}
