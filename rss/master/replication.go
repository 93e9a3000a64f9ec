package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"basalt/raft"
	"basalt/raft/grpctransport"
)

// ParsePeers parses a --raft-peers list, "1=host:port,2=host:port,...":
// each master's raft host ID and gRPC address.
func ParsePeers(list string) (map[uint64]string, error) {
	peers := make(map[uint64]string)
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		idText, addr, ok := strings.Cut(item, "=")
		id, err := strconv.ParseUint(strings.TrimSpace(idText), 10, 64)
		addr = strings.TrimSpace(addr)
		switch {
		case !ok || addr == "":
			return nil, fmt.Errorf("%w: raft peer %q is not ID=host:port", ErrInvalidConfig, item)
		case err != nil || id == 0:
			return nil, fmt.Errorf("%w: raft peer %q: the ID must be a positive integer", ErrInvalidConfig, item)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("%w: raft peer ID %d given twice", ErrInvalidConfig, id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// replicationConfig is what openReplication needs.
type replicationConfig struct {
	ID        uint64
	Peers     map[uint64]string
	Dir       string
	FS        vfs.FS
	Placement PlacementConfig
	Logger    *slog.Logger
	// CheckpointInterval is how often the Replica is checkpointed and the
	// raft log truncated behind it.
	CheckpointInterval time.Duration
}

// replication is a master's raft side: the transport (served on the
// master's own gRPC server), the host running ReplicationGroup and the
// Replica it applies to, and the checkpoint loop.
type replication struct {
	rep    Replication
	tr     *grpctransport.Transport
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openReplication starts the raft host with the master group (created
// with every peer as a voter on first start; found on disk afterwards)
// and the checkpoint loop.
func openReplication(cfg replicationConfig) (*replication, error) {
	if _, ok := cfg.Peers[cfg.ID]; !ok {
		return nil, fmt.Errorf("%w: --raft-id %d is not among --raft-peers", ErrInvalidConfig, cfg.ID)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: a replicated master needs --data", ErrInvalidConfig)
	}
	res := grpctransport.NewStaticResolver(nil)
	for id, addr := range cfg.Peers {
		res.Set(id, addr)
	}
	tcfg := grpctransport.DefaultConfig()
	tcfg.HostID, tcfg.Resolver, tcfg.Logger = cfg.ID, res, cfg.Logger
	tr, err := grpctransport.New(tcfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.FS.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, errors.Join(fmt.Errorf("creating %s: %w", cfg.Dir, err), tr.Close())
	}
	replica := NewReplica(cfg.FS, cfg.FS.PathJoin(cfg.Dir, "master-state.json"), cfg.Placement)
	rcfg := raft.DefaultConfig()
	rcfg.HostID, rcfg.FS, rcfg.Logger, rcfg.Transport = cfg.ID, cfg.FS, cfg.Logger, tr
	rcfg.Dir = cfg.FS.PathJoin(cfg.Dir, "raft")
	rcfg.Factory = func(group uint64) (raft.StateMachine, error) {
		if group != ReplicationGroup {
			return nil, fmt.Errorf("%w: a master hosts raft group %d only, not %d", ErrInvalidConfig, ReplicationGroup, group)
		}
		return replica, nil
	}
	host, err := raft.NewHost(rcfg)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("opening the raft host: %w", err), tr.Close())
	}
	tr.SetHandler(host)
	r := &replication{rep: Replication{Host: host, Replica: replica, Peers: cfg.Peers}, tr: tr, log: cfg.Logger}
	if !slices.Contains(host.Groups(), ReplicationGroup) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		voters := slices.Sorted(maps.Keys(cfg.Peers))
		if err := host.CreateGroup(ctx, ReplicationGroup, voters); err != nil {
			return nil, errors.Join(fmt.Errorf("creating the master raft group: %w", err), r.close())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(1)
	go r.checkpointLoop(ctx, cfg.CheckpointInterval)
	return r, nil
}

// register serves the raft transport on gs; gs must be built with
// serverOptions.
func (r *replication) register(gs *grpc.Server) { r.tr.Register(gs) }

// serverOptions are the gRPC server options the raft transport needs.
func (r *replication) serverOptions() []grpc.ServerOption { return r.tr.ServerOptions() }

// collectors returns the raft host's and transport's collectors.
func (r *replication) collectors() []prometheus.Collector {
	return append(r.rep.Host.Collectors(), r.tr.Collectors()...)
}

// health fails once the raft host has stopped (a failed log write stops it).
func (r *replication) health() error {
	select {
	case <-r.rep.Host.Done():
		return errors.New("rss master: raft host stopped")
	default:
		return nil
	}
}

// checkpointLoop checkpoints the Replica every interval when it has
// applied something new, and truncates the raft log behind it.
func (r *replication) checkpointLoop(ctx context.Context, interval time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	var done uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.rep.Replica.Applied() == done {
			continue
		}
		index, err := r.rep.Replica.Checkpoint()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			err = r.rep.Host.Compact(cctx, ReplicationGroup, index)
			cancel()
		}
		if err != nil {
			r.log.Warn("master checkpoint failed", "err", err)
			continue
		}
		done = index
	}
}

// close stops the checkpoint loop, the raft host and the transport.
func (r *replication) close() error {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	return errors.Join(r.rep.Host.Stop(), r.tr.Close())
}
