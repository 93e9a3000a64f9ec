package mds

import (
	"slices"
	"time"

	"basalt/mds/mdspb"
)

// state is the Server's in-memory view: every record of the store except
// segment maps (read from the store when asked), plus what only lives in
// memory (heartbeats, leaders, lease deadlines, chunk counts).
type state struct {
	meta       *mdspb.MetaRecord
	pool       *mdspb.PoolRecord // nil until the pool is laid out
	servers    map[uint64]*chunkserver
	copysets   map[uint64]*copyset
	copysetIDs []uint64 // sorted
	volumes    map[string]*volume
	volumeByID map[uint64]*volume
	// deletions holds the chunks of deleted volumes not yet acknowledged,
	// by copyset; deletionOf maps each such chunk to its copyset.
	deletions  map[uint64]map[uint64]struct{}
	deletionOf map[uint64]uint64
}

func newState() state {
	return state{
		servers:    make(map[uint64]*chunkserver),
		copysets:   make(map[uint64]*copyset),
		volumes:    make(map[string]*volume),
		volumeByID: make(map[uint64]*volume),
		deletions:  make(map[uint64]map[uint64]struct{}),
		deletionOf: make(map[uint64]uint64),
	}
}

// chunkserver is a registered chunkserver.
type chunkserver struct {
	rec *mdspb.ChunkserverRecord
	// seen is the time of the last registration or heartbeat since this
	// process started; zero when there was none.
	seen time.Time
	// capacity and used are the bytes last reported.
	capacity, used uint64
	copysets       []uint64 // copysets it is a member of, sorted
}

// copyset is a copyset of the pool.
type copyset struct {
	rec *mdspb.CopysetRecord
	// leader is the last leader reported by a member (0: unknown) and
	// term the raft term of that report.
	leader, term uint64
	chunks       int // chunks of live volumes placed on it
}

func (c *copyset) hasMember(id uint64) bool { return slices.Contains(c.rec.GetMembers(), id) }

// observe folds in a member's report: a report of a newer term replaces
// the leader (with 0 while an election runs), one of the same term fills
// in an unknown leader, an older one is ignored.
func (c *copyset) observe(from uint64, st *mdspb.CopysetState) {
	leader := st.GetLeader()
	if isLeaderRole(st.GetRole()) {
		leader = from
	}
	switch {
	case st.GetTerm() > c.term:
		c.term, c.leader = st.GetTerm(), leader
	case st.GetTerm() == c.term && c.leader == 0:
		c.leader = leader
	}
}

// isLeaderRole reports whether role is the leader's: "Leader" as the API
// documents, or "StateLeader" as etcd raft's StateType prints it.
func isLeaderRole(role string) bool { return role == "Leader" || role == "StateLeader" }

// volume is a volume and its writer session.
type volume struct {
	rec      *mdspb.VolumeRecord
	segments uint64   // allocated segments
	writer   *session // nil when no writer session is open
}

// session is a writer session.
type session struct {
	rec     *mdspb.SessionRecord
	expires time.Time
}

// addCopysetLocked indexes a copyset record.
// REQUIRES: s.mu held
func (s *Server) addCopysetLocked(rec *mdspb.CopysetRecord) {
	s.mu.copysets[rec.GetId()] = &copyset{rec: rec}
	s.mu.copysetIDs = append(s.mu.copysetIDs, rec.GetId())
	for _, m := range rec.GetMembers() {
		if cs := s.mu.servers[m]; cs != nil {
			cs.copysets = append(cs.copysets, rec.GetId())
		}
	}
}

// addVolumeLocked indexes a volume record.
// REQUIRES: s.mu held
func (s *Server) addVolumeLocked(rec *mdspb.VolumeRecord) *volume {
	v := &volume{rec: rec}
	s.mu.volumes[rec.GetName()] = v
	s.mu.volumeByID[rec.GetId()] = v
	return v
}

// addDeletionLocked records a chunk pending deletion.
// REQUIRES: s.mu held
func (s *Server) addDeletionLocked(cp, chunk uint64) {
	set := s.mu.deletions[cp]
	if set == nil {
		set = make(map[uint64]struct{})
		s.mu.deletions[cp] = set
	}
	set[chunk] = struct{}{}
	s.mu.deletionOf[chunk] = cp
}

// removeDeletionLocked forgets an acknowledged chunk deletion.
// REQUIRES: s.mu held
func (s *Server) removeDeletionLocked(chunk uint64) {
	cp := s.mu.deletionOf[chunk]
	delete(s.mu.deletionOf, chunk)
	delete(s.mu.deletions[cp], chunk)
	if len(s.mu.deletions[cp]) == 0 {
		delete(s.mu.deletions, cp)
	}
}

// aliveLocked reports whether cs has been seen within the heartbeat TTL.
// REQUIRES: s.mu held
func (s *Server) aliveLocked(cs *chunkserver) bool {
	return cs != nil && !cs.seen.IsZero() && s.now().Sub(cs.seen) < s.cfg.HeartbeatTTL
}

// liveLocked reports whether w is an open session whose lease has not
// expired.
// REQUIRES: s.mu held
func (s *Server) liveLocked(w *session) bool {
	return w != nil && s.now().Before(w.expires)
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
