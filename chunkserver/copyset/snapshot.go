package copyset

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"

	"basalt/chunkserver/chunkstore"
	"basalt/raft"
)

// Snapshot stream: the checkpoint header (magic, index, chunk IDs), then for
// each chunk in that order its blocks: block number (8 bytes) and blockSize
// bytes, for every block that is not all zeros, ended by endOfChunk.
const (
	blockSize  = 1 << 20
	endOfChunk = ^uint64(0)
)

// Snapshot implements raft.StateMachine. It only records the applied index
// and the chunk list; the bytes are read from the live chunk files when the
// snapshot is streamed (a fuzzy snapshot, see the package documentation).
func (sm *StateMachine) Snapshot() (raft.SnapshotSource, error) {
	applied, chunks := sm.state()
	return &source{store: sm.cfg.Store, index: applied, chunks: chunks}, nil
}

type source struct {
	store  chunkstore.Store
	index  uint64
	chunks []uint64
}

// WriteTo streams the snapshot; it may run several times, concurrently.
func (s *source) WriteTo(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := writeIndexAndChunks(bw, s.index, s.chunks); err != nil {
		return err
	}
	buf := make([]byte, blockSize)
	for _, c := range s.chunks {
		if err := s.writeChunk(ctx, bw, c, buf); err != nil {
			return fmt.Errorf("streaming chunk %d: %w", c, err)
		}
	}
	return bw.Flush()
}

func (s *source) writeChunk(ctx context.Context, w io.Writer, chunk uint64, buf []byte) error {
	for off := int64(0); off < s.store.ChunkSize(); off += blockSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(blockSize, s.store.ChunkSize()-off)]
		if err := s.store.ReadAt(chunk, off, b); err != nil {
			return err
		}
		if allZero(b) {
			continue // absent and zero blocks read back as zeros
		}
		if err := binary.Write(w, binary.BigEndian, uint64(off/blockSize)); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return binary.Write(w, binary.BigEndian, endOfChunk)
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func (s *source) Close() error { return nil }

// Restore implements raft.StateMachine: it replaces the copyset's chunks by
// the snapshot's and checkpoints at index before returning.
func (sm *StateMachine) Restore(_ context.Context, index uint64, r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	_, chunks, err := readIndexAndChunks(br)
	if err != nil {
		return err
	}
	if err := sm.dropChunks(); err != nil {
		return err
	}
	for _, c := range chunks {
		if err := sm.restoreChunk(br, c); err != nil {
			return fmt.Errorf("restoring chunk %d of copyset %d: %w", c, sm.cfg.Copyset, err)
		}
	}
	sm.mu.Lock()
	sm.mu.applied = index
	for _, c := range chunks {
		sm.mu.chunks[c] = true
	}
	sm.mu.Unlock()
	_, err = sm.Checkpoint()
	return err
}

// dropChunks deletes every chunk the copyset has now.
func (sm *StateMachine) dropChunks() error {
	for _, c := range sm.Chunks() {
		if err := sm.cfg.Store.Delete(c); err != nil {
			return err
		}
	}
	sm.mu.Lock()
	clear(sm.mu.chunks)
	sm.mu.Unlock()
	return nil
}

func (sm *StateMachine) restoreChunk(r io.Reader, chunk uint64) error {
	buf := make([]byte, blockSize)
	size := sm.cfg.Store.ChunkSize()
	for {
		var block uint64
		if err := binary.Read(r, binary.BigEndian, &block); err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if block == endOfChunk {
			return nil
		}
		off := int64(block) * blockSize
		if block > uint64(size/blockSize) || off >= size {
			return fmt.Errorf("%w: block %d beyond the chunk", ErrCorrupt, block)
		}
		b := buf[:min(blockSize, size-off)]
		if _, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if err := sm.cfg.Store.WriteAt(chunk, off, b); err != nil {
			return err
		}
	}
}
