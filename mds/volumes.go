package mds

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
)

// MaxVolumeSize is the largest volume size in bytes: 1 PiB.
const MaxVolumeSize = 1 << 50

// maxNameLen is the longest volume name.
const maxNameLen = 128

// checkName reports whether name is 1 to 128 characters of [A-Za-z0-9._-].
func checkName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("%w: %q must be 1 to %d characters", ErrInvalidName, name, maxNameLen)
	}
	for _, r := range name {
		if !nameChar(r) {
			return fmt.Errorf("%w: %q has %q; use only A-Z a-z 0-9 . _ -", ErrInvalidName, name, r)
		}
	}
	return nil
}

func nameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("._-", r)
}

// checkSize reports whether size is a valid volume size.
func checkSize(size uint64) error {
	if size == 0 || size%blockSize != 0 || size > MaxVolumeSize {
		return fmt.Errorf("%w: %d bytes must be a positive multiple of %d of at most %d",
			ErrInvalidSize, size, blockSize, uint64(MaxVolumeSize))
	}
	return nil
}

// volumeLocked returns the named volume or ErrVolumeNotFound.
// REQUIRES: s.mu held
// withVolume runs fn under the server lock with the named volume (or
// returns the lookup's error).
func withVolume[T any](s *Server, name string, fn func(v *volume) (T, error)) (T, error) {
	var zero T
	if err := s.lock(); err != nil {
		return zero, err
	}
	defer s.mu.Unlock()
	v, err := s.volumeLocked(name)
	if err != nil {
		return zero, err
	}
	return fn(v)
}

func (s *Server) volumeLocked(name string) (*volume, error) {
	v := s.mu.volumes[name]
	if v == nil {
		return nil, fmt.Errorf("%w: %q", ErrVolumeNotFound, name)
	}
	return v, nil
}

// volumePB describes v for the API.
func (s *Server) volumePB(v *volume) *mdspb.Volume {
	return &mdspb.Volume{
		Name: v.rec.GetName(), Size: v.rec.GetSize(), Owner: v.rec.GetOwner(),
		SegmentSize: s.cfg.SegmentSize, ChunkSize: s.cfg.ChunkSize,
		CreatedUnixMs: v.rec.GetCreatedUnixMs(), AllocatedSegments: v.segments,
	}
}

// CreateVolume creates an empty (thin) volume. It fails with
// ErrInvalidName, ErrInvalidSize or ErrVolumeExists. No pool is needed.
func (s *Server) CreateVolume(ctx context.Context, req *mdspb.CreateVolumeRequest) (*mdspb.Volume, error) {
	return call(ctx, s, "CreateVolume", func() (*mdspb.Volume, error) { return s.createVolume(req) })
}

func (s *Server) createVolume(req *mdspb.CreateVolumeRequest) (*mdspb.Volume, error) {
	if err := checkName(req.GetName()); err != nil {
		return nil, err
	}
	if err := checkSize(req.GetSize()); err != nil {
		return nil, err
	}
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if s.mu.volumes[req.GetName()] != nil {
		return nil, fmt.Errorf("%w: %q", ErrVolumeExists, req.GetName())
	}
	v, err := s.addVolumeRecordLocked(req)
	if err != nil {
		return nil, err
	}
	s.log.Info("volume created", "volume", req.GetName(), "size", req.GetSize())
	return s.volumePB(v), nil
}

// addVolumeRecordLocked persists a new volume with the next volume ID.
// REQUIRES: s.mu held
func (s *Server) addVolumeRecordLocked(req *mdspb.CreateVolumeRequest) (*volume, error) {
	meta := proto.CloneOf(s.mu.meta)
	meta.LastVolume++
	rec := &mdspb.VolumeRecord{
		Id: meta.GetLastVolume(), Name: req.GetName(), Size: req.GetSize(),
		Owner: req.GetOwner(), CreatedUnixMs: unixMs(s.now()),
	}
	var b Batch
	b.Set(metaKey, encode(meta))
	b.Set(volumeKey(rec.GetName()), encode(rec))
	if err := s.kv.Apply(&b); err != nil {
		return nil, fmt.Errorf("creating volume %q: %w", rec.GetName(), err)
	}
	s.mu.meta = meta
	return s.addVolumeLocked(rec), nil
}

// StatVolume returns a volume, or ErrVolumeNotFound.
func (s *Server) StatVolume(ctx context.Context, req *mdspb.StatVolumeRequest) (*mdspb.Volume, error) {
	return call(ctx, s, "StatVolume", func() (*mdspb.Volume, error) { return s.statVolume(req.GetName()) })
}

func (s *Server) statVolume(name string) (*mdspb.Volume, error) {
	return withVolume(s, name, func(v *volume) (*mdspb.Volume, error) {
		return s.volumePB(v), nil
	})
}

// ListVolumes returns every volume, by name.
func (s *Server) ListVolumes(ctx context.Context, _ *mdspb.ListVolumesRequest) (*mdspb.ListVolumesResponse, error) {
	return call(ctx, s, "ListVolumes", s.listVolumes)
}

func (s *Server) listVolumes() (*mdspb.ListVolumesResponse, error) {
	if err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	resp := &mdspb.ListVolumesResponse{}
	for _, v := range s.mu.volumes {
		resp.Volumes = append(resp.Volumes, s.volumePB(v))
	}
	slices.SortFunc(resp.Volumes, func(a, b *mdspb.Volume) int { return strings.Compare(a.GetName(), b.GetName()) })
	return resp, nil
}

// ResizeVolume grows a volume; the same size is a no-op. A smaller size
// fails with ErrShrink, an invalid one with ErrInvalidSize.
func (s *Server) ResizeVolume(ctx context.Context, req *mdspb.ResizeVolumeRequest) (*mdspb.Volume, error) {
	return call(ctx, s, "ResizeVolume", func() (*mdspb.Volume, error) { return s.resizeVolume(req) })
}

func (s *Server) resizeVolume(req *mdspb.ResizeVolumeRequest) (*mdspb.Volume, error) {
	if err := checkSize(req.GetSize()); err != nil {
		return nil, err
	}
	return withVolume(s, req.GetName(), func(v *volume) (*mdspb.Volume, error) {
		if req.GetSize() < v.rec.GetSize() {
			return nil, fmt.Errorf("%w: %q is %d bytes, asked for %d", ErrShrink, req.GetName(), v.rec.GetSize(), req.GetSize())
		}
		rec := proto.CloneOf(v.rec)
		rec.Size = req.GetSize()
		if err := s.kv.Set(volumeKey(rec.GetName()), encode(rec)); err != nil {
			return nil, fmt.Errorf("resizing volume %q: %w", rec.GetName(), err)
		}
		v.rec = rec
		return s.volumePB(v), nil
	})
}

// DeleteVolume deletes a volume, its segment maps and its closed or
// expired writer session, in one batch; its chunks become pending
// deletions, handed to their copysets' leaders by heartbeat. It fails with
// ErrWriterExists while a writer holds a live lease.
func (s *Server) DeleteVolume(ctx context.Context, req *mdspb.DeleteVolumeRequest) (*mdspb.DeleteVolumeResponse, error) {
	return call(ctx, s, "DeleteVolume", func() (*mdspb.DeleteVolumeResponse, error) {
		return &mdspb.DeleteVolumeResponse{}, s.deleteVolume(req.GetName())
	})
}

func (s *Server) deleteVolume(name string) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	v, err := s.volumeLocked(name)
	if err != nil {
		return err
	}
	if s.liveLocked(v.writer) {
		return &WriterExistsError{Volume: name, Holder: v.writer.rec.GetClient()}
	}
	chunks, err := s.deleteVolumeRecordsLocked(v)
	if err != nil {
		return err
	}
	s.forgetVolumeLocked(v, chunks)
	s.log.Info("volume deleted", "volume", name, "segments", v.segments, "chunks", len(chunks))
	return nil
}

// deleteVolumeRecordsLocked deletes v's records and queues its chunks for
// deletion, in one batch, and returns the chunks.
// REQUIRES: s.mu held
func (s *Server) deleteVolumeRecordsLocked(v *volume) ([]*mdspb.SegmentChunk, error) {
	var b Batch
	var chunks []*mdspb.SegmentChunk
	err := scanRecords(s.kv, idKey(prefixSegment, v.rec.GetId()), func(key []byte, rec *mdspb.SegmentRecord) error {
		b.Delete(append([]byte(nil), key...))
		chunks = append(chunks, rec.GetChunks()...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing segments of %q: %w", v.rec.GetName(), err)
	}
	for _, c := range chunks {
		b.Set(idKey(prefixDeletion, c.GetCopyset(), c.GetChunk()), nil)
	}
	b.Delete(idKey(prefixSession, v.rec.GetId()))
	b.Delete(volumeKey(v.rec.GetName()))
	if err := s.kv.Apply(&b); err != nil {
		return nil, fmt.Errorf("deleting volume %q: %w", v.rec.GetName(), err)
	}
	return chunks, nil
}

// forgetVolumeLocked drops a deleted volume from memory.
// REQUIRES: s.mu held
func (s *Server) forgetVolumeLocked(v *volume, chunks []*mdspb.SegmentChunk) {
	delete(s.mu.volumes, v.rec.GetName())
	delete(s.mu.volumeByID, v.rec.GetId())
	s.countChunksLocked(chunks, -1)
	for _, c := range chunks {
		s.addDeletionLocked(c.GetCopyset(), c.GetChunk())
	}
}
