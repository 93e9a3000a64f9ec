package clienttest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
)

// MDS is a fake MDS: volumes, segments (allocated on request, chunks
// spread round-robin over the copysets), copysets with leader hints, and
// writer sessions, all in memory. Its methods are safe for concurrent use.
type MDS struct {
	mdspb.UnimplementedMDSServer

	c           *Cluster
	srv         *server
	renewals    atomic.Int64
	getSegments atomic.Int64
	getCopysets atomic.Int64
	mu          struct {
		sync.Mutex
		volumes     map[string]*volume
		hints       map[uint64]uint64 // copyset -> stale leader hint set by the test
		nextSession uint64
		nextChunk   uint64
		nextCopyset uint64 // round-robin position
		failures    int
		failCode    codes.Code
	}
}

var _ mdspb.MDSServer = (*MDS)(nil)

// volume is one fake volume.
type volume struct {
	pb       *mdspb.Volume
	segments map[uint64]*mdspb.Segment
	session  uint64 // the writer session, 0 if none
	holder   string // the writer's client name
}

func startMDS(c *Cluster) (*MDS, error) {
	m := &MDS{c: c}
	m.mu.volumes, m.mu.hints = map[string]*volume{}, map[uint64]uint64{}
	m.mu.nextSession, m.mu.nextChunk = 100, 1000
	srv, err := serve(func(s *grpc.Server) { mdspb.RegisterMDSServer(s, m) })
	if err != nil {
		return nil, err
	}
	m.srv = srv
	return m, nil
}

// Addr returns the MDS's address.
func (m *MDS) Addr() string { return m.srv.addr() }

// Stop stops the MDS's server. Idempotent.
func (m *MDS) Stop() { m.srv.stop() }

// Renewals is the number of RenewSession calls received.
func (m *MDS) Renewals() int64 { return m.renewals.Load() }

// SegmentCalls is the number of GetSegment calls received.
func (m *MDS) SegmentCalls() int64 { return m.getSegments.Load() }

// CopysetCalls is the number of GetCopysets calls received.
func (m *MDS) CopysetCalls() int64 { return m.getCopysets.Load() }

// FailNext makes the next n calls (of any kind) fail with code.
func (m *MDS) FailNext(n int, code codes.Code) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.failures, m.mu.failCode = n, code
}

// SetLeaderHint makes GetCopysets report chunkserver id as the copyset's
// leader, whoever leads it.
func (m *MDS) SetLeaderHint(copyset, id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.hints[copyset] = id
}

// Fence ends the writer session of a volume, as a forced open by another
// client would: the old session's renewals and allocations fail with
// FailedPrecondition.
func (m *MDS) Fence(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.mu.volumes[name]; ok {
		v.session, v.holder = 0, ""
	}
}

// Session returns a volume's writer session (0 if none).
func (m *MDS) Session(name string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.mu.volumes[name]; ok {
		return v.session
	}
	return 0
}

// AddVolume creates a volume of size bytes.
func (m *MDS) AddVolume(name string, size uint64) error {
	_, err := m.CreateVolume(context.Background(), &mdspb.CreateVolumeRequest{Name: name, Size: size})
	return err
}

// Segment returns the map of a volume's segment, or nil if it was never
// allocated.
func (m *MDS) Segment(name string, index uint64) *mdspb.Segment {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.mu.volumes[name]; ok {
		return v.segments[index]
	}
	return nil
}

// injected takes one injected failure, if any.
func (m *MDS) injected() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.failures == 0 {
		return nil
	}
	m.mu.failures--
	return status.Error(m.mu.failCode, "clienttest: injected MDS failure")
}

// volumeLocked finds a volume.
// REQUIRES: m.mu held.
func (m *MDS) volumeLocked(name string) (*volume, error) {
	v, ok := m.mu.volumes[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "clienttest: volume %q not found", name)
	}
	return v, nil
}

// CreateVolume implements mdspb.MDSServer.
func (m *MDS) CreateVolume(_ context.Context, req *mdspb.CreateVolumeRequest) (*mdspb.Volume, error) {
	if err := m.injected(); err != nil {
		return nil, err
	}
	if req.GetName() == "" || req.GetSize() == 0 || req.GetSize()%4096 != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "clienttest: bad volume %q of %d bytes", req.GetName(), req.GetSize())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mu.volumes[req.GetName()]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "clienttest: volume %q exists", req.GetName())
	}
	cfg := m.c.cfg
	pb := &mdspb.Volume{Name: req.GetName(), Size: req.GetSize(), Owner: req.GetOwner(),
		SegmentSize: cfg.SegmentSize, ChunkSize: cfg.ChunkSize, CreatedUnixMs: time.Now().UnixMilli()}
	m.mu.volumes[req.GetName()] = &volume{pb: pb, segments: map[uint64]*mdspb.Segment{}}
	return cloneVolume(pb), nil
}

// StatVolume implements mdspb.MDSServer.
func (m *MDS) StatVolume(_ context.Context, req *mdspb.StatVolumeRequest) (*mdspb.Volume, error) {
	if err := m.injected(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.volumeLocked(req.GetName())
	if err != nil {
		return nil, err
	}
	return cloneVolume(v.pb), nil
}

// cloneVolume copies a volume for an answer: gRPC marshals it after the
// lock is released.
func cloneVolume(pb *mdspb.Volume) *mdspb.Volume {
	return proto.Clone(pb).(*mdspb.Volume)
}

// OpenVolume implements mdspb.MDSServer. A second writer is refused with
// FailedPrecondition naming the holder, unless it forces.
func (m *MDS) OpenVolume(_ context.Context, req *mdspb.OpenVolumeRequest) (*mdspb.OpenVolumeResponse, error) {
	if err := m.injected(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.volumeLocked(req.GetVolume())
	if err != nil {
		return nil, err
	}
	resp := &mdspb.OpenVolumeResponse{Volume: cloneVolume(v.pb), LeaseMs: m.c.cfg.LeaseMS}
	if !req.GetWriter() {
		return resp, nil
	}
	if v.session != 0 && !req.GetForce() {
		return nil, status.Errorf(codes.FailedPrecondition,
			"clienttest: volume %q is held by writer %q (session %d)", req.GetVolume(), v.holder, v.session)
	}
	m.mu.nextSession++
	v.session, v.holder = m.mu.nextSession, req.GetClient()
	resp.Session = v.session
	return resp, nil
}

// sessionLocked checks that session is the volume's writer session.
// REQUIRES: m.mu held.
func (m *MDS) sessionLocked(name string, session uint64) (*volume, error) {
	v, err := m.volumeLocked(name)
	if err != nil {
		return nil, err
	}
	if session == 0 || v.session != session {
		return nil, status.Errorf(codes.FailedPrecondition, "clienttest: session %d of volume %q is not the writer's", session, name)
	}
	return v, nil
}

// RenewSession implements mdspb.MDSServer.
func (m *MDS) RenewSession(_ context.Context, req *mdspb.RenewSessionRequest) (*mdspb.RenewSessionResponse, error) {
	m.renewals.Add(1)
	if err := m.injected(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.sessionLocked(req.GetVolume(), req.GetSession()); err != nil {
		return nil, err
	}
	return &mdspb.RenewSessionResponse{LeaseMs: m.c.cfg.LeaseMS}, nil
}

// CloseVolume implements mdspb.MDSServer.
func (m *MDS) CloseVolume(_ context.Context, req *mdspb.CloseVolumeRequest) (*mdspb.CloseVolumeResponse, error) {
	if err := m.injected(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.sessionLocked(req.GetVolume(), req.GetSession())
	if err != nil {
		return nil, err
	}
	v.session, v.holder = 0, ""
	return &mdspb.CloseVolumeResponse{}, nil
}

// GetSegment implements mdspb.MDSServer.
func (m *MDS) GetSegment(_ context.Context, req *mdspb.GetSegmentRequest) (*mdspb.Segment, error) {
	m.getSegments.Add(1)
	if err := m.injected(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.volumeLocked(req.GetVolume())
	if err != nil {
		return nil, err
	}
	if req.GetIndex()*v.pb.SegmentSize >= v.pb.Size {
		return nil, status.Errorf(codes.OutOfRange, "clienttest: segment %d beyond volume %q", req.GetIndex(), req.GetVolume())
	}
	if seg, ok := v.segments[req.GetIndex()]; ok {
		return seg, nil
	}
	if !req.GetAllocate() {
		return &mdspb.Segment{Index: req.GetIndex()}, nil
	}
	if _, err := m.sessionLocked(req.GetVolume(), req.GetSession()); err != nil {
		return nil, err
	}
	return m.allocateLocked(v, req.GetIndex()), nil
}

// allocateLocked allocates a segment's chunks, round-robin over the
// copysets.
// REQUIRES: m.mu held.
func (m *MDS) allocateLocked(v *volume, index uint64) *mdspb.Segment {
	seg := &mdspb.Segment{Index: index, Allocated: true}
	for range v.pb.SegmentSize / v.pb.ChunkSize {
		m.mu.nextChunk++
		cs := m.mu.nextCopyset%uint64(m.c.cfg.Copysets) + 1
		m.mu.nextCopyset++
		m.c.addChunk(m.mu.nextChunk, cs)
		seg.Chunks = append(seg.Chunks, &mdspb.SegmentChunk{Chunk: m.mu.nextChunk, Copyset: cs})
	}
	v.segments[index] = seg
	v.pb.AllocatedSegments++
	return seg
}

// GetCopysets implements mdspb.MDSServer. The leader hint is the real
// leader unless the test set a stale one.
func (m *MDS) GetCopysets(_ context.Context, req *mdspb.GetCopysetsRequest) (*mdspb.GetCopysetsResponse, error) {
	m.getCopysets.Add(1)
	if err := m.injected(); err != nil {
		return nil, err
	}
	resp := &mdspb.GetCopysetsResponse{}
	for _, id := range req.GetIds() {
		cs, ok := m.c.copyset(id, m.hint(id))
		if !ok {
			return nil, status.Errorf(codes.NotFound, "clienttest: copyset %d not found", id)
		}
		resp.Copysets = append(resp.Copysets, cs)
	}
	return resp, nil
}

// hint is the leader GetCopysets reports for a copyset.
func (m *MDS) hint(copyset uint64) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.mu.hints[copyset]; ok {
		return h
	}
	return m.c.Leader(copyset)
}
