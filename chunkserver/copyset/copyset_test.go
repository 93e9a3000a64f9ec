package copyset_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"basalt/chunkserver/chunkstore"
	"basalt/chunkserver/copyset"
	"basalt/raft"
	"basalt/raft/rafttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	chunkSize = 1 << 20
	chunks    = 4
	waitLong  = 30 * time.Second
)

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []copyset.Command{
		{Op: copyset.OpWrite, Chunk: 7, Offset: 4093, Data: []byte("hello")},
		{Op: copyset.OpDiscard, Chunk: 1, Offset: 0, Length: 1 << 20},
		{Op: copyset.OpDelete, Chunk: 9},
	} {
		got, err := copyset.Decode(c.Encode())
		if err != nil || got.Op != c.Op || got.Chunk != c.Chunk || got.Offset != c.Offset || !bytes.Equal(got.Data, c.Data) {
			t.Errorf("round trip of %+v: got %+v, %v", c, got, err)
		}
	}
	for _, b := range [][]byte{nil, {1, 2, 3}, append(copyset.Command{Op: copyset.OpDelete}.Encode(), 0), {9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, err := copyset.Decode(b); !errors.Is(err, copyset.ErrBadCommand) {
			t.Errorf("decode %v: got %v, want ErrBadCommand", b, err)
		}
	}
}

// replicas gives every host of a rafttest.Cluster a chunk store on its
// filesystem and a copyset state machine per group.
type replicas struct {
	t      *testing.T
	mu     sync.Mutex
	stores map[vfs.FS]*chunkstore.FileStore
	sms    map[uint64]map[uint64]*copyset.StateMachine // host -> group -> SM
}

func (r *replicas) factory(host, group uint64, fs vfs.FS) (raft.StateMachine, error) {
	st, err := r.store(fs)
	if err != nil {
		return nil, err
	}
	sm := copyset.New(copyset.Config{Copyset: group, Store: st, FS: fs, Dir: fmt.Sprintf("/copysets/%d", group)})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sms[host] == nil {
		r.sms[host] = map[uint64]*copyset.StateMachine{}
	}
	r.sms[host][group] = sm
	return sm, nil
}

// store opens one chunk store per filesystem (a crashed host gets a new
// filesystem, hence a new store).
func (r *replicas) store(fs vfs.FS) (*chunkstore.FileStore, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.stores[fs]; st != nil {
		return st, nil
	}
	st, err := chunkstore.Open(chunkstore.Config{Dir: "/chunks", FS: fs, ChunkSize: chunkSize, PoolFiles: 2})
	if err != nil {
		return nil, err
	}
	r.stores[fs] = st
	r.t.Cleanup(func() { _ = st.Close() })
	return st, st.FillPool()
}

func (r *replicas) sm(host, group uint64) *copyset.StateMachine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sms[host][group]
}

// model is what every replica's chunks must hold: the acknowledged
// commands applied in order.
type model map[uint64][]byte

func (m model) apply(c copyset.Command) {
	switch c.Op {
	case copyset.OpWrite:
		copy(m.chunk(c.Chunk)[c.Offset:], c.Data)
	case copyset.OpDiscard:
		clear(m.chunk(c.Chunk)[c.Offset : c.Offset+c.Length])
	case copyset.OpDelete:
		delete(m, c.Chunk)
	}
}

func (m model) chunk(id uint64) []byte {
	if m[id] == nil {
		m[id] = make([]byte, chunkSize)
	}
	return m[id]
}

func randomCommand(rng *rand.Rand) copyset.Command {
	c := copyset.Command{Chunk: rng.Uint64N(chunks) + 1, Offset: rng.Int64N(chunkSize - 20000)}
	switch n := rng.IntN(100); {
	case n < 85:
		c.Op, c.Data = copyset.OpWrite, make([]byte, 1+rng.IntN(20000))
		for i := range c.Data {
			c.Data[i] = byte(rng.Uint32())
		}
	case n < 97:
		c.Op, c.Length = copyset.OpDiscard, 1+rng.Int64N(20000)
	default:
		c.Op = copyset.OpDelete
	}
	return c
}

// write proposes n random commands one after another, each retried until
// acknowledged (commands are idempotent, so a retry of one that was applied
// after all is harmless), and applies them to m.
func write(t *testing.T, c *rafttest.Cluster, rng *rand.Rand, m model, mu *sync.Mutex, n int) {
	for range n {
		cmd := randomCommand(rng)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := c.Propose(ctx, 1, string(cmd.Encode()))
			cancel()
			if err == nil {
				break
			}
			t.Logf("retrying after %v", err)
		}
		mu.Lock()
		m.apply(cmd)
		mu.Unlock()
	}
}

// converged checks every given host's chunks against m.
func converged(r *replicas, m model, hosts ...uint64) error {
	buf := make([]byte, chunkSize)
	for _, h := range hosts {
		sm := r.sm(h, 1)
		if sm == nil {
			return fmt.Errorf("host %d has no copyset", h)
		}
		for id := uint64(1); id <= chunks; id++ {
			want := m[id]
			if want == nil {
				want = make([]byte, chunkSize)
			}
			if err := sm.ReadChunk(id, 0, buf); err != nil {
				return err
			}
			if !bytes.Equal(buf, want) {
				return fmt.Errorf("host %d chunk %d differs from the acknowledged writes", h, id)
			}
		}
	}
	return nil
}

// TestReplicasConvergeThroughFuzzySnapshotAndCrash drives random writes,
// discards and deletes through a 3-replica copyset; a replica that was down
// while the others checkpointed and compacted catches up by a snapshot
// streamed *while writes continue*, and then all three crash at once losing
// everything unsynced. Every replica must end up with exactly the
// acknowledged commands' result.
func TestReplicasConvergeThroughFuzzySnapshotAndCrash(t *testing.T) {
	r := &replicas{t: t, stores: map[vfs.FS]*chunkstore.FileStore{}, sms: map[uint64]map[uint64]*copyset.StateMachine{}}
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{
		NewFS:   func() vfs.FS { return vfs.NewCrashableMem() },
		Factory: r.factory,
	})
	c.CreateGroup(1, 1, 2, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	m, mu := model{}, &sync.Mutex{}
	write(t, c, rng, m, mu, 60)

	leader := c.WaitLeader(1, waitLong)
	down := leader%3 + 1
	c.Stop(down)
	write(t, c, rng, m, mu, 60)
	for _, h := range []uint64{1, 2, 3} {
		if h != down {
			idx, err := r.sm(h, 1).Checkpoint()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Host(h).Compact(context.Background(), 1, idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The lagging replica comes back while writes go on.
	var wg sync.WaitGroup
	wg.Go(func() { write(t, c, rng, m, mu, 120) })
	c.Start(down)
	wg.Wait()
	c.Eventually(waitLong, func() error { return converged(r, m, 1, 2, 3) })
	if n := snapshotsReceived(c.Host(down)); n < 1 {
		t.Fatalf("host %d received %v snapshots; it should have caught up by snapshot", down, n)
	}

	// Crash all three at once, keeping only synced data.
	clones := map[uint64]vfs.FS{}
	for _, h := range []uint64{1, 2, 3} {
		clones[h] = c.FS(h).(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{})
	}
	for _, h := range []uint64{1, 2, 3} {
		c.Stop(h)
		c.SetFS(h, clones[h])
	}
	for _, h := range []uint64{1, 2, 3} {
		c.Start(h)
	}
	c.Eventually(waitLong, func() error { return converged(r, m, 1, 2, 3) })
	write(t, c, rng, m, mu, 20)
	c.Eventually(waitLong, func() error { return converged(r, m, 1, 2, 3) })
}

func snapshotsReceived(h *raft.Host) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collectors()...)
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "basalt_raft_snapshots_received_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

// TestBadCommandsFailAlone: a malformed or out-of-range command fails with a
// clear error and the copyset keeps working.
func TestBadCommandsFailAlone(t *testing.T) {
	r := &replicas{t: t, stores: map[vfs.FS]*chunkstore.FileStore{}, sms: map[uint64]map[uint64]*copyset.StateMachine{}}
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{Factory: r.factory})
	c.CreateGroup(1, 1, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	beyond := copyset.Command{Op: copyset.OpWrite, Chunk: 1, Offset: chunkSize - 2, Data: []byte("abc")}
	if _, err := c.Propose(ctx, 1, string(beyond.Encode())); !errors.Is(err, chunkstore.ErrOutOfRange) {
		t.Fatalf("write past the chunk end: got %v, want ErrOutOfRange", err)
	}
	if _, err := c.Propose(ctx, 1, "garbage"); !errors.Is(err, copyset.ErrBadCommand) {
		t.Fatalf("garbage command: got %v, want ErrBadCommand", err)
	}
	m := model{}
	write(t, c, rand.New(rand.NewPCG(3, 4)), m, &sync.Mutex{}, 10)
	c.Eventually(waitLong, func() error { return converged(r, m, 1, 2, 3) })
}
