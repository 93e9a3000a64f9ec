package gossip_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"basalt/internal/testnet"
	"basalt/internal/testwait"
	"basalt/rss/gossip"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for gossip to converge on loopback.
const waitTimeout = 10 * time.Second

// member is a test node with a Meta that the test can change.
type member struct {
	*gossip.Node
	mu   sync.Mutex
	meta gossip.Meta
}

func (m *member) getMeta() gossip.Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta
}

func (m *member) setDiskFree(b uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.meta.DiskFreeBytes = b
}

// start starts a member named id on bind joining join; it is closed at
// the end of the test.
func start(t *testing.T, id, bind string, join ...string) *member {
	t.Helper()
	m := &member{meta: gossip.Meta{
		ID: id, Addr: "127.0.0.1:1" + id[len(id)-1:], DiskFreeBytes: 1 << 30, Role: gossip.RoleWorker,
	}}
	n, err := gossip.Start(t.Context(), gossip.Config{
		BindAddr: bind, Join: join, Meta: m.getMeta, UpdateInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Start(%s): %v", id, err)
	}
	m.Node = n
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close(%s): %v", id, err)
		}
	})
	return m
}

// seesExactly reports nil when m's Members are exactly want (by ID, with
// want's Meta).
func seesExactly(m *member, want ...gossip.Meta) error {
	got := m.Members()
	key := func(a, b gossip.Meta) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(got, key)
	want = slices.Clone(want)
	slices.SortFunc(want, key)
	if !slices.Equal(got, want) {
		return fmt.Errorf("members %+v, want %+v", got, want)
	}
	return nil
}

func TestThreeNodesSeeEachOther(t *testing.T) {
	a := start(t, "w1", "127.0.0.1:0")
	b := start(t, "w2", "127.0.0.1:0", a.Addr())
	c := start(t, "w3", "127.0.0.1:0", b.Addr())
	all := []*member{a, b, c}
	converge := func(what string, of []*member) {
		t.Helper()
		var metas []gossip.Meta
		for _, m := range of {
			metas = append(metas, m.getMeta())
		}
		for _, m := range of {
			testwait.For(t, waitTimeout, m.meta.ID+" sees "+what, func() error { return seesExactly(m, metas...) })
		}
	}
	converge("all three", all)

	b.setDiskFree(42)
	converge("w2's new free disk", all)

	if err := c.Close(); err != nil {
		t.Fatalf("Close(w3): %v", err)
	}
	converge("w3 gone", all[:2])
}

func TestJoinRetriesUntilTheSeedStartsAndWhenAlone(t *testing.T) {
	seed := testnet.FreeAddr(t)
	w := start(t, "w1", "127.0.0.1:0", seed)
	m := start(t, "m1", seed)
	both := func(what string) {
		t.Helper()
		for _, n := range []*member{w, m} {
			testwait.For(t, waitTimeout, n.meta.ID+" sees both "+what, func() error {
				return seesExactly(n, w.getMeta(), m.getMeta())
			})
		}
	}
	both("after the seed started")

	noErr(t, m.Close())
	testwait.For(t, waitTimeout, "w1 alone", func() error { return seesExactly(w, w.getMeta()) })
	m = start(t, "m1", seed) // the seed restarts: w1, alone, joins it again
	both("after the seed restarted")
}

func TestMetaUpdatesOutliveStartsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	a := &member{meta: gossip.Meta{ID: "w1", Role: gossip.RoleWorker}}
	n, err := gossip.Start(ctx, gossip.Config{BindAddr: "127.0.0.1:0", Meta: a.getMeta, UpdateInterval: 10 * time.Millisecond})
	noErr(t, err)
	a.Node = n
	defer func() { noErr(t, n.Close()) }()
	cancel()
	a.setDiskFree(7)
	testwait.For(t, waitTimeout, "the new meta", func() error { return seesExactly(a, a.getMeta()) })
}

func TestStartRejects(t *testing.T) {
	meta := func() gossip.Meta { return gossip.Meta{ID: "w1"} }
	huge := func() gossip.Meta { return gossip.Meta{ID: strings.Repeat("x", 600)} }
	tests := []struct {
		name string
		cfg  gossip.Config
		want error
	}{
		{"no Meta", gossip.Config{BindAddr: "127.0.0.1:0"}, gossip.ErrInvalidConfig},
		{"no BindAddr", gossip.Config{Meta: meta}, gossip.ErrInvalidConfig},
		{"bad port", gossip.Config{BindAddr: "127.0.0.1:x", Meta: meta}, gossip.ErrInvalidConfig},
		{"Meta over 512 bytes", gossip.Config{BindAddr: "127.0.0.1:0", Meta: huge}, gossip.ErrMetaTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := gossip.Start(context.Background(), tt.cfg)
			if !errors.Is(err, tt.want) {
				t.Errorf("Start() = %v, want %v", err, tt.want)
			}
			if n != nil {
				_ = n.Close()
			}
		})
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	a := start(t, "w1", "127.0.0.1:0")
	if err := a.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
