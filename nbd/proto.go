package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants from the NBD protocol specification
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).
const (
	nbdMagic       = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic       = 0x49484156454f5054 // "IHAVEOPT"
	optReplyMagic  = 0x0003e889045565a9
	requestMagic   = 0x25609513
	simpleRepMagic = 0x67446698
	structRepMagic = 0x668e33ef

	flagFixedNewstyle = 1 << 0 // handshake flags (server) and client flags
	flagNoZeroes      = 1 << 1

	optExportName       = 1
	optAbort            = 2
	optList             = 3
	optInfo             = 6
	optGo               = 7
	optStructuredReply  = 8
	optListMetaContext  = 9
	optSetMetaContext   = 10
	repAck              = 1
	repServer           = 2
	repInfo             = 3
	repMetaContext      = 4
	repErrUnsup         = 1<<31 + 1
	repErrInvalid       = 1<<31 + 3
	repErrUnknown       = 1<<31 + 6
	infoExport          = 0
	infoName            = 1
	infoDescription     = 2
	infoBlockSize       = 3
	preferredBlockSize  = 4096
	maxOptionLength     = 64 << 10 // longest option payload accepted
	maxExportNameLength = 4096     // the specification's limit on names
	maxMetaQueryLength  = 4096     // the specification's limit on context queries

	tFlagHasFlags     = 1 << 0 // transmission flags
	tFlagSendFlush    = 1 << 2
	tFlagSendFUA      = 1 << 3
	tFlagSendTrim     = 1 << 5
	tFlagSendWriteZ   = 1 << 6
	tFlagCanMultiConn = 1 << 8

	cmdRead        = 0
	cmdWrite       = 1
	cmdDisconnect  = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
	cmdFlagFUA     = 1 << 0
	cmdFlagNoHole  = 1 << 1
	cmdFlagReqOne  = 1 << 3

	replyFlagDone        = 1 << 0 // structured reply chunks
	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeOffsetHole  = 2
	replyTypeBlockStatus = 5
	replyTypeError       = 1<<15 + 1
	chunkHeaderSize      = 20

	metaBaseAllocation = "base:allocation"
	metaAllocationID   = 1 // the context id of base:allocation
	stateHole          = 1 << 0
	stateZero          = 1 << 1

	errIO        = 5
	errInval     = 22
	errNoSpc     = 28
	errOverflow  = 75
	errShutdown  = 108
	requestSize  = 28
	optHeaderLen = 16
)

// transmissionFlags are the flags every export is served with.
const transmissionFlags = tFlagHasFlags | tFlagSendFlush | tFlagSendFUA |
	tFlagSendTrim | tFlagSendWriteZ | tFlagCanMultiConn

// errBadMagic means a peer sent a header whose magic number is wrong: the
// stream is out of sync and the connection must close.
var errBadMagic = errors.New("nbd: bad magic")

// errMalformed means a handshake message could not be parsed.
var errMalformed = errors.New("nbd: malformed handshake message")

// request is one transmission-phase request header.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
}

// parseRequest decodes a 28-byte request header.
func parseRequest(b []byte) (request, error) {
	if len(b) != requestSize {
		return request{}, fmt.Errorf("parsing request: %d bytes: %w", len(b), errMalformed)
	}
	if binary.BigEndian.Uint32(b) != requestMagic {
		return request{}, errBadMagic
	}
	return request{
		flags:  binary.BigEndian.Uint16(b[4:]),
		typ:    binary.BigEndian.Uint16(b[6:]),
		cookie: binary.BigEndian.Uint64(b[8:]),
		offset: binary.BigEndian.Uint64(b[16:]),
		length: binary.BigEndian.Uint32(b[24:]),
	}, nil
}

// hasPayload reports whether the request is followed by length bytes of data.
func (r request) hasPayload() bool { return r.typ == cmdWrite }

// check returns the NBD error for a request against an export of size bytes
// that accepts at most maxLen bytes per request, or 0 when it is valid.
func (r request) check(size int64, maxLen uint32) uint32 {
	switch r.typ {
	case cmdFlush, cmdDisconnect:
		return 0
	case cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes:
	case cmdBlockStatus:
		if r.length == 0 {
			return errInval
		}
	default:
		return errInval
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > maxLen {
		return errOverflow
	}
	return r.checkRange(size)
}

// checkRange returns the error for a range that does not fit the export.
func (r request) checkRange(size int64) uint32 {
	end := r.offset + uint64(r.length)
	if end >= r.offset && end <= uint64(size) {
		return 0
	}
	if r.typ == cmdWrite || r.typ == cmdWriteZeroes {
		return errNoSpc
	}
	return errInval
}

// appendSimpleReply appends a simple reply header.
func appendSimpleReply(b []byte, errno uint32, cookie uint64) []byte {
	b = binary.BigEndian.AppendUint32(b, simpleRepMagic)
	b = binary.BigEndian.AppendUint32(b, errno)
	return binary.BigEndian.AppendUint64(b, cookie)
}

// parseOptionHeader decodes the 16-byte option header and returns the
// option code and the length of the data that follows.
func parseOptionHeader(b []byte) (code, length uint32, err error) {
	if len(b) != optHeaderLen {
		return 0, 0, errMalformed
	}
	if binary.BigEndian.Uint64(b) != optMagic {
		return 0, 0, errBadMagic
	}
	code, length = binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:])
	if length > maxOptionLength {
		return 0, 0, fmt.Errorf("option %d of %d bytes: %w", code, length, errMalformed)
	}
	return code, length, nil
}

// infoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

// parseInfoRequest decodes the payload of NBD_OPT_INFO and NBD_OPT_GO.
func parseInfoRequest(b []byte) (infoRequest, error) {
	if len(b) < 4 {
		return infoRequest{}, errMalformed
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n > maxExportNameLength || uint64(len(b)) < 4+n+2 {
		return infoRequest{}, errMalformed
	}
	req := infoRequest{name: string(b[4 : 4+n])}
	rest := b[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return infoRequest{}, errMalformed
	}
	for i := range count {
		req.infos = append(req.infos, binary.BigEndian.Uint16(rest[2*i:]))
	}
	return req, nil
}

// appendOptionReply appends an option reply header and its data.
func appendOptionReply(b []byte, code, typ uint32, data []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, optReplyMagic)
	b = binary.BigEndian.AppendUint32(b, code)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// infoExportData is the data of an NBD_INFO_EXPORT reply.
func infoExportData(size int64, flags uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, infoExport)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return binary.BigEndian.AppendUint16(b, flags)
}

// infoBlockSizeData is the data of an NBD_INFO_BLOCK_SIZE reply.
func infoBlockSizeData(maxLen uint32) []byte {
	b := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, min(preferredBlockSize, maxLen))
	return binary.BigEndian.AppendUint32(b, maxLen)
}

// infoStringData is the data of an NBD_INFO_NAME or NBD_INFO_DESCRIPTION reply.
func infoStringData(typ uint16, s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, typ), s...)
}

// listEntryData is the data of one NBD_REP_SERVER reply.
func listEntryData(name string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(name))), name...)
}
