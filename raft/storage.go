package raft

import (
	"basalt/internal/pebbleutil"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	etcdraft "go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logStore is one group's raft log and state on the host's shared Pebble DB.
// It implements etcd raft's Storage. Writes go into the Pebble batch of the
// current Ready round (the caller commits it); reads see committed data plus
// an in-memory cache of the newest entries.
//
// A logStore is owned by the host's loop goroutine: no locking.
type logStore struct {
	db    *pebble.DB
	group uint64

	hard      *raftpb.HardState
	conf      *raftpb.ConfState // latest applied membership
	confIndex uint64            // index of the entry that produced conf
	trunc     *raftpb.SnapshotMetadata
	last      uint64 // index of the last entry (trunc.Index if the log is empty)

	cache      []*raftpb.Entry // newest entries, contiguous, ending at last
	cacheBytes int
	cacheLimit int

	// snap is the snapshot raft may send to followers (metadata only; the
	// bytes come from the state machine's SnapshotSource). nil: none yet.
	snap *raftpb.Snapshot
	// wantSnap is set when raft asked for a snapshot newer than snap.
	wantSnap bool
}

var _ etcdraft.Storage = (*logStore)(nil)

// newLogStore returns the store of a group created just now with the given
// voters (empty for a replica that joins an existing group).
func newLogStore(db *pebble.DB, group uint64, voters []uint64, cacheLimit int) *logStore {
	return &logStore{
		db:         db,
		group:      group,
		hard:       &raftpb.HardState{},
		conf:       raftpb.EnsureConfState(&raftpb.ConfState{Voters: voters}),
		trunc:      raftpb.EnsureSnapshotMetadata(nil),
		cacheLimit: cacheLimit,
	}
}

// loadLogStore reads a group's persisted state.
func loadLogStore(db *pebble.DB, group uint64, cacheLimit int) (*logStore, error) {
	s := newLogStore(db, group, nil, cacheLimit)
	if err := s.loadMeta(); err != nil {
		return nil, fmt.Errorf("loading state of group %d: %w", group, err)
	}
	last, err := s.loadLastIndex()
	if err != nil {
		return nil, fmt.Errorf("loading last index of group %d: %w", group, err)
	}
	s.last = last
	return s, nil
}

func (s *logStore) loadMeta() error {
	if _, err := getProto(s.db, groupKey(s.group, suffixHard), s.hard); err != nil {
		return err
	}
	confMeta := raftpb.EnsureSnapshotMetadata(nil)
	if _, err := getProto(s.db, groupKey(s.group, suffixConf), confMeta); err != nil {
		return err
	}
	s.conf, s.confIndex = confMeta.GetConfState(), confMeta.GetIndex()
	_, err := getProto(s.db, groupKey(s.group, suffixTrunc), s.trunc)
	raftpb.EnsureSnapshotMetadata(s.trunc)
	return err
}

func (s *logStore) loadLastIndex() (uint64, error) {
	lo := logKey(s.group, 0)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: pebbleutil.PrefixEnd(groupKey(s.group, suffixLog))})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if it.Last() {
		return logKeyIndex(it.Key()), nil
	}
	return s.trunc.GetIndex(), it.Error()
}

// getProto reads key into m; found is false if the key is absent.
func getProto(db *pebble.DB, key []byte, m proto.Message) (found bool, err error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	return true, proto.Unmarshal(v, m)
}

func setProto(b *pebble.Batch, key []byte, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return b.Set(key, v, nil)
}

// InitialState implements etcd raft's Storage.
func (s *logStore) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	return proto.CloneOf(s.hard), proto.CloneOf(s.conf), nil
}

// FirstIndex implements etcd raft's Storage.
func (s *logStore) FirstIndex() (uint64, error) { return s.trunc.GetIndex() + 1, nil }

// LastIndex implements etcd raft's Storage.
func (s *logStore) LastIndex() (uint64, error) { return s.last, nil }

// Term implements etcd raft's Storage.
func (s *logStore) Term(i uint64) (uint64, error) {
	switch {
	case i == s.trunc.GetIndex():
		return s.trunc.GetTerm(), nil
	case i < s.trunc.GetIndex():
		return 0, etcdraft.ErrCompacted
	case i > s.last:
		return 0, etcdraft.ErrUnavailable
	}
	if e := s.cached(i); e != nil {
		return e.GetTerm(), nil
	}
	e, err := s.readEntry(i)
	if err != nil {
		return 0, err
	}
	return e.GetTerm(), nil
}

// Entries implements etcd raft's Storage.
func (s *logStore) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if lo <= s.trunc.GetIndex() {
		return nil, etcdraft.ErrCompacted
	}
	if hi > s.last+1 {
		return nil, etcdraft.ErrUnavailable
	}
	if len(s.cache) > 0 && lo >= s.cache[0].GetIndex() {
		return limitSize(s.cache[lo-s.cache[0].GetIndex():hi-s.cache[0].GetIndex()], maxSize), nil
	}
	return s.readEntries(lo, hi, maxSize)
}

// limitSize returns a copy of the longest prefix of ents within maxSize
// bytes, and at least one entry.
func limitSize(ents []*raftpb.Entry, maxSize uint64) []*raftpb.Entry {
	var size uint64
	n := 0
	for n < len(ents) {
		size += uint64(proto.Size(ents[n]))
		if n > 0 && size > maxSize {
			break
		}
		n++
	}
	return append([]*raftpb.Entry(nil), ents[:n]...)
}

func (s *logStore) readEntries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: logKey(s.group, lo), UpperBound: logKey(s.group, hi)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*raftpb.Entry
	var size uint64
	next := lo
	for ok := it.First(); ok; ok = it.Next() {
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return nil, fmt.Errorf("decoding entry %d of group %d: %w", next, s.group, err)
		}
		if e.GetIndex() != next {
			return nil, fmt.Errorf("group %d: log gap at index %d: %w", s.group, next, etcdraft.ErrUnavailable)
		}
		size += uint64(len(it.Value()))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, etcdraft.ErrUnavailable
	}
	return out, nil
}

func (s *logStore) readEntry(i uint64) (*raftpb.Entry, error) {
	e := &raftpb.Entry{}
	found, err := getProto(s.db, logKey(s.group, i), e)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, etcdraft.ErrUnavailable
	}
	return e, nil
}

func (s *logStore) cached(i uint64) *raftpb.Entry {
	if len(s.cache) == 0 || i < s.cache[0].GetIndex() || i > s.last {
		return nil
	}
	return s.cache[i-s.cache[0].GetIndex()]
}

// Snapshot implements etcd raft's Storage. It returns the newest state
// machine snapshot if it covers the compacted log; otherwise it asks for a
// new one and reports it temporarily unavailable.
func (s *logStore) Snapshot() (*raftpb.Snapshot, error) {
	if s.snap != nil && s.snap.GetMetadata().GetIndex() >= s.trunc.GetIndex() {
		return s.snap, nil
	}
	s.wantSnap = true
	return nil, etcdraft.ErrSnapshotTemporarilyUnavailable
}

// append writes entries (which may overwrite a conflicting tail) into b.
func (s *logStore) append(b *pebble.Batch, ents []*raftpb.Entry) error {
	first := ents[0].GetIndex()
	if first <= s.trunc.GetIndex() {
		return fmt.Errorf("group %d: appending index %d at or below truncated index %d", s.group, first, s.trunc.GetIndex())
	}
	if first <= s.last {
		if err := b.DeleteRange(logKey(s.group, first), logKey(s.group, s.last+1), nil); err != nil {
			return err
		}
	}
	for _, e := range ents {
		if err := setProto(b, logKey(s.group, e.GetIndex()), e); err != nil {
			return err
		}
	}
	s.last = ents[len(ents)-1].GetIndex()
	s.cacheAppend(ents)
	return nil
}

func (s *logStore) cacheAppend(ents []*raftpb.Entry) {
	first := ents[0].GetIndex()
	if len(s.cache) > 0 && (first > s.cache[len(s.cache)-1].GetIndex()+1 || first < s.cache[0].GetIndex()) {
		s.cache, s.cacheBytes = nil, 0
	}
	if len(s.cache) > 0 {
		keep := first - s.cache[0].GetIndex()
		for _, e := range s.cache[keep:] {
			s.cacheBytes -= proto.Size(e)
		}
		s.cache = s.cache[:keep]
	}
	for _, e := range ents {
		s.cache = append(s.cache, e)
		s.cacheBytes += proto.Size(e)
	}
	s.trimCache(0)
}

// trimCache drops cached entries at or below index, and the oldest entries
// beyond the size limit (always keeping the newest one).
func (s *logStore) trimCache(index uint64) {
	n := 0
	for n < len(s.cache)-1 && (s.cache[n].GetIndex() <= index || s.cacheBytes > s.cacheLimit) {
		s.cacheBytes -= proto.Size(s.cache[n])
		n++
	}
	if n > 0 {
		s.cache = append([]*raftpb.Entry(nil), s.cache[n:]...)
	}
	if len(s.cache) == 1 && s.cache[0].GetIndex() <= index {
		s.cache, s.cacheBytes = nil, 0
	}
}

func (s *logStore) setHardState(b *pebble.Batch, hs *raftpb.HardState) error {
	s.hard = proto.CloneOf(hs)
	return setProto(b, groupKey(s.group, suffixHard), hs)
}

// setConf records the membership produced by the entry at index.
func (s *logStore) setConf(b *pebble.Batch, cs *raftpb.ConfState, index uint64) error {
	s.conf, s.confIndex = proto.CloneOf(cs), index
	meta := &raftpb.SnapshotMetadata{ConfState: cs, Index: new(index), Term: new(uint64(0))}
	return setProto(b, groupKey(s.group, suffixConf), meta)
}

// applySnapshot replaces the whole log by a received snapshot's metadata and
// records it as pending restore into the state machine.
func (s *logStore) applySnapshot(b *pebble.Batch, meta *raftpb.SnapshotMetadata) error {
	if err := b.DeleteRange(logKey(s.group, 0), pebbleutil.PrefixEnd(groupKey(s.group, suffixLog)), nil); err != nil {
		return err
	}
	s.trunc = proto.CloneOf(meta)
	s.last = meta.GetIndex()
	s.cache, s.cacheBytes = nil, 0
	if err := setProto(b, groupKey(s.group, suffixTrunc), meta); err != nil {
		return err
	}
	if err := s.setConf(b, meta.GetConfState(), meta.GetIndex()); err != nil {
		return err
	}
	return setProto(b, groupKey(s.group, suffixPending), meta)
}

// compact drops log entries up to and including index.
func (s *logStore) compact(b *pebble.Batch, index uint64) error {
	if index <= s.trunc.GetIndex() || index > s.last {
		return nil
	}
	term, err := s.Term(index)
	if err != nil {
		return fmt.Errorf("compacting group %d to %d: %w", s.group, index, err)
	}
	if err := b.DeleteRange(logKey(s.group, 0), logKey(s.group, index+1), nil); err != nil {
		return err
	}
	s.trunc = &raftpb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: s.trunc.GetConfState()}
	s.trimCache(index)
	return setProto(b, groupKey(s.group, suffixTrunc), s.trunc)
}
