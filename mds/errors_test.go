package mds_test

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/mds"
	"basalt/mds/mdspb"
)

func TestFromStatusPassesOtherErrors(t *testing.T) {
	if mds.FromStatus(nil) != nil {
		t.Fatal("FromStatus(nil) is not nil")
	}
	plain := errors.New("plain")
	if got := mds.FromStatus(plain); got != plain {
		t.Fatalf("plain error changed: %v", got)
	}
	bare := status.Error(codes.NotFound, "no detail")
	if got := mds.FromStatus(bare); got != bare || errors.Is(got, mds.ErrVolumeNotFound) {
		t.Fatalf("status without detail: %v", got)
	}
}

// TestFromStatusKeepsStatus: a mapped error keeps the server's message and
// its gRPC status.
func TestFromStatusKeepsStatus(t *testing.T) {
	e := newEnv(t)
	_, err := e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "gone"})
	got := mds.FromStatus(err)
	if !errors.Is(got, mds.ErrVolumeNotFound) || errors.Is(got, mds.ErrVolumeExists) {
		t.Fatalf("got %v", got)
	}
	if st := status.Convert(got); st.Message() != `mds: volume not found: "gone"` || st.Code() != codes.NotFound {
		t.Fatalf("status %v, want the server's message and NotFound", st)
	}
}

// TestClosedServer: calls after Close fail with ErrClosed (Unavailable).
func TestClosedServer(t *testing.T) {
	e := newEnv(t)
	noErr(t, e.mds.Server.Close())
	_, err := e.c.ListVolumes(ctx(t), &mdspb.ListVolumesRequest{})
	wantErr(t, err, mds.ErrClosed, codes.Unavailable)
	if err := e.mds.Server.Health(); !errors.Is(err, mds.ErrClosed) {
		t.Fatalf("health after close: %v", err)
	}
}
