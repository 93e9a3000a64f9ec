package master_test

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"basalt/rss/gossip"
	"basalt/rss/master"
	"basalt/rss/master/mastertest"
)

const lease = 10 * time.Second

// newState returns a State with application "app" registered at t0.
func newState(t *testing.T) *master.State {
	t.Helper()
	st := master.NewState(master.PlacementConfig{})
	_, err := st.RegisterApp(master.RegisterApp{App: "app", NewToken: "tok", Now: t0, Lease: lease})
	noErr(t, err)
	return st
}

// place registers shuffle id with parts partitions on workers.
func place(t *testing.T, st *master.State, id, parts int32, noReplica bool, workers []gossip.Meta, seed uint64) []master.Location {
	t.Helper()
	l, err := st.RegisterShuffle(master.RegisterShuffle{
		App: "app", Shuffle: id, NumMaps: 4, NumPartitions: parts, NoReplica: noReplica, Workers: workers, Seed: seed,
	})
	noErr(t, err)
	return l.Locations
}

// spread returns max-min of counts over ids (missing ids count 0).
func spread(counts map[string]int, ids []string) int {
	lo, hi := -1, 0
	for _, id := range ids {
		n := counts[id]
		hi = max(hi, n)
		if lo < 0 || n < lo {
			lo = n
		}
	}
	return hi - lo
}

func ids(workers []gossip.Meta) []string {
	var out []string
	for _, w := range workers {
		out = append(out, w.ID)
	}
	return out
}

func TestPlacementSpreadsPrimariesEvenly(t *testing.T) {
	for _, n := range []int{2, 3, 5, 7} {
		for _, parts := range []int32{1, 10, 30, 101} {
			for _, noReplica := range []bool{false, true} {
				for seed := range uint64(5) {
					name := fmt.Sprintf("%d workers/%d partitions/no_replica=%v/seed %d", n, parts, noReplica, seed)
					t.Run(name, func(t *testing.T) {
						workers := mastertest.WorkerMetas(n)
						locs := place(t, newState(t), 1, parts, noReplica, workers, seed)
						checkEven(t, locs, workers, noReplica)
					})
				}
			}
		}
	}
}

// checkEven checks that primaries differ by at most one per worker, all
// copies by at most two, and that every location has a replica on
// another worker (or none when noReplica).
func checkEven(t *testing.T, locs []master.Location, workers []gossip.Meta, noReplica bool) {
	t.Helper()
	primaries, all := map[string]int{}, map[string]int{}
	for p, l := range locs {
		if l.Partition != int32(p) || l.Epoch != 0 {
			t.Errorf("location %d = %+v, want partition %d epoch 0", p, l, p)
		}
		primaries[l.Primary.ID]++
		all[l.Primary.ID]++
		switch {
		case noReplica && !l.Replica.IsZero():
			t.Errorf("partition %d has replica %v in a shuffle without replicas", p, l.Replica)
		case !noReplica && l.Replica.ID == l.Primary.ID:
			t.Errorf("partition %d has primary and replica on %v", p, l.Primary)
		case !noReplica:
			all[l.Replica.ID]++
		}
	}
	if d := spread(primaries, ids(workers)); d > 1 {
		t.Errorf("primaries per worker %v: spread %d, want at most 1", primaries, d)
	}
	if d := spread(all, ids(workers)); d > 2 {
		t.Errorf("copies per worker %v: spread %d, want at most 2", all, d)
	}
}

func TestPlacementWithOneWorkerHasNoReplica(t *testing.T) {
	locs := place(t, newState(t), 1, 4, false, mastertest.WorkerMetas(1), 1)
	for _, l := range locs {
		if l.Primary.ID != "w1" || !l.Replica.IsZero() {
			t.Errorf("location %+v, want primary w1 and no replica", l)
		}
	}
	if n := master.Unreplicated(locs); n != 4 {
		t.Errorf("Unreplicated = %d, want 4", n)
	}
}

func TestPlacementSkipsUnusableWorkers(t *testing.T) {
	workers := mastertest.WorkerMetas(5)
	workers[0].Decommissioning = true
	workers[1].DiskFreeBytes = master.DefaultMinDiskFreeBytes - 1
	workers[2].Role = gossip.RoleMaster
	workers = append(workers, workers[3]) // a duplicate ID counts once
	locs := place(t, newState(t), 1, 20, false, workers, 1)
	for _, l := range locs {
		for _, w := range []master.WorkerRef{l.Primary, l.Replica} {
			if w.ID != "w4" && w.ID != "w5" {
				t.Errorf("location %+v uses unusable worker %s", l, w.ID)
			}
		}
	}
	_, err := newState(t).RegisterShuffle(master.RegisterShuffle{App: "app", Shuffle: 1, NumPartitions: 1, Workers: workers[:3]})
	wantErr(t, "no usable worker", err, master.ErrNoWorkers)
}

// TestDecommissioningWorkerGetsNoNewPartitions: once a worker gossips
// decommissioning, neither a new shuffle nor a Revive places anything on
// it (even when it is the only worker outside the failed pair, or has the
// most free disk), while its existing locations stay as they were.
func TestDecommissioningWorkerGetsNoNewPartitions(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(3)
	before := place(t, st, 1, 6, false, workers, 1)
	workers[0].Decommissioning, workers[0].DiskFreeBytes = true, 4<<40
	for seed := range uint64(5) {
		for _, l := range place(t, st, int32(10+seed), 12, false, workers, seed) {
			if l.Primary.ID == "w1" || l.Replica.ID == "w1" || l.Replica.IsZero() {
				t.Fatalf("seed %d: location %+v, want w2 and w3 only, replicated", seed, l)
			}
		}
	}
	for _, old := range before {
		if old.Primary.ID == "w1" || old.Replica.ID == "w1" {
			continue
		}
		loc, err := st.Revive(master.Revive{App: "app", Shuffle: 1, Partition: old.Partition, FailedEpoch: 0, Workers: workers, Seed: 3})
		noErr(t, err)
		if loc.Primary.ID == "w1" || loc.Replica.ID == "w1" {
			t.Fatalf("Revive of %+v = %+v, placed on the decommissioning worker", old, loc)
		}
	}
	info, err := st.Shuffle("app", 1)
	noErr(t, err)
	epoch0 := slices.DeleteFunc(slices.Clone(info.Locations), func(l master.Location) bool { return l.Epoch != 0 })
	if !reflect.DeepEqual(epoch0, before) {
		t.Errorf("epoch 0 locations changed: %+v, want %+v", epoch0, before)
	}
}

func TestPlacementPrefersFreeDiskThenFewerPartitions(t *testing.T) {
	workers := mastertest.WorkerMetas(3)
	workers[0].DiskFreeBytes = 2 << 40
	for seed := range uint64(10) {
		l := place(t, newState(t), 1, 1, false, workers, seed)[0]
		if l.Primary.ID != "w1" {
			t.Errorf("seed %d: primary %s, want w1 (most free disk)", seed, l.Primary.ID)
		}
	}
	workers = mastertest.WorkerMetas(3)
	workers[0].ActivePartitions = 50
	for _, l := range place(t, newState(t), 1, 6, false, workers, 1) {
		if l.Primary.ID == "w1" || l.Replica.ID == "w1" {
			t.Errorf("location %+v uses w1, which has 50 active partitions", l)
		}
	}
}

func TestPlacementCountsTheStatesOpenPartitions(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(3)
	place(t, st, 1, 2, true, workers[:1], 1) // two partitions on w1, not gossiped yet
	for _, l := range place(t, st, 2, 4, true, workers, 1) {
		if l.Primary.ID == "w1" {
			t.Errorf("shuffle 2 location %+v on w1, which holds shuffle 1's partitions", l)
		}
	}
}

func TestPlacementIsDeterministic(t *testing.T) {
	workers := mastertest.WorkerMetas(5)
	reversed := slices.Clone(workers)
	slices.Reverse(reversed)
	a := place(t, newState(t), 1, 50, false, workers, 7)
	b := place(t, newState(t), 1, 50, false, reversed, 7)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("same seed and workers in another order placed differently:\n%v\n%v", a, b)
	}
}

func TestReviveMovesOffTheFailedWorkers(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(4)
	old := place(t, st, 1, 1, false, workers, 1)[0]
	revive := func(epoch int32) (master.Location, error) {
		return st.Revive(master.Revive{App: "app", Shuffle: 1, Partition: 0, FailedEpoch: epoch, Workers: workers, Seed: 2})
	}
	loc, err := revive(0)
	noErr(t, err)
	if loc.Epoch != 1 || loc.Partition != 0 {
		t.Fatalf("Revive = %+v, want partition 0 epoch 1", loc)
	}
	failed := []string{old.Primary.ID, old.Replica.ID}
	if slices.Contains(failed, loc.Primary.ID) || slices.Contains(failed, loc.Replica.ID) || loc.Primary.ID == loc.Replica.ID {
		t.Errorf("Revive = %+v, want two new workers other than %v", loc, failed)
	}
	again, err := revive(0)
	noErr(t, err)
	if again != loc {
		t.Errorf("second Revive of epoch 0 = %+v, want the newer epoch %+v", again, loc)
	}
	_, err = revive(5)
	wantErr(t, "Revive of an epoch never given out", err, master.ErrInvalidArgument)
	_, err = st.Revive(master.Revive{App: "app", Shuffle: 1, Partition: 1, Workers: workers})
	wantErr(t, "Revive of a partition out of range", err, master.ErrPartitionNotFound)
	info, err := st.Shuffle("app", 1)
	noErr(t, err)
	if want := []master.Location{old, loc}; !reflect.DeepEqual(info.Locations, want) {
		t.Errorf("locations = %+v, want every epoch %+v", info.Locations, want)
	}
}

func TestReviveWithTwoWorkersSwapsThem(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(2)
	old := place(t, st, 1, 1, false, workers, 1)[0]
	loc, err := st.Revive(master.Revive{App: "app", Shuffle: 1, Partition: 0, FailedEpoch: 0, Workers: workers})
	noErr(t, err)
	if loc.Primary != old.Replica || loc.Replica != old.Primary {
		t.Errorf("Revive of %+v = %+v, want primary and replica swapped", old, loc)
	}
}

func TestMapEndFirstAttemptWins(t *testing.T) {
	st := newState(t)
	place(t, st, 1, 3, false, mastertest.WorkerMetas(3), 1)
	end := func(m, a int32, batches ...int32) master.MapEndResult {
		t.Helper()
		r, err := st.MapEnd(master.MapEnd{App: "app", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: m, Attempt: a, Batches: batches}})
		noErr(t, err)
		return r
	}
	steps := []struct {
		m, a int32
		want master.MapEndResult
	}{
		{0, 1, master.MapEndResult{Won: true, Winner: 1}},
		{0, 0, master.MapEndResult{Won: false, Winner: 1}},
		{0, 1, master.MapEndResult{Won: true, Winner: 1}},  // a retried call
		{0, 0, master.MapEndResult{Won: false, Winner: 1}}, // recorded once
		{0, 2, master.MapEndResult{Won: false, Winner: 1}},
		{1, 0, master.MapEndResult{Won: true, Winner: 0}},
	}
	for i, s := range steps {
		if got := end(s.m, s.a, 5, 0, int32(i)); got != s.want {
			t.Errorf("step %d: MapEnd(map %d, attempt %d) = %+v, want %+v", i, s.m, s.a, got, s.want)
		}
	}
	info, err := st.Shuffle("app", 1)
	noErr(t, err)
	wantWinners := []master.MapAttempt{{MapIndex: 0, Attempt: 1, Batches: []int32{5, 0, 0}}, {MapIndex: 1, Attempt: 0, Batches: []int32{5, 0, 5}}}
	wantIgnored := []master.MapAttempt{{MapIndex: 0, Attempt: 0, Batches: []int32{5, 0, 1}}, {MapIndex: 0, Attempt: 2, Batches: []int32{5, 0, 4}}}
	if !reflect.DeepEqual(info.Winners, wantWinners) || !reflect.DeepEqual(info.Ignored, wantIgnored) {
		t.Errorf("winners %+v ignored %+v, want %+v and %+v", info.Winners, info.Ignored, wantWinners, wantIgnored)
	}
}

func TestMapEndRejects(t *testing.T) {
	st := newState(t)
	place(t, st, 1, 2, false, mastertest.WorkerMetas(2), 1) // 4 maps, 2 partitions
	for _, at := range []master.MapAttempt{
		{MapIndex: 4}, {MapIndex: -1}, {Attempt: -1}, {Batches: []int32{1, 1, 1}}, {Batches: []int32{-1}},
	} {
		_, err := st.MapEnd(master.MapEnd{App: "app", Shuffle: 1, Attempt: at})
		wantErr(t, fmt.Sprintf("MapEnd(%+v)", at), err, master.ErrInvalidArgument)
	}
	_, err := st.MapEnd(master.MapEnd{App: "app", Shuffle: 2})
	wantErr(t, "MapEnd of an unknown shuffle", err, master.ErrShuffleNotFound)
}

func TestLeaseExpiry(t *testing.T) {
	st := newState(t) // "app" registered at t0
	locs := place(t, st, 1, 2, false, mastertest.WorkerMetas(2), 1)
	if got := st.Expire(master.Expire{Now: t0.Add(lease - time.Millisecond)}); len(got) != 0 {
		t.Fatalf("Expire before the lease ran out removed %+v", got)
	}
	_, err := st.Heartbeat(master.Heartbeat{App: "app", Now: t0.Add(5 * time.Second), Lease: lease})
	noErr(t, err)
	if got := st.Expire(master.Expire{Now: t0.Add(lease)}); len(got) != 0 {
		t.Fatalf("Expire after a heartbeat removed %+v", got)
	}
	end := t0.Add(5*time.Second + lease)
	wantErr(t, "Authenticate after the lease ran out", st.Authenticate("app", "tok", end), master.ErrAppNotFound)
	got := st.Expire(master.Expire{Now: end})
	want := []master.Removal{{ID: 1, App: "app", Token: "tok", Shuffle: -1, Workers: refs(locs)}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Expire = %+v, want %+v", got, want)
	}
	if apps, _ := st.Counts(); apps != 0 {
		t.Errorf("%d applications after expiry, want 0", apps)
	}
}

// refs returns the workers of locs, sorted by ID.
func refs(locs []master.Location) []master.WorkerRef {
	set := map[string]master.WorkerRef{}
	for _, l := range locs {
		set[l.Primary.ID] = l.Primary
		if !l.Replica.IsZero() {
			set[l.Replica.ID] = l.Replica
		}
	}
	var out []master.WorkerRef
	for _, id := range slices.Sorted(maps.Keys(set)) {
		out = append(out, set[id])
	}
	return out
}

func TestRegisterAppTokens(t *testing.T) {
	st := newState(t)
	wantErr(t, "Authenticate with the token", st.Authenticate("app", "tok", t0), nil)
	wantErr(t, "Authenticate with a wrong token", st.Authenticate("app", "bad", t0), master.ErrUnauthenticated)
	wantErr(t, "Authenticate without a token", st.Authenticate("app", "", t0), master.ErrUnauthenticated)
	wantErr(t, "Authenticate an unknown app", st.Authenticate("other", "tok", t0), master.ErrAppNotFound)
	_, err := st.RegisterApp(master.RegisterApp{App: "app", NewToken: "new", Now: t0, Lease: lease})
	wantErr(t, "re-register without the token", err, master.ErrAppExists)
	l, err := st.RegisterApp(master.RegisterApp{App: "app", NewToken: "new", Presented: "tok", Now: t0.Add(time.Second), Lease: lease})
	noErr(t, err)
	if want := (master.AppLease{Token: "tok", Expires: t0.Add(time.Second + lease)}); l != want {
		t.Errorf("re-register with the token = %+v, want %+v", l, want)
	}
}

// A client choosing its token: a registration retried after a lost reply
// renews the application the first attempt created.
func TestRegisterAppWithAChosenToken(t *testing.T) {
	st := master.NewState(master.PlacementConfig{})
	chosen := strings.Repeat("c", master.MinTokenLen)
	for i := range 2 {
		l, err := st.RegisterApp(master.RegisterApp{App: "app", NewToken: "drawn", Presented: chosen, Now: t0, Lease: lease})
		noErr(t, err)
		if l.Token != chosen {
			t.Fatalf("registration %d got token %q, want the chosen one", i, l.Token)
		}
	}
	_, err := st.RegisterApp(master.RegisterApp{App: "short", NewToken: "drawn", Presented: "short", Now: t0, Lease: lease})
	wantErr(t, "a chosen token shorter than MinTokenLen", err, master.ErrInvalidArgument)
}

func TestRegisterShuffleIsIdempotentForTheSameShape(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(3)
	first := place(t, st, 1, 5, false, workers, 1)
	c := master.RegisterShuffle{App: "app", Shuffle: 1, NumMaps: 4, NumPartitions: 5, Workers: workers, Seed: 99}
	again, err := st.RegisterShuffle(c)
	noErr(t, err)
	if again.Created || !reflect.DeepEqual(again.Locations, first) {
		t.Errorf("second RegisterShuffle = %+v, want the first layout %+v, not created", again, first)
	}
	c.NumPartitions = 6
	_, err = st.RegisterShuffle(c)
	wantErr(t, "RegisterShuffle with another shape", err, master.ErrShuffleExists)
}

// TestRegisterShuffleRun: a shuffle registered by one run (a Spark map
// stage attempt) cannot be claimed by another, so a rerun writes to a
// fresh id; the same run registers again freely, a caller naming no run
// is not checked, and the run survives a snapshot.
func TestRegisterShuffleRun(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(3)
	c := master.RegisterShuffle{App: "app", Shuffle: 7, NumMaps: 4, NumPartitions: 3, Workers: workers, Seed: 1, Run: "stage 2 attempt 0"}
	first, err := st.RegisterShuffle(c)
	noErr(t, err)
	again, err := st.RegisterShuffle(c)
	noErr(t, err)
	if again.Created || !reflect.DeepEqual(again.Locations, first.Locations) {
		t.Errorf("the same run registering again got %+v, want the first layout", again)
	}
	if l, ok := st.Registered(c); !ok || !reflect.DeepEqual(l.Locations, first.Locations) {
		t.Errorf("Registered(same run) = %+v, %v; want the layout, true", l, ok)
	}
	other := c
	other.Run = "stage 2 attempt 1"
	_, err = st.RegisterShuffle(other)
	wantErr(t, "another run claiming the shuffle", err, master.ErrShuffleExists)
	if _, ok := st.Registered(other); ok {
		t.Error("Registered(another run) = true, want false")
	}
	anyRun := c
	anyRun.Run = ""
	_, err = st.RegisterShuffle(anyRun)
	noErr(t, err)

	b, err := st.MarshalSnapshot()
	noErr(t, err)
	restored := master.NewState(master.PlacementConfig{})
	noErr(t, restored.RestoreSnapshot(b))
	_, err = restored.RegisterShuffle(other)
	wantErr(t, "another run after a snapshot", err, master.ErrShuffleExists)
}

func TestCommitDone(t *testing.T) {
	// Two workers, one partition: w1 and w2 hold its two copies.
	setup := func(t *testing.T) (*master.State, master.Location, master.CommitPlan) {
		st := newState(t)
		loc := place(t, st, 1, 1, false, mastertest.WorkerMetas(2), 1)[0]
		plan, err := st.CommitPlan("app", 1)
		noErr(t, err)
		if want := refs([]master.Location{loc}); !reflect.DeepEqual(plan.Workers, want) || plan.Token != "tok" {
			t.Fatalf("CommitPlan = %+v, want workers %v and the token", plan, want)
		}
		return st, loc, plan
	}
	done := func(st *master.State, plan master.CommitPlan, failed ...string) (master.CommitOutcome, error) {
		return st.CommitDone(master.CommitDone{App: "app", Shuffle: 1, Gen: plan.Gen, Failed: failed})
	}
	current := func(t *testing.T, st *master.State) master.ShuffleInfo {
		info, err := st.Shuffle("app", 1)
		noErr(t, err)
		return info
	}

	t.Run("replica fails", func(t *testing.T) {
		st, loc, plan := setup(t)
		out, err := done(st, plan, loc.Replica.ID)
		noErr(t, err)
		want := master.Location{Partition: 0, Primary: loc.Primary}
		if info := current(t, st); !info.Committed || info.Locations[0] != want || len(out.Unreplicated) != 1 {
			t.Errorf("after commit: %+v (outcome %+v), want committed with %+v", info, out, want)
		}
	})
	t.Run("primary fails", func(t *testing.T) {
		st, loc, plan := setup(t)
		out, err := done(st, plan, loc.Primary.ID)
		noErr(t, err)
		want := master.Location{Partition: 0, Primary: loc.Replica}
		if info := current(t, st); !info.Committed || info.Locations[0] != want || len(out.Promoted) != 1 {
			t.Errorf("after commit: %+v (outcome %+v), want committed with the replica promoted %+v", info, out, want)
		}
	})
	t.Run("both fail", func(t *testing.T) {
		st, loc, plan := setup(t)
		_, err := done(st, plan, loc.Primary.ID, loc.Replica.ID)
		wantErr(t, "commit with both copies failed", err, master.ErrCommitFailed)
		if info := current(t, st); info.Committed || info.Locations[0] != loc {
			t.Errorf("after a failed commit: %+v, want uncommitted and unchanged", info)
		}
		_, err = done(st, plan)
		noErr(t, err)
	})
	t.Run("revived meanwhile", func(t *testing.T) {
		st, _, plan := setup(t)
		_, err := st.Revive(master.Revive{App: "app", Shuffle: 1, Workers: mastertest.WorkerMetas(2)})
		noErr(t, err)
		_, err = done(st, plan)
		wantErr(t, "commit of a stale plan", err, master.ErrShuffleChanged)
	})
	t.Run("committed shuffle", func(t *testing.T) {
		st, _, plan := setup(t)
		_, err := done(st, plan)
		noErr(t, err)
		if plan, err := st.CommitPlan("app", 1); err != nil || !plan.Committed {
			t.Errorf("CommitPlan of a committed shuffle = %+v, %v", plan, err)
		}
		_, err = done(st, plan, "w1", "w2")
		noErr(t, err)
		_, err = st.Revive(master.Revive{App: "app", Shuffle: 1, Workers: mastertest.WorkerMetas(2)})
		wantErr(t, "Revive after commit", err, master.ErrCommitted)
		_, err = st.MapEnd(master.MapEnd{App: "app", Shuffle: 1, Attempt: master.MapAttempt{MapIndex: 0}})
		wantErr(t, "MapEnd of a new map after commit", err, master.ErrCommitted)
	})
}

func TestUnregisterShuffle(t *testing.T) {
	st := newState(t)
	locs := place(t, st, 1, 3, false, mastertest.WorkerMetas(3), 1)
	r, err := st.UnregisterShuffle(master.UnregisterShuffle{App: "app", Shuffle: 1})
	noErr(t, err)
	if want := (master.Removal{ID: 1, App: "app", Token: "tok", Shuffle: 1, Workers: refs(locs)}); !reflect.DeepEqual(r, want) {
		t.Errorf("UnregisterShuffle = %+v, want %+v", r, want)
	}
	_, err = st.UnregisterShuffle(master.UnregisterShuffle{App: "app", Shuffle: 1})
	wantErr(t, "second UnregisterShuffle", err, master.ErrShuffleNotFound)
}

// TestPendingDeletions: a removal stays pending until every worker
// reported its files gone; reports are idempotent; the pending set
// survives a snapshot.
func TestPendingDeletions(t *testing.T) {
	st := newState(t)
	workers := mastertest.WorkerMetas(3)
	locs := place(t, st, 1, 3, false, workers, 1)
	place(t, st, 2, 1, true, workers[:1], 1)
	r, err := st.UnregisterShuffle(master.UnregisterShuffle{App: "app", Shuffle: 1})
	noErr(t, err)
	if got := st.PendingDeletions(); len(got) != 1 || !reflect.DeepEqual(got[0], r) || r.ID != 1 {
		t.Fatalf("pending %+v, want the removal %+v with ID 1", got, r)
	}
	all := refs(locs)
	st.DeletionDone(master.DeletionDone{ID: r.ID, Worker: all[0].ID})
	st.DeletionDone(master.DeletionDone{ID: r.ID, Worker: all[0].ID})
	st.DeletionDone(master.DeletionDone{ID: 99, Worker: all[1].ID})
	if got := st.PendingDeletions(); len(got) != 1 || !reflect.DeepEqual(got[0].Workers, all[1:]) {
		t.Fatalf("pending %+v, want workers %v left", got, all[1:])
	}
	gone, err := st.UnregisterApp(master.UnregisterApp{App: "app"})
	noErr(t, err)
	if gone.ID != 2 {
		t.Fatalf("second removal has ID %d, want 2", gone.ID)
	}

	b, err := st.MarshalSnapshot()
	noErr(t, err)
	restored := master.NewState(master.PlacementConfig{})
	noErr(t, restored.RestoreSnapshot(b))
	if got, want := restored.PendingDeletions(), st.PendingDeletions(); !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Fatalf("restored pending %+v, want %+v", got, want)
	}
	for _, w := range all[1:] {
		restored.DeletionDone(master.DeletionDone{ID: 1, Worker: w.ID})
	}
	restored.DeletionDone(master.DeletionDone{ID: 2, Worker: workers[0].ID})
	if got := restored.PendingDeletions(); len(got) != 0 {
		t.Fatalf("pending %+v after every report, want none", got)
	}
	if _, err := restored.RegisterApp(master.RegisterApp{App: "next", NewToken: "t", Now: t0, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	removeAgain := func() master.Removal {
		_, err := restored.RegisterShuffle(master.RegisterShuffle{App: "next", Shuffle: 1, NumMaps: 1, NumPartitions: 1, Workers: workers, Seed: 1})
		noErr(t, err)
		r, err := restored.UnregisterShuffle(master.UnregisterShuffle{App: "next", Shuffle: 1})
		noErr(t, err)
		return r
	}
	if r := removeAgain(); r.ID != 3 {
		t.Fatalf("a removal after the restore has ID %d, want 3 (IDs are not reused)", r.ID)
	}
}
