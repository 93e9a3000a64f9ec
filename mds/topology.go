package mds

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
	"basalt/mds/placement"
)

// maxDeletionsPerHeartbeat caps the chunk deletions one heartbeat response
// carries; the rest follow in later heartbeats.
const maxDeletionsPerHeartbeat = 4096

// RegisterChunkserver registers a new chunkserver (request id 0: it gets
// the next ID) or updates a known one's address and capacity (its zone
// cannot change). Registration counts as a heartbeat. Once enough
// chunkservers have registered, the pool is laid out.
func (s *Server) RegisterChunkserver(ctx context.Context, req *mdspb.RegisterChunkserverRequest) (*mdspb.RegisterChunkserverResponse, error) {
	return call(ctx, s, "RegisterChunkserver", func() (*mdspb.RegisterChunkserverResponse, error) {
		return s.register(req)
	})
}

func (s *Server) register(req *mdspb.RegisterChunkserverRequest) (*mdspb.RegisterChunkserverResponse, error) {
	if req.GetAddress() == "" {
		return nil, fmt.Errorf("%w: a chunkserver must register with its address", ErrInvalidArgument)
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	cs, err := s.registerLocked(req)
	if err != nil {
		return nil, err
	}
	cs.seen, cs.capacity = s.now(), req.GetCapacity()
	s.log.Info("chunkserver registered", "chunkserver", cs.rec.GetId(), "address", cs.rec.GetAddress(), "zone", cs.rec.GetZone())
	s.maybeCreatePoolLocked()
	return &mdspb.RegisterChunkserverResponse{Id: cs.rec.GetId(), ChunkSize: s.cfg.ChunkSize}, nil
}

// registerLocked adds or updates the chunkserver's record.
// REQUIRES: s.mu held
func (s *Server) registerLocked(req *mdspb.RegisterChunkserverRequest) (*chunkserver, error) {
	if req.GetId() == 0 {
		return s.addChunkserverLocked(req)
	}
	cs := s.mu.servers[req.GetId()]
	switch {
	case cs == nil:
		return nil, fmt.Errorf("%w: %d (register with id 0 to get a new one)", ErrChunkserverNotFound, req.GetId())
	case cs.rec.GetZone() != req.GetZone():
		return nil, fmt.Errorf("%w: chunkserver %d is in zone %q and cannot move to %q",
			ErrInvalidArgument, req.GetId(), cs.rec.GetZone(), req.GetZone())
	}
	rec := proto.CloneOf(cs.rec)
	rec.Address, rec.Capacity = req.GetAddress(), req.GetCapacity()
	if err := s.kv.Set(idKey(prefixChunkserver, rec.GetId()), encode(rec)); err != nil {
		return nil, fmt.Errorf("updating chunkserver %d: %w", rec.GetId(), err)
	}
	cs.rec = rec
	return cs, nil
}

// addChunkserverLocked assigns the next ID to a new chunkserver.
// REQUIRES: s.mu held
func (s *Server) addChunkserverLocked(req *mdspb.RegisterChunkserverRequest) (*chunkserver, error) {
	meta := proto.CloneOf(s.mu.meta)
	meta.LastChunkserver++
	rec := &mdspb.ChunkserverRecord{
		Id: meta.GetLastChunkserver(), Address: req.GetAddress(), Zone: req.GetZone(),
		Capacity: req.GetCapacity(), RegisteredUnixMs: unixMs(s.now()),
	}
	var b Batch
	b.Set(metaKey, encode(meta))
	b.Set(idKey(prefixChunkserver, rec.GetId()), encode(rec))
	if err := s.kv.Apply(&b); err != nil {
		return nil, fmt.Errorf("registering chunkserver: %w", err)
	}
	s.mu.meta = meta
	cs := &chunkserver{rec: rec}
	s.mu.servers[rec.GetId()] = cs
	return cs, nil
}

// maybeCreatePoolLocked lays out the pool if it does not exist yet and
// enough alive chunkservers have registered. Failures are logged: the
// next registration or heartbeat tries again.
// REQUIRES: s.mu held
func (s *Server) maybeCreatePoolLocked() {
	if s.mu.pool != nil {
		return
	}
	servers := s.placementViewLocked()
	if countAlive(servers) < s.cfg.MinChunkservers {
		return
	}
	cfg := placement.DefaultConfig()
	cfg.Replicas, cfg.CopysetsPerServer = s.cfg.Replicas, s.cfg.CopysetsPerChunkserver
	plan, err := placement.PlanPool(cfg, servers, s.mu.rng)
	switch {
	case errors.Is(err, placement.ErrNotEnoughZones):
		s.log.Debug("pool not created yet", "err", err)
	case err != nil:
		s.log.Error("planning the pool", "err", err)
	default:
		s.savePoolLocked(plan)
	}
}

// placementViewLocked describes the chunkservers for package placement.
// REQUIRES: s.mu held
func (s *Server) placementViewLocked() []placement.Chunkserver {
	out := make([]placement.Chunkserver, 0, len(s.mu.servers))
	for _, id := range sortedKeys(s.mu.servers) {
		cs := s.mu.servers[id]
		out = append(out, placement.Chunkserver{
			ID: id, Zone: cs.rec.GetZone(), Capacity: cs.capacity, Used: cs.used,
			Copysets: len(cs.copysets), Alive: s.aliveLocked(cs),
		})
	}
	return out
}

func countAlive(servers []placement.Chunkserver) int {
	n := 0
	for _, cs := range servers {
		if cs.Alive {
			n++
		}
	}
	return n
}

// savePoolLocked persists the planned copysets and the pool record in one
// batch, then indexes them.
// REQUIRES: s.mu held
func (s *Server) savePoolLocked(plan []placement.Copyset) {
	var b Batch
	recs := make([]*mdspb.CopysetRecord, len(plan))
	for i, c := range plan {
		recs[i] = &mdspb.CopysetRecord{Id: c.ID, Members: c.Members}
		b.Set(idKey(prefixCopyset, c.ID), encode(recs[i]))
	}
	pool := &mdspb.PoolRecord{CreatedUnixMs: unixMs(s.now()), Copysets: uint32(len(plan))}
	b.Set(poolKey, encode(pool))
	if err := s.kv.Apply(&b); err != nil {
		s.log.Error("persisting the pool", "err", err)
		return
	}
	s.mu.pool = pool
	for _, rec := range recs {
		s.addCopysetLocked(rec)
	}
	s.log.Info("pool created", "copysets", len(plan), "chunkservers", len(s.mu.servers))
}

// Heartbeat records a chunkserver's report (capacity, used, the role, term
// and leader of each of its copysets), removes the chunk deletions it
// acknowledges from the pending set, and returns every copyset it is a
// member of plus the pending deletions of the copysets it reports leading.
func (s *Server) Heartbeat(ctx context.Context, req *mdspb.HeartbeatRequest) (*mdspb.HeartbeatResponse, error) {
	return call(ctx, s, "Heartbeat", func() (*mdspb.HeartbeatResponse, error) { return s.heartbeat(req) })
}

func (s *Server) heartbeat(req *mdspb.HeartbeatRequest) (*mdspb.HeartbeatResponse, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	cs := s.mu.servers[req.GetId()]
	if cs == nil {
		return nil, fmt.Errorf("%w: %d (register again)", ErrChunkserverNotFound, req.GetId())
	}
	s.observeLocked(cs, req)
	if err := s.ackDeletionsLocked(req.GetDeletedChunks()); err != nil {
		return nil, err
	}
	s.maybeCreatePoolLocked()
	return s.heartbeatResponseLocked(cs, req), nil
}

// observeLocked records a heartbeat's state.
// REQUIRES: s.mu held
func (s *Server) observeLocked(cs *chunkserver, req *mdspb.HeartbeatRequest) {
	cs.seen, cs.capacity, cs.used = s.now(), req.GetCapacity(), req.GetUsed()
	for _, st := range req.GetCopysets() {
		if c := s.mu.copysets[st.GetId()]; c != nil && c.hasMember(cs.rec.GetId()) {
			c.observe(cs.rec.GetId(), st)
		}
	}
}

// ackDeletionsLocked removes acknowledged chunk deletions, durably.
// Chunks that are not pending are ignored.
// REQUIRES: s.mu held
func (s *Server) ackDeletionsLocked(chunks []uint64) error {
	var b Batch
	var acked []uint64
	for _, chunk := range chunks {
		if cp, ok := s.mu.deletionOf[chunk]; ok {
			b.Delete(idKey(prefixDeletion, cp, chunk))
			acked = append(acked, chunk)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.kv.Apply(&b); err != nil {
		return fmt.Errorf("acknowledging chunk deletions: %w", err)
	}
	for _, chunk := range acked {
		s.removeDeletionLocked(chunk)
	}
	return nil
}

// heartbeatResponseLocked lists cs's copysets and the deletions it must
// carry out as the leader of its copysets.
// REQUIRES: s.mu held
func (s *Server) heartbeatResponseLocked(cs *chunkserver, req *mdspb.HeartbeatRequest) *mdspb.HeartbeatResponse {
	resp := &mdspb.HeartbeatResponse{}
	for _, id := range cs.copysets {
		resp.Copysets = append(resp.Copysets, s.copysetPBLocked(s.mu.copysets[id]))
	}
	for _, st := range req.GetCopysets() {
		if c := s.mu.copysets[st.GetId()]; c != nil && isLeaderRole(st.GetRole()) && c.hasMember(cs.rec.GetId()) {
			s.appendDeletionsLocked(resp, c.rec.GetId())
		}
	}
	return resp
}

// appendDeletionsLocked adds the pending deletions of copyset cp to resp,
// in chunk order, up to maxDeletionsPerHeartbeat in all.
// REQUIRES: s.mu held
func (s *Server) appendDeletionsLocked(resp *mdspb.HeartbeatResponse, cp uint64) {
	for _, chunk := range sortedKeys(s.mu.deletions[cp]) {
		if len(resp.DeleteChunks) >= maxDeletionsPerHeartbeat {
			return
		}
		resp.DeleteChunks = append(resp.DeleteChunks, chunk)
		resp.DeleteChunkCopysets = append(resp.DeleteChunkCopysets, cp)
	}
}

// copysetPBLocked describes c for the API.
// REQUIRES: s.mu held
func (s *Server) copysetPBLocked(c *copyset) *mdspb.Copyset {
	out := &mdspb.Copyset{Id: c.rec.GetId(), Leader: s.knownLeaderLocked(c)}
	for _, m := range c.rec.GetMembers() {
		member := &mdspb.Member{Id: m}
		if cs := s.mu.servers[m]; cs != nil {
			member.Address, member.Zone = cs.rec.GetAddress(), cs.rec.GetZone()
		}
		out.Members = append(out.Members, member)
	}
	return out
}

// knownLeaderLocked returns c's last reported leader if that chunkserver
// is still a member and alive, and 0 otherwise.
// REQUIRES: s.mu held
func (s *Server) knownLeaderLocked(c *copyset) uint64 {
	if c.leader == 0 || !c.hasMember(c.leader) || !s.aliveLocked(s.mu.servers[c.leader]) {
		return 0
	}
	return c.leader
}

// sortedKeys returns the keys of m in increasing order.
func sortedKeys[V any](m map[uint64]V) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
