package mds_test

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"basalt/mds"
	"basalt/mds/mdspb"
)

// flakyKV fails every write while fail is set, as a full or broken disk
// would.
type flakyKV struct {
	mds.KV
	fail atomic.Bool
}

var errDisk = errors.New("injected disk failure")

func (k *flakyKV) Set(key, value []byte) error {
	if k.fail.Load() {
		return errDisk
	}
	return k.KV.Set(key, value)
}

func (k *flakyKV) Delete(key []byte) error {
	if k.fail.Load() {
		return errDisk
	}
	return k.KV.Delete(key)
}

func (k *flakyKV) Apply(b *mds.Batch) error {
	if k.fail.Load() {
		return errDisk
	}
	return k.KV.Apply(b)
}

// newFlakyEnv starts an MDS on a flakyKV; the test owns the store.
func newFlakyEnv(t *testing.T) (*env, *flakyKV) {
	t.Helper()
	pkv, err := mds.OpenPebbleKV(vfs.NewMem(), "/kv", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pkv.Close() })
	kv := &flakyKV{KV: pkv}
	return newEnv(t, func(c *mds.Config) { c.KV, c.Dir = kv, "" }), kv
}

// TestWriteFailuresChangeNothing: when the store refuses a write, the
// call fails with Internal and the MDS's state is exactly as before; once
// the store recovers, the same calls succeed with the IDs they would have
// had.
func TestWriteFailuresChangeNothing(t *testing.T) {
	e, kv := newFlakyEnv(t)
	e.pool()
	e.createVolume("v", 2*segmentSize)
	s := e.openWriter("v", "w")
	before := e.snapshot()

	kv.fail.Store(true)
	for name, call := range e.mutations(s) {
		if err := call(); codeOf(err) != codes.Internal {
			t.Errorf("%s with a failing store: %v, want Internal", name, err)
		}
	}
	e.checkSnapshot(before)
	kv.fail.Store(false)
	noErr(t, e.renew("v", s))
	if id := e.register("d"); id != 4 {
		t.Fatalf("chunkserver ID after failures: %d, want 4", id)
	}
	seg := must(e.segment("v", 0, true, s))(t)
	if seg.GetChunks()[0].GetChunk() != 1 {
		t.Fatalf("first chunk ID after failures: %d, want 1", seg.GetChunks()[0].GetChunk())
	}
}

// mutations returns one call of each writing RPC, for a volume v with
// writer session s.
func (e *env) mutations(s uint64) map[string]func() error {
	c := ctx(e.t)
	return map[string]func() error{
		"register": func() error {
			_, err := e.c.RegisterChunkserver(c, &mdspb.RegisterChunkserverRequest{Address: "x:1", Zone: "d"})
			return err
		},
		"create": func() error {
			_, err := e.c.CreateVolume(c, &mdspb.CreateVolumeRequest{Name: "w", Size: 4096})
			return err
		},
		"resize": func() error {
			_, err := e.c.ResizeVolume(c, &mdspb.ResizeVolumeRequest{Name: "v", Size: 3 * segmentSize})
			return err
		},
		"allocate": func() error { _, err := e.segment("v", 0, true, s); return err },
		"force open": func() error {
			_, err := e.open("v", "x", true, true)
			return err
		},
		"close": func() error { return e.closeVolume("v", s) },
	}
}

// TestDeleteFailureKeepsVolume: a failed delete leaves the volume, its
// segments and no pending deletions.
func TestDeleteFailureKeepsVolume(t *testing.T) {
	e, kv := newFlakyEnv(t)
	ids := e.pool()
	e.createVolume("v", segmentSize)
	s := e.openWriter("v", "w")
	seg := must(e.segment("v", 0, true, s))(t)
	noErr(t, e.closeVolume("v", s))
	kv.fail.Store(true)
	_, err := e.c.DeleteVolume(ctx(t), &mdspb.DeleteVolumeRequest{Name: "v"})
	if codeOf(err) != codes.Internal {
		t.Fatalf("delete with a failing store: %v", err)
	}
	kv.fail.Store(false)
	if got := must(e.segment("v", 0, false, 0))(t); !proto.Equal(got, seg) {
		t.Fatalf("segment after a failed delete: %v", got)
	}
	resp := e.heartbeat(ids[0], states(e.copysetIDs(), "Leader", 1, ids[0]))
	if len(resp.GetDeleteChunks()) != 0 {
		t.Fatalf("failed delete queued %d chunk deletions", len(resp.GetDeleteChunks()))
	}
}
