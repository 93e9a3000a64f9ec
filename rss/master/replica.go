package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/vfsutil"
	"basalt/raft"
)

// Replica is the master's State as the state machine of a raft group:
// every replica applies the same Commands in log order and so holds the
// same State. Its durable state is a checkpoint file (the State and the
// index it covers), written by Checkpoint; the raft log after that index
// is the redo log, replayed by the host on restart. Safe for concurrent
// use: the host applies from one goroutine while the Server reads.
type Replica struct {
	fs        vfs.FS
	path      string
	placement PlacementConfig
	mu        struct {
		sync.Mutex
		state   *State
		applied uint64
	}
}

var _ raft.StateMachine = (*Replica)(nil)

// NewReplica returns an empty Replica that places partitions by
// placement and checkpoints to path on fs.
func NewReplica(fs vfs.FS, path string, placement PlacementConfig) *Replica {
	r := &Replica{fs: fs, path: path, placement: placement}
	r.mu.state = NewState(placement)
	return r
}

// checkpoint is the file format of a Replica's durable state.
type checkpoint struct {
	Applied uint64          `json:"applied"`
	State   json.RawMessage `json:"state"`
}

// Open implements raft.StateMachine: it loads the checkpoint, if any.
func (r *Replica) Open(context.Context) (uint64, error) {
	f, err := r.fs.Open(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening the master checkpoint: %w", err)
	}
	b, err := io.ReadAll(f)
	if err = errors.Join(err, f.Close()); err != nil {
		return 0, fmt.Errorf("reading the master checkpoint %s: %w", r.path, err)
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return 0, fmt.Errorf("%w: master checkpoint %s: %w", ErrInvalidArgument, r.path, err)
	}
	if err := r.restore(cp.Applied, cp.State); err != nil {
		return 0, err
	}
	return cp.Applied, nil
}

// restore replaces the State with the snapshot b taken at index.
func (r *Replica) restore(index uint64, b []byte) error {
	st := NewState(r.placement)
	if err := st.RestoreSnapshot(b); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.state, r.mu.applied = st, index
	return nil
}

// Apply implements raft.StateMachine: each command's Result carries the
// State method's value and error to the proposer. A command that does not
// decode fails alone (it cannot come from a Server, which encodes with
// EncodeCommand).
func (r *Replica) Apply(entries []raft.Entry) ([]raft.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]raft.Result, len(entries))
	for i, e := range entries {
		r.mu.applied = e.Index
		if e.Type != raft.EntryNormal {
			continue
		}
		c, err := DecodeCommand(e.Data)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Value, out[i].Err = r.mu.state.Apply(c)
	}
	return out, nil
}

// Snapshot implements raft.StateMachine: the encoded State at the last
// applied entry.
func (r *Replica) Snapshot() (raft.SnapshotSource, error) {
	b, _, err := r.encode()
	return bytesSource(b), err
}

// encode returns the encoded State and the index it covers.
func (r *Replica) encode() ([]byte, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.mu.state.MarshalSnapshot()
	return b, r.mu.applied, err
}

// Restore implements raft.StateMachine: the State becomes the snapshot's
// and is checkpointed before Restore returns.
func (r *Replica) Restore(_ context.Context, index uint64, rd io.Reader) error {
	b, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("reading a master snapshot: %w", err)
	}
	if err := r.restore(index, b); err != nil {
		return err
	}
	_, err = r.Checkpoint()
	return err
}

// Checkpoint writes the State durably (vfsutil.WriteFile) and returns the index it covers, for raft.Host.Compact.
func (r *Replica) Checkpoint() (uint64, error) {
	b, applied, err := r.encode()
	if err != nil {
		return 0, err
	}
	data, err := json.Marshal(checkpoint{Applied: applied, State: b})
	if err != nil {
		return 0, fmt.Errorf("encoding the master checkpoint: %w", err)
	}
	if err := vfsutil.WriteFile(r.fs, r.path, data); err != nil {
		return 0, fmt.Errorf("writing the master checkpoint %s: %w", r.path, err)
	}
	return applied, nil
}

// Applied returns the index of the last applied entry.
func (r *Replica) Applied() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.applied
}

// view runs fn on the State under the lock.
func (r *Replica) view(fn func(*State) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fn(r.mu.state)
}

// Close implements raft.StateMachine.
func (r *Replica) Close() error { return nil }

// bytesSource is a snapshot held in memory.
type bytesSource []byte

func (b bytesSource) WriteTo(_ context.Context, w io.Writer) error {
	_, err := w.Write(b)
	return err
}

func (b bytesSource) Close() error { return nil }
