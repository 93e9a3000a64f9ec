package nbd_test

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// Wire values of structured replies and meta contexts.
const (
	optListMeta     = 9
	optSetMeta      = 10
	repMetaContext  = 4
	cmdBlockStatus  = 7
	cmdFlagReqOne   = 1 << 3
	structRepMagic  = 0x668e33ef
	flagDone        = 1
	chunkNone       = 0
	chunkData       = 1
	chunkHole       = 2
	chunkBlockStat  = 5
	chunkError      = 1<<15 + 1
	allocationQuery = "base:allocation"
)

// chunk is one structured reply chunk.
type chunk struct {
	flags, typ uint16
	cookie     uint64
	data       []byte
}

// chunk reads one structured reply chunk.
func (rc *rawConn) chunk() chunk {
	rc.t.Helper()
	var hdr [20]byte
	rc.read(hdr[:])
	if binary.BigEndian.Uint32(hdr[:]) != structRepMagic {
		rc.t.Fatalf("chunk magic %x", hdr[:4])
	}
	c := chunk{flags: binary.BigEndian.Uint16(hdr[4:]), typ: binary.BigEndian.Uint16(hdr[6:]),
		cookie: binary.BigEndian.Uint64(hdr[8:]), data: make([]byte, binary.BigEndian.Uint32(hdr[16:]))}
	rc.read(c.data)
	return c
}

// requestFlags sends a request without data with command flags.
func (rc *rawConn) requestFlags(typ, flags uint16, cookie, off uint64, length uint32) {
	rc.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, requestMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	rc.write(binary.BigEndian.AppendUint32(b, length))
}

// expectChunkErr sends a request and checks it gets one ERROR chunk with
// errno, flagged DONE.
func (rc *rawConn) expectChunkErr(typ uint16, off uint64, length uint32, errno uint32) {
	rc.t.Helper()
	rc.requestFlags(typ, 0, 9, off, length)
	c := rc.chunk()
	if c.typ != chunkError || c.flags != flagDone || c.cookie != 9 || len(c.data) != 6 || binary.BigEndian.Uint32(c.data) != errno {
		rc.t.Fatalf("request %d at %d+%d: chunk %+v, want ERROR %d with DONE", typ, off, length, c, errno)
	}
}

// metaData builds the payload of the meta context options.
func metaData(name string, queries ...string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = binary.BigEndian.AppendUint32(append(b, name...), uint32(len(queries)))
	for _, q := range queries {
		b = append(binary.BigEndian.AppendUint32(b, uint32(len(q))), q...)
	}
	return b
}

// wantMeta checks a meta context option's answer: base:allocation (with
// its id) when match, then ACK.
func wantMeta(t *testing.T, rc *rawConn, code uint32, match bool) {
	t.Helper()
	if match {
		typ, data := rc.optReply(code)
		if typ != repMetaContext || len(data) < 4 || string(data[4:]) != allocationQuery {
			t.Fatalf("option %d: reply %#x %q, want base:allocation", code, typ, data)
		}
	}
	wantOptReply(t, rc, code, repAck)
}

// TestMetaContextOptions drives NBD_OPT_STRUCTURED_REPLY and the meta
// context options: refused before structured replies, then LIST and SET
// with matching, foreign, malformed queries and unknown exports.
func TestMetaContextOptions(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.option(optSetMeta, metaData("mem", allocationQuery))
	wantOptReply(t, rc, optSetMeta, repErrInvalid)
	rc.option(optListMeta, metaData("mem"))
	wantOptReply(t, rc, optListMeta, repErrInvalid)
	rc.option(optStructured, nil)
	wantOptReply(t, rc, optStructured, repAck)
	rc.option(optListMeta, metaData("mem"))
	wantMeta(t, rc, optListMeta, true)
	rc.option(optListMeta, metaData("mem", "base:"))
	wantMeta(t, rc, optListMeta, true)
	rc.option(optListMeta, metaData("mem", "qemu:dirty-bitmap:x"))
	wantMeta(t, rc, optListMeta, false)
	rc.option(optSetMeta, metaData("mem"))
	wantMeta(t, rc, optSetMeta, false)
	rc.option(optSetMeta, metaData("nosuch", allocationQuery))
	wantOptReply(t, rc, optSetMeta, repErrUnknown)
	rc.option(optSetMeta, metaData("mem", allocationQuery)[:12])
	wantOptReply(t, rc, optSetMeta, repErrInvalid)
	rc.option(optSetMeta, metaData("mem", "base:other", allocationQuery))
	wantMeta(t, rc, optSetMeta, true)
	rc.goExport("mem")
	rc.requestFlags(cmdBlockStatus, 0, 1, 0, 4096)
	if c := rc.chunk(); c.typ != chunkBlockStat || c.flags != flagDone {
		t.Fatalf("BLOCK_STATUS chunk %+v", c)
	}
}

// TestStructuredReads reads data and holes, asks for block status and
// checks the NONE and ERROR chunks of the other commands.
func TestStructuredReads(t *testing.T) {
	ts := startServer(t, "tcp")
	want := writeSparse(t, ts.mem)
	rc := dialRaw(t, ts.addr)
	rc.option(optStructured, nil)
	wantOptReply(t, rc, optStructured, repAck)
	rc.option(optSetMeta, metaData("mem", allocationQuery))
	wantMeta(t, rc, optSetMeta, true)
	rc.goExport("mem")

	rc.requestFlags(cmdRead, 0, 5, 2048, 4096)
	data, hole := rc.chunk(), rc.chunk()
	if data.typ != chunkData || data.flags != 0 || data.cookie != 5 ||
		!bytes.Equal(data.data, append(binary.BigEndian.AppendUint64(nil, 2048), want[2048:4096]...)) {
		t.Fatalf("first READ chunk %+v, want 2 KiB of data at 2048", data)
	}
	if wantHole := []byte{0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x8, 0}; hole.typ != chunkHole || hole.flags != flagDone || !bytes.Equal(hole.data, wantHole) {
		t.Fatalf("second READ chunk %+v, want a 2 KiB hole at 4096 with DONE", hole)
	}

	rc.requestFlags(cmdBlockStatus, 0, 6, 0, 2<<20)
	wantExtents(t, rc.chunk(), 4096, 0, 1<<20-4096, 3, 8192, 0, 1<<20-8192, 3)
	rc.requestFlags(cmdBlockStatus, cmdFlagReqOne, 6, 4096, 1<<20)
	wantExtents(t, rc.chunk(), 1<<20-4096, 3)

	rc.requestFlags(cmdRead, 0, 7, 0, 0)
	if c := rc.chunk(); c.typ != chunkNone || c.flags != flagDone || c.cookie != 7 {
		t.Fatalf("empty READ chunk %+v, want NONE with DONE", c)
	}
	rc.request(cmdWrite, 8, 4096, 4, []byte{1, 2, 3, 4})
	if c := rc.chunk(); c.typ != chunkNone || c.flags != flagDone || c.cookie != 8 {
		t.Fatalf("WRITE chunk %+v, want NONE with DONE", c)
	}
	rc.expectChunkErr(cmdRead, memSize-4, 8, errInval)
	rc.expectChunkErr(cmdBlockStatus, 0, 0, errInval)
	rc.expectChunkErr(cmdBlockStatus, memSize, 1, errInval)
	rc.expectChunkErr(99, 0, 0, errInval)
}

// wantExtents checks a BLOCK_STATUS chunk for base:allocation against
// length, flags pairs.
func wantExtents(t *testing.T, c chunk, pairs ...uint32) {
	t.Helper()
	b := binary.BigEndian.AppendUint32(nil, 1)
	for _, v := range pairs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	if c.typ != chunkBlockStat || c.flags != flagDone || !bytes.Equal(c.data, b) {
		t.Fatalf("BLOCK_STATUS chunk %+v, want extents %v", c, pairs)
	}
}

// TestBlockStatusNeedsContext checks that BLOCK_STATUS fails with EINVAL
// without a selected context, in structured and simple replies.
func TestBlockStatusNeedsContext(t *testing.T) {
	ts := startServer(t, "tcp")
	structured := dialRaw(t, ts.addr)
	structured.option(optStructured, nil)
	wantOptReply(t, structured, optStructured, repAck)
	structured.goExport("mem")
	structured.expectChunkErr(cmdBlockStatus, 0, 4096, errInval)
	simple := dialRaw(t, ts.addr)
	simple.goExport("mem")
	simple.expect(cmdBlockStatus, 0, 4096, nil, errInval)
	simple.checkUsable()
}
