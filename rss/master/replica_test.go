package master_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/raft"
	"basalt/rss/master"
	"basalt/rss/master/mastertest"
)

// history is a run of commands touching every mutation: two applications,
// a shuffle placed, revived, its maps ended (one twice, one by a losing
// attempt), committed, a second shuffle removed and its deletion done on
// one worker, one application expired and an unknown one unregistered.
func history() []master.Command {
	workers := mastertest.WorkerMetas(3)
	token := string(bytes.Repeat([]byte("k"), master.MinTokenLen))
	return []master.Command{
		{RegisterApp: &master.RegisterApp{App: "a", NewToken: "ta", Now: t0, Lease: lease}},
		{RegisterApp: &master.RegisterApp{App: "b", NewToken: "unused", Presented: token, Now: t0, Lease: lease}},
		{Heartbeat: &master.Heartbeat{App: "a", Now: t0.Add(lease / 2), Lease: lease}},
		{RegisterShuffle: &master.RegisterShuffle{App: "a", Shuffle: 1, NumMaps: 2, NumPartitions: 4, Workers: workers, Seed: 7}},
		{RegisterShuffle: &master.RegisterShuffle{App: "a", Shuffle: 2, NumMaps: 1, NumPartitions: 2, Workers: workers, Seed: 8}},
		{Revive: &master.Revive{App: "a", Shuffle: 1, Partition: 2, FailedEpoch: 0, Workers: workers, Seed: 9}},
		{MapEnd: &master.MapEnd{App: "a", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 0, Attempt: 0, Batches: []int32{1, 0, 2, 1}}}},
		{MapEnd: &master.MapEnd{App: "a", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 0, Attempt: 0, Batches: []int32{1, 0, 2, 1}}}},
		{MapEnd: &master.MapEnd{App: "a", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 0, Attempt: 1, Batches: []int32{1, 1, 1, 1}}}},
		{MapEnd: &master.MapEnd{App: "a", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 1, Attempt: 3, Batches: []int32{0, 0, 0, 5}}}},
		{CommitDone: &master.CommitDone{App: "a", Shuffle: 1, Gen: 1, Failed: []string{"w1"}}},
		{UnregisterShuffle: &master.UnregisterShuffle{App: "a", Shuffle: 2}},
		{DeletionDone: &master.DeletionDone{ID: 1, Worker: "w3"}},
		{Expire: &master.Expire{Now: t0.Add(lease)}},
		{UnregisterApp: &master.UnregisterApp{App: "nope"}},
	}
}

// entries encodes cmds as raft log entries from index 1.
func entries(t *testing.T, cmds []master.Command) []raft.Entry {
	t.Helper()
	var out []raft.Entry
	for i, c := range cmds {
		b, err := master.EncodeCommand(c)
		noErr(t, err)
		out = append(out, raft.Entry{Index: uint64(i + 1), Type: raft.EntryNormal, Data: b})
	}
	return out
}

func snapshotOf(t *testing.T, r *master.Replica) []byte {
	t.Helper()
	src, err := r.Snapshot()
	noErr(t, err)
	var buf bytes.Buffer
	noErr(t, src.WriteTo(context.Background(), &buf))
	noErr(t, src.Close())
	return buf.Bytes()
}

// TestReplicaAppliesTheLogLikeTheState: a Replica applying the encoded
// history returns, entry by entry, what the State's methods return called
// directly, and ends in the same State (equal snapshots); a command that
// does not decode fails alone.
func TestReplicaAppliesTheLogLikeTheState(t *testing.T) {
	cmds := history()
	direct := master.NewState(master.PlacementConfig{})
	r := master.NewReplica(vfs.NewMem(), "cp.json", master.PlacementConfig{})
	ents := entries(t, cmds)
	ents = append(ents[:3], append([]raft.Entry{{Index: 0, Type: raft.EntryNormal, Data: []byte("{garbage")}}, ents[3:]...)...)
	for i := range ents {
		ents[i].Index = uint64(i + 1)
	}
	results, err := r.Apply(ents)
	noErr(t, err)
	if !errors.Is(results[3].Err, master.ErrInvalidArgument) {
		t.Fatalf("undecodable entry: %+v, want ErrInvalidArgument", results[3])
	}
	results = append(results[:3], results[4:]...)
	for i, c := range cmds {
		v, err := direct.Apply(c)
		if !reflect.DeepEqual(v, results[i].Value) || !reflect.DeepEqual(err, results[i].Err) {
			t.Errorf("command %d: replica gave %v, %v; the State %v, %v", i, results[i].Value, results[i].Err, v, err)
		}
	}
	want, err := direct.MarshalSnapshot()
	noErr(t, err)
	if got := snapshotOf(t, r); !bytes.Equal(got, want) {
		t.Fatalf("replica state\n%s\nwant\n%s", got, want)
	}
	if r.Applied() != uint64(len(ents)) {
		t.Fatalf("applied %d, want %d", r.Applied(), len(ents))
	}
}

// TestReplicaCheckpointAndSnapshot: a checkpoint reopens to the same
// State at the same index; a snapshot restored on another replica gives
// the same State and is checkpointed there at once.
func TestReplicaCheckpointAndSnapshot(t *testing.T) {
	fs := vfs.NewMem()
	r := master.NewReplica(fs, "cp.json", master.PlacementConfig{})
	if idx, err := r.Open(context.Background()); err != nil || idx != 0 {
		t.Fatalf("Open without a checkpoint = %d, %v; want 0, nil", idx, err)
	}
	_, err := r.Apply(entries(t, history()[:8]))
	noErr(t, err)
	idx, err := r.Checkpoint()
	noErr(t, err)
	if idx != 8 {
		t.Fatalf("checkpoint covers %d, want 8", idx)
	}
	want := snapshotOf(t, r)

	reopened := master.NewReplica(fs, "cp.json", master.PlacementConfig{})
	if idx, err := reopened.Open(context.Background()); err != nil || idx != 8 {
		t.Fatalf("Open = %d, %v; want 8, nil", idx, err)
	}
	if got := snapshotOf(t, reopened); !bytes.Equal(got, want) {
		t.Fatalf("reopened state\n%s\nwant\n%s", got, want)
	}

	other := vfs.NewMem()
	restored := master.NewReplica(other, "cp.json", master.PlacementConfig{})
	noErr(t, restored.Restore(context.Background(), 8, bytes.NewReader(want)))
	if got := snapshotOf(t, restored); !bytes.Equal(got, want) || restored.Applied() != 8 {
		t.Fatalf("restored state at %d\n%s\nwant at 8\n%s", restored.Applied(), got, want)
	}
	again := master.NewReplica(other, "cp.json", master.PlacementConfig{})
	if idx, err := again.Open(context.Background()); err != nil || idx != 8 {
		t.Fatalf("Open after Restore = %d, %v; want 8, nil (Restore checkpoints)", idx, err)
	}

	noErr(t, vfsWrite(fs, "cp.json", []byte("not json")))
	if _, err := master.NewReplica(fs, "cp.json", master.PlacementConfig{}).Open(context.Background()); !errors.Is(err, master.ErrInvalidArgument) {
		t.Fatalf("Open of a corrupt checkpoint: %v, want ErrInvalidArgument", err)
	}
}

func vfsWrite(fs vfs.FS, path string, b []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

// TestRetriedCommandsGiveTheSameAnswer: a client whose call reached a
// leader that died before replying retries it on the next leader, so the
// command is applied twice. Each mutation a client drives answers the
// second time as it did the first and leaves the State as one application
// would.
func TestRetriedCommandsGiveTheSameAnswer(t *testing.T) {
	workers := mastertest.WorkerMetas(3)
	token := string(bytes.Repeat([]byte("x"), master.MinTokenLen))
	retried := []master.Command{
		{RegisterApp: &master.RegisterApp{App: "a", NewToken: "first", Presented: token, Now: t0, Lease: lease}},
		{RegisterShuffle: &master.RegisterShuffle{App: "a", Shuffle: 1, NumMaps: 1, NumPartitions: 3, Workers: workers, Seed: 1}},
		{MapEnd: &master.MapEnd{App: "a", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 0, Attempt: 2, Batches: []int32{1, 1, 1}}}},
		{CommitDone: &master.CommitDone{App: "a", Shuffle: 1}},
	}
	once, twice := master.NewState(master.PlacementConfig{}), master.NewState(master.PlacementConfig{})
	for i, c := range retried {
		if c.CommitDone != nil {
			plan, err := once.CommitPlan("a", 1)
			noErr(t, err)
			c.CommitDone.Gen = plan.Gen
		}
		want, wantErr := once.Apply(c)
		noErr(t, wantErr)
		_, err := twice.Apply(c)
		noErr(t, err)
		got, err := twice.Apply(c)
		if l, ok := got.(master.Layout); ok {
			// Created tells the first registration from the retry;
			// the layout is what the client uses.
			l.Created = true
			got = l
		}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("command %d applied again: %+v, %v; first answer %+v", i, got, err, want)
		}
	}
	a, err := once.MarshalSnapshot()
	noErr(t, err)
	b, err := twice.MarshalSnapshot()
	noErr(t, err)
	if !bytes.Equal(a, b) {
		t.Fatalf("state after retries\n%s\nwant\n%s", b, a)
	}
}
