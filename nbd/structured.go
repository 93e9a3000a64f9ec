package nbd

import (
	"bytes"
	"encoding/binary"
	"net"
)

// maxExtents bounds the descriptors of one NBD_REPLY_TYPE_BLOCK_STATUS
// chunk (8 bytes each); a longer answer is cut short, as the specification
// allows.
const maxExtents = 64 << 10

// metaRequest is the payload of NBD_OPT_SET_META_CONTEXT and
// NBD_OPT_LIST_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

// parseMetaRequest decodes the payload of the meta context options.
func parseMetaRequest(b []byte) (metaRequest, error) {
	name, rest, ok := cutString(b, maxExportNameLength)
	if !ok || len(rest) < 4 {
		return metaRequest{}, errMalformed
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	req := metaRequest{name: name}
	for range n {
		var q string
		if q, rest, ok = cutString(rest, maxMetaQueryLength); !ok {
			return metaRequest{}, errMalformed
		}
		req.queries = append(req.queries, q)
	}
	if len(rest) != 0 {
		return metaRequest{}, errMalformed
	}
	return req, nil
}

// cutString decodes a string with a 32-bit length prefix of at most max
// bytes from the front of b.
func cutString(b []byte, max uint32) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if n > max || uint64(len(b)-4) < uint64(n) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

// matchesAllocation reports whether the queries of a meta context option
// name base:allocation. LIST also matches no query at all and the whole
// "base:" namespace; SET only the exact name.
func matchesAllocation(queries []string, list bool) bool {
	if list && len(queries) == 0 {
		return true
	}
	for _, q := range queries {
		if q == metaBaseAllocation || (list && q == "base:") {
			return true
		}
	}
	return false
}

// metaContextData is the data of the NBD_REP_META_CONTEXT reply for
// base:allocation.
func metaContextData() []byte {
	return append(binary.BigEndian.AppendUint32(nil, metaAllocationID), metaBaseAllocation...)
}

// appendChunkHeader appends a structured reply chunk header.
func appendChunkHeader(b []byte, flags, typ uint16, cookie uint64, length uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, structRepMagic)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, cookie)
	return binary.BigEndian.AppendUint32(b, length)
}

// doneChunk is a final chunk: NBD_REPLY_TYPE_NONE for errno 0, otherwise
// NBD_REPLY_TYPE_ERROR carrying errno and no message.
func doneChunk(cookie uint64, errno uint32) []byte {
	if errno == 0 {
		return appendChunkHeader(nil, replyFlagDone, replyTypeNone, cookie, 0)
	}
	b := appendChunkHeader(nil, replyFlagDone, replyTypeError, cookie, 6)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint16(b, 0)
}

// blockStatusChunk is the final NBD_REPLY_TYPE_BLOCK_STATUS chunk
// describing exts for base:allocation.
func blockStatusChunk(cookie uint64, exts []Extent) []byte {
	b := appendChunkHeader(nil, replyFlagDone, replyTypeBlockStatus, cookie, uint32(4+8*len(exts)))
	b = binary.BigEndian.AppendUint32(b, metaAllocationID)
	for _, e := range exts {
		var flags uint32
		if e.Hole {
			flags = stateHole | stateZero
		}
		b = binary.BigEndian.AppendUint32(b, uint32(e.Length))
		b = binary.BigEndian.AppendUint32(b, flags)
	}
	return b
}

// readChunks answers a successful READ of buf at off in structured
// replies: NBD_REPLY_TYPE_OFFSET_HOLE for the parts exts mark as holes and
// that read as zeros, NBD_REPLY_TYPE_OFFSET_DATA for the rest, DONE on the
// last. exts start at off; bytes past them are data.
func readChunks(cookie, off uint64, buf []byte, exts []Extent) net.Buffers {
	segs := readSegments(buf, exts)
	if len(segs) == 0 {
		return net.Buffers{doneChunk(cookie, 0)}
	}
	var out net.Buffers
	pos := uint64(0)
	for i, sg := range segs {
		var flags uint16
		if i == len(segs)-1 {
			flags = replyFlagDone
		}
		at := off + pos
		if sg.Hole {
			h := appendChunkHeader(nil, flags, replyTypeOffsetHole, cookie, 12)
			h = binary.BigEndian.AppendUint64(h, at)
			out = append(out, binary.BigEndian.AppendUint32(h, uint32(sg.Length)))
		} else {
			h := appendChunkHeader(nil, flags, replyTypeOffsetData, cookie, uint32(8+sg.Length))
			out = append(out, binary.BigEndian.AppendUint64(h, at), buf[pos:pos+uint64(sg.Length)])
		}
		pos += uint64(sg.Length)
	}
	return out
}

// readSegments splits buf into merged data and hole runs: a hole is a part
// exts mark as a hole whose bytes are all zero.
func readSegments(buf []byte, exts []Extent) []Extent {
	var segs []Extent
	pos := int64(0)
	for _, e := range exts {
		hole := e.Hole && isZero(buf[pos:pos+e.Length])
		segs = appendExtent(segs, Extent{Length: e.Length, Hole: hole})
		pos += e.Length
	}
	if rest := int64(len(buf)) - pos; rest > 0 {
		segs = appendExtent(segs, Extent{Length: rest})
	}
	return segs
}

func isZero(b []byte) bool {
	return len(b) == 0 || (b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1]))
}

// normalizeExtents clips exts to length bytes, drops empty extents, merges
// neighbours in the same state, treats a part they do not cover as data,
// and keeps at most max extents (covering a prefix of the range).
func normalizeExtents(exts []Extent, length int64, max int) []Extent {
	var out []Extent
	covered := int64(0)
	for _, e := range exts {
		if covered == length {
			break
		}
		if e.Length <= 0 {
			continue
		}
		e.Length = min(e.Length, length-covered)
		covered += e.Length
		out = appendExtent(out, e)
	}
	if covered < length {
		out = appendExtent(out, Extent{Length: length - covered})
	}
	return out[:min(len(out), max)]
}

// appendExtent appends e to exts, merging it into the last extent when
// both are in the same state.
func appendExtent(exts []Extent, e Extent) []Extent {
	if n := len(exts); n > 0 && exts[n-1].Hole == e.Hole {
		exts[n-1].Length += e.Length
		return exts
	}
	return append(exts, e)
}
