package master_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"basalt/internal/testwait"
	"basalt/rss/gossip"
	"basalt/rss/master"
	"basalt/rss/master/mastertest"
	"basalt/rss/rsspb"
)

func TestNewRejectsIncompleteConfig(t *testing.T) {
	members := func() []gossip.Meta { return nil }
	for name, cfg := range map[string]master.Config{
		"no Members":     {Dialer: mastertest.NewWorkers().Dial},
		"no Dialer":      {Members: members},
		"negative lease": {Members: members, Dialer: mastertest.NewWorkers().Dial, AppLease: -time.Second},
	} {
		_, err := master.New(cfg)
		wantErr(t, name, err, master.ErrInvalidConfig)
	}
}

func TestTokenChecks(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := c.register(t, "app-1")
	if b, err := hex.DecodeString(a.token); err != nil || len(a.token) != 32 || len(b) != 16 {
		t.Errorf("token %q, want 32 hex digits", a.token)
	}
	other := c.register(t, "app-2")
	if other.token == a.token {
		t.Errorf("two applications got the same token %q", a.token)
	}
	c.registerShuffle(t, a, 1, 2, 2)

	creds := []struct {
		name      string
		id, token string
		want      codes.Code
	}{
		{"no metadata", "", "", codes.Unauthenticated},
		{"no token", a.id, "", codes.Unauthenticated},
		{"wrong token", a.id, other.token, codes.Unauthenticated},
		{"token but no app", "", a.token, codes.Unauthenticated},
		{"unknown app", "nobody", a.token, codes.NotFound},
	}
	for _, cr := range creds {
		for _, m := range authedCalls(c.client) {
			err := m.call(withCreds(t.Context(), cr.id, cr.token))
			wantCode(t, cr.name+": "+m.name, err, cr.want)
		}
	}
	for _, m := range authedCalls(c.client) {
		if m.name == "UnregisterApplication" {
			continue
		}
		if err := m.call(a.ctx(t)); err != nil {
			t.Errorf("%s with the right token: %v", m.name, err)
		}
	}
	_, err := c.client.Status(t.Context(), &rsspb.StatusRequest{})
	noErr(t, err)
}

// authedCalls returns one call of every method that needs credentials,
// valid for an application with shuffle 1 (2 maps, 2 partitions).
func authedCalls(cl rsspb.MasterClient) []struct {
	name string
	call func(context.Context) error
} {
	type m = struct {
		name string
		call func(context.Context) error
	}
	ignore := func(_ any, err error) error { return err }
	return []m{
		{"ApplicationHeartbeat", func(ctx context.Context) error {
			return ignore(cl.ApplicationHeartbeat(ctx, &rsspb.ApplicationHeartbeatRequest{}))
		}},
		{"RegisterShuffle", func(ctx context.Context) error {
			return ignore(cl.RegisterShuffle(ctx, &rsspb.RegisterShuffleRequest{ShuffleId: 1, NumMaps: 2, NumPartitions: 2}))
		}},
		{"Revive", func(ctx context.Context) error {
			return ignore(cl.Revive(ctx, &rsspb.ReviveRequest{ShuffleId: 1, Partition: 0, FailedEpoch: 0}))
		}},
		{"MapEnd", func(ctx context.Context) error {
			return ignore(cl.MapEnd(ctx, &rsspb.MapEndRequest{ShuffleId: 1, MapIndex: 0, Batches: []int32{1, 1}}))
		}},
		{"GetShuffle", func(ctx context.Context) error {
			return ignore(cl.GetShuffle(ctx, &rsspb.GetShuffleRequest{ShuffleId: 1}))
		}},
		{"CommitShuffle", func(ctx context.Context) error {
			return ignore(cl.CommitShuffle(ctx, &rsspb.CommitShuffleRequest{ShuffleId: 1}))
		}},
		{"UnregisterShuffle", func(ctx context.Context) error {
			return ignore(cl.UnregisterShuffle(ctx, &rsspb.UnregisterShuffleRequest{ShuffleId: 7}))
		}},
		{"UnregisterApplication", func(ctx context.Context) error {
			return ignore(cl.UnregisterApplication(ctx, &rsspb.UnregisterApplicationRequest{}))
		}},
	}
}

func TestReRegisterApplicationNeedsItsToken(t *testing.T) {
	c := newCluster(t, 1, nil)
	a := c.register(t, "app")
	_, err := c.client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: "app"})
	wantCode(t, "re-register without the token", err, codes.AlreadyExists)
	_, err = c.client.RegisterApplication(withCreds(t.Context(), "app", "0123"), &rsspb.RegisterApplicationRequest{AppId: "app"})
	wantCode(t, "re-register with a wrong token", err, codes.AlreadyExists)
	resp, err := c.client.RegisterApplication(a.ctx(t), &rsspb.RegisterApplicationRequest{AppId: "app"})
	noErr(t, err)
	if resp.GetToken() != a.token || resp.GetLeaseMs() != master.DefaultAppLease.Milliseconds() {
		t.Errorf("re-register with the token = %v, want token %q and the default lease", resp, a.token)
	}
	_, err = c.client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{})
	wantCode(t, "register without an id", err, codes.InvalidArgument)
}

func TestRegisterShuffleIsIdempotent(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := c.register(t, "app")
	first := c.registerShuffle(t, a, 4, 10, 12)
	if len(first.GetLocations()) != 12 || first.GetShuffleId() != 4 {
		t.Fatalf("layout %v, want 12 locations of shuffle 4", first)
	}
	for _, l := range first.GetLocations() {
		if l.GetReplica() == nil || l.GetReplica().GetId() == l.GetPrimary().GetId() {
			t.Errorf("location %v: want a replica on another worker", l)
		}
	}
	c.members.set(mastertest.WorkerMetas(5)) // a new view must not move anything
	if again := c.registerShuffle(t, a, 4, 10, 12); !proto.Equal(again, first) {
		t.Errorf("second RegisterShuffle = %v, want %v", again, first)
	}
	_, err := c.client.RegisterShuffle(a.ctx(t), &rsspb.RegisterShuffleRequest{ShuffleId: 4, NumMaps: 10, NumPartitions: 13})
	wantCode(t, "RegisterShuffle with another shape", err, codes.AlreadyExists)
	run := &rsspb.RegisterShuffleRequest{ShuffleId: 6, NumMaps: 1, NumPartitions: 2, Run: "stage 3 attempt 0"}
	for range 2 {
		_, err = c.client.RegisterShuffle(a.ctx(t), run)
		noErr(t, err)
	}
	run.Run = "stage 3 attempt 1"
	_, err = c.client.RegisterShuffle(a.ctx(t), run)
	wantCode(t, "RegisterShuffle by another run", err, codes.AlreadyExists)
	c.members.set(nil)
	_, err = c.client.RegisterShuffle(a.ctx(t), &rsspb.RegisterShuffleRequest{ShuffleId: 5, NumMaps: 1, NumPartitions: 1})
	wantCode(t, "RegisterShuffle without workers", err, codes.Unavailable)
}

func TestRegisterShuffleWithoutReplicas(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := c.register(t, "app")
	l, err := c.client.RegisterShuffle(a.ctx(t), &rsspb.RegisterShuffleRequest{ShuffleId: 1, NumMaps: 1, NumPartitions: 3, NoReplica: true})
	noErr(t, err)
	for _, loc := range l.GetLocations() {
		if loc.GetReplica() != nil {
			t.Errorf("location %v has a replica in a shuffle without replicas", loc)
		}
	}
}

// getShuffle returns shuffle id's state.
func (c *cluster) getShuffle(t *testing.T, a app, id int32) *rsspb.ShuffleState {
	t.Helper()
	st, err := c.client.GetShuffle(a.ctx(t), &rsspb.GetShuffleRequest{ShuffleId: id})
	noErr(t, err)
	return st
}

// commit commits shuffle id.
func (c *cluster) commit(t *testing.T, a app, id int32) error {
	_, err := c.client.CommitShuffle(a.ctx(t), &rsspb.CommitShuffleRequest{ShuffleId: id})
	return err
}

func TestCommitCallsEveryWorkerOnceAndIsIdempotent(t *testing.T) {
	c := newCluster(t, 4, nil)
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 2, 8)
	_, err := c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 1, Partition: 3, FailedEpoch: 0})
	noErr(t, err)
	want := workerAddrs(c.getShuffle(t, a, 1))
	noErr(t, c.commit(t, a, 1))

	calls := c.workers.CallsTo("Commit")
	got := map[string]bool{}
	for _, call := range calls {
		got[call.Addr] = true
		if call.App != a.id || call.Token != a.token || call.Shuffle != 1 {
			t.Errorf("Commit call %+v, want app %q, its token, shuffle 1", call, a.id)
		}
	}
	if len(calls) != len(want) || !maps.Equal(got, want) {
		t.Errorf("Commit called on %v, want once on each of %v", calls, slices.Sorted(maps.Keys(want)))
	}
	if !c.getShuffle(t, a, 1).GetCommitted() {
		t.Errorf("shuffle not committed after CommitShuffle")
	}
	noErr(t, c.commit(t, a, 1))
	if n := len(c.workers.CallsTo("Commit")); n != len(calls) {
		t.Errorf("second CommitShuffle made %d more worker calls, want none", n-len(calls))
	}
	_, err = c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 1, Partition: 0})
	wantCode(t, "Revive after commit", err, codes.FailedPrecondition)
}

func TestCommitWithAFailedReplica(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := c.register(t, "app")
	loc := c.registerShuffle(t, a, 1, 1, 1).GetLocations()[0]
	c.workers.FailCommit(loc.GetReplica().GetAddr(), true)
	noErr(t, c.commit(t, a, 1))
	st := c.getShuffle(t, a, 1)
	if got := st.GetLocations()[0]; !st.GetCommitted() || got.GetReplica() != nil || !proto.Equal(got.GetPrimary(), loc.GetPrimary()) {
		t.Errorf("after commit with a failed replica: %v, want committed, primary %v, no replica", st, loc.GetPrimary())
	}
}

func TestCommitFailsWhileAPartitionHasNoCommittedCopy(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := c.register(t, "app")
	loc := c.registerShuffle(t, a, 1, 1, 1).GetLocations()[0]
	for _, w := range []*rsspb.WorkerRef{loc.GetPrimary(), loc.GetReplica()} {
		c.workers.FailCommit(w.GetAddr(), true)
	}
	wantCode(t, "commit with every copy failing", c.commit(t, a, 1), codes.Unavailable)
	if c.getShuffle(t, a, 1).GetCommitted() {
		t.Fatalf("shuffle committed although no copy committed")
	}
	c.workers.FailCommit(loc.GetPrimary().GetAddr(), false)
	noErr(t, c.commit(t, a, 1))
	if !c.getShuffle(t, a, 1).GetCommitted() {
		t.Errorf("retried commit did not commit")
	}
}

func TestCommitTimeout(t *testing.T) {
	c := newCluster(t, 2, func(cfg *master.Config) { cfg.CommitTimeout = 50 * time.Millisecond })
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 1, 1)
	release := c.workers.BlockCommits()
	defer release()
	wantCode(t, "commit with hung workers", c.commit(t, a, 1), codes.Unavailable)
	if c.getShuffle(t, a, 1).GetCommitted() {
		t.Fatalf("shuffle committed although the workers hung")
	}
	release()
	noErr(t, c.commit(t, a, 1))
}

// waitDeletes waits until every address of want got a DeleteShuffle of
// (app, shuffle) with the app's credentials.
func waitDeletes(t *testing.T, c *cluster, a app, shuffle int32, want map[string]bool) {
	t.Helper()
	testwait.For(t, waitTimeout, fmt.Sprintf("DeleteShuffle(%s, %d) on %d workers", a.id, shuffle, len(want)), func() error {
		got := map[string]bool{}
		for _, call := range c.workers.CallsTo("DeleteShuffle") {
			if call.AppID == a.id && call.App == a.id && call.Token == a.token && call.Shuffle == shuffle {
				got[call.Addr] = true
			}
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("deleted on %v, want %v", got, want)
		}
		return nil
	})
}

func TestUnregisterShuffleDeletesOnWorkers(t *testing.T) {
	c := newCluster(t, 4, nil)
	a := c.register(t, "app")
	c.registerShuffle(t, a, 3, 2, 2)
	want := workerAddrs(c.getShuffle(t, a, 3))
	c.workers.FailDeletes(slices.Sorted(maps.Keys(want))[0], 2) // retried
	_, err := c.client.UnregisterShuffle(a.ctx(t), &rsspb.UnregisterShuffleRequest{ShuffleId: 3})
	noErr(t, err)
	waitDeletes(t, c, a, 3, want)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.srv.Collectors()...)
	testwait.For(t, waitTimeout, "no deletion pending", func() error {
		if n := gather(t, reg)["basalt_rss_master_pending_deletions"]; n != 0 {
			return fmt.Errorf("%v pending", n)
		}
		return nil
	})
	_, err = c.client.GetShuffle(a.ctx(t), &rsspb.GetShuffleRequest{ShuffleId: 3})
	wantCode(t, "GetShuffle after unregister", err, codes.NotFound)
	_, err = c.client.UnregisterShuffle(a.ctx(t), &rsspb.UnregisterShuffleRequest{ShuffleId: 3})
	noErr(t, err)
}

func TestUnregisterApplicationDeletesOnWorkers(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 1, 3)
	want := workerAddrs(c.getShuffle(t, a, 1))
	_, err := c.client.UnregisterApplication(a.ctx(t), &rsspb.UnregisterApplicationRequest{})
	noErr(t, err)
	waitDeletes(t, c, a, -1, want)
	_, err = c.client.ApplicationHeartbeat(a.ctx(t), &rsspb.ApplicationHeartbeatRequest{})
	wantCode(t, "heartbeat after unregister", err, codes.NotFound)
}

func TestLeaseExpiryDeletesOnWorkers(t *testing.T) {
	c := newCluster(t, 2, func(cfg *master.Config) {
		cfg.AppLease, cfg.ExpiryInterval = time.Minute, 5*time.Millisecond
	})
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 1, 2)
	want := workerAddrs(c.getShuffle(t, a, 1))
	c.clock.Advance(59 * time.Second)
	_, err := c.client.ApplicationHeartbeat(a.ctx(t), &rsspb.ApplicationHeartbeatRequest{})
	noErr(t, err)
	c.clock.Advance(59 * time.Second) // 1m58s: alive thanks to the heartbeat
	testwait.Stays(t, 50*time.Millisecond, "application registered", func() bool {
		_, err := c.client.GetShuffle(a.ctx(t), &rsspb.GetShuffleRequest{ShuffleId: 1})
		return err == nil
	})
	c.clock.Advance(time.Second)
	waitDeletes(t, c, a, -1, want)
	_, err = c.client.ApplicationHeartbeat(a.ctx(t), &rsspb.ApplicationHeartbeatRequest{})
	wantCode(t, "heartbeat after expiry", err, codes.NotFound)
}

func TestReviveRPC(t *testing.T) {
	c := newCluster(t, 4, nil)
	a := c.register(t, "app")
	old := c.registerShuffle(t, a, 1, 1, 2).GetLocations()[1]
	loc, err := c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 1, Partition: 1, FailedEpoch: 0})
	noErr(t, err)
	failed := []string{old.GetPrimary().GetId(), old.GetReplica().GetId()}
	if loc.GetEpoch() != 1 || slices.Contains(failed, loc.GetPrimary().GetId()) || slices.Contains(failed, loc.GetReplica().GetId()) {
		t.Errorf("Revive = %v, want epoch 1 off %v", loc, failed)
	}
	again, err := c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 1, Partition: 1, FailedEpoch: 0})
	noErr(t, err)
	if !proto.Equal(again, loc) {
		t.Errorf("second Revive of epoch 0 = %v, want %v", again, loc)
	}
	if n := len(c.getShuffle(t, a, 1).GetLocations()); n != 3 {
		t.Errorf("GetShuffle has %d locations, want 3 (2 partitions, one revived)", n)
	}
	_, err = c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 1, Partition: 2})
	wantCode(t, "Revive of a partition out of range", err, codes.NotFound)
	_, err = c.client.Revive(a.ctx(t), &rsspb.ReviveRequest{ShuffleId: 2})
	wantCode(t, "Revive of an unknown shuffle", err, codes.NotFound)
}

func TestMapEndAndGetShuffle(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 2, 2)
	end := func(m, at int32) *rsspb.MapEndResponse {
		r, err := c.client.MapEnd(a.ctx(t), &rsspb.MapEndRequest{ShuffleId: 1, MapIndex: m, Attempt: at, Batches: []int32{at + 1, 0}})
		noErr(t, err)
		return r
	}
	if r := end(0, 2); !r.GetWon() || r.GetWinningAttempt() != 2 {
		t.Errorf("first MapEnd = %v, want won by 2", r)
	}
	if r := end(0, 0); r.GetWon() || r.GetWinningAttempt() != 2 {
		t.Errorf("later MapEnd = %v, want ignored, winner 2", r)
	}
	end(1, 0)
	st := c.getShuffle(t, a, 1)
	want := []*rsspb.MapWinner{{MapIndex: 0, Attempt: 2, Batches: []int32{3, 0}}, {MapIndex: 1, Attempt: 0, Batches: []int32{1, 0}}}
	if !slices.EqualFunc(st.GetWinners(), want, func(a, b *rsspb.MapWinner) bool { return proto.Equal(a, b) }) {
		t.Errorf("winners %v, want %v", st.GetWinners(), want)
	}
	others := []*rsspb.MapWinner{{MapIndex: 0, Attempt: 0, Batches: []int32{1, 0}}}
	if !slices.EqualFunc(st.GetOtherAttempts(), others, func(a, b *rsspb.MapWinner) bool { return proto.Equal(a, b) }) {
		t.Errorf("other attempts %v, want %v (with their batch counts)", st.GetOtherAttempts(), others)
	}
	if st.GetNumMaps() != 2 || st.GetNumPartitions() != 2 || st.GetCommitted() {
		t.Errorf("shuffle state %v, want 2 maps, 2 partitions, not committed", st)
	}
	_, err := c.client.MapEnd(a.ctx(t), &rsspb.MapEndRequest{ShuffleId: 1, MapIndex: 2})
	wantCode(t, "MapEnd of a map out of range", err, codes.InvalidArgument)
}

func TestStatus(t *testing.T) {
	c := newCluster(t, 2, nil)
	meta := c.members.get()
	meta[0].Decommissioning, meta[1].ActivePartitions = true, 7
	c.members.set(append(meta, gossip.Meta{ID: "m", Role: gossip.RoleMaster}))
	a := c.register(t, "b-app")
	c.register(t, "a-app")
	c.registerShuffle(t, a, 2, 1, 1)
	c.registerShuffle(t, a, 1, 1, 1)
	st, err := c.client.Status(t.Context(), &rsspb.StatusRequest{})
	noErr(t, err)
	exp := t0.Add(master.DefaultAppLease).UnixMilli()
	want := &rsspb.StatusResponse{
		Workers: []*rsspb.WorkerStatus{
			{Worker: &rsspb.WorkerRef{Id: "w1", Addr: meta[0].Addr}, DiskFreeBytes: 1 << 40, Decommissioning: true, LastSeenUnixMs: t0.UnixMilli()},
			{Worker: &rsspb.WorkerRef{Id: "w2", Addr: meta[1].Addr}, DiskFreeBytes: 1 << 40, ActivePartitions: 7, LastSeenUnixMs: t0.UnixMilli()},
		},
		Applications: []*rsspb.ApplicationStatus{
			{AppId: "a-app", ExpiresUnixMs: exp},
			{AppId: "b-app", Shuffles: []int32{1, 2}, ExpiresUnixMs: exp},
		},
	}
	if !proto.Equal(st, want) {
		t.Errorf("Status = %v\nwant %v", st, want)
	}
}

func TestMetrics(t *testing.T) {
	c := newCluster(t, 3, nil)
	a := c.register(t, "app")
	c.registerShuffle(t, a, 1, 2, 3)
	c.registerShuffle(t, a, 2, 2, 3)
	for _, at := range []int32{0, 1, 1} {
		_, err := c.client.MapEnd(a.ctx(t), &rsspb.MapEndRequest{ShuffleId: 1, MapIndex: 0, Attempt: at})
		noErr(t, err)
	}
	noErr(t, c.commit(t, a, 1))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.srv.Collectors()...)
	got := gather(t, reg)
	for name, v := range map[string]float64{
		"basalt_rss_master_active_shuffles":                      2,
		"basalt_rss_master_applications":                         1,
		"basalt_rss_master_live_workers":                         3,
		`basalt_rss_master_commits_total{result="ok"}`:           1,
		`basalt_rss_master_map_ends_total{result="won"}`:         1,
		`basalt_rss_master_map_ends_total{result="ignored"}`:     2,
		`basalt_rss_master_rpcs_total{method="RegisterShuffle"}`: 2,
	} {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

// gather returns every sample of reg by name{label="value",...}.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	noErr(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return out
}

func TestClosedServer(t *testing.T) {
	c := newCluster(t, 1, nil)
	noErr(t, c.srv.Health())
	noErr(t, c.srv.Close())
	wantErr(t, "Health after Close", c.srv.Health(), master.ErrClosed)
	_, err := c.client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: "app"})
	wantCode(t, "RegisterApplication after Close", err, codes.Unavailable)
}
