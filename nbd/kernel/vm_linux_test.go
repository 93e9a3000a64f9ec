package kernel_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"basalt/internal/vmtest"
)

// vmScript is the guest side of TestVM. It drives attachtest (see its
// package doc) through three attachments, each an in-memory export served
// in-process over a socketpair:
//
//  1. normal, over two connections: the driver is not loaded, so List reports ErrNoDriver and
//     Connect loads it with modprobe; Status shows the device, its backend,
//     the serving process as its pid and its size; connecting the same
//     index again is ErrDeviceBusy; mkfs.ext4, mount, write, umount, fsck
//     and a read-back work; Disconnect ends the server's
//     ServeTransmission cleanly and Status shows the device disconnected.
//  2. killed: the server is killed with SIGKILL; a read then fails with
//     EIO once the dead-connection timeout (2 s) passes; the device stays
//     connected until Disconnect, which still works.
//  3. hung: the server is stopped with SIGSTOP, so the socket stays open
//     but nothing answers; a read fails with EIO once the I/O timeout
//     (3 s) passes; Disconnect works.
//  4. onclose: with DisconnectOnClose, the last close of /dev/nbdN
//     disconnects the device and the server returns.
//
// Then Status and Disconnect of a device that does not exist fail.
//
// The Go test asserts on the result lines.
const vmScript = `
A=/bin/attachtest
attached() { # LOG: wait for the ATTACHED line, print the index
	i=0
	until grep -q '^ATTACHED ' "$1"; do
		i=$((i+1))
		if [ $i -gt 300 ]; then echo "attach timed out:"; cat "$1"; return 1; fi
		sleep 0.05
	done
	sed -n 's/^ATTACHED .*index=\([0-9]*\).*/\1/p' "$1"
}
loaded() { if [ -d /sys/module/nbd ]; then echo loaded; else echo absent; fi; }

echo "driver-before=$(loaded)"
$A list -label nodriver

$A serve -label normal -conns 2 -size 67108864 -timeout 10s -backend vol-normal >/tmp/s1.log 2>&1 &
S1=$!
IDX=$(attached /tmp/s1.log) || exit 1
DEV=/dev/nbd$IDX
echo "driver-after=$(loaded)"
echo "server-pid label=normal pid=$S1"
$A status -label normal -index $IDX
$A list -label normal
$A serve -label busy -index $IDX -size 1048576
mkfs.ext4 -q -F $DEV && echo "mkfs ok"
mount -t ext4 $DEV /mnt && echo hello-ext4 >/mnt/file && sync && umount /mnt && echo "write ok"
if e2fsck -fn $DEV >/tmp/fsck.log 2>&1; then echo "fsck ok"; else cat /tmp/fsck.log; fi
mount -t ext4 -o ro $DEV /mnt && echo "readback=$(cat /mnt/file)" && umount /mnt
$A disconnect -label normal -index $IDX
wait $S1
echo "server-exit label=normal code=$?"
cat /tmp/s1.log
$A status -label normal-after -index $IDX

$A serve -label killed -size 16777216 -timeout 10s -dead-timeout 2s -backend vol-killed >/tmp/s2.log 2>&1 &
S2=$!
IDX=$(attached /tmp/s2.log) || exit 1
DEV=/dev/nbd$IDX
$A read -label killed-before -dev $DEV
kill -9 $S2
wait $S2
echo "server-exit label=killed code=$?"
$A read -label killed-after -dev $DEV -off 8192
$A status -label killed-after -index $IDX
$A disconnect -label killed -index $IDX
$A status -label killed-disconnected -index $IDX

$A serve -label hung -size 16777216 -timeout 3s -backend vol-hung >/tmp/s3.log 2>&1 &
S3=$!
IDX=$(attached /tmp/s3.log) || exit 1
DEV=/dev/nbd$IDX
$A read -label hung-before -dev $DEV
kill -STOP $S3
$A read -label hung-after -dev $DEV -off 12288
$A disconnect -label hung -index $IDX
kill -9 $S3
kill -CONT $S3
wait $S3
$A status -label hung-disconnected -index $IDX
$A serve -label onclose -size 16777216 -disconnect-on-close >/tmp/s4.log 2>&1 &
S4=$!
IDX=$(attached /tmp/s4.log) || exit 1
$A read -label onclose -dev /dev/nbd$IDX
wait $S4
echo "server-exit label=onclose code=$?"
cat /tmp/s4.log
$A status -label onclose-closed -index $IDX

$A status -label missing -index 99
$A disconnect -label missing -index 99
$A list -label end
echo done
`

// TestVM attaches in-memory exports to the kernel's nbd driver inside a
// VM (the host kernel has none) and checks the netlink path end to end;
// see vmScript. It needs `make vm-assets` and fails without them.
func TestVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "attachtest")
	if err := vmtest.BuildStatic(ctx, "basalt/nbd/kernel/internal/attachtest", bin); err != nil {
		t.Fatal(err)
	}
	built := time.Since(start)
	res, err := vmtest.Run(ctx, vmtest.Config{
		Init:     vmScript,
		Binaries: map[string]string{"/bin/attachtest": bin},
		Modules:  []string{"nbd"},
		Timeout:  3 * time.Minute,
	})
	if err != nil {
		console := ""
		if res != nil {
			console = res.Console
		}
		t.Fatalf("vmtest.Run: %v\nconsole:\n%s", err, console)
	}
	t.Logf("build %v, VM %v, initramfs %d bytes, total %v", built.Round(time.Millisecond),
		res.Duration.Round(time.Millisecond), res.InitramfsBytes, time.Since(start).Round(time.Millisecond))
	c := &checker{t: t, out: res.Output}
	defer c.dumpOnFailure(res.Console)
	if testing.Verbose() {
		t.Logf("guest output:\n%s", res.Output)
	}

	// 1. normal
	c.line(`driver-before=absent`)
	c.line(`LIST-ERROR label=nodriver nodriver=true .*`)
	c.line(`driver-after=loaded`)
	pid := c.match(`server-pid label=normal pid=(\d+)`)
	st := c.match(`STATUS label=normal index=(\d+) connected=true backend=vol-normal pid=(\d+) size=67108864`)
	if len(pid) > 1 && len(st) > 2 && pid[1] != st[2] {
		t.Errorf("sysfs pid %s, want the serving process %s", st[2], pid[1])
	}
	c.line(`LIST label=normal devices=16 connected=` + c.group(st, 1))
	c.line(`CONNECT-ERROR label=busy busy=true nodriver=false .*`)
	c.line(`mkfs ok`)
	c.line(`write ok`)
	c.line(`fsck ok`)
	c.line(`readback=hello-ext4`)
	c.line(`DISCONNECTED label=normal index=\d+ elapsed=\S+`)
	c.line(`SERVE-END label=normal err=none`)
	c.line(`server-exit label=normal code=0`)
	c.line(`STATUS label=normal-after index=\d+ connected=false backend= pid=0 size=0`)

	// 2. killed
	c.line(`READ label=killed-before dev=\S+ off=0 err=none elapsed=\S+`)
	c.line(`server-exit label=killed code=137`)
	c.within(`READ label=killed-after dev=\S+ off=8192 err=EIO elapsed=(\S+)`, 1500*time.Millisecond, 15*time.Second)
	c.line(`STATUS label=killed-after index=\d+ connected=true backend=vol-killed pid=\d+ size=16777216`)
	c.line(`DISCONNECTED label=killed index=\d+ elapsed=\S+`)
	c.line(`STATUS label=killed-disconnected index=\d+ connected=false .*`)

	// 3. hung
	c.line(`READ label=hung-before dev=\S+ off=0 err=none elapsed=\S+`)
	c.within(`READ label=hung-after dev=\S+ off=12288 err=EIO elapsed=(\S+)`, 2500*time.Millisecond, 30*time.Second)
	c.line(`DISCONNECTED label=hung index=\d+ elapsed=\S+`)
	c.line(`STATUS label=hung-disconnected index=\d+ connected=false .*`)
	// 4. onclose
	c.line(`READ label=onclose dev=\S+ off=0 err=none elapsed=\S+`)
	c.line(`SERVE-END label=onclose err=none`)
	c.line(`server-exit label=onclose code=0`)
	c.line(`STATUS label=onclose-closed index=\d+ connected=false .*`)

	c.line(`STATUS-ERROR label=missing nodevice=true .*`)
	c.line(`DISCONNECT-ERROR label=missing nodevice=true .*`)
	c.line(`LIST label=end devices=16 connected=`)
	c.line(`done`)
}

// checker asserts on whole lines of the guest's output.
type checker struct {
	t   *testing.T
	out string
}

// match returns the submatches of the first line matching re, failing the
// test when none does.
func (c *checker) match(re string) []string {
	c.t.Helper()
	m := regexp.MustCompile(`(?m)^` + re + `$`).FindStringSubmatch(c.out)
	if m == nil {
		c.t.Errorf("no output line matches %q", re)
	}
	return m
}

func (c *checker) line(re string) { c.t.Helper(); c.match(re) }

// group returns m[i] quoted for a regexp, or a pattern that cannot match
// when m is short (the failure is already reported).
func (c *checker) group(m []string, i int) string {
	if len(m) <= i {
		return `\bnever\b$^`
	}
	return regexp.QuoteMeta(m[i])
}

// within checks that the duration captured by re lies in [lo, hi].
func (c *checker) within(re string, lo, hi time.Duration) {
	c.t.Helper()
	m := c.match(re)
	if len(m) < 2 {
		return
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		c.t.Errorf("%q: %v", m[0], err)
		return
	}
	c.t.Logf("%s", m[0])
	if d < lo || d > hi {
		c.t.Errorf("%q: took %v, want between %v and %v", m[0], d, lo, hi)
	}
}

func (c *checker) dumpOnFailure(console string) {
	if c.t.Failed() {
		c.t.Logf("guest output:\n%s\nconsole:\n%s", c.out, strings.TrimSpace(console))
	}
}
