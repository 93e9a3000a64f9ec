package chunkstore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/chunkserver/chunkstore"
)

const chunkSize = 1 << 20

func open(t *testing.T, fs vfs.FS, pool int) *chunkstore.FileStore {
	t.Helper()
	s, err := chunkstore.Open(chunkstore.Config{Dir: "/data", FS: fs, ChunkSize: chunkSize, PoolFiles: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func read(t *testing.T, s chunkstore.Store, chunk uint64, off, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if err := s.ReadAt(chunk, off, b); err != nil {
		t.Fatalf("read chunk %d [%d,+%d): %v", chunk, off, n, err)
	}
	return b
}

func TestReadBackAndZeros(t *testing.T) {
	s := open(t, vfs.NewMem(), 2)
	if err := s.FillPool(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, 7, 0, 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatal("never-written chunk does not read as zeros")
	}
	data := random(10000)
	if err := s.WriteAt(7, 4093, data); err != nil { // unaligned
		t.Fatal(err)
	}
	if got := read(t, s, 7, 4093, 10000); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if got := read(t, s, 7, 0, 4093); !bytes.Equal(got, make([]byte, 4093)) {
		t.Fatal("bytes before the write are not zero")
	}
	if got := read(t, s, 7, 4093+10000, 100); !bytes.Equal(got, make([]byte, 100)) {
		t.Fatal("bytes after the write are not zero")
	}
	if s.PoolLen() != 1 {
		t.Fatalf("pool has %d files after one chunk was created, want 1", s.PoolLen())
	}
}

func TestOutOfRange(t *testing.T) {
	s := open(t, vfs.NewMem(), -1)
	for _, tc := range []struct {
		off int64
		n   int
	}{{-1, 1}, {chunkSize, 1}, {chunkSize - 10, 11}, {0, chunkSize + 1}} {
		if err := s.WriteAt(1, tc.off, make([]byte, tc.n)); !errors.Is(err, chunkstore.ErrOutOfRange) {
			t.Errorf("write [%d,+%d): got %v, want ErrOutOfRange", tc.off, tc.n, err)
		}
		if err := s.ReadAt(1, tc.off, make([]byte, tc.n)); !errors.Is(err, chunkstore.ErrOutOfRange) {
			t.Errorf("read [%d,+%d): got %v, want ErrOutOfRange", tc.off, tc.n, err)
		}
	}
	if s.Exists(1) {
		t.Fatal("a refused write created the chunk")
	}
	if err := s.WriteAt(1, chunkSize-4, []byte("last")); err != nil {
		t.Fatalf("write at the very end: %v", err)
	}
}

func TestDiscardAndDelete(t *testing.T) {
	s := open(t, vfs.NewMem(), -1)
	data := random(200000)
	if err := s.WriteAt(3, 0, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(3, 1000, 150000); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), data...)
	clear(want[1000:151000])
	if got := read(t, s, 3, 0, 200000); !bytes.Equal(got, want) {
		t.Fatal("discard did not zero exactly its range")
	}
	if err := s.Delete(3); err != nil {
		t.Fatal(err)
	}
	if s.Exists(3) || !bytes.Equal(read(t, s, 3, 0, 100), make([]byte, 100)) {
		t.Fatal("deleted chunk still readable")
	}
	if err := s.Delete(3); err != nil {
		t.Fatalf("deleting a missing chunk: %v", err)
	}
}

// TestSyncSurvivesCrash: what was written before Sync survives a crash that
// drops every unsynced write; the store reopens its chunks from disk.
func TestSyncSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs, 2)
	if err := s.FillPool(); err != nil {
		t.Fatal(err)
	}
	synced := random(50000)
	if err := s.WriteAt(1, 0, synced); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(2, 100, synced); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(1, 0, random(50000)); err != nil { // never synced
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	s2 := open(t, crashed, 2)
	if got := read(t, s2, 1, 0, 50000); !bytes.Equal(got, synced) {
		t.Fatal("chunk 1 lost its synced contents")
	}
	if got := read(t, s2, 2, 100, 50000); !bytes.Equal(got, synced) {
		t.Fatal("chunk 2 (created from the pool) lost its synced contents")
	}
	if s2.PoolLen() != 0 {
		t.Fatalf("pool has %d files after the crash, want 0 (both were used)", s2.PoolLen())
	}
}

func TestInvalidConfig(t *testing.T) {
	for _, cfg := range []chunkstore.Config{{}, {Dir: "/d", ChunkSize: 1000}} {
		if _, err := chunkstore.Open(cfg); !errors.Is(err, chunkstore.ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
