package nbd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// Wire values used by the raw client (see the NBD protocol specification).
const (
	optExportName   = 1
	optAbort        = 2
	optList         = 3
	optInfo         = 6
	optGo           = 7
	optStructured   = 8
	repAck          = 1
	repServer       = 2
	repInfo         = 3
	repErrUnsup     = 1<<31 + 1
	repErrInvalid   = 1<<31 + 3
	repErrUnknown   = 1<<31 + 6
	infoBlockSize   = 3
	cmdRead         = 0
	cmdWrite        = 1
	cmdDisc         = 2
	cmdWriteZeroes  = 6
	errInval        = 22
	errNoSpc        = 28
	errOverflow     = 75
	requestMagic    = 0x25609513
	simpleRepMagic  = 0x67446698
	optReplyMagic   = 0x0003e889045565a9
	ihaveopt        = 0x49484156454f5054
	nbdMagic        = 0x4e42444d41474943
	clientNoZeroes  = 3 // FIXED_NEWSTYLE | NO_ZEROES
	defaultMaxBytes = 32 << 20
)

// rawConn is a hand-driven NBD client for protocol tests.
type rawConn struct {
	t *testing.T
	c net.Conn
}

// dialRaw connects, checks the greeting and sends the client flags.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	rc := &rawConn{t: t, c: c}
	var hello [18]byte
	rc.read(hello[:])
	if binary.BigEndian.Uint64(hello[:]) != nbdMagic || binary.BigEndian.Uint64(hello[8:]) != ihaveopt ||
		binary.BigEndian.Uint16(hello[16:]) != 3 {
		t.Fatalf("greeting = %x", hello)
	}
	rc.write(binary.BigEndian.AppendUint32(nil, clientNoZeroes))
	return rc
}

func (rc *rawConn) read(p []byte) {
	rc.t.Helper()
	if _, err := io.ReadFull(rc.c, p); err != nil {
		rc.t.Fatalf("reading %d bytes: %v", len(p), err)
	}
}

func (rc *rawConn) write(p []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(p); err != nil {
		rc.t.Fatalf("writing: %v", err)
	}
}

// option sends one option.
func (rc *rawConn) option(code uint32, data []byte) {
	rc.t.Helper()
	b := binary.BigEndian.AppendUint64(nil, ihaveopt)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	rc.write(append(b, data...))
}

// optReply reads one option reply and checks it answers code.
func (rc *rawConn) optReply(code uint32) (typ uint32, data []byte) {
	rc.t.Helper()
	var hdr [20]byte
	rc.read(hdr[:])
	if binary.BigEndian.Uint64(hdr[:]) != optReplyMagic || binary.BigEndian.Uint32(hdr[8:]) != code {
		rc.t.Fatalf("option reply header %x for option %d", hdr, code)
	}
	data = make([]byte, binary.BigEndian.Uint32(hdr[16:]))
	rc.read(data)
	return binary.BigEndian.Uint32(hdr[12:]), data
}

// infoData builds the payload of NBD_OPT_INFO / NBD_OPT_GO.
func infoData(name string, infos ...uint16) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// goExport sends NBD_OPT_GO for name and reads replies up to the ACK.
func (rc *rawConn) goExport(name string) {
	rc.t.Helper()
	rc.option(optGo, infoData(name))
	for {
		typ, data := rc.optReply(optGo)
		switch typ {
		case repAck:
			return
		case repInfo:
		default:
			rc.t.Fatalf("NBD_OPT_GO reply %#x %q", typ, data)
		}
	}
}

// request sends one request header and data.
func (rc *rawConn) request(typ uint16, cookie, off uint64, length uint32, data []byte) {
	rc.t.Helper()
	b := binary.BigEndian.AppendUint32(nil, requestMagic)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	rc.write(append(b, data...))
}

// reply reads one simple reply header.
func (rc *rawConn) reply() (errno uint32, cookie uint64) {
	rc.t.Helper()
	var hdr [16]byte
	rc.read(hdr[:])
	if binary.BigEndian.Uint32(hdr[:]) != simpleRepMagic {
		rc.t.Fatalf("reply magic %x", hdr[:4])
	}
	return binary.BigEndian.Uint32(hdr[4:]), binary.BigEndian.Uint64(hdr[8:])
}

// expect sends a request without data and checks its error.
func (rc *rawConn) expect(typ uint16, off uint64, length uint32, data []byte, want uint32) {
	rc.t.Helper()
	rc.request(typ, 42, off, length, data)
	if errno, cookie := rc.reply(); errno != want || cookie != 42 {
		rc.t.Fatalf("request %d at %d+%d: errno %d cookie %d, want errno %d cookie 42", typ, off, length, errno, cookie, want)
	}
}

// expectClosed checks that the server closed the connection (a reset when
// it closed with our bytes unread).
func (rc *rawConn) expectClosed() {
	rc.t.Helper()
	_, err := rc.c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		rc.t.Fatalf("connection still open (read: %v), want it closed by the server", err)
	}
}

// checkUsable proves the connection is in sync: a write then a read of it.
func (rc *rawConn) checkUsable() {
	rc.t.Helper()
	want := bytes.Repeat([]byte{0x5a}, 512)
	rc.expect(cmdWrite, 4096, 512, want, 0)
	rc.expect(cmdRead, 4096, 512, nil, 0)
	got := make([]byte, 512)
	rc.read(got)
	if !bytes.Equal(got, want) {
		rc.t.Fatalf("read back %x..., want 5a...", got[:8])
	}
}

// TestOutOfRangeKeepsConnection sends invalid requests and checks each gets
// its error while the connection stays in sync.
func TestOutOfRangeKeepsConnection(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.goExport("mem")
	rc.expect(cmdRead, memSize-4, 8, nil, errInval)
	rc.expect(cmdRead, 1<<63, 8, nil, errInval)
	rc.expect(cmdWrite, memSize-4, 8, make([]byte, 8), errNoSpc)
	rc.expect(cmdWriteZeroes, memSize, 1, nil, errNoSpc)
	rc.expect(99, 0, 0, nil, errInval)
	rc.expect(cmdRead, 0, defaultMaxBytes+1, nil, errOverflow)
	rc.expect(cmdWrite, 0, defaultMaxBytes+1, make([]byte, defaultMaxBytes+1), errOverflow)
	rc.checkUsable()
	rc.expect(cmdRead, memSize-8, 8, nil, 0)
	rc.read(make([]byte, 8))
	rc.request(cmdDisc, 1, 0, 0, nil)
	rc.expectClosed()
}

// TestPipelinedRequests sends many requests before reading any reply and
// matches the replies by cookie.
func TestPipelinedRequests(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.goExport("mem")
	const n = 64
	for i := range uint64(n) {
		rc.request(cmdWrite, i, i*4096, 4096, bytes.Repeat([]byte{byte(i)}, 4096))
	}
	seen := map[uint64]bool{}
	for range n {
		errno, cookie := rc.reply()
		if errno != 0 || cookie >= n || seen[cookie] {
			t.Fatalf("reply errno %d cookie %d (seen %v)", errno, cookie, seen[cookie])
		}
		seen[cookie] = true
	}
	rc.expect(cmdRead, 7*4096, 4096, nil, 0)
	got := make([]byte, 4096)
	rc.read(got)
	if !bytes.Equal(got, bytes.Repeat([]byte{7}, 4096)) {
		t.Fatalf("block 7 reads %x...", got[:8])
	}
}

// TestBadMagicClosesConnection checks that a request with a wrong magic
// closes that connection and no other.
func TestBadMagicClosesConnection(t *testing.T) {
	ts := startServer(t, "tcp")
	good, bad := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	good.goExport("mem")
	bad.goExport("mem")
	bad.write(make([]byte, 28))
	bad.expectClosed()
	good.checkUsable()
}

// TestGarbageHandshake checks that garbage in the handshake closes only
// that connection while another client keeps working.
func TestGarbageHandshake(t *testing.T) {
	ts := startServer(t, "tcp")
	good := dialRaw(t, ts.addr)
	good.goExport("mem")
	for _, garbage := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"), // bad client flags
		append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 0, 0, 0, 0), // bad option magic
		binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(
			binary.BigEndian.AppendUint32(nil, 3), ihaveopt), optList), 1<<30), // huge option
	} {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		rc := &rawConn{t: t, c: c}
		rc.read(make([]byte, 18))
		rc.write(garbage)
		rc.expectClosed()
		_ = c.Close()
		good.checkUsable()
	}
}

// TestHandshakeOptions drives LIST, INFO, unsupported options, unknown
// exports and ABORT.
func TestHandshakeOptions(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.option(optList, nil)
	if typ, data := rc.optReply(optList); typ != repServer || string(data) != "\x00\x00\x00\x03mem" {
		t.Fatalf("LIST reply %#x %q", typ, data)
	}
	if typ, _ := rc.optReply(optList); typ != repAck {
		t.Fatalf("LIST end %#x, want ACK", typ)
	}
	rc.option(optList, []byte{1})
	wantOptReply(t, rc, optList, repErrInvalid)
	rc.option(optStructured, []byte{1})
	wantOptReply(t, rc, optStructured, repErrInvalid)
	rc.option(77, []byte("x"))
	wantOptReply(t, rc, 77, repErrUnsup)
	rc.option(optInfo, infoData("nosuch"))
	wantOptReply(t, rc, optInfo, repErrUnknown)
	rc.option(optInfo, []byte{0, 0, 0, 9})
	wantOptReply(t, rc, optInfo, repErrInvalid)
	checkInfo(t, rc)
	rc.option(optAbort, nil)
	wantOptReply(t, rc, optAbort, repAck)
	rc.expectClosed()
}

// checkInfo checks NBD_OPT_INFO's replies: export size and flags, then the
// block sizes that were asked for.
func checkInfo(t *testing.T, rc *rawConn) {
	t.Helper()
	rc.option(optInfo, infoData("mem", infoBlockSize))
	_, export := rc.optReply(optInfo)
	_, block := rc.optReply(optInfo)
	wantOptReply(t, rc, optInfo, repAck)
	wantExport := []byte{0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0x6d}
	wantBlock := []byte{0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x2, 0, 0, 0}
	if !bytes.Equal(export, wantExport) || !bytes.Equal(block, wantBlock) {
		t.Fatalf("INFO replies %x, %x; want %x, %x", export, block, wantExport, wantBlock)
	}
}

func wantOptReply(t *testing.T, rc *rawConn, code, want uint32) {
	t.Helper()
	if typ, data := rc.optReply(code); typ != want {
		t.Fatalf("option %d: reply %#x %q, want %#x", code, typ, data, want)
	}
}

// TestExportNameUnknownCloses checks NBD_OPT_EXPORT_NAME: a known name
// starts transmission (no zero padding), an unknown one closes.
func TestExportNameUnknownCloses(t *testing.T) {
	ts := startServer(t, "tcp")
	rc := dialRaw(t, ts.addr)
	rc.option(optExportName, []byte("mem"))
	var reply [10]byte
	rc.read(reply[:])
	if binary.BigEndian.Uint64(reply[:]) != memSize || binary.BigEndian.Uint16(reply[8:]) != 0x16d {
		t.Fatalf("EXPORT_NAME reply %x", reply)
	}
	rc.checkUsable()
	bad := dialRaw(t, ts.addr)
	bad.option(optExportName, []byte("nosuch"))
	bad.expectClosed()
}
