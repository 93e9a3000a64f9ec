package kernel

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// The helpers below build netlink bytes field by field, independently of
// the code under test, with lengths written out by hand.

func u16(v uint16) []byte { return ne.AppendUint16(nil, v) }
func u32(v uint32) []byte { return ne.AppendUint32(nil, v) }
func u64(v uint64) []byte { return ne.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// nla is an attribute header: total length (header included) and type.
func nla(length, typ uint16) []byte { return cat(u16(length), u16(typ)) }

// nlhdr is a netlink message header.
func nlhdr(length uint32, typ, flags uint16, seq uint32) []byte {
	return cat(u32(length), u16(typ), u16(flags), u32(seq), u32(0))
}

func TestAppendAttr(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want []byte
	}{
		{"u32", appendU32(nil, 1, 0xdeadbeef), cat(nla(8, 1), u32(0xdeadbeef))},
		{"u64", appendU64(nil, 2, 1<<40), cat(nla(12, 2), u64(1<<40))},
		{"string padded", appendString(nil, 10, "vol"), cat(nla(8, 10), []byte("vol\x00"))},
		{"string needs padding", appendString(nil, 10, "vol1"), cat(nla(9, 10), []byte("vol1\x00\x00\x00\x00"))},
		{"empty", appendAttr(nil, 3, nil), nla(4, 3)},
		{"nested", appendNested(nil, 7, func(b []byte) []byte {
			return appendNested(b, 1, func(b []byte) []byte { return appendU32(b, 1, 5) })
		}), cat(nla(16, 7), nla(12, 1), nla(8, 1), u32(5))},
		{"appends", appendU32([]byte{0xff}, 1, 1), cat([]byte{0xff}, nla(8, 1), u32(1))},
	} {
		if !bytes.Equal(tc.got, tc.want) {
			t.Errorf("%s: got % x, want % x", tc.name, tc.got, tc.want)
		}
	}
}

func TestFamilyRequest(t *testing.T) {
	want := cat(
		nlhdr(28, genlIDCtrl, nlmFRequest|nlmFAck, 9),
		[]byte{ctrlCmdGetFamily, 2, 0, 0},
		nla(8, ctrlAttrFamilyName), []byte("nbd\x00"),
	)
	if got := familyRequest(9); !bytes.Equal(got, want) {
		t.Errorf("familyRequest:\n got % x\nwant % x", got, want)
	}
}

func TestConnectRequest(t *testing.T) {
	o := ConnectOptions{
		Index:             3,
		SizeBytes:         64 << 20,
		BlockSize:         4096,
		Flags:             FlagHasFlags | FlagSendFlush | FlagSendTrim,
		Timeout:           1500 * time.Millisecond, // rounds up to 2 s
		DeadConnTimeout:   time.Second,
		Backend:           "vol1",
		DisconnectOnClose: true,
	}
	attrs := cat(
		nla(8, attrIndex), u32(3),
		nla(12, attrSize), u64(64<<20),
		nla(12, attrBlock), u64(4096),
		nla(12, attrTimeout), u64(2),
		nla(12, attrDead), u64(1),
		nla(12, attrServerF), u64(1|4|32),
		nla(12, attrClientF), u64(2),
		nla(28, attrSockets),
		nla(12, sockItem), nla(8, sockFD), u32(7),
		nla(12, sockItem), nla(8, sockFD), u32(9),
		nla(9, attrBackend), []byte("vol1\x00\x00\x00\x00"),
	)
	want := cat(nlhdr(uint32(20+len(attrs)), 0x1b, nlmFRequest|nlmFAck, 4), []byte{cmdConnect, 1, 0, 0}, attrs)
	if got := connectRequest(0x1b, 4, o, []uint32{7, 9}); !bytes.Equal(got, want) {
		t.Errorf("connectRequest:\n got % x\nwant % x", got, want)
	}

	// The minimal request: no index (the kernel picks), no timeouts, no
	// backend.
	min := ConnectOptions{Index: -1, SizeBytes: 1 << 20, BlockSize: 512}
	attrs = cat(
		nla(12, attrSize), u64(1<<20),
		nla(12, attrBlock), u64(512),
		nla(12, attrServerF), u64(0),
		nla(12, attrClientF), u64(0),
		nla(16, attrSockets), nla(12, sockItem), nla(8, sockFD), u32(3),
	)
	want = cat(nlhdr(uint32(20+len(attrs)), 0x1b, nlmFRequest|nlmFAck, 5), []byte{cmdConnect, 1, 0, 0}, attrs)
	if got := connectRequest(0x1b, 5, min, []uint32{3}); !bytes.Equal(got, want) {
		t.Errorf("minimal connectRequest:\n got % x\nwant % x", got, want)
	}
}

// TestConnectRequestParses decodes a connect request the way the kernel
// does: header, generic header, attributes, nested socket items.
func TestConnectRequestParses(t *testing.T) {
	req := connectRequest(30, 1, ConnectOptions{Index: -1, SizeBytes: 4096, BlockSize: 4096, Backend: "b"}, []uint32{4, 5, 6})
	msgs, err := parseMessages(req)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("parseMessages = %v, %v", msgs, err)
	}
	if m := msgs[0]; m.typ != 30 || m.seq != 1 || m.flags != nlmFRequest|nlmFAck || m.payload[0] != cmdConnect {
		t.Fatalf("message = %+v", m)
	}
	attrs, err := genlAttrs(msgs[0].payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := find(attrs, attrIndex); ok {
		t.Error("index -1 sent NBD_ATTR_INDEX")
	}
	socks, ok := find(attrs, attrSockets)
	if !ok {
		t.Fatal("no NBD_ATTR_SOCKETS")
	}
	items, err := parseAttrs(socks.data)
	if err != nil {
		t.Fatal(err)
	}
	var fds []uint32
	for _, it := range items {
		inner, err := parseAttrs(it.data)
		if err != nil {
			t.Fatal(err)
		}
		fd, _ := find(inner, sockFD)
		v, err := fd.u32()
		if err != nil || it.typ != sockItem {
			t.Fatalf("item %+v: %v", it, err)
		}
		fds = append(fds, v)
	}
	if !reflect.DeepEqual(fds, []uint32{4, 5, 6}) {
		t.Errorf("fds = %v", fds)
	}
	if b, _ := find(attrs, attrBackend); cString(b.data) != "b" {
		t.Errorf("backend = %q", b.data)
	}
}

func TestDisconnectAndStatusRequests(t *testing.T) {
	want := cat(nlhdr(28, 0x1b, nlmFRequest|nlmFAck, 2), []byte{cmdDisconn, 1, 0, 0}, nla(8, attrIndex), u32(12))
	if got := disconnectRequest(0x1b, 2, 12); !bytes.Equal(got, want) {
		t.Errorf("disconnectRequest:\n got % x\nwant % x", got, want)
	}
	want = cat(nlhdr(28, 0x1b, nlmFRequest|nlmFAck, 3), []byte{cmdStatus, 1, 0, 0}, nla(8, attrIndex), u32(0))
	if got := statusRequest(0x1b, 3, 0); !bytes.Equal(got, want) {
		t.Errorf("statusRequest(0):\n got % x\nwant % x", got, want)
	}
	want = cat(nlhdr(20, 0x1b, nlmFRequest|nlmFAck, 4), []byte{cmdStatus, 1, 0, 0})
	if got := statusRequest(0x1b, 4, -1); !bytes.Equal(got, want) {
		t.Errorf("statusRequest(-1):\n got % x\nwant % x", got, want)
	}
}

func TestParseMessages(t *testing.T) {
	one := cat(nlhdr(20, 0x1b, 0, 1), []byte{1, 2, 3, 4})
	odd := cat(nlhdr(17, 0x1b, 0, 2), []byte{9, 0, 0, 0}) // padded to 20
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []message
		wantErr bool
	}{
		{name: "empty", in: nil},
		{name: "one", in: one, want: []message{{typ: 0x1b, seq: 1, payload: []byte{1, 2, 3, 4}}}},
		{name: "two with padding", in: cat(odd, one), want: []message{
			{typ: 0x1b, seq: 2, payload: []byte{9}},
			{typ: 0x1b, seq: 1, payload: []byte{1, 2, 3, 4}},
		}},
		{name: "last unpadded", in: odd[:17], want: []message{{typ: 0x1b, seq: 2, payload: []byte{9}}}},
		{name: "short header", in: one[:10], wantErr: true},
		{name: "length past end", in: one[:19], wantErr: true},
		{name: "length below header", in: cat(nlhdr(8, 0, 0, 0)), wantErr: true},
	} {
		got, err := parseMessages(tc.in)
		if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, errMalformed)) {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseAttrs(t *testing.T) {
	got, err := parseAttrs(cat(nla(5, 2|nlaFNested), []byte{7, 0, 0, 0}, nla(4, 3|nlaFNetByteorder)))
	want := []attr{{typ: 2, data: []byte{7}}, {typ: 3, data: []byte{}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseAttrs = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range [][]byte{{1, 2}, cat(nla(9, 1), []byte{1, 2}), nla(3, 1)} {
		if _, err := parseAttrs(bad); !errors.Is(err, errMalformed) {
			t.Errorf("parseAttrs(% x) err = %v, want errMalformed", bad, err)
		}
	}
	if _, err := (attr{typ: 1, data: []byte{1, 2}}).u32(); !errors.Is(err, errMalformed) {
		t.Errorf("short u32 err = %v", err)
	}
}

// errMsg builds an NLMSG_ERROR message as the kernel's netlink_ack does.
func errMsg(errno int32, flags uint16, req []byte, tlvs []byte) message {
	payload := cat(u32(uint32(-errno)), req)
	for len(payload)%4 != 0 {
		payload = append(payload, 0)
	}
	return message{typ: nlmsgError, flags: flags, payload: cat(payload, tlvs)}
}

func TestAckError(t *testing.T) {
	req := familyRequest(1) // 28 bytes
	msg := cat(nla(20, nlmsgerrAttrMsg), []byte("Unknown family\x00\x00"))
	for _, tc := range []struct {
		name string
		m    message
		want error // nil for an ack
	}{
		{"ack", errMsg(0, nlmFCapped, req[:16], nil), nil},
		{"errno capped", errMsg(int32(syscall.ENOENT), nlmFCapped, req[:16], nil), &NetlinkError{Errno: syscall.ENOENT}},
		{"errno uncapped", errMsg(int32(syscall.EBUSY), 0, req, nil), &NetlinkError{Errno: syscall.EBUSY}},
		{"ext ack capped", errMsg(int32(syscall.ENOENT), nlmFCapped|nlmFAckTLVs, req[:16], msg),
			&NetlinkError{Errno: syscall.ENOENT, Message: "Unknown family"}},
		{"ext ack uncapped", errMsg(int32(syscall.EINVAL), nlmFAckTLVs, req, msg),
			&NetlinkError{Errno: syscall.EINVAL, Message: "Unknown family"}},
		{"ext ack flag without room", errMsg(int32(syscall.EPERM), nlmFAckTLVs, nil, nil), &NetlinkError{Errno: syscall.EPERM}},
	} {
		err := ackError(tc.m)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%s: err = %v, want nil", tc.name, err)
			}
			continue
		}
		var ne *NetlinkError
		if !errors.As(err, &ne) || !reflect.DeepEqual(ne, tc.want) {
			t.Errorf("%s: err = %#v, want %#v", tc.name, err, tc.want)
		}
	}
	if err := ackError(message{typ: nlmsgError, payload: []byte{1}}); !errors.Is(err, errMalformed) {
		t.Errorf("short error message: err = %v", err)
	}
}

func TestNetlinkErrorIs(t *testing.T) {
	var err error = &NetlinkError{Errno: syscall.EPERM}
	if !errors.Is(err, syscall.EPERM) || !errors.Is(err, os.ErrPermission) {
		t.Errorf("%v does not unwrap to EPERM / os.ErrPermission", err)
	}
	if got := (&NetlinkError{Errno: syscall.EINVAL, Message: "bad"}).Error(); got != "netlink: invalid argument: bad" {
		t.Errorf("Error() = %q", got)
	}
}

// genlMsg is a generic netlink reply's payload: genl header, attributes.
func genlMsg(cmd uint8, attrs ...[]byte) []byte {
	return cat(append([][]byte{{cmd, 1, 0, 0}}, attrs...)...)
}

func TestParseFamilyID(t *testing.T) {
	reply := genlMsg(1, // CTRL_CMD_NEWFAMILY, as the kernel sends it
		nla(8, ctrlAttrFamilyName), []byte("nbd\x00"),
		nla(6, ctrlAttrFamilyID), u16(0x1b), []byte{0, 0},
		nla(8, 3), u32(1), // CTRL_ATTR_VERSION
	)
	if id, err := parseFamilyID(reply); err != nil || id != 0x1b {
		t.Errorf("parseFamilyID = %#x, %v", id, err)
	}
	for _, bad := range [][]byte{{1}, genlMsg(1), genlMsg(1, nla(5, ctrlAttrFamilyID), []byte{1, 0, 0, 0})} {
		if _, err := parseFamilyID(bad); !errors.Is(err, errMalformed) {
			t.Errorf("parseFamilyID(% x) err = %v", bad, err)
		}
	}
}

func TestParseConnectReply(t *testing.T) {
	if idx, err := parseConnectReply(genlMsg(cmdConnect, nla(8, attrIndex), u32(5))); err != nil || idx != 5 {
		t.Errorf("parseConnectReply = %d, %v", idx, err)
	}
	if _, err := parseConnectReply(genlMsg(cmdConnect)); !errors.Is(err, errMalformed) {
		t.Errorf("reply without index: err = %v", err)
	}
}

// devItem is one NBD_DEVICE_ITEM as populate_nbd_status writes it.
func devItem(index uint32, connected byte) []byte {
	return cat(nla(20, deviceItem), nla(8, deviceIndex), u32(index), nla(5, deviceConnected), []byte{connected, 0, 0, 0})
}

func TestParseStatusReply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []byte
		want    []Device
		wantErr bool
	}{
		{name: "empty list", in: genlMsg(cmdStatus, nla(4, attrDevList)), want: []Device{}},
		{name: "devices", in: genlMsg(cmdStatus, nla(4+3*20, attrDevList), devItem(0, 1), devItem(1, 0), devItem(15, 1)),
			want: []Device{{Index: 0, Connected: true}, {Index: 1}, {Index: 15, Connected: true}}},
		{name: "nested flag set", in: genlMsg(cmdStatus, nla(24, attrDevList|nlaFNested), devItem(2, 1)),
			want: []Device{{Index: 2, Connected: true}}},
		{name: "no connected attribute", in: genlMsg(cmdStatus, nla(16, attrDevList), nla(12, deviceItem), nla(8, deviceIndex), u32(4)),
			want: []Device{{Index: 4}}},
		{name: "no list", in: genlMsg(cmdStatus), wantErr: true},
		{name: "item without index", in: genlMsg(cmdStatus, nla(16, attrDevList), nla(12, deviceItem), nla(5, deviceConnected), []byte{1, 0, 0, 0}), wantErr: true},
		{name: "truncated", in: genlMsg(cmdStatus, nla(24, attrDevList), devItem(2, 1)[:12]), wantErr: true},
	} {
		got, err := parseStatusReply(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	f, err := os.Open(os.DevNull) // a placeholder: Validate does no I/O
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	ok := ConnectOptions{Index: -1, Sockets: []*os.File{f}, SizeBytes: 1 << 20}
	with := func(mod func(*ConnectOptions)) ConnectOptions {
		o := ok
		mod(&o)
		return o
	}
	for _, tc := range []struct {
		name string
		o    ConnectOptions
		ok   bool
	}{
		{"defaults", ok, true},
		{"index 0", with(func(o *ConnectOptions) { o.Index = 0 }), true},
		{"index -2", with(func(o *ConnectOptions) { o.Index = -2 }), false},
		{"no sockets", with(func(o *ConnectOptions) { o.Sockets = nil }), false},
		{"nil socket", with(func(o *ConnectOptions) { o.Sockets = []*os.File{f, nil} }), false},
		{"zero size", with(func(o *ConnectOptions) { o.SizeBytes = 0 }), false},
		{"block 512", with(func(o *ConnectOptions) { o.BlockSize = 512 }), true},
		{"block 256", with(func(o *ConnectOptions) { o.BlockSize = 256 }), false},
		{"block 3000", with(func(o *ConnectOptions) { o.BlockSize = 3000 }), false},
		{"block above page", with(func(o *ConnectOptions) { o.BlockSize = uint64(os.Getpagesize()) * 2 }), false},
		{"negative timeout", with(func(o *ConnectOptions) { o.Timeout = -time.Second }), false},
		{"negative dead timeout", with(func(o *ConnectOptions) { o.DeadConnTimeout = -1 }), false},
	} {
		err := tc.o.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidOptions)) {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if d := DefaultConnectOptions(); d.Index != -1 || d.BlockSize != DefaultBlockSize || d.Timeout != 30*time.Second {
		t.Errorf("DefaultConnectOptions() = %+v", d)
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]uint64{
		0: 0, time.Nanosecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, time.Minute: 60,
	} {
		if got := ceilSeconds(d); got != want {
			t.Errorf("ceilSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestReadSysfs(t *testing.T) {
	root := t.TempDir()
	dir := root + "/nbd3"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"backend": "vol-a\n", "pid": "1234\n", "size": "131072\n"} {
		if err := os.WriteFile(dir+"/"+name, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	proc := t.TempDir()
	if err := os.MkdirAll(proc+"/1234", 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Name:\tattachtest\nTgid:\t1200\nPid:\t1234\n"
	if err := os.WriteFile(proc+"/1234/status", []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	d := Device{Index: 3, Connected: true}
	if err := readSysfs(root, proc, &d); err != nil {
		t.Fatal(err)
	}
	if want := (Device{Index: 3, Connected: true, Backend: "vol-a", PID: 1200, SizeBytes: 64 << 20}); d != want {
		t.Errorf("readSysfs = %+v, want %+v", d, want)
	}
	if d.Path() != "/dev/nbd3" {
		t.Errorf("Path() = %q", d.Path())
	}

	// A device without the files (not connected, or no sysfs) keeps zeros.
	d = Device{Index: 7}
	if err := readSysfs(root, proc, &d); err != nil || d != (Device{Index: 7}) {
		t.Errorf("readSysfs without files = %+v, %v", d, err)
	}

	if err := os.WriteFile(dir+"/pid", []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := readSysfs(root, proc, &Device{Index: 3}); err == nil {
		t.Error("readSysfs accepted a bad pid")
	}

	// A task /proc does not know (gone) is reported as is.
	if got := processOf(proc, 99); got != 99 {
		t.Errorf("processOf(unknown) = %d, want 99", got)
	}
}
