package mds_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"basalt/mds"
	"basalt/mds/mdspb"
)

func (e *env) open(name, client string, writer, force bool) (*mdspb.OpenVolumeResponse, error) {
	return e.c.OpenVolume(ctx(e.t), &mdspb.OpenVolumeRequest{Volume: name, Writer: writer, Force: force, Client: client})
}

func (e *env) renew(name string, session uint64) error {
	_, err := e.c.RenewSession(ctx(e.t), &mdspb.RenewSessionRequest{Volume: name, Session: session})
	return err
}

func (e *env) closeVolume(name string, session uint64) error {
	_, err := e.c.CloseVolume(ctx(e.t), &mdspb.CloseVolumeRequest{Volume: name, Session: session})
	return err
}

// TestSecondWriterRefused: a second writer is refused with the holder's
// name; readers are not; force takes the lease over and fences the old
// session.
func TestSecondWriterRefused(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", 2*segmentSize)
	first := must(e.open("v", "host-a", true, false))(t)
	if first.GetSession() == 0 || first.GetLeaseMs() != mds.DefaultSessionLease.Milliseconds() || first.GetVolume().GetName() != "v" {
		t.Fatalf("open: %+v", first)
	}
	_, err := e.open("v", "host-b", true, false)
	wantErr(t, err, mds.ErrWriterExists, codes.FailedPrecondition)
	var we *mds.WriterExistsError
	if !errors.As(mds.FromStatus(err), &we) || we.Holder != "host-a" || we.Volume != "v" {
		t.Fatalf("got %v, want a WriterExistsError naming host-a", err)
	}
	if r := must(e.open("v", "reader", false, false))(t); r.GetSession() != 0 {
		t.Fatalf("reader got session %d", r.GetSession())
	}

	second := must(e.open("v", "host-b", true, true))(t).GetSession()
	if second <= first.GetSession() {
		t.Fatalf("forced session %d is not after %d", second, first.GetSession())
	}
	old := first.GetSession()
	wantErr(t, e.renew("v", old), mds.ErrSessionInvalid, codes.FailedPrecondition)
	_, err = e.segment("v", 0, true, old)
	wantErr(t, err, mds.ErrSessionInvalid, codes.FailedPrecondition)
	wantErr(t, e.closeVolume("v", old), mds.ErrSessionInvalid, codes.FailedPrecondition)
	must(e.segment("v", 0, true, second))(t)
	noErr(t, e.renew("v", second))
	must(0, e.closeVolume("v", 0))(t) // a reader's close is a no-op
	noErr(t, e.closeVolume("v", second))
	wantErr(t, e.renew("v", second), mds.ErrSessionInvalid, codes.FailedPrecondition)
	must(e.open("v", "host-c", true, false))(t)
}

// TestLeaseExpiry: a lease lasts SessionLease from its last renewal; once
// it has run out another writer gets in without force and the old session
// is dead.
func TestLeaseExpiry(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", segmentSize)
	a := e.openWriter("v", "a")
	e.clock.Advance(mds.DefaultSessionLease - time.Second)
	noErr(t, e.renew("v", a))
	e.clock.Advance(mds.DefaultSessionLease - time.Second)
	_, err := e.open("v", "b", true, false)
	wantErr(t, err, mds.ErrWriterExists, codes.FailedPrecondition)

	e.clock.Advance(time.Second)
	wantErr(t, e.renew("v", a), mds.ErrSessionInvalid, codes.FailedPrecondition)
	_, err = e.segment("v", 0, true, a)
	wantErr(t, err, mds.ErrSessionInvalid, codes.FailedPrecondition)
	b := e.openWriter("v", "b")
	wantErr(t, e.renew("v", a), mds.ErrSessionInvalid, codes.FailedPrecondition)
	must(e.segment("v", 0, true, b))(t)
}

// TestDeleteRefusedWhileWriter: a live writer lease blocks deletion; an
// expired one does not.
func TestDeleteRefusedWhileWriter(t *testing.T) {
	e := newEnv(t)
	e.createVolume("v", segmentSize)
	e.openWriter("v", "holder")
	_, err := e.c.DeleteVolume(ctx(t), &mdspb.DeleteVolumeRequest{Name: "v"})
	wantErr(t, err, mds.ErrWriterExists, codes.FailedPrecondition)
	e.clock.Advance(mds.DefaultSessionLease)
	must(e.c.DeleteVolume(ctx(t), &mdspb.DeleteVolumeRequest{Name: "v"}))(t)
}

// TestRecreatedVolumeStartsFresh: a volume deleted and created again under
// the same name has no segments and no session of the old one.
func TestRecreatedVolumeStartsFresh(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", segmentSize)
	s := e.openWriter("v", "w")
	must(e.segment("v", 0, true, s))(t)
	noErr(t, e.closeVolume("v", s))
	must(e.c.DeleteVolume(ctx(t), &mdspb.DeleteVolumeRequest{Name: "v"}))(t)
	e.createVolume("v", segmentSize)
	if seg := must(e.segment("v", 0, false, 0))(t); seg.GetAllocated() {
		t.Fatalf("re-created volume has the old segment: %+v", seg)
	}
	wantErr(t, e.renew("v", s), mds.ErrSessionInvalid, codes.FailedPrecondition)
}
