package client

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"

	"basalt/chunkserver/chunkserverpb"
	"basalt/mds/mdspb"
)

// A member is one replica of a copyset: a chunkserver.
type member struct {
	id   uint64
	addr string
}

// copysetEntry is the cached view of one copyset.
type copysetEntry struct {
	members []member // as the MDS last reported them; replaced, never modified
	hint    uint64   // the MDS's last leader hint (0: none)
	leader  member   // the current guess of the leader
}

// copysetCache caches copyset members and a leader guess per copyset.
type copysetCache struct {
	flights flights[uint64, *copysetEntry]
	mu      struct {
		sync.Mutex
		sets map[uint64]*copysetEntry
	}
}

func newCopysetCache() *copysetCache {
	c := &copysetCache{}
	c.mu.sets = map[uint64]*copysetEntry{}
	return c
}

// guess returns the leader guess of a cached copyset.
func (c *copysetCache) guess(id uint64) (member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.sets[id]
	if !ok {
		return member{}, false
	}
	return e.leader, true
}

// merge installs what the MDS reported for a copyset. The leader guess
// moves to the MDS's hint when the hint is new (an old hint may name the
// member that just failed), and otherwise stays if it is still a member.
func (c *copysetCache) merge(pb *mdspb.Copyset) {
	members := make([]member, len(pb.GetMembers()))
	for i, m := range pb.GetMembers() {
		members[i] = member{id: m.GetId(), addr: m.GetAddress()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.mu.sets[pb.GetId()]
	e := &copysetEntry{members: members, hint: pb.GetLeader(), leader: members[0]}
	if i := indexOf(members, member{id: pb.GetLeader()}); i >= 0 && (old == nil || old.hint != e.hint) {
		e.leader = members[i]
	} else if old != nil && indexOf(members, old.leader) >= 0 {
		e.leader = old.leader
	}
	c.mu.sets[pb.GetId()] = e
}

// indexOf finds m in members by ID (or by address when m has no ID).
func indexOf(members []member, m member) int {
	return slices.IndexFunc(members, func(x member) bool {
		return (m.id != 0 && x.id == m.id) || (m.id == 0 && m.addr != "" && x.addr == m.addr)
	})
}

// skip moves the guess of copyset id past failed, unless another caller
// has moved it already.
func (c *copysetCache) skip(id uint64, failed member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.sets[id]
	if !ok || e.leader != failed {
		return
	}
	e.leader = e.members[(indexOf(e.members, failed)+1)%len(e.members)]
}

// redirect follows a NotLeader answer from member from. It reports whether
// the answer named a leader; if not, the guess moves to the next member.
func (c *copysetCache) redirect(id uint64, from member, nl *chunkserverpb.NotLeader) bool {
	if nl.GetLeaderAddress() == "" {
		c.skip(id, from)
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.mu.sets[id]; ok {
		e.leader = member{id: nl.GetLeaderId(), addr: nl.GetLeaderAddress()}
	}
	return true
}

// leader returns the leader guess for copyset id, asking the MDS first if
// the copyset is not cached.
func (v *Volume) leader(ctx context.Context, s *retryState, id uint64) (member, error) {
	if m, ok := v.sets.guess(id); ok {
		return m, nil
	}
	if err := v.loadCopyset(ctx, s, id); err != nil {
		return member{}, err
	}
	m, _ := v.sets.guess(id)
	return m, nil
}

// loadCopyset asks the MDS for copyset id (one shared call per copyset) and
// merges the answer into the cache. Errors wrap ErrUnavailable when another
// attempt may succeed.
func (v *Volume) loadCopyset(ctx context.Context, s *retryState, id uint64) error {
	_, err := v.sets.flights.do(ctx, id, func(ctx context.Context) (*copysetEntry, error) {
		var resp *mdspb.GetCopysetsResponse
		err := v.mds.call(ctx, s.attemptTimeout(v.opts.RPCTimeout), func(ctx context.Context, c mdspb.MDSClient) (err error) {
			resp, err = c.GetCopysets(ctx, &mdspb.GetCopysetsRequest{Ids: []uint64{id}})
			return err
		}, meaning{code: codes.NotFound}) // not ErrVolumeNotFound
		if err != nil {
			return nil, fmt.Errorf("getting copyset %d: %w", id, err)
		}
		return nil, v.mergeCopyset(id, resp)
	})
	return err
}

// mergeCopyset finds copyset id in resp and caches it.
func (v *Volume) mergeCopyset(id uint64, resp *mdspb.GetCopysetsResponse) error {
	for _, cs := range resp.GetCopysets() {
		if cs.GetId() == id && len(cs.GetMembers()) > 0 {
			v.sets.merge(cs)
			return nil
		}
	}
	return fmt.Errorf("%w: MDS returned no members for copyset %d", ErrUnavailable, id)
}
