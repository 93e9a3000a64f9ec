package mds_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"basalt/mds"
	"basalt/mds/mdspb"
)

func TestVolumeLifecycle(t *testing.T) {
	e := newEnv(t)
	v := e.createVolume("db-1", 3*segmentSize)
	if v.GetName() != "db-1" || v.GetSize() != 3*segmentSize || v.GetOwner() != "test" ||
		v.GetSegmentSize() != segmentSize || v.GetChunkSize() != chunkSize || v.GetCreatedUnixMs() == 0 {
		t.Fatalf("created %+v", v)
	}
	e.createVolume("a.b_c", 4096)
	st := must(e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "db-1"}))(t)
	if st.GetSize() != 3*segmentSize || st.GetAllocatedSegments() != 0 {
		t.Fatalf("stat %+v", st)
	}
	list := must(e.c.ListVolumes(ctx(t), &mdspb.ListVolumesRequest{}))(t).GetVolumes()
	if len(list) != 2 || list[0].GetName() != "a.b_c" || list[1].GetName() != "db-1" {
		t.Fatalf("list %v", list)
	}
	for _, size := range []uint64{3 * segmentSize, 5*segmentSize + 4096} {
		got := must(e.c.ResizeVolume(ctx(t), &mdspb.ResizeVolumeRequest{Name: "db-1", Size: size}))(t)
		if got.GetSize() != size {
			t.Fatalf("resize to %d: %+v", size, got)
		}
	}
	must(e.c.DeleteVolume(ctx(t), &mdspb.DeleteVolumeRequest{Name: "db-1"}))(t)
	_, err := e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "db-1"})
	wantErr(t, err, mds.ErrVolumeNotFound, codes.NotFound)
	if n := e.status().GetVolumes(); n != 1 {
		t.Fatalf("%d volumes left, want 1", n)
	}
}

func TestCreateVolumeErrors(t *testing.T) {
	e := newEnv(t)
	e.createVolume("taken", 4096)
	for _, tc := range []struct {
		name   string
		size   uint64
		target error
		code   codes.Code
	}{
		{"taken", 4096, mds.ErrVolumeExists, codes.AlreadyExists},
		{"zero", 0, mds.ErrInvalidSize, codes.InvalidArgument},
		{"unaligned", 4097, mds.ErrInvalidSize, codes.InvalidArgument},
		{"small", 512, mds.ErrInvalidSize, codes.InvalidArgument},
		{"huge", mds.MaxVolumeSize + 4096, mds.ErrInvalidSize, codes.InvalidArgument},
		{"", 4096, mds.ErrInvalidName, codes.InvalidArgument},
		{strings.Repeat("x", 129), 4096, mds.ErrInvalidName, codes.InvalidArgument},
		{"a/b", 4096, mds.ErrInvalidName, codes.InvalidArgument},
		{"a b", 4096, mds.ErrInvalidName, codes.InvalidArgument},
		{"café", 4096, mds.ErrInvalidName, codes.InvalidArgument},
	} {
		_, err := e.c.CreateVolume(ctx(t), &mdspb.CreateVolumeRequest{Name: tc.name, Size: tc.size})
		wantErr(t, err, tc.target, tc.code)
	}
	e.createVolume(strings.Repeat("x", 128), mds.MaxVolumeSize)
	if n := e.status().GetVolumes(); n != 2 {
		t.Fatalf("%d volumes, want 2", n)
	}
}

// TestUnknownVolume: every call naming a missing volume fails with
// ErrVolumeNotFound.
func TestUnknownVolume(t *testing.T) {
	e := newEnv(t)
	c, x := ctx(t), "nope"
	for _, call := range []func() error{
		func() error { _, err := e.c.StatVolume(c, &mdspb.StatVolumeRequest{Name: x}); return err },
		func() error {
			_, err := e.c.ResizeVolume(c, &mdspb.ResizeVolumeRequest{Name: x, Size: 8192})
			return err
		},
		func() error { _, err := e.c.DeleteVolume(c, &mdspb.DeleteVolumeRequest{Name: x}); return err },
		func() error { _, err := e.c.OpenVolume(c, &mdspb.OpenVolumeRequest{Volume: x}); return err },
		func() error {
			_, err := e.c.RenewSession(c, &mdspb.RenewSessionRequest{Volume: x, Session: 1})
			return err
		},
		func() error { _, err := e.c.CloseVolume(c, &mdspb.CloseVolumeRequest{Volume: x}); return err },
		func() error { _, err := e.segment(x, 0, false, 0); return err },
	} {
		wantErr(t, call(), mds.ErrVolumeNotFound, codes.NotFound)
	}
}

func TestResizeErrors(t *testing.T) {
	e := newEnv(t)
	e.createVolume("v", 2*segmentSize)
	_, err := e.c.ResizeVolume(ctx(t), &mdspb.ResizeVolumeRequest{Name: "v", Size: segmentSize})
	wantErr(t, err, mds.ErrShrink, codes.InvalidArgument)
	_, err = e.c.ResizeVolume(ctx(t), &mdspb.ResizeVolumeRequest{Name: "v", Size: 3*segmentSize + 1})
	wantErr(t, err, mds.ErrInvalidSize, codes.InvalidArgument)
	if v := must(e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "v"}))(t); v.GetSize() != 2*segmentSize {
		t.Fatalf("size changed to %d", v.GetSize())
	}
}

// TestResizeExtendsSegments: growing a volume makes the new segments
// addressable.
func TestResizeExtendsSegments(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", segmentSize)
	s := e.openWriter("v", "w")
	_, err := e.segment("v", 1, true, s)
	wantErr(t, err, mds.ErrOutOfRange, codes.OutOfRange)
	must(e.c.ResizeVolume(ctx(t), &mdspb.ResizeVolumeRequest{Name: "v", Size: segmentSize + 4096}))(t)
	if seg := must(e.segment("v", 1, true, s))(t); !seg.GetAllocated() || len(seg.GetChunks()) != perSegment {
		t.Fatalf("segment 1 after resize: %+v", seg)
	}
}
