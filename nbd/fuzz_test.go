package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"testing"
)

// fuzzSession returns a session reading in and discarding its output, on a
// server with small limits so inputs cannot ask for much memory.
func fuzzSession(in []byte) *session {
	srv := &Server{cfg: Config{Exports: MapExports{"m": NewMemBackend(1 << 20)}, MaxRequestBytes: 64 << 10}.withDefaults()}
	return &session{srv: srv, r: bytes.NewReader(in), w: io.Discard}
}

// seedHandshake is a valid client side: flags, NBD_OPT_LIST, NBD_OPT_GO "m",
// a WRITE, a READ and NBD_CMD_DISC.
func seedHandshake() []byte {
	b := binary.BigEndian.AppendUint32(nil, flagFixedNewstyle|flagNoZeroes)
	b = appendOpt(b, optList, nil)
	b = appendOpt(b, optGo, []byte{0, 0, 0, 1, 'm', 0, 1, 0, 3})
	b = appendReq(b, cmdWrite, 0, 4)
	b = append(b, 1, 2, 3, 4)
	b = appendReq(b, cmdRead, 0, 4)
	return appendReq(b, cmdDisconnect, 0, 0)
}

func appendOpt(b []byte, code uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func appendReq(b []byte, typ uint16, off uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, requestMagic)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, 7)
	b = binary.BigEndian.AppendUint64(b, off)
	return binary.BigEndian.AppendUint32(b, length)
}

// FuzzHandshake runs a whole session (handshake, then transmission if an
// export was chosen) over arbitrary client bytes: it must end without
// panicking once the input is exhausted.
func FuzzHandshake(f *testing.F) {
	f.Add(seedHandshake())
	f.Add(seedStructured())
	f.Add([]byte{0, 0, 0, 3})
	f.Add(appendOpt(binary.BigEndian.AppendUint32(nil, 3), optExportName, []byte("m")))
	f.Add(appendOpt(binary.BigEndian.AppendUint32(nil, 3), optInfo, []byte{0, 0, 0, 1, 'm', 0, 0}))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := fuzzSession(in)
		b, _, err := s.negotiate(context.Background())
		if err == nil && b != nil {
			_ = s.transmit(context.Background(), b)
		}
	})
}

// FuzzRequest checks the request parser and validator: a request accepted
// as valid lies inside the export and within the length limit.
func FuzzRequest(f *testing.F) {
	f.Add(appendReq(nil, cmdRead, 0, 512))
	f.Add(appendReq(nil, cmdWrite, 1<<20-4, 8))
	f.Add(appendReq(nil, cmdTrim, 1<<64-1, 2))
	f.Add(make([]byte, requestSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := parseRequest(in)
		if err != nil {
			return
		}
		const size, maxLen = 1 << 20, 64 << 10
		if req.check(size, maxLen) != 0 {
			return
		}
		end := req.offset + uint64(req.length)
		if (req.typ == cmdRead || req.typ == cmdWrite) && (end < req.offset || end > size || req.length > maxLen) {
			t.Fatalf("request %+v accepted", req)
		}
	})
}

// FuzzInfoRequest checks that parseInfoRequest never reads past its input
// and that what it accepts re-encodes to the same bytes.
func FuzzInfoRequest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 'm', 0, 1, 0, 3})
	f.Add([]byte{0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := parseInfoRequest(in)
		if err != nil {
			return
		}
		b := binary.BigEndian.AppendUint32(nil, uint32(len(req.name)))
		b = binary.BigEndian.AppendUint16(append(b, req.name...), uint16(len(req.infos)))
		for _, i := range req.infos {
			b = binary.BigEndian.AppendUint16(b, i)
		}
		if !bytes.Equal(b, in) {
			t.Fatalf("parsed %+v from %x, re-encodes to %x", req, in, b)
		}
	})
}
