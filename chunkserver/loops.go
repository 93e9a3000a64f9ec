package chunkserver

import (
	"context"
	"slices"
	"time"

	"basalt/chunkserver/copyset"
	"basalt/mds/mdspb"
)

// every runs fn every d until the server stops.
func (s *Server) every(d time.Duration, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-s.stop; cancel() }()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) heartbeatLoop() { s.every(s.cfg.HeartbeatInterval, s.heartbeat) }

func (s *Server) checkpointLoop() {
	s.every(s.cfg.CheckpointInterval, func(context.Context) { s.checkpointAll() })
}

// poolLoop keeps the chunk store's pool of preallocated files full.
func (s *Server) poolLoop() {
	s.every(time.Second, func(context.Context) {
		if err := s.store.FillPool(); err != nil {
			s.log.Warn("filling the chunk file pool", "err", err)
		}
	})
}

// heartbeat reports this server to the MDS and acts on the response:
// create newly assigned copysets, learn peer addresses, delete chunks.
func (s *Server) heartbeat(ctx context.Context) {
	acks := s.takeDeleted()
	req := &mdspb.HeartbeatRequest{
		Id: s.id, Capacity: s.cfg.Capacity, Used: uint64(s.store.Count()) * uint64(s.store.ChunkSize()),
		Copysets: s.copysetStates(ctx), DeletedChunks: acks,
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.mds.Heartbeat(hctx, req)
	if err != nil {
		s.requeueDeleted(acks)
		s.log.Warn("heartbeat to the MDS failed", "err", err)
		return
	}
	s.metrics.heartbeats.Inc()
	s.learnCopysets(ctx, resp.GetCopysets())
	s.deleteChunks(ctx, resp.GetDeleteChunks(), resp.GetDeleteChunkCopysets())
}

func (s *Server) copysetStates(ctx context.Context) []*mdspb.CopysetState {
	var out []*mdspb.CopysetState
	for _, id := range s.host.Groups() {
		st, err := s.host.Status(ctx, id)
		if err != nil {
			continue
		}
		out = append(out, &mdspb.CopysetState{Id: id, Role: st.Role, Term: st.Term, Applied: st.Applied, Leader: st.Leader})
	}
	return out
}

// learnCopysets records peer addresses and creates copysets not hosted
// yet, with the MDS's member list as the initial voters.
func (s *Server) learnCopysets(ctx context.Context, css []*mdspb.Copyset) {
	hosted := s.host.Groups()
	for _, cs := range css {
		var voters []uint64
		for _, m := range cs.GetMembers() {
			s.resolver.Set(m.GetId(), m.GetAddress())
			voters = append(voters, m.GetId())
		}
		if slices.Contains(hosted, cs.GetId()) {
			continue
		}
		if err := s.host.CreateGroup(ctx, cs.GetId(), voters); err != nil {
			s.log.Error("creating copyset", "copyset", cs.GetId(), "err", err)
			continue
		}
		s.log.Debug("copyset created", "copyset", cs.GetId(), "voters", voters)
	}
}

// deleteChunks deletes chunks of deleted volumes through their copysets'
// logs (the MDS sends them to the leader) and queues acknowledgements.
func (s *Server) deleteChunks(ctx context.Context, chunks, copysets []uint64) {
	for i, chunk := range chunks {
		if i >= len(copysets) {
			return
		}
		cmd := copyset.Command{Op: copyset.OpDelete, Chunk: chunk}
		if _, err := s.host.Propose(ctx, copysets[i], cmd.Encode()); err != nil {
			s.log.Debug("deleting chunk", "chunk", chunk, "copyset", copysets[i], "err", err)
			continue
		}
		s.requeueDeleted([]uint64{chunk})
	}
}

func (s *Server) takeDeleted() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.mu.deleted
	s.mu.deleted = nil
	return d
}

func (s *Server) requeueDeleted(chunks []uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.deleted = append(s.mu.deleted, chunks...)
}

// checkpointAll checkpoints every copyset and truncates its raft log
// behind the checkpoint. The first checkpoint syncs every dirty chunk
// file; the others find little left to sync.
func (s *Server) checkpointAll() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range s.host.Groups() {
		sm := s.copyset(id)
		if sm == nil {
			continue
		}
		index, err := sm.Checkpoint()
		if err == nil {
			err = s.host.Compact(ctx, id, index)
		}
		if err != nil {
			s.log.Warn("checkpoint failed", "copyset", id, "err", err)
			continue
		}
		s.metrics.checkpoints.Inc()
	}
}
