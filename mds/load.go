package mds

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
)

// load reads the store into s.mu.state. It runs once, from New.
func (s *Server) load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	steps := []struct {
		what string
		fn   func() error
	}{
		{"meta", s.loadMeta},
		{"chunkservers", s.loadChunkservers},
		{"pool", s.loadPool},
		{"copysets", s.loadCopysets},
		{"volumes", s.loadVolumes},
		{"segments", s.loadSegments},
		{"sessions", s.loadSessions},
		{"chunk deletions", s.loadDeletions},
	}
	for _, st := range steps {
		if err := st.fn(); err != nil {
			return fmt.Errorf("loading %s: %w", st.what, err)
		}
	}
	return nil
}

// loadMeta reads the meta record, creating it in a new store, and checks
// the geometry against the config.
func (s *Server) loadMeta() error {
	meta := &mdspb.MetaRecord{}
	found, err := s.get(metaKey, meta)
	switch {
	case err != nil:
		return err
	case !found:
		return s.createMeta()
	case meta.GetChunkSize() != s.cfg.ChunkSize || meta.GetSegmentSize() != s.cfg.SegmentSize:
		return fmt.Errorf("%w: the store was created with chunk size %d and segment size %d, not %d and %d",
			ErrInvalidConfig, meta.GetChunkSize(), meta.GetSegmentSize(), s.cfg.ChunkSize, s.cfg.SegmentSize)
	}
	s.mu.meta = meta
	return nil
}

func (s *Server) createMeta() error {
	meta := &mdspb.MetaRecord{ChunkSize: s.cfg.ChunkSize, SegmentSize: s.cfg.SegmentSize, CreatedUnixMs: unixMs(s.now())}
	if err := s.kv.Set(metaKey, encode(meta)); err != nil {
		return err
	}
	s.mu.meta = meta
	return nil
}

// get reads the record under key into m; found is false when it is absent.
func (s *Server) get(key []byte, m proto.Message) (found bool, err error) {
	v, err := s.kv.Get(key)
	if errors.Is(err, ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, decode(key, v, m)
}

func (s *Server) loadChunkservers() error {
	return scanRecords(s.kv, idKey(prefixChunkserver), func(_ []byte, rec *mdspb.ChunkserverRecord) error {
		s.mu.servers[rec.GetId()] = &chunkserver{rec: rec, capacity: rec.GetCapacity()}
		return nil
	})
}

func (s *Server) loadPool() error {
	pool := &mdspb.PoolRecord{}
	found, err := s.get(poolKey, pool)
	if found {
		s.mu.pool = pool
	}
	return err
}

func (s *Server) loadCopysets() error {
	err := scanRecords(s.kv, idKey(prefixCopyset), func(_ []byte, rec *mdspb.CopysetRecord) error {
		s.addCopysetLocked(rec)
		return nil
	})
	slices.Sort(s.mu.copysetIDs)
	for _, cs := range s.mu.servers {
		slices.Sort(cs.copysets)
	}
	return err
}

func (s *Server) loadVolumes() error {
	return scanRecords(s.kv, idKey(prefixVolume), func(_ []byte, rec *mdspb.VolumeRecord) error {
		s.addVolumeLocked(rec)
		return nil
	})
}

// loadSegments counts the allocated segments of each volume and the chunks
// of each copyset. It reads every segment map: O(allocated chunks).
func (s *Server) loadSegments() error {
	return scanRecords(s.kv, idKey(prefixSegment), func(key []byte, rec *mdspb.SegmentRecord) error {
		id, err := keyID(key, 0)
		if err != nil {
			return err
		}
		if v := s.mu.volumeByID[id]; v != nil {
			v.segments++
		}
		s.countChunksLocked(rec.GetChunks(), 1)
		return nil
	})
}

// countChunksLocked adds delta to the chunk count of each chunk's copyset.
// REQUIRES: s.mu held
func (s *Server) countChunksLocked(chunks []*mdspb.SegmentChunk, delta int) {
	for _, c := range chunks {
		if cp := s.mu.copysets[c.GetCopyset()]; cp != nil {
			cp.chunks += delta
		}
	}
}

// loadSessions restores writer sessions, each with a fresh lease: the
// holder may have renewed it while the MDS was down.
func (s *Server) loadSessions() error {
	expires := s.now().Add(s.cfg.SessionLease)
	return scanRecords(s.kv, idKey(prefixSession), func(_ []byte, rec *mdspb.SessionRecord) error {
		if v := s.mu.volumeByID[rec.GetVolume()]; v != nil {
			v.writer = &session{rec: rec, expires: expires}
		}
		return nil
	})
}

func (s *Server) loadDeletions() error {
	return s.kv.Scan(idKey(prefixDeletion), func(key, _ []byte) error {
		cp, err := keyID(key, 0)
		if err != nil {
			return err
		}
		chunk, err := keyID(key, 1)
		if err != nil {
			return err
		}
		s.addDeletionLocked(cp, chunk)
		return nil
	})
}

// scanRecords decodes every record under prefix into a new *M and calls fn.
func scanRecords[M any, PM interface {
	*M
	proto.Message
}](kv KV, prefix []byte, fn func(key []byte, rec PM) error) error {
	return kv.Scan(prefix, func(key, value []byte) error {
		rec := PM(new(M))
		if err := decode(key, value, rec); err != nil {
			return err
		}
		return fn(key, rec)
	})
}
