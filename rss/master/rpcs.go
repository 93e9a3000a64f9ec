package master

import (
	"context"
	"errors"
	"time"

	"basalt/rss/rsspb"
)

// RegisterApplication registers an application and returns its token
// and lease. Registering an existing id again needs its token in the
// call's metadata (it is then renewed and keeps its token); without it
// the call fails with AlreadyExists.
func (s *Server) RegisterApplication(ctx context.Context, req *rsspb.RegisterApplicationRequest) (*rsspb.RegisterApplicationResponse, error) {
	return call(ctx, s, "RegisterApplication", func() (*rsspb.RegisterApplicationResponse, error) {
		token, err := newToken()
		if err != nil {
			return nil, err
		}
		_, presented := credentials(ctx)
		c := RegisterApp{App: req.GetAppId(), NewToken: token, Presented: presented, Now: s.now(), Lease: s.cfg.AppLease}
		lease, err := update[AppLease](ctx, s, Command{RegisterApp: &c})
		if err != nil {
			return nil, err
		}
		s.log.Info("application registered", "app", c.App, "expires", lease.Expires)
		return &rsspb.RegisterApplicationResponse{Token: lease.Token, LeaseMs: s.cfg.AppLease.Milliseconds()}, nil
	})
}

// ApplicationHeartbeat renews the calling application's lease.
func (s *Server) ApplicationHeartbeat(ctx context.Context, _ *rsspb.ApplicationHeartbeatRequest) (*rsspb.ApplicationHeartbeatResponse, error) {
	return authed(ctx, s, "ApplicationHeartbeat", func(app string) (*rsspb.ApplicationHeartbeatResponse, error) {
		c := Heartbeat{App: app, Now: s.now(), Lease: s.cfg.AppLease}
		if _, err := update[time.Time](ctx, s, Command{Heartbeat: &c}); err != nil {
			return nil, err
		}
		return &rsspb.ApplicationHeartbeatResponse{LeaseMs: s.cfg.AppLease.Milliseconds()}, nil
	})
}

// UnregisterApplication removes the calling application and has the
// workers delete its files (in the background, retried).
func (s *Server) UnregisterApplication(ctx context.Context, _ *rsspb.UnregisterApplicationRequest) (*rsspb.UnregisterApplicationResponse, error) {
	return authed(ctx, s, "UnregisterApplication", func(app string) (*rsspb.UnregisterApplicationResponse, error) {
		r, err := update[Removal](ctx, s, Command{UnregisterApp: &UnregisterApp{App: app}})
		if err != nil {
			return nil, err
		}
		s.log.Info("application unregistered", "app", app)
		s.deleteAsync(r)
		return &rsspb.UnregisterApplicationResponse{}, nil
	})
}

// RegisterShuffle places a new shuffle's partitions on the live workers;
// see State.RegisterShuffle. A registration that would change nothing
// (every map task of a Spark stage registers its shuffle) is answered
// from a read, without a log entry.
func (s *Server) RegisterShuffle(ctx context.Context, req *rsspb.RegisterShuffleRequest) (*rsspb.ShuffleLayout, error) {
	return authed(ctx, s, "RegisterShuffle", func(app string) (*rsspb.ShuffleLayout, error) {
		c := RegisterShuffle{
			App: app, Shuffle: req.GetShuffleId(), NumMaps: req.GetNumMaps(), NumPartitions: req.GetNumPartitions(),
			NoReplica: req.GetNoReplica(), Run: req.GetRun(),
		}
		layout, err := s.registerShuffle(ctx, c)
		if err != nil {
			return nil, err
		}
		return &rsspb.ShuffleLayout{ShuffleId: c.Shuffle, Locations: locationsPB(layout.Locations)}, nil
	})
}

// registerShuffle answers c from a read when it changes nothing, and
// otherwise proposes it with the leader's worker view and a seed.
func (s *Server) registerShuffle(ctx context.Context, c RegisterShuffle) (Layout, error) {
	var layout Layout
	var ok bool
	_, err := view(ctx, s, func(st *State) (struct{}, error) {
		layout, ok = st.Registered(c)
		return struct{}{}, nil
	})
	if err != nil || ok {
		return layout, err
	}
	c.Workers, c.Seed = s.workers(), s.seed()
	layout, err = update[Layout](ctx, s, Command{RegisterShuffle: &c})
	if err == nil && layout.Created {
		s.logPlaced(c, layout.Locations)
	}
	return layout, err
}

// logPlaced logs a new shuffle, warning when partitions that should have
// a replica got none (fewer than two usable workers).
func (s *Server) logPlaced(c RegisterShuffle, locs []Location) {
	log := s.log.With("app", c.App, "shuffle", c.Shuffle)
	log.Info("shuffle registered", "maps", c.NumMaps, "partitions", c.NumPartitions, "workers", len(c.Workers))
	if n := Unreplicated(locs); !c.NoReplica && n > 0 {
		log.Warn("partitions placed without a replica: fewer than two usable workers", "unreplicated", n)
	}
}

// Revive gives a partition a new epoch on other workers; see
// State.Revive.
func (s *Server) Revive(ctx context.Context, req *rsspb.ReviveRequest) (*rsspb.PartitionLocation, error) {
	return authed(ctx, s, "Revive", func(app string) (*rsspb.PartitionLocation, error) {
		c := Revive{
			App: app, Shuffle: req.GetShuffleId(), Partition: req.GetPartition(), FailedEpoch: req.GetFailedEpoch(),
			Workers: s.workers(), Seed: s.seed(),
		}
		loc, err := update[Location](ctx, s, Command{Revive: &c})
		if err != nil {
			return nil, err
		}
		if loc.Epoch > c.FailedEpoch {
			s.log.Info("partition revived", "app", app, "shuffle", c.Shuffle, "partition", c.Partition,
				"epoch", loc.Epoch, "primary", loc.Primary.ID, "replica", loc.Replica.ID)
		}
		return locationPB(loc), nil
	})
}

// MapEnd records a map attempt's end; the first attempt of a map index
// wins.
func (s *Server) MapEnd(ctx context.Context, req *rsspb.MapEndRequest) (*rsspb.MapEndResponse, error) {
	return authed(ctx, s, "MapEnd", func(app string) (*rsspb.MapEndResponse, error) {
		c := MapEnd{App: app, Shuffle: req.GetShuffleId(), Attempt: MapAttempt{
			MapIndex: req.GetMapIndex(), Attempt: req.GetAttempt(), Batches: req.GetBatches(),
		}}
		res, err := update[MapEndResult](ctx, s, Command{MapEnd: &c})
		if err != nil {
			return nil, err
		}
		s.metrics.mapEnd(res.Won)
		return &rsspb.MapEndResponse{Won: res.Won, WinningAttempt: res.Winner}, nil
	})
}

// CommitShuffle has every worker holding the shuffle commit it; see
// commitShuffle.
func (s *Server) CommitShuffle(ctx context.Context, req *rsspb.CommitShuffleRequest) (*rsspb.CommitShuffleResponse, error) {
	return authed(ctx, s, "CommitShuffle", func(app string) (*rsspb.CommitShuffleResponse, error) {
		err := s.commitShuffle(ctx, app, req.GetShuffleId())
		s.metrics.commit(err)
		return &rsspb.CommitShuffleResponse{}, err
	})
}

// GetShuffle returns every location of every partition and the map
// winners.
func (s *Server) GetShuffle(ctx context.Context, req *rsspb.GetShuffleRequest) (*rsspb.ShuffleState, error) {
	return authed(ctx, s, "GetShuffle", func(app string) (*rsspb.ShuffleState, error) {
		info, err := view(ctx, s, func(st *State) (ShuffleInfo, error) { return st.Shuffle(app, req.GetShuffleId()) })
		if err != nil {
			return nil, err
		}
		return shuffleStatePB(info), nil
	})
}

// UnregisterShuffle removes a shuffle and has its workers delete its
// files (in the background, retried). Unregistering an unknown shuffle
// succeeds, so the call can be retried.
func (s *Server) UnregisterShuffle(ctx context.Context, req *rsspb.UnregisterShuffleRequest) (*rsspb.UnregisterShuffleResponse, error) {
	return authed(ctx, s, "UnregisterShuffle", func(app string) (*rsspb.UnregisterShuffleResponse, error) {
		c := UnregisterShuffle{App: app, Shuffle: req.GetShuffleId()}
		r, err := update[Removal](ctx, s, Command{UnregisterShuffle: &c})
		if errors.Is(err, ErrShuffleNotFound) {
			return &rsspb.UnregisterShuffleResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		s.log.Info("shuffle unregistered", "app", app, "shuffle", c.Shuffle)
		s.deleteAsync(r)
		return &rsspb.UnregisterShuffleResponse{}, nil
	})
}

// Status lists the live workers and the applications with their shuffles
// and lease expiry. It needs no credentials.
func (s *Server) Status(ctx context.Context, _ *rsspb.StatusRequest) (*rsspb.StatusResponse, error) {
	return call(ctx, s, "Status", func() (*rsspb.StatusResponse, error) {
		apps, err := view(ctx, s, func(st *State) ([]AppInfo, error) { return st.Apps(), nil })
		if err != nil {
			return nil, err
		}
		return statusPB(s.workers(), apps, s.now()), nil
	})
}
