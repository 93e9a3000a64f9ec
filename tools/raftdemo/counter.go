package raftdemo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"basalt/raft"
)

// Counter is a state machine that counts the entries and bytes applied to
// its group. Checkpoint writes its state to a file durably.
type Counter struct {
	path string
	mu   struct {
		sync.Mutex
		st counterState
	}
}

type counterState struct {
	Applied uint64 `json:"applied"`
	Entries uint64 `json:"entries"`
	Bytes   uint64 `json:"bytes"`
}

var _ raft.StateMachine = (*Counter)(nil)

// NewCounter returns a Counter checkpointing to path.
func NewCounter(path string) *Counter { return &Counter{path: path} }

// Open implements raft.StateMachine.
func (c *Counter) Open(context.Context) (uint64, error) {
	b, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return c.load(b)
}

func (c *Counter) load(b []byte) (uint64, error) {
	var st counterState
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("decoding counter state: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.st = st
	return st.Applied, nil
}

// Apply implements raft.StateMachine.
func (c *Counter) Apply(ents []raft.Entry) ([]raft.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		c.mu.st.Applied = e.Index
		if e.Type == raft.EntryNormal {
			c.mu.st.Entries++
			c.mu.st.Bytes += uint64(len(e.Data))
		}
	}
	return make([]raft.Result, len(ents)), nil
}

// Snapshot implements raft.StateMachine.
func (c *Counter) Snapshot() (raft.SnapshotSource, error) {
	b, err := c.encode()
	return jsonSource(b), err
}

func (c *Counter) encode() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(c.mu.st)
}

// Restore implements raft.StateMachine.
func (c *Counter) Restore(_ context.Context, index uint64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("reading snapshot: %w", err)
	}
	if _, err := c.load(b); err != nil {
		return err
	}
	c.mu.Lock()
	c.mu.st.Applied = index
	c.mu.Unlock()
	_, err = c.Checkpoint()
	return err
}

// Checkpoint writes the state durably and returns the index it covers.
func (c *Counter) Checkpoint() (uint64, error) {
	b, err := c.encode()
	if err != nil {
		return 0, err
	}
	var st counterState
	_ = json.Unmarshal(b, &st)
	return st.Applied, writeFileSync(c.path, b)
}

// Entries returns the number of entries applied.
func (c *Counter) Entries() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.st.Entries
}

// Close implements raft.StateMachine.
func (c *Counter) Close() error { return nil }

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

type jsonSource []byte

func (j jsonSource) WriteTo(_ context.Context, w io.Writer) error {
	_, err := w.Write(j)
	return err
}

func (j jsonSource) Close() error { return nil }
