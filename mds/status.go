package mds

import (
	"context"
	"fmt"

	"basalt/mds/mdspb"
)

// health is a copyset's state as ClusterStatus and the metrics report it.
type health int

const (
	// healthy: a known, alive leader and every member alive.
	healthy health = iota
	// degraded: a known, alive leader but a member dead.
	degraded
	// unavailable: no known alive leader.
	unavailable
)

var healthNames = [...]string{healthy: "healthy", degraded: "degraded", unavailable: "unavailable"}

// healthLocked classifies c.
// REQUIRES: s.mu held
func (s *Server) healthLocked(c *copyset) health {
	if s.knownLeaderLocked(c) == 0 {
		return unavailable
	}
	for _, m := range c.rec.GetMembers() {
		if !s.aliveLocked(s.mu.servers[m]) {
			return degraded
		}
	}
	return healthy
}

// ClusterStatus reports every chunkserver (alive, last heartbeat, copyset
// and leader counts) and how many copysets are healthy, degraded or
// unavailable, as of the server's clock.
func (s *Server) ClusterStatus(ctx context.Context, _ *mdspb.ClusterStatusRequest) (*mdspb.ClusterStatusResponse, error) {
	return call(ctx, s, "ClusterStatus", s.clusterStatus)
}

func (s *Server) clusterStatus() (*mdspb.ClusterStatusResponse, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	resp := &mdspb.ClusterStatusResponse{Copysets: uint32(len(s.mu.copysets)), Volumes: uint32(len(s.mu.volumes))}
	counts, leaders := s.copysetHealthLocked()
	resp.CopysetsHealthy, resp.CopysetsDegraded, resp.CopysetsUnavailable = counts[healthy], counts[degraded], counts[unavailable]
	for _, id := range sortedKeys(s.mu.servers) {
		resp.Chunkservers = append(resp.Chunkservers, s.chunkserverStatusLocked(s.mu.servers[id], leaders[id]))
	}
	return resp, nil
}

// copysetHealthLocked counts copysets by health and known leaders by
// chunkserver.
// REQUIRES: s.mu held
func (s *Server) copysetHealthLocked() (counts [len(healthNames)]uint32, leaders map[uint64]uint32) {
	leaders = make(map[uint64]uint32)
	for _, c := range s.mu.copysets {
		counts[s.healthLocked(c)]++
		if l := s.knownLeaderLocked(c); l != 0 {
			leaders[l]++
		}
	}
	return counts, leaders
}

// chunkserverStatusLocked describes cs for ClusterStatus.
// REQUIRES: s.mu held
func (s *Server) chunkserverStatusLocked(cs *chunkserver, leaders uint32) *mdspb.ChunkserverStatus {
	return &mdspb.ChunkserverStatus{
		Id: cs.rec.GetId(), Address: cs.rec.GetAddress(), Zone: cs.rec.GetZone(),
		Capacity: cs.capacity, Used: cs.used, Alive: s.aliveLocked(cs),
		LastHeartbeatUnixMs: unixMs(cs.seen), Copysets: uint32(len(cs.copysets)), Leaders: leaders,
	}
}

// GetCopysets returns the copysets with the given IDs, in that order, or
// every copyset (by ID) when none is given. Leader is the last reported
// leader if it is alive, else 0. An unknown ID fails with
// ErrCopysetNotFound.
func (s *Server) GetCopysets(ctx context.Context, req *mdspb.GetCopysetsRequest) (*mdspb.GetCopysetsResponse, error) {
	return call(ctx, s, "GetCopysets", func() (*mdspb.GetCopysetsResponse, error) { return s.getCopysets(req) })
}

func (s *Server) getCopysets(req *mdspb.GetCopysetsRequest) (*mdspb.GetCopysetsResponse, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	ids := req.GetIds()
	if len(ids) == 0 {
		ids = s.mu.copysetIDs
	}
	resp := &mdspb.GetCopysetsResponse{}
	for _, id := range ids {
		c := s.mu.copysets[id]
		if c == nil {
			return nil, fmt.Errorf("%w: %d", ErrCopysetNotFound, id)
		}
		resp.Copysets = append(resp.Copysets, s.copysetPBLocked(c))
	}
	return resp, nil
}
