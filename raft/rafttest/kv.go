package rafttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/vfsutil"
	"basalt/raft"
)

// ErrBadCommand is the application error for a command KV cannot parse.
var ErrBadCommand = errors.New("rafttest: bad command (want key=value)")

// KV is a replicated map of string keys to string values. A command is
// "key=value". It records the order in which it applied entries so tests
// can compare replicas. Checkpoint writes its state durably to a file on a
// vfs.FS; Open reads it back.
type KV struct {
	fs   vfs.FS
	path string

	mu struct {
		sync.Mutex
		data    map[string]string
		applied uint64
		log     []string          // commands in apply order, since the last restore
		opened  map[string]string // the state Open loaded from the checkpoint
	}
}

var _ raft.StateMachine = (*KV)(nil)

type kvState struct {
	Applied uint64            `json:"applied"`
	Data    map[string]string `json:"data"`
}

// NewKV returns a KV whose checkpoint lives at path on fs (fs nil: in
// memory only, Open always starts empty).
func NewKV(fs vfs.FS, path string) *KV {
	kv := &KV{fs: fs, path: path}
	kv.mu.data = map[string]string{}
	return kv
}

// Open implements raft.StateMachine.
func (kv *KV) Open(context.Context) (uint64, error) {
	if kv.fs == nil {
		return 0, nil
	}
	f, err := kv.fs.Open(kv.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := decodeState(f)
	if err != nil {
		return 0, fmt.Errorf("reading checkpoint %s: %w", kv.path, err)
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.mu.data, kv.mu.applied = st.Data, st.Applied
	kv.mu.opened = maps.Clone(st.Data)
	return st.Applied, nil
}

func decodeState(r io.Reader) (kvState, error) {
	var st kvState
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return st, err
	}
	if st.Data == nil {
		st.Data = map[string]string{}
	}
	return st, nil
}

// Apply implements raft.StateMachine. A normal entry's Result.Value is the
// entry's index.
func (kv *KV) Apply(entries []raft.Entry) ([]raft.Result, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	out := make([]raft.Result, len(entries))
	for i, e := range entries {
		kv.mu.applied = e.Index
		if e.Type != raft.EntryNormal {
			continue
		}
		k, v, ok := bytes.Cut(e.Data, []byte("="))
		if !ok {
			out[i].Err = ErrBadCommand
			continue
		}
		kv.mu.data[string(k)] = string(v)
		kv.mu.log = append(kv.mu.log, string(e.Data))
		out[i].Value = e.Index
	}
	return out, nil
}

// Snapshot implements raft.StateMachine.
func (kv *KV) Snapshot() (raft.SnapshotSource, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	b, err := json.Marshal(kvState{Applied: kv.mu.applied, Data: kv.mu.data})
	return bytesSource(b), err
}

// Restore implements raft.StateMachine; the restored state is checkpointed
// before it returns.
func (kv *KV) Restore(_ context.Context, index uint64, r io.Reader) error {
	st, err := decodeState(r)
	if err != nil {
		return fmt.Errorf("decoding snapshot: %w", err)
	}
	kv.mu.Lock()
	kv.mu.data, kv.mu.applied, kv.mu.log = st.Data, index, nil
	kv.mu.Unlock()
	_, err = kv.Checkpoint()
	return err
}

// Checkpoint writes the state durably and returns the index it covers.
func (kv *KV) Checkpoint() (uint64, error) {
	kv.mu.Lock()
	b, err := json.Marshal(kvState{Applied: kv.mu.applied, Data: kv.mu.data})
	applied := kv.mu.applied
	kv.mu.Unlock()
	if err != nil || kv.fs == nil {
		return applied, err
	}
	return applied, vfsutil.WriteFile(kv.fs, kv.path, b)
}

// Close implements raft.StateMachine.
func (kv *KV) Close() error { return nil }

// Get returns the value of key.
func (kv *KV) Get(key string) (string, bool) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	v, ok := kv.mu.data[key]
	return v, ok
}

// Data returns a copy of the whole map.
func (kv *KV) Data() map[string]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return maps.Clone(kv.mu.data)
}

// Opened returns the state Open loaded from the checkpoint (nil if none).
func (kv *KV) Opened() map[string]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return maps.Clone(kv.mu.opened)
}

// Applied returns the index of the last applied entry.
func (kv *KV) Applied() uint64 {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.mu.applied
}

// Log returns the commands applied since the last restore, in order.
func (kv *KV) Log() []string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return append([]string(nil), kv.mu.log...)
}

type bytesSource []byte

func (b bytesSource) WriteTo(_ context.Context, w io.Writer) error {
	_, err := w.Write(b)
	return err
}

func (b bytesSource) Close() error { return nil }
