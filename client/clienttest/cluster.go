package clienttest

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
	"basalt/mds/mdspb"
)

// Config sizes a Cluster. Zero fields take the defaults noted.
type Config struct {
	// Chunkservers is the number of fake chunkservers, with IDs 1..n.
	// Default 3.
	Chunkservers int
	// Copysets is the number of copysets, with IDs 1..n. Copyset i has
	// Replicas members starting at chunkserver ((i-1) mod n)+1; the first
	// is its leader. Default 4.
	Copysets int
	// Replicas is the number of members per copyset, at most Chunkservers.
	// Default 3.
	Replicas int
	// ChunkSize is the chunk size in bytes. Default 4096.
	ChunkSize uint64
	// SegmentSize is the segment size in bytes, a multiple of ChunkSize.
	// Default 4 chunks.
	SegmentSize uint64
	// LeaseMS is the writer lease the MDS grants. Default 3000.
	LeaseMS int64
}

func (c *Config) fillDefaults() {
	if c.Chunkservers == 0 {
		c.Chunkservers = 3
	}
	if c.Copysets == 0 {
		c.Copysets = 4
	}
	if c.Replicas == 0 {
		c.Replicas = min(3, c.Chunkservers)
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 4096
	}
	if c.SegmentSize == 0 {
		c.SegmentSize = 4 * c.ChunkSize
	}
	if c.LeaseMS == 0 {
		c.LeaseMS = 3000
	}
}

// Cluster is a fake MDS and fake chunkservers sharing one view of copysets
// and chunk data. Its methods are safe for concurrent use.
type Cluster struct {
	MDS          *MDS
	Chunkservers []*Chunkserver // Chunkservers[i] has ID i+1

	cfg Config
	mu  struct {
		sync.Mutex
		members map[uint64][]uint64 // copyset -> chunkserver IDs
		leaders map[uint64]uint64   // copyset -> chunkserver ID
		chunks  map[uint64]*chunk   // chunk ID -> copyset and bytes
	}
}

// chunk is one chunk's replicated state.
type chunk struct {
	copyset uint64
	data    []byte // nil until written
}

// Start starts a Cluster on 127.0.0.1 and stops it when t's test ends.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cfg.fillDefaults()
	c := &Cluster{cfg: cfg}
	c.mu.members, c.mu.leaders, c.mu.chunks = map[uint64][]uint64{}, map[uint64]uint64{}, map[uint64]*chunk{}
	c.place()
	t.Cleanup(c.Stop)
	for i := range cfg.Chunkservers {
		cs, err := startChunkserver(c, uint64(i+1))
		if err != nil {
			t.Fatalf("starting fake chunkserver: %v", err)
		}
		c.Chunkservers = append(c.Chunkservers, cs)
	}
	m, err := startMDS(c)
	if err != nil {
		t.Fatalf("starting fake MDS: %v", err)
	}
	c.MDS = m
	return c
}

// place lays out the copysets.
func (c *Cluster) place() {
	for i := range c.cfg.Copysets {
		id := uint64(i + 1)
		for r := range c.cfg.Replicas {
			c.mu.members[id] = append(c.mu.members[id], uint64((i+r)%c.cfg.Chunkservers+1))
		}
		c.mu.leaders[id] = c.mu.members[id][0]
	}
}

// Stop stops every server. It is idempotent.
func (c *Cluster) Stop() {
	if c.MDS != nil {
		c.MDS.Stop()
	}
	for _, cs := range c.Chunkservers {
		cs.Stop()
	}
}

// Config returns the cluster's configuration, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// Chunkserver returns the chunkserver with ID id.
func (c *Cluster) Chunkserver(id uint64) *Chunkserver { return c.Chunkservers[id-1] }

// Members returns the chunkserver IDs of a copyset's members.
func (c *Cluster) Members(copyset uint64) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.mu.members[copyset]...)
}

// Leader returns the ID of a copyset's leader.
func (c *Cluster) Leader(copyset uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.leaders[copyset]
}

// SetLeader makes chunkserver id the leader of copyset (0: no leader, every
// member answers NotLeader without a leader).
func (c *Cluster) SetLeader(copyset, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.leaders[copyset] = id
}

// DataCalls is the number of Read, Write and Discard calls every
// chunkserver received.
func (c *Cluster) DataCalls() int64 {
	var n int64
	for _, cs := range c.Chunkservers {
		n += cs.Calls()
	}
	return n
}

// addr returns a chunkserver's address ("" for an unknown ID).
func (c *Cluster) addr(id uint64) string {
	if id == 0 || id > uint64(len(c.Chunkservers)) {
		return ""
	}
	return c.Chunkservers[id-1].Addr()
}

// checkLeader returns nil if chunkserver id leads copyset, NotFound if it
// is not a member, and FailedPrecondition with a NotLeader detail
// otherwise (without the leader's address if hide).
func (c *Cluster) checkLeader(copyset, id uint64, hide bool) error {
	c.mu.Lock()
	members, leader := c.mu.members[copyset], c.mu.leaders[copyset]
	c.mu.Unlock()
	if !contains(members, id) {
		return status.Errorf(codes.NotFound, "clienttest: copyset %d is not on chunkserver %d", copyset, id)
	}
	if leader == id {
		return nil
	}
	nl := &chunkserverpb.NotLeader{Copyset: copyset, LeaderId: leader, LeaderAddress: c.addr(leader)}
	if hide {
		nl.LeaderId, nl.LeaderAddress = 0, ""
	}
	st, err := status.New(codes.FailedPrecondition, fmt.Sprintf("clienttest: not the leader of copyset %d", copyset)).WithDetails(nl)
	if err != nil {
		return status.Errorf(codes.Internal, "clienttest: attaching NotLeader: %v", err)
	}
	return st.Err()
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// copyset returns a copyset as the MDS reports it, with leader hint hint.
func (c *Cluster) copyset(id, hint uint64) (*mdspb.Copyset, bool) {
	c.mu.Lock()
	members, ok := c.mu.members[id]
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	pb := &mdspb.Copyset{Id: id, Leader: hint}
	for _, m := range members {
		pb.Members = append(pb.Members, &mdspb.Member{Id: m, Address: c.addr(m), Zone: fmt.Sprintf("zone-%d", m)})
	}
	return pb, true
}

// addChunk records a chunk the MDS allocated.
func (c *Cluster) addChunk(id, copyset uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.chunks[id] = &chunk{copyset: copyset}
}

// ChunkBytes returns a copy of a chunk's bytes (nil if never written).
func (c *Cluster) ChunkBytes(id uint64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.mu.chunks[id]; ok && ch.data != nil {
		return append([]byte(nil), ch.data...)
	}
	return nil
}

// access runs fn on a chunk's bytes after checking the request: the chunk
// must belong to copyset and [off, off+n) must lie within a chunk.
func (c *Cluster) access(copyset, id, off, n uint64, fn func(data []byte)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.mu.chunks[id]
	switch {
	case !ok || ch.copyset != copyset:
		return status.Errorf(codes.InvalidArgument, "clienttest: chunk %d is not in copyset %d", id, copyset)
	case n == 0:
		return status.Errorf(codes.InvalidArgument, "clienttest: empty range")
	case off > c.cfg.ChunkSize || n > c.cfg.ChunkSize-off:
		return status.Errorf(codes.OutOfRange, "clienttest: [%d, +%d) outside chunk of %d bytes", off, n, c.cfg.ChunkSize)
	}
	if ch.data == nil {
		ch.data = make([]byte, c.cfg.ChunkSize)
	}
	fn(ch.data[off : off+n])
	return nil
}

// server is one gRPC server on 127.0.0.1.
type server struct {
	lis  net.Listener
	srv  *grpc.Server
	done chan struct{}
	once sync.Once
}

// serve starts a gRPC server with the services register adds.
func serve(register func(*grpc.Server)) (*server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	s := &server{lis: lis, srv: grpc.NewServer(), done: make(chan struct{})}
	register(s.srv)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis)
	}()
	return s, nil
}

func (s *server) addr() string { return s.lis.Addr().String() }

// stop closes the listener and every connection at once. Idempotent.
func (s *server) stop() {
	s.once.Do(func() {
		s.srv.Stop()
		<-s.done
	})
}
