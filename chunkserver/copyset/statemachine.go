package copyset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/chunkserver/chunkstore"
	"basalt/internal/vfsutil"
	"basalt/raft"
)

// Config configures a copyset's state machine.
type Config struct {
	// Copyset is the copyset (raft group) ID.
	Copyset uint64
	// Store is the chunkserver's chunk store, shared by all its copysets.
	Store chunkstore.Store
	// FS and Dir hold the copyset's checkpoint file (Dir/checkpoint).
	FS  vfs.FS
	Dir string
}

// StateMachine applies one copyset's commands to the chunk store. It
// implements raft.StateMachine.
type StateMachine struct {
	cfg Config
	mu  struct {
		sync.Mutex
		applied uint64
		chunks  map[uint64]bool // chunks of this copyset
	}
}

var _ raft.StateMachine = (*StateMachine)(nil)

// ErrCorrupt is returned when a checkpoint or snapshot stream is damaged.
var ErrCorrupt = errors.New("copyset: corrupt checkpoint or snapshot")

// New returns the state machine of a copyset; Open loads its checkpoint.
func New(cfg Config) *StateMachine {
	sm := &StateMachine{cfg: cfg}
	sm.mu.chunks = map[uint64]bool{}
	return sm
}

func (sm *StateMachine) checkpointPath() string {
	return sm.cfg.FS.PathJoin(sm.cfg.Dir, "checkpoint")
}

// Open implements raft.StateMachine: it loads the last checkpoint.
func (sm *StateMachine) Open(context.Context) (uint64, error) {
	if err := vfsutil.MkdirAll(sm.cfg.FS, sm.cfg.Dir); err != nil {
		return 0, err
	}
	f, err := sm.cfg.FS.Open(sm.checkpointPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening checkpoint of copyset %d: %w", sm.cfg.Copyset, err)
	}
	defer f.Close()
	applied, chunks, err := readIndexAndChunks(bufio.NewReader(f))
	if err != nil {
		return 0, fmt.Errorf("reading checkpoint of copyset %d: %w", sm.cfg.Copyset, err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.mu.applied = applied
	for _, c := range chunks {
		sm.mu.chunks[c] = true
	}
	return applied, nil
}

// Apply implements raft.StateMachine. A command outside its chunk or that
// cannot be decoded fails alone (Result.Err); a storage failure stops the
// copyset.
func (sm *StateMachine) Apply(entries []raft.Entry) ([]raft.Result, error) {
	out := make([]raft.Result, len(entries))
	for i, e := range entries {
		if e.Type == raft.EntryNormal {
			err := sm.apply(e.Data)
			if err != nil && !isCommandError(err) {
				return nil, fmt.Errorf("copyset %d entry %d: %w", sm.cfg.Copyset, e.Index, err)
			}
			out[i].Err = err
		}
		sm.setApplied(e.Index)
	}
	return out, nil
}

func isCommandError(err error) bool {
	return errors.Is(err, ErrBadCommand) || errors.Is(err, chunkstore.ErrOutOfRange)
}

func (sm *StateMachine) setApplied(index uint64) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.mu.applied = index
}

func (sm *StateMachine) apply(data []byte) error {
	c, err := Decode(data)
	if err != nil {
		return err
	}
	st := sm.cfg.Store
	switch c.Op {
	case OpWrite:
		err = st.WriteAt(c.Chunk, c.Offset, c.Data)
	case OpDiscard:
		err = st.Discard(c.Chunk, c.Offset, c.Length)
	default:
		err = st.Delete(c.Chunk)
	}
	if err == nil {
		sm.noteChunk(c)
	}
	return err
}

func (sm *StateMachine) noteChunk(c Command) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	switch c.Op {
	case OpWrite:
		sm.mu.chunks[c.Chunk] = true
	case OpDelete:
		delete(sm.mu.chunks, c.Chunk)
	}
}

// ReadChunk reads p from off in one of the copyset's chunks, as applied so
// far on this replica. For a linearizable read, call raft.Host.ReadIndex on
// the leader first.
func (sm *StateMachine) ReadChunk(chunk uint64, off int64, p []byte) error {
	return sm.cfg.Store.ReadAt(chunk, off, p)
}

// Applied returns the index of the last applied entry.
func (sm *StateMachine) Applied() uint64 {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.mu.applied
}

// Chunks returns the IDs of the copyset's chunks, sorted.
func (sm *StateMachine) Chunks() []uint64 {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return slices.Sorted(maps.Keys(sm.mu.chunks))
}

func (sm *StateMachine) state() (uint64, []uint64) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.mu.applied, slices.Sorted(maps.Keys(sm.mu.chunks))
}

// Checkpoint makes the state up to the returned index durable: it syncs the
// chunk store, then writes the index (and the chunk list) to the
// checkpoint file. The caller may then truncate the raft log there.
func (sm *StateMachine) Checkpoint() (uint64, error) {
	applied, chunks := sm.state() // before Sync: Sync covers every apply up to here
	if err := sm.cfg.Store.Sync(); err != nil {
		return 0, fmt.Errorf("checkpointing copyset %d: %w", sm.cfg.Copyset, err)
	}
	if err := sm.writeCheckpoint(applied, chunks); err != nil {
		return 0, fmt.Errorf("checkpointing copyset %d: %w", sm.cfg.Copyset, err)
	}
	return applied, nil
}

func (sm *StateMachine) writeCheckpoint(applied uint64, chunks []uint64) error {
	var b bytes.Buffer
	if err := writeIndexAndChunks(&b, applied, chunks); err != nil {
		return err
	}
	return vfsutil.WriteFile(sm.cfg.FS, sm.checkpointPath(), b.Bytes())
}

// Close implements raft.StateMachine. The chunk store is shared and stays
// open.
func (sm *StateMachine) Close() error { return nil }

// The checkpoint file and the snapshot stream start the same way:
// magic(8) index(8) count(8) chunk IDs(8 each).
const magic = "BSLTCS01"

func writeIndexAndChunks(w io.Writer, index uint64, chunks []uint64) error {
	b := append([]byte(magic), make([]byte, 16)...)
	binary.BigEndian.PutUint64(b[8:], index)
	binary.BigEndian.PutUint64(b[16:], uint64(len(chunks)))
	for _, c := range chunks {
		b = binary.BigEndian.AppendUint64(b, c)
	}
	_, err := w.Write(b)
	return err
}

func readIndexAndChunks(r io.Reader) (uint64, []uint64, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:8]) != magic {
		return 0, nil, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	index, n := binary.BigEndian.Uint64(hdr[8:]), binary.BigEndian.Uint64(hdr[16:])
	if n > 1<<24 {
		return 0, nil, fmt.Errorf("%w: %d chunks", ErrCorrupt, n)
	}
	chunks := make([]uint64, n)
	if err := binary.Read(r, binary.BigEndian, chunks); err != nil {
		return 0, nil, fmt.Errorf("%w: chunk list: %w", ErrCorrupt, err)
	}
	return index, chunks, nil
}
