package raft

import (
	"context"
	"fmt"
	"log/slog"
)

// raftLogger adapts slog to etcd raft's Logger. Raft's Info messages
// (elections, term changes) are per-group events: with hundreds of groups
// they go to Debug. Fatal and Panic mean a broken raft invariant: panic.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)                 { r.log(slog.LevelDebug, fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...any)      { r.log(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...any)                  { r.log(slog.LevelDebug, fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...any)       { r.log(slog.LevelDebug, fmt.Sprintf(f, v...)) }
func (r raftLogger) Warning(v ...any)               { r.log(slog.LevelWarn, fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...any)    { r.log(slog.LevelWarn, fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...any)                 { r.log(slog.LevelError, fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...any)      { r.log(slog.LevelError, fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...any)                 { r.panic(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any)      { r.panic(fmt.Sprintf(f, v...)) }
func (r raftLogger) Panic(v ...any)                 { r.panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(f string, v ...any)      { r.panic(fmt.Sprintf(f, v...)) }
func (r raftLogger) log(lvl slog.Level, msg string) { r.l.Log(context.Background(), lvl, msg) }

func (r raftLogger) panic(msg string) {
	r.l.Error("raft invariant broken", "msg", msg)
	panic("raft: " + msg)
}
