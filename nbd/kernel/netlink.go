package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
)

// Netlink and generic netlink constants (linux/netlink.h,
// linux/genetlink.h). They are spelled out here rather than taken from
// x/sys/unix so that the message encoding, and its tests, build on every
// GOOS.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	genlHdrLen  = 4  // struct genlmsghdr
	nlaHdrLen   = 4  // struct nlattr
	nlaAlign    = 4  // NLA_ALIGNTO, NLMSG_ALIGNTO

	nlmsgError = 0x2 // NLMSG_ERROR
	nlmsgDone  = 0x3 // NLMSG_DONE

	nlmFRequest = 0x1   // NLM_F_REQUEST
	nlmFAck     = 0x4   // NLM_F_ACK
	nlmFCapped  = 0x100 // NLM_F_CAPPED: the error message omits the request's payload
	nlmFAckTLVs = 0x200 // NLM_F_ACK_TLVS: extended ack attributes follow

	nlaFNested       = 1 << 15
	nlaFNetByteorder = 1 << 14
	nlaTypeMask      = ^uint16(nlaFNested | nlaFNetByteorder)

	genlIDCtrl         = 0x10 // GENL_ID_CTRL
	ctrlCmdGetFamily   = 3    // CTRL_CMD_GETFAMILY
	ctrlVersion        = 2
	ctrlAttrFamilyID   = 1 // CTRL_ATTR_FAMILY_ID, u16
	ctrlAttrFamilyName = 2 // CTRL_ATTR_FAMILY_NAME, string

	nlmsgerrAttrMsg = 1 // NLMSGERR_ATTR_MSG: extended ack message, string
)

// The kernel's nbd generic netlink family (linux/nbd-netlink.h).
const (
	familyName  = "nbd"
	nbdVersion  = 1
	cmdConnect  = 1 // NBD_CMD_CONNECT
	cmdDisconn  = 2 // NBD_CMD_DISCONNECT
	cmdStatus   = 5 // NBD_CMD_STATUS
	attrIndex   = 1 // NBD_ATTR_INDEX, u32
	attrSize    = 2 // NBD_ATTR_SIZE_BYTES, u64
	attrBlock   = 3 // NBD_ATTR_BLOCK_SIZE_BYTES, u64
	attrTimeout = 4 // NBD_ATTR_TIMEOUT, u64 seconds
	attrServerF = 5 // NBD_ATTR_SERVER_FLAGS, u64
	attrClientF = 6 // NBD_ATTR_CLIENT_FLAGS, u64
	attrSockets = 7 // NBD_ATTR_SOCKETS, nested NBD_SOCK_ITEMs
	attrDead    = 8 // NBD_ATTR_DEAD_CONN_TIMEOUT, u64 seconds
	attrDevList = 9 // NBD_ATTR_DEVICE_LIST, nested NBD_DEVICE_ITEMs
	attrBackend = 10

	sockItem = 1 // NBD_SOCK_ITEM, nested
	sockFD   = 1 // NBD_SOCK_FD, u32

	deviceItem      = 1 // NBD_DEVICE_ITEM, nested
	deviceIndex     = 1 // NBD_DEVICE_INDEX, u32
	deviceConnected = 2 // NBD_DEVICE_CONNECTED, u8

	cflagDisconnectOnClose = 1 << 1 // NBD_CFLAG_DISCONNECT_ON_CLOSE
)

// errMalformed means the kernel sent a netlink message that does not parse.
var errMalformed = errors.New("nbd/kernel: malformed netlink message")

// ne is the byte order of netlink headers and attributes: the host's.
var ne = binary.NativeEndian

// pad returns n rounded up to the netlink alignment.
func pad(n int) int { return (n + nlaAlign - 1) &^ (nlaAlign - 1) }

// appendAttr appends one attribute with its padding.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = ne.AppendUint16(b, uint16(nlaHdrLen+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	return append(b, make([]byte, pad(len(data))-len(data))...)
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return appendAttr(b, typ, ne.AppendUint32(nil, v))
}

func appendU64(b []byte, typ uint16, v uint64) []byte {
	return appendAttr(b, typ, ne.AppendUint64(nil, v))
}

// appendString appends a NUL-terminated string attribute (NLA_STRING and
// NLA_NUL_STRING policies both accept it).
func appendString(b []byte, typ uint16, s string) []byte {
	return appendAttr(b, typ, append([]byte(s), 0))
}

// appendNested appends a nested attribute whose payload body appends. The
// NLA_F_NESTED bit is left clear, as libnl's nla_nest_start does: the nbd
// family parses without strict validation and takes either.
func appendNested(b []byte, typ uint16, body func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = body(b)
	ne.PutUint16(b[start:], uint16(len(b)-start))
	ne.PutUint16(b[start+2:], typ)
	return b
}

// genlRequest returns a complete generic netlink request to family with
// command cmd and the encoded attributes attrs, asking for an ack.
func genlRequest(family uint16, seq uint32, cmd, version uint8, attrs []byte) []byte {
	b := make([]byte, 0, nlmsgHdrLen+genlHdrLen+len(attrs))
	b = ne.AppendUint32(b, uint32(nlmsgHdrLen+genlHdrLen+len(attrs)))
	b = ne.AppendUint16(b, family)
	b = ne.AppendUint16(b, nlmFRequest|nlmFAck)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0) // port id: the kernel fills it in
	b = append(b, cmd, version, 0, 0)
	return append(b, attrs...)
}

// familyRequest asks the generic netlink controller for the nbd family.
func familyRequest(seq uint32) []byte {
	return genlRequest(genlIDCtrl, seq, ctrlCmdGetFamily, ctrlVersion,
		appendString(nil, ctrlAttrFamilyName, familyName))
}

// connectRequest encodes NBD_CMD_CONNECT for o (already validated and
// defaulted) with the socket descriptors fds.
func connectRequest(family uint16, seq uint32, o ConnectOptions, fds []uint32) []byte {
	var a []byte
	if o.Index >= 0 {
		a = appendU32(a, attrIndex, uint32(o.Index))
	}
	a = appendU64(a, attrSize, o.SizeBytes)
	a = appendU64(a, attrBlock, o.BlockSize)
	if o.Timeout > 0 {
		a = appendU64(a, attrTimeout, ceilSeconds(o.Timeout))
	}
	if o.DeadConnTimeout > 0 {
		a = appendU64(a, attrDead, ceilSeconds(o.DeadConnTimeout))
	}
	a = appendU64(a, attrServerF, o.Flags)
	var cflags uint64
	if o.DisconnectOnClose {
		cflags |= cflagDisconnectOnClose
	}
	a = appendU64(a, attrClientF, cflags)
	a = appendNested(a, attrSockets, func(b []byte) []byte {
		for _, fd := range fds {
			b = appendNested(b, sockItem, func(b []byte) []byte { return appendU32(b, sockFD, fd) })
		}
		return b
	})
	if o.Backend != "" {
		a = appendString(a, attrBackend, o.Backend)
	}
	return genlRequest(family, seq, cmdConnect, nbdVersion, a)
}

// disconnectRequest encodes NBD_CMD_DISCONNECT for device index.
func disconnectRequest(family uint16, seq uint32, index int) []byte {
	return genlRequest(family, seq, cmdDisconn, nbdVersion, appendU32(nil, attrIndex, uint32(index)))
}

// statusRequest encodes NBD_CMD_STATUS for device index, or for every
// device when index is negative.
func statusRequest(family uint16, seq uint32, index int) []byte {
	var a []byte
	if index >= 0 {
		a = appendU32(nil, attrIndex, uint32(index))
	}
	return genlRequest(family, seq, cmdStatus, nbdVersion, a)
}

// message is one parsed netlink message.
type message struct {
	typ     uint16
	flags   uint16
	seq     uint32
	payload []byte // after the netlink header
}

// parseMessages splits a datagram into netlink messages.
func parseMessages(b []byte) ([]message, error) {
	var out []message
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return nil, fmt.Errorf("%w: %d trailing bytes", errMalformed, len(b))
		}
		n := int(ne.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return nil, fmt.Errorf("%w: message length %d of %d bytes", errMalformed, n, len(b))
		}
		out = append(out, message{
			typ:     ne.Uint16(b[4:]),
			flags:   ne.Uint16(b[6:]),
			seq:     ne.Uint32(b[8:]),
			payload: b[nlmsgHdrLen:n],
		})
		b = b[min(pad(n), len(b)):]
	}
	return out, nil
}

// attr is one parsed attribute; typ has the nested and byte-order bits
// cleared.
type attr struct {
	typ  uint16
	data []byte
}

// parseAttrs parses a run of attributes.
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) > 0 {
		if len(b) < nlaHdrLen {
			return nil, fmt.Errorf("%w: %d trailing attribute bytes", errMalformed, len(b))
		}
		n := int(ne.Uint16(b))
		if n < nlaHdrLen || n > len(b) {
			return nil, fmt.Errorf("%w: attribute length %d of %d bytes", errMalformed, n, len(b))
		}
		out = append(out, attr{typ: ne.Uint16(b[2:]) & nlaTypeMask, data: b[nlaHdrLen:n]})
		b = b[min(pad(n), len(b)):]
	}
	return out, nil
}

// find returns the last attribute of type typ.
func find(attrs []attr, typ uint16) (attr, bool) {
	for i := len(attrs) - 1; i >= 0; i-- {
		if attrs[i].typ == typ {
			return attrs[i], true
		}
	}
	return attr{}, false
}

// u32 returns the attribute's payload as a u32.
func (a attr) u32() (uint32, error) {
	if len(a.data) < 4 {
		return 0, fmt.Errorf("%w: attribute %d has %d bytes, want 4", errMalformed, a.typ, len(a.data))
	}
	return ne.Uint32(a.data), nil
}

// genlAttrs returns the attributes of a generic netlink message's payload.
func genlAttrs(payload []byte) ([]attr, error) {
	if len(payload) < genlHdrLen {
		return nil, fmt.Errorf("%w: generic netlink payload of %d bytes", errMalformed, len(payload))
	}
	return parseAttrs(payload[genlHdrLen:])
}

// ackError returns the error an NLMSG_ERROR message carries: nil for an
// ack, otherwise a *NetlinkError with the errno and, when the kernel sent
// one, its extended ack message.
func ackError(m message) error {
	if len(m.payload) < 4 {
		return fmt.Errorf("%w: error message of %d bytes", errMalformed, len(m.payload))
	}
	errno := -int32(ne.Uint32(m.payload))
	if errno == 0 {
		return nil
	}
	e := &NetlinkError{Errno: syscall.Errno(errno)}
	if m.flags&nlmFAckTLVs == 0 {
		return e
	}
	// struct nlmsgerr: the error, then the request's header, then (unless
	// capped) its payload, then the TLVs.
	off := 4 + nlmsgHdrLen
	if len(m.payload) < off {
		return e
	}
	if m.flags&nlmFCapped == 0 {
		off = 4 + int(ne.Uint32(m.payload[4:]))
	}
	if off = pad(off); off > len(m.payload) {
		return e
	}
	attrs, err := parseAttrs(m.payload[off:])
	if err != nil {
		return e
	}
	if a, ok := find(attrs, nlmsgerrAttrMsg); ok {
		e.Message = cString(a.data)
	}
	return e
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// parseFamilyID returns the family id in a CTRL_CMD_GETFAMILY reply.
func parseFamilyID(payload []byte) (uint16, error) {
	attrs, err := genlAttrs(payload)
	if err != nil {
		return 0, err
	}
	a, ok := find(attrs, ctrlAttrFamilyID)
	if !ok || len(a.data) < 2 {
		return 0, fmt.Errorf("%w: family reply without CTRL_ATTR_FAMILY_ID", errMalformed)
	}
	return ne.Uint16(a.data), nil
}

// parseConnectReply returns the device index in an NBD_CMD_CONNECT reply.
func parseConnectReply(payload []byte) (int, error) {
	attrs, err := genlAttrs(payload)
	if err != nil {
		return 0, err
	}
	a, ok := find(attrs, attrIndex)
	if !ok {
		return 0, fmt.Errorf("%w: connect reply without NBD_ATTR_INDEX", errMalformed)
	}
	v, err := a.u32()
	return int(v), err
}

// parseStatusReply returns the devices in an NBD_CMD_STATUS reply, in the
// kernel's order, with Index and Connected set.
func parseStatusReply(payload []byte) ([]Device, error) {
	attrs, err := genlAttrs(payload)
	if err != nil {
		return nil, err
	}
	list, ok := find(attrs, attrDevList)
	if !ok {
		return nil, fmt.Errorf("%w: status reply without NBD_ATTR_DEVICE_LIST", errMalformed)
	}
	items, err := parseAttrs(list.data)
	if err != nil {
		return nil, err
	}
	devs := []Device{}
	for _, it := range items {
		if it.typ != deviceItem {
			continue
		}
		d, err := parseDeviceItem(it.data)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// parseDeviceItem parses one NBD_DEVICE_ITEM.
func parseDeviceItem(b []byte) (Device, error) {
	attrs, err := parseAttrs(b)
	if err != nil {
		return Device{}, err
	}
	a, ok := find(attrs, deviceIndex)
	if !ok {
		return Device{}, fmt.Errorf("%w: device item without NBD_DEVICE_INDEX", errMalformed)
	}
	idx, err := a.u32()
	if err != nil {
		return Device{}, err
	}
	d := Device{Index: int(idx)}
	if c, ok := find(attrs, deviceConnected); ok && len(c.data) > 0 {
		d.Connected = c.data[0] != 0
	}
	return d, nil
}
