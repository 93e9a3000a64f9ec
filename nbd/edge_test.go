package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"basalt/internal/testwait"
	"basalt/nbd"
)

const (
	cmdFlush    = 3
	cmdTrim     = 4
	cmdFlagNoHl = 1 << 1
)

// blockStatus asks for base:allocation over [off, off+length) and returns
// the (length, flags) descriptors of the reply (context id 1, the only one).
func (rc *rawConn) blockStatus(off uint64, length uint32) [][2]uint32 {
	rc.t.Helper()
	rc.requestFlags(cmdBlockStatus, 0, 5, off, length)
	c := rc.chunk()
	if c.typ != chunkBlockStat || c.flags != flagDone || len(c.data) < 12 {
		rc.t.Fatalf("BLOCK_STATUS chunk %+v", c)
	}
	var out [][2]uint32
	for d := c.data[4:]; len(d) >= 8; d = d[8:] {
		out = append(out, [2]uint32{binary.BigEndian.Uint32(d), binary.BigEndian.Uint32(d[4:])})
	}
	return out
}

// structuredSession connects with structured replies and base:allocation
// selected for "mem", and starts transmission.
func structuredSession(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.option(optStructured, nil)
	wantOptReply(t, rc, optStructured, repAck)
	rc.option(optSetMeta, metaData("mem", allocationQuery))
	wantMeta(t, rc, optSetMeta, true)
	rc.goExport("mem")
	return rc
}

// TestZeroLengthRequests checks that zero-length READ, WRITE, TRIM and
// WRITE_ZEROES succeed without data and leave the connection in sync.
func TestZeroLengthRequests(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.goExport("mem")
	for _, typ := range []uint16{cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes} {
		rc.expect(typ, 4096, 0, nil, 0)
	}
	rc.checkUsable()
}

// TestTrimThenReadReturnsZeros writes, trims part of it, and reads zeros
// there and the data around it; the trimmed pages are holes again.
func TestTrimThenReadReturnsZeros(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := structuredSession(t, ts.addr)
	rc.requestFlags(cmdWrite, 0, 1, 0, 3*4096)
	rc.write(bytes.Repeat([]byte{0xee}, 3*4096))
	rc.wantDone(1)
	rc.requestFlags(cmdTrim, 0, 2, 4096, 4096)
	rc.wantDone(2)
	got := rc.readAll(0, 3*4096)
	want := append(append(bytes.Repeat([]byte{0xee}, 4096), make([]byte, 4096)...), bytes.Repeat([]byte{0xee}, 4096)...)
	if !bytes.Equal(got, want) {
		t.Fatal("after TRIM of the middle page, READ did not return data, zeros, data")
	}
	if got := rc.blockStatus(4096, 4096); len(got) != 1 || got[0] != [2]uint32{4096, 3} {
		t.Fatalf("block status of the trimmed page = %v, want one hole,zero extent", got)
	}
}

// TestWriteZeroesHoles checks WRITE_ZEROES: without NO_HOLE it may punch
// a hole (MemBackend does), with NO_HOLE the range stays allocated; both
// read back as zeros.
func TestWriteZeroesHoles(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := structuredSession(t, ts.addr)
	rc.requestFlags(cmdWrite, 0, 1, 0, 2*4096)
	rc.write(bytes.Repeat([]byte{0x11}, 2*4096))
	rc.wantDone(1)
	rc.requestFlags(cmdWriteZeroes, 0, 2, 0, 4096)
	rc.wantDone(2)
	rc.requestFlags(cmdWriteZeroes, cmdFlagNoHl, 3, 4096, 4096)
	rc.wantDone(3)
	if got := rc.readAll(0, 2*4096); !bytes.Equal(got, make([]byte, 2*4096)) {
		t.Fatal("WRITE_ZEROES: range does not read as zeros")
	}
	if got := rc.blockStatus(0, 4096); len(got) != 1 || got[0][1]&1 == 0 {
		t.Fatalf("WRITE_ZEROES without NO_HOLE: block status %v, want a hole", got)
	}
	if got := rc.blockStatus(4096, 4096); len(got) != 1 || got[0][1]&1 != 0 {
		t.Fatalf("WRITE_ZEROES with NO_HOLE: block status %v, want data", got)
	}
}

// wantDone reads one chunk and checks it is the final NONE chunk of cookie.
func (rc *rawConn) wantDone(cookie uint64) {
	rc.t.Helper()
	if c := rc.chunk(); c.typ != chunkNone || c.flags != flagDone || c.cookie != cookie {
		rc.t.Fatalf("reply %+v, want NONE with DONE for cookie %d", c, cookie)
	}
}

// readAll reads [off, off+length) with a structured READ and assembles the
// data and hole chunks.
func (rc *rawConn) readAll(off uint64, length uint32) []byte {
	rc.t.Helper()
	rc.requestFlags(cmdRead, 0, 7, off, length)
	out := make([]byte, length)
	for {
		c := rc.chunk()
		switch c.typ {
		case chunkData:
			at := binary.BigEndian.Uint64(c.data) - off
			copy(out[at:], c.data[8:])
		case chunkHole:
			at := binary.BigEndian.Uint64(c.data) - off
			clear(out[at : at+uint64(binary.BigEndian.Uint32(c.data[8:]))])
		case chunkNone:
		default:
			rc.t.Fatalf("READ chunk %+v", c)
		}
		if c.flags&flagDone != 0 {
			return out
		}
	}
}

// TestDisconnectWithRequestsInFlight sends writes and then NBD_CMD_DISC
// without waiting for replies: every write before DISC is applied and
// answered, then the server closes the connection.
func TestDisconnectWithRequestsInFlight(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.goExport("mem")
	const n = 64
	var batch []byte
	for i := range uint64(n) {
		batch = appendRequest(batch, cmdWrite, i, i*65536, bytes.Repeat([]byte{byte(i + 1)}, 65536))
	}
	batch = appendRequest(batch, cmdDisc, 0, 0, nil)
	rc.write(batch)
	seen := map[uint64]bool{}
	for range n {
		errno, cookie := rc.reply()
		if errno != 0 || seen[cookie] {
			t.Fatalf("reply errno %d cookie %d (seen %v)", errno, cookie, seen[cookie])
		}
		seen[cookie] = true
	}
	rc.expectClosed()
	got := make([]byte, 65536)
	for i := range int64(n) {
		if _, err := ts.mem.ReadAt(context.Background(), got, i*65536); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{byte(i + 1)}, 65536)) {
			t.Fatalf("write %d before DISC not applied (err %v)", i, err)
		}
	}
}

// appendRequest appends one request (header and data) to b.
func appendRequest(b []byte, typ uint16, cookie, off uint64, data []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, requestMagic)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// countingExports serves one MemBackend and counts the references the
// server holds: Opens that succeeded minus Releases.
type countingExports struct {
	nbd.MapExports
	mu     sync.Mutex
	held   int
	opens  int
	misuse error
}

func (c *countingExports) Open(ctx context.Context, name string) (nbd.Backend, error) {
	b, err := c.MapExports.Open(ctx, name)
	if err == nil {
		c.mu.Lock()
		c.held++
		c.opens++
		c.mu.Unlock()
	}
	return b, err
}

func (c *countingExports) Release(name string, b nbd.Backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.MapExports[name] != b {
		c.misuse = errors.Join(c.misuse, errors.New("released a backend Open did not return"))
	}
	c.held--
}

func (c *countingExports) state() (held, opens int, misuse error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, c.opens, c.misuse
}

// TestReleaserBalancesOpens checks that every backend Open returns is
// released once: right after INFO and meta context options, and when a
// connection that selected it ends, whichever way it selected it.
func TestReleaserBalancesOpens(t *testing.T) {
	ex := &countingExports{MapExports: nbd.MapExports{"mem": nbd.NewMemBackend(memSize)}}
	srv, err := nbd.NewServer(nbd.Config{Exports: ex})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, "tcp")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	wantHeld := func(want int) {
		t.Helper()
		testwait.Until(t, 10*time.Second, "references held by the server", func() bool {
			held, _, _ := ex.state()
			return held == want
		})
	}

	rc := structuredSession(t, ln.Addr().String()) // SET_META_CONTEXT, then GO
	checkInfo(t, dialRaw(t, ln.Addr().String()))   // INFO releases at once
	wantHeld(1)
	_ = rc.c.Close()
	wantHeld(0)

	rc = dialRaw(t, ln.Addr().String())
	rc.option(optExportName, []byte("mem"))
	wantHeld(1)
	rc.request(cmdDisc, 1, 0, 0, nil)
	wantHeld(0)

	for _, args := range [][]string{{"/usr/bin/nbdinfo", "nbd://" + ln.Addr().String() + "/mem"},
		{"/usr/bin/qemu-io", "-f", "raw", "nbd://" + ln.Addr().String() + "/mem", "-c", "write -P 7 0 64k", "-c", "read -P 7 0 64k"}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	wantHeld(0)
	held, opens, misuse := ex.state()
	if misuse != nil || opens < 6 {
		t.Fatalf("held %d after %d opens, misuse %v", held, opens, misuse)
	}
}

// TestServeTransmission serves a backend with no handshake, the way the
// kernel driver talks to `basalt nbd attach`: requests from the first
// byte, simple replies, NBD_CMD_DISC ends it with nil.
func TestServeTransmission(t *testing.T) {
	mem := nbd.NewMemBackend(memSize)
	srv, err := nbd.NewServer(nbd.Config{Exports: nbd.MapExports{}})
	if err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- srv.ServeTransmission(context.Background(), server, mem) }()
	rc := &rawConn{t: t, c: client}
	t.Cleanup(func() { _ = client.Close() })
	rc.checkUsable()
	rc.expect(cmdFlush, 0, 0, nil, 0)
	rc.expect(cmdRead, memSize-4, 8, nil, errInval)
	rc.request(cmdDisc, 1, 0, 0, nil)
	if err := <-done; err != nil {
		t.Fatalf("ServeTransmission after DISC = %v, want nil", err)
	}
	if f := nbd.TransmissionFlags(mem); f != 0x16d {
		t.Fatalf("TransmissionFlags = %#x, want %#x", f, 0x16d)
	}
}
