package chunkserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/chunkserver/chunkserverpb"
	"basalt/chunkserver/chunkstore"
	"basalt/chunkserver/copyset"
	"basalt/internal/daemon"
	"basalt/internal/vfsutil"
	"basalt/mds/mdspb"
	"basalt/raft"
	"basalt/raft/grpctransport"
)

// Server is a running chunkserver. Create it with Start; stop it with
// Stop (or by canceling the context given to Run).
type Server struct {
	cfg      Config
	log      *slog.Logger
	id       uint64
	addr     string
	lis      net.Listener
	grpc     *grpc.Server
	mdsConn  *grpc.ClientConn
	mds      mdspb.MDSClient
	store    *chunkstore.FileStore
	tr       *grpctransport.Transport
	resolver *grpctransport.StaticResolver
	host     *raft.Host
	metrics  *metrics

	mu struct {
		sync.Mutex
		copysets map[uint64]*copyset.StateMachine
		deleted  []uint64 // chunk deletions to acknowledge to the MDS
	}

	stop    chan struct{}
	loops   sync.WaitGroup
	stopped sync.Once
}

// identity is what a chunkserver remembers about itself across restarts.
type identity struct {
	ID        uint64 `json:"id"`
	ChunkSize int64  `json:"chunk_size"`
}

// Start registers with the MDS, opens the chunk store and the raft host
// (bringing back every copyset hosted before), and starts serving. It
// retries the registration until ctx ends, so the MDS may start later.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, stop: make(chan struct{}), metrics: newMetrics()}
	s.mu.copysets = map[uint64]*copyset.StateMachine{}
	if err := s.start(ctx); err != nil {
		s.shutdown()
		return nil, err
	}
	s.log = s.log.With("chunkserver", s.id)
	s.log.Info("chunkserver started", "address", s.addr, "zone", cfg.Zone, "copysets", len(s.host.Groups()))
	s.loops.Go(s.heartbeatLoop)
	s.loops.Go(s.checkpointLoop)
	s.loops.Go(s.poolLoop)
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	if err := vfsutil.MkdirAll(s.cfg.FS, s.cfg.Dir); err != nil {
		return fmt.Errorf("creating %s: %w", s.cfg.Dir, err)
	}
	if err := s.listen(); err != nil {
		return err
	}
	if err := s.register(ctx); err != nil {
		return err
	}
	if err := s.openStorage(); err != nil {
		return err
	}
	s.serve()
	return nil
}

func (s *Server) listen() error {
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	s.lis, s.addr = lis, lis.Addr().String()
	if s.cfg.Advertise != "" {
		s.addr = s.cfg.Advertise
	}
	conn, err := grpc.NewClient(s.cfg.MDS, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing MDS %s: %w", s.cfg.MDS, err)
	}
	s.mdsConn, s.mds = conn, mdspb.NewMDSClient(conn)
	return nil
}

// register obtains (or confirms) this chunkserver's ID from the MDS.
func (s *Server) register(ctx context.Context) error {
	id, err := s.loadIdentity()
	if err != nil {
		return err
	}
	req := &mdspb.RegisterChunkserverRequest{Id: id.ID, Address: s.addr, Zone: s.cfg.Zone, Capacity: s.cfg.Capacity}
	resp, err := retry(ctx, s.log, "registering with the MDS", func(ctx context.Context) (*mdspb.RegisterChunkserverResponse, error) {
		return s.mds.RegisterChunkserver(ctx, req)
	})
	if err != nil {
		return err
	}
	if id.ChunkSize != 0 && id.ChunkSize != int64(resp.GetChunkSize()) {
		return fmt.Errorf("%w: chunk size %d on disk, MDS says %d", ErrInvalidConfig, id.ChunkSize, resp.GetChunkSize())
	}
	s.id = resp.GetId()
	return s.saveIdentity(identity{ID: s.id, ChunkSize: int64(resp.GetChunkSize())})
}

func (s *Server) identityPath() string { return s.cfg.FS.PathJoin(s.cfg.Dir, "identity.json") }

func (s *Server) loadIdentity() (identity, error) {
	var id identity
	f, err := s.cfg.FS.Open(s.identityPath())
	if errors.Is(err, os.ErrNotExist) {
		return id, nil
	}
	if err != nil {
		return id, err
	}
	defer f.Close()
	if err := json.NewDecoder(f).Decode(&id); err != nil {
		return id, fmt.Errorf("reading %s: %w", s.identityPath(), err)
	}
	return id, nil
}

func (s *Server) saveIdentity(id identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	return vfsutil.WriteFile(s.cfg.FS, s.identityPath(), b)
}

// retry calls fn with a per-attempt timeout until it succeeds or ctx ends.
func retry[T any](ctx context.Context, log *slog.Logger, what string, fn func(context.Context) (T, error)) (T, error) {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := fn(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		log.Warn(what+" failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// openStorage opens the chunk store, the raft transport and the raft host.
func (s *Server) openStorage() error {
	id, err := s.loadIdentity()
	if err != nil {
		return err
	}
	s.store, err = chunkstore.Open(chunkstore.Config{
		Dir: s.cfg.FS.PathJoin(s.cfg.Dir, "store"), FS: s.cfg.FS, ChunkSize: id.ChunkSize,
		PoolFiles: s.cfg.PoolFiles, Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("opening chunk store: %w", err)
	}
	s.resolver = grpctransport.NewStaticResolver(nil)
	tcfg := grpctransport.DefaultConfig()
	tcfg.HostID, tcfg.Resolver, tcfg.Logger = s.id, s.resolver, s.log
	if s.tr, err = grpctransport.New(tcfg); err != nil {
		return err
	}
	s.host, err = raft.NewHost(s.raftConfig())
	if err != nil {
		return fmt.Errorf("opening raft host: %w", err)
	}
	s.tr.SetHandler(s.host)
	return nil
}

func (s *Server) raftConfig() raft.Config {
	cfg := raft.DefaultConfig()
	cfg.HostID, cfg.FS, cfg.Logger = s.id, s.cfg.FS, s.log
	cfg.Dir = s.cfg.FS.PathJoin(s.cfg.Dir, "raft")
	cfg.Transport, cfg.TickInterval = s.tr, s.cfg.RaftTick
	cfg.Factory = s.newCopyset
	return cfg
}

// newCopyset is the raft Factory: the state machine of copyset id.
func (s *Server) newCopyset(id uint64) (raft.StateMachine, error) {
	sm := copyset.New(copyset.Config{
		Copyset: id, Store: s.store, FS: s.cfg.FS,
		Dir: s.cfg.FS.PathJoin(s.cfg.Dir, "copysets", fmt.Sprint(id)),
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.copysets[id] = sm
	return sm, nil
}

func (s *Server) copyset(id uint64) *copyset.StateMachine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.copysets[id]
}

func (s *Server) serve() {
	s.grpc = grpc.NewServer(s.tr.ServerOptions()...)
	s.tr.Register(s.grpc)
	chunkserverpb.RegisterChunkserverServer(s.grpc, &api{s: s})
	go func() { _ = s.grpc.Serve(s.lis) }()
}

// ID returns the chunkserver's ID; Addr its advertised gRPC address.
func (s *Server) ID() uint64   { return s.id }
func (s *Server) Addr() string { return s.addr }

// Collectors returns the chunkserver's Prometheus collectors.
func (s *Server) Collectors() []prometheus.Collector {
	cs := append(s.host.Collectors(), s.tr.Collectors()...)
	return append(cs, s.metrics.collectors()...)
}

// Healthy reports whether the chunkserver is serving.
func (s *Server) Healthy() error {
	select {
	case <-s.host.Done():
		return errors.New("chunkserver: raft host stopped")
	default:
		return nil
	}
}

// Stop stops the loops, the gRPC server, the raft host and the store. It
// checkpoints every copyset first, so a restart replays little.
func (s *Server) Stop() {
	s.stopped.Do(func() {
		close(s.stop)
		s.loops.Wait()
		s.checkpointAll()
		s.shutdown()
		s.log.Info("chunkserver stopped")
	})
}

func (s *Server) shutdown() {
	if s.grpc != nil {
		stopGRPC(s.grpc, 2*time.Second)
	}
	if s.tr != nil {
		_ = s.tr.Close()
	}
	if s.host != nil {
		if err := s.host.Stop(); err != nil {
			s.log.Error("stopping raft host", "err", err)
		}
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.mdsConn != nil {
		_ = s.mdsConn.Close()
	}
	if s.lis != nil && s.grpc == nil {
		_ = s.lis.Close()
	}
}

// stopGRPC stops gracefully, or hard after timeout.
func stopGRPC(g *grpc.Server, timeout time.Duration) { daemon.StopGRPC(g, timeout, nil) }
