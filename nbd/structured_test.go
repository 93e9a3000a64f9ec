package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"testing"
)

func TestNormalizeExtents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []Extent
		length int64
		max    int
		want   []Extent
	}{
		{"none is data", nil, 10, 4, []Extent{{10, false}}},
		{"clipped", []Extent{{4, true}, {20, false}}, 10, 4, []Extent{{4, true}, {6, false}}},
		{"short tail is data", []Extent{{4, true}}, 10, 4, []Extent{{4, true}, {6, false}}},
		{"merged", []Extent{{2, true}, {0, false}, {-1, false}, {3, true}, {5, false}}, 10, 4, []Extent{{5, true}, {5, false}}},
		{"capped", []Extent{{1, true}, {1, false}, {1, true}, {1, false}}, 4, 2, []Extent{{1, true}, {1, false}}},
		{"past the range ignored", []Extent{{10, true}, {5, false}}, 10, 4, []Extent{{10, true}}},
	} {
		if got := normalizeExtents(tc.in, tc.length, tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("%s: normalizeExtents(%v, %d, %d) = %v, want %v", tc.name, tc.in, tc.length, tc.max, got, tc.want)
		}
	}
}

// TestReadSegments checks that a range reported as a hole but holding
// non-zero bytes is sent as data.
func TestReadSegments(t *testing.T) {
	buf := make([]byte, 12)
	buf[9] = 1
	exts := []Extent{{4, true}, {2, false}, {2, true}, {3, true}}
	want := []Extent{{4, true}, {2, false}, {2, true}, {4, false}}
	if got := readSegments(buf, exts); !slices.Equal(got, want) {
		t.Fatalf("readSegments = %v, want %v", got, want)
	}
	if !isZero(nil) || !isZero(make([]byte, 9)) || isZero([]byte{0, 0, 1}) || isZero([]byte{1, 1}) {
		t.Fatal("isZero is wrong")
	}
}

func TestMemBackendAllocated(t *testing.T) {
	ctx := context.Background()
	m := NewMemBackend(8 * memPageSize)
	_, _ = m.WriteAt(ctx, []byte{1}, memPageSize+5)
	_, _ = m.WriteAt(ctx, make([]byte, 2*memPageSize), 4*memPageSize)
	if err := m.Discard(ctx, 5*memPageSize, memPageSize); err != nil {
		t.Fatal(err)
	}
	got, err := m.Allocated(ctx, 100, 8*memPageSize-200)
	want := []Extent{{memPageSize - 100, true}, {memPageSize, false}, {2 * memPageSize, true},
		{memPageSize, false}, {3*memPageSize - 100, true}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Allocated = %v, %v; want %v", got, err, want)
	}
	if _, err := m.Allocated(ctx, 1, 8*memPageSize); err == nil {
		t.Fatal("Allocated past the end succeeded")
	}
}

func TestParseMetaRequest(t *testing.T) {
	valid := []byte{0, 0, 0, 1, 'm', 0, 0, 0, 2, 0, 0, 0, 1, 'a', 0, 0, 0, 0}
	req, err := parseMetaRequest(valid)
	if err != nil || req.name != "m" || !slices.Equal(req.queries, []string{"a", ""}) {
		t.Fatalf("parseMetaRequest = %+v, %v", req, err)
	}
	for _, bad := range [][]byte{nil, valid[:5], valid[:len(valid)-1], append(slices.Clip(valid), 0),
		{0, 0, 0, 1, 'm', 0xff, 0xff, 0xff, 0xff}, {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x10, 1}} {
		if _, err := parseMetaRequest(bad); err == nil {
			t.Errorf("parseMetaRequest(%x) succeeded", bad)
		}
	}
}

func TestMatchesAllocation(t *testing.T) {
	for _, tc := range []struct {
		queries    []string
		list, want bool
	}{
		{nil, true, true}, {nil, false, false}, {[]string{"base:"}, true, true}, {[]string{"base:"}, false, false},
		{[]string{"x:y", metaBaseAllocation}, false, true}, {[]string{"base:allocationx"}, true, false},
	} {
		if got := matchesAllocation(tc.queries, tc.list); got != tc.want {
			t.Errorf("matchesAllocation(%q, list=%v) = %v, want %v", tc.queries, tc.list, got, tc.want)
		}
	}
}

// seedStructured is a client side negotiating structured replies and
// base:allocation, then a READ, a BLOCK_STATUS and NBD_CMD_DISC.
func seedStructured() []byte {
	b := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	b = appendOpt(b, optStructuredReply, nil)
	b = appendOpt(b, optSetMetaContext, []byte{0, 0, 0, 1, 'm', 0, 0, 0, 1, 0, 0, 0, 15, 'b', 'a', 's', 'e', ':',
		'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n'})
	b = appendOpt(b, optGo, []byte{0, 0, 0, 1, 'm', 0, 0})
	b = appendReq(b, cmdRead, 0, 8192)
	b = appendReq(b, cmdBlockStatus, 0, 1<<20)
	return appendReq(b, cmdDisconnect, 0, 0)
}

// TestSeedStructured runs the seed through a session and checks the
// replies are well-formed chunks ending in DONE.
func TestSeedStructured(t *testing.T) {
	var out bytes.Buffer
	s := fuzzSession(seedStructured())
	s.w = &out
	b, _, err := s.negotiate(context.Background())
	if err != nil || b == nil || !s.structured || !s.allocation {
		t.Fatalf("negotiate: %v, structured %v, allocation %v", err, s.structured, s.allocation)
	}
	out.Reset()
	if err := s.transmit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	var types []uint32 // chunk type << 16 | flags
	for rest := out.Bytes(); len(rest) > 0; {
		if len(rest) < chunkHeaderSize || binary.BigEndian.Uint32(rest) != structRepMagic {
			t.Fatalf("bad chunk %x", rest[:min(len(rest), chunkHeaderSize)])
		}
		types = append(types, uint32(binary.BigEndian.Uint16(rest[6:]))<<16|uint32(binary.BigEndian.Uint16(rest[4:])))
		rest = rest[chunkHeaderSize+int(binary.BigEndian.Uint32(rest[16:])):]
	}
	slices.Sort(types) // replies may come in any order
	// The READ of an unwritten range is one hole.
	if want := []uint32{replyTypeOffsetHole<<16 | replyFlagDone, replyTypeBlockStatus<<16 | replyFlagDone}; !slices.Equal(types, want) {
		t.Fatalf("chunk types<<16|flags %#x, want %#x", types, want)
	}
}

// FuzzMetaRequest checks that parseMetaRequest never reads past its input.
func FuzzMetaRequest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'm', 0, 0, 0, 1, 0, 0, 0, 1, 'a'})
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := parseMetaRequest(in)
		if err != nil {
			return
		}
		n := 8 + len(req.name)
		for _, q := range req.queries {
			n += 4 + len(q)
		}
		if n != len(in) {
			t.Fatalf("parsed %+v from %d bytes", req, len(in))
		}
	})
}
