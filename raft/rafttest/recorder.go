package rafttest

import (
	"context"
	"io"
	"sync"

	"basalt/raft"
)

// Recorder is a raft.Handler that records what a transport delivers, for
// transport tests.
type Recorder struct {
	// OnSnapshot, if set, handles snapshots; otherwise their bodies are
	// read and discarded. Set it before the recorder receives traffic.
	OnSnapshot func(ctx context.Context, env raft.Envelope, body io.Reader) error

	mu          sync.Mutex
	msgs        []raft.Envelope
	calls       int
	unreachable map[uint64]int
}

var _ raft.Handler = (*Recorder)(nil)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{unreachable: make(map[uint64]int)} }

// HandleMessages implements raft.Handler.
func (r *Recorder) HandleMessages(msgs []raft.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	r.calls++
}

// HandleSnapshot implements raft.Handler.
func (r *Recorder) HandleSnapshot(ctx context.Context, env raft.Envelope, body io.Reader) error {
	if r.OnSnapshot != nil {
		return r.OnSnapshot(ctx, env, body)
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

// HandleUnreachable implements raft.Handler.
func (r *Recorder) HandleUnreachable(host uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[host]++
}

// Received returns the messages received so far and the number of
// HandleMessages calls that brought them.
func (r *Recorder) Received() ([]raft.Envelope, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]raft.Envelope(nil), r.msgs...), r.calls
}

// Messages returns the messages received so far.
func (r *Recorder) Messages() []raft.Envelope {
	msgs, _ := r.Received()
	return msgs
}

// Count returns the number of messages received so far.
func (r *Recorder) Count() int { return len(r.Messages()) }

// UnreachableCount returns how often host was reported unreachable.
func (r *Recorder) UnreachableCount(host uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[host]
}
