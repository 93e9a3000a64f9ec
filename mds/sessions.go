package mds

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
)

// OpenVolume opens a volume. A reader gets session 0 and no lease. A
// writer gets a new session (cluster-unique, increasing) with a lease of
// SessionLease, which it must renew (RenewSession) before it runs out.
// While another writer's lease is live it fails with a *WriterExistsError
// naming the holder, unless req.Force is set: then the old session is
// replaced and every later call with it fails with ErrSessionInvalid.
func (s *Server) OpenVolume(ctx context.Context, req *mdspb.OpenVolumeRequest) (*mdspb.OpenVolumeResponse, error) {
	return call(ctx, s, "OpenVolume", func() (*mdspb.OpenVolumeResponse, error) { return s.openVolume(req) })
}

func (s *Server) openVolume(req *mdspb.OpenVolumeRequest) (*mdspb.OpenVolumeResponse, error) {
	return withVolume(s, req.GetVolume(), func(v *volume) (*mdspb.OpenVolumeResponse, error) {
		if !req.GetWriter() {
			return &mdspb.OpenVolumeResponse{Volume: s.volumePB(v)}, nil
		}
		if s.liveLocked(v.writer) && !req.GetForce() {
			return nil, &WriterExistsError{Volume: req.GetVolume(), Holder: v.writer.rec.GetClient()}
		}
		w, err := s.openSessionLocked(v, req.GetClient())
		if err != nil {
			return nil, err
		}
		return &mdspb.OpenVolumeResponse{Volume: s.volumePB(v), Session: w.rec.GetId(), LeaseMs: s.cfg.SessionLease.Milliseconds()}, nil
	})
}

// openSessionLocked persists a new writer session of v, replacing any
// other.
// REQUIRES: s.mu held
func (s *Server) openSessionLocked(v *volume, client string) (*session, error) {
	meta := proto.CloneOf(s.mu.meta)
	meta.LastSession++
	rec := &mdspb.SessionRecord{Id: meta.GetLastSession(), Volume: v.rec.GetId(), Client: client, OpenedUnixMs: unixMs(s.now())}
	var b Batch
	b.Set(metaKey, encode(meta))
	b.Set(idKey(prefixSession, v.rec.GetId()), encode(rec))
	if err := s.kv.Apply(&b); err != nil {
		return nil, fmt.Errorf("opening a writer session on %q: %w", v.rec.GetName(), err)
	}
	s.mu.meta = meta
	if s.liveLocked(v.writer) {
		s.log.Warn("writer session taken over", "volume", v.rec.GetName(),
			"session", v.writer.rec.GetId(), "client", v.writer.rec.GetClient(), "by", client)
	}
	v.writer = &session{rec: rec, expires: s.now().Add(s.cfg.SessionLease)}
	return v.writer, nil
}

// checkSessionLocked reports whether id is v's live writer session.
// REQUIRES: s.mu held
func (s *Server) checkSessionLocked(v *volume, id uint64) error {
	w := v.writer
	switch {
	case id == 0:
		return fmt.Errorf("%w: no session given (open the volume as a writer)", ErrSessionInvalid)
	case w == nil || w.rec.GetId() < id:
		return fmt.Errorf("%w: session %d of %q is not open", ErrSessionInvalid, id, v.rec.GetName())
	case w.rec.GetId() != id:
		return fmt.Errorf("%w: session %d of %q was taken over by session %d of %q",
			ErrSessionInvalid, id, v.rec.GetName(), w.rec.GetId(), w.rec.GetClient())
	case !s.liveLocked(w):
		return fmt.Errorf("%w: the lease of session %d of %q expired", ErrSessionInvalid, id, v.rec.GetName())
	}
	return nil
}

// RenewSession extends a live writer session's lease by SessionLease from
// now. A session that expired, was closed or was taken over fails with
// ErrSessionInvalid: its holder must open the volume again.
func (s *Server) RenewSession(ctx context.Context, req *mdspb.RenewSessionRequest) (*mdspb.RenewSessionResponse, error) {
	return call(ctx, s, "RenewSession", func() (*mdspb.RenewSessionResponse, error) { return s.renewSession(req) })
}

func (s *Server) renewSession(req *mdspb.RenewSessionRequest) (*mdspb.RenewSessionResponse, error) {
	return withVolume(s, req.GetVolume(), func(v *volume) (*mdspb.RenewSessionResponse, error) {
		if err := s.checkSessionLocked(v, req.GetSession()); err != nil {
			return nil, err
		}
		v.writer.expires = s.now().Add(s.cfg.SessionLease)
		return &mdspb.RenewSessionResponse{LeaseMs: s.cfg.SessionLease.Milliseconds()}, nil
	})
}

// CloseVolume releases a writer session (its lease need not be live).
// Session 0 (a reader) is a no-op. Closing a session that is not the
// volume's current one fails with ErrSessionInvalid.
func (s *Server) CloseVolume(ctx context.Context, req *mdspb.CloseVolumeRequest) (*mdspb.CloseVolumeResponse, error) {
	return call(ctx, s, "CloseVolume", func() (*mdspb.CloseVolumeResponse, error) {
		return &mdspb.CloseVolumeResponse{}, s.closeVolume(req)
	})
}

func (s *Server) closeVolume(req *mdspb.CloseVolumeRequest) error {
	if err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	v, err := s.volumeLocked(req.GetVolume())
	if err != nil || req.GetSession() == 0 {
		return err
	}
	if v.writer == nil || v.writer.rec.GetId() != req.GetSession() {
		return fmt.Errorf("%w: session %d is not the writer of %q", ErrSessionInvalid, req.GetSession(), req.GetVolume())
	}
	if err := s.kv.Delete(idKey(prefixSession, v.rec.GetId())); err != nil {
		return fmt.Errorf("closing session %d of %q: %w", req.GetSession(), req.GetVolume(), err)
	}
	v.writer = nil
	return nil
}
