package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"basalt/internal/vmtest"
)

// vmHost is the host as qemu's user network shows it to the guest. The
// test gives the playground a network namespace of its own in which the
// loopback device also answers to it, so the cluster advertises one
// address that works both inside the namespace and from the guest (whose
// 10.0.2.2:PORT qemu forwards to the namespace's 127.0.0.1:PORT).
const vmHost = "10.0.2.2"

// TestKernelAttachInVM attaches a playground volume to /dev/nbd0 inside a
// VM (Debian's cloud kernel under qemu TCG, because the host kernel has no
// nbd driver) with the real `basalt nbd attach`, built static: the guest
// makes an ext4 filesystem on it, mounts it, writes files, unmounts it,
// checks it with e2fsck and detaches. The host then copies the volume out
// over NBD and finds a clean filesystem with the guest's files.
func TestKernelAttachInVM(t *testing.T) {
	ns := newNetns(t)
	data := t.TempDir()
	startPlaygroundIn(t, ns, data)
	nsRun(t, ns, filepath.Join(binDir, "basalt"), "volume", "create", "vmdisk", "--size", "256MiB", "--mds", vmHost+":6700")

	ctx := t.Context()
	guestBasalt := filepath.Join(t.TempDir(), "basalt")
	if err := vmtest.BuildStatic(ctx, "basalt/cmd/basalt", guestBasalt); err != nil {
		t.Fatal(err)
	}
	res, err := vmtest.Run(ctx, vmtest.Config{
		Init:     guestScript,
		Binaries: map[string]string{"/bin/basalt": guestBasalt},
		Modules:  []string{"nbd"},
		Netns:    ns,
	})
	if err != nil {
		t.Fatalf("VM run: %v\n%s", err, consoleOf(res))
	}
	for _, want := range []string{"ATTACHED /dev/nbd0", "LISTED /dev/nbd0 vmdisk", "FSCK-CLEAN", "DETACHED", "LIST-AFTER-DETACH-EMPTY"} {
		if !strings.Contains(res.Output, want) {
			t.Fatalf("guest output lacks %q:\n%s", want, res.Output)
		}
	}
	t.Logf("VM run took %v (initramfs %d bytes)", res.Duration, res.InitramfsBytes)

	img := filepath.Join(t.TempDir(), "vmdisk.img")
	nsRun(t, ns, "/usr/bin/nbdcopy", "nbd://127.0.0.1:10809/vmdisk", img)
	run(t, "/sbin/e2fsck", "-fn", img)
	if got := debugfsCat(t, img, "/hello.txt"); got != "hello from the guest\n" {
		t.Fatalf("/hello.txt on the host = %q", got)
	}
	want := seq(1, 200000)
	if got := debugfsCat(t, img, "/seq.txt"); got != want {
		t.Fatalf("/seq.txt on the host: %d bytes, want %d identical bytes", len(got), len(want))
	}
}

// guestScript runs as the guest's init (set -e is not used so that every
// step's failure is reported; each success prints a marker).
const guestScript = `
fail() { echo "FAIL: $*"; cat /tmp/attach.log 2>/dev/null; exit 1; }
basalt nbd attach vmdisk --mds ` + vmHost + `:6700 --log-file /tmp/attach.log >/tmp/dev || fail attach
DEV=$(cat /tmp/dev)
echo "ATTACHED $DEV"
basalt nbd list -o json | grep -q '"volume":"vmdisk"' && echo "LISTED $DEV vmdisk" || fail list
mkfs.ext4 -F -q "$DEV" || fail mkfs
mkdir -p /mnt && mount -t ext4 "$DEV" /mnt || fail mount
echo "hello from the guest" >/mnt/hello.txt
seq 1 200000 >/mnt/seq.txt
mkdir /mnt/dir && for i in $(seq 1 50); do echo "file $i" >/mnt/dir/f$i; done
sync && umount /mnt || fail umount
e2fsck -fn "$DEV" && echo FSCK-CLEAN || fail fsck
basalt nbd detach "$DEV" && echo DETACHED || fail detach
[ "$(basalt nbd list -o json)" = "[]" ] && echo LIST-AFTER-DETACH-EMPTY || fail list after detach
`

// consoleOf returns the console of a VM result, if any.
func consoleOf(res *vmtest.Result) string {
	if res == nil {
		return "(no result)"
	}
	return res.Console
}

// seq returns what `seq from to` prints.
func seq(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintln(&b, i)
	}
	return b.String()
}

// debugfsCat reads a file out of an ext4 image with debugfs.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	return runOut(t, "/sbin/debugfs", "-R", "cat "+path, img)
}

// newNetns creates a network namespace with lo up and also answering to
// vmHost, and deletes it when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("basalt-e2e-%d", os.Getpid())
	run(t, "/sbin/ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("/sbin/ip", "netns", "del", ns).Run() })
	run(t, "/sbin/ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "/sbin/ip", "-n", ns, "addr", "add", vmHost+"/32", "dev", "lo")
	return ns
}

// nsRun runs a command inside the namespace.
func nsRun(t *testing.T, ns, name string, args ...string) {
	t.Helper()
	run(t, "/sbin/ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// startPlaygroundIn runs `basalt playground --public-host 10.0.2.2` in the
// namespace with its default ports, waits until it is up, and stops it
// with SIGINT (Ctrl-C) when the test ends.
func startPlaygroundIn(t *testing.T, ns, data string) {
	t.Helper()
	cmd := exec.Command("/sbin/ip", "netns", "exec", ns, filepath.Join(binDir, "basalt"), "playground", "--data", data, "--public-host", vmHost)
	logPath := filepath.Join(t.TempDir(), "playground.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Basalt playground is running") {
				up <- true
			}
		}
		close(up)
	}()
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			t.Error("playground did not stop within 60s of SIGINT")
			_ = cmd.Process.Kill()
		}
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("playground log:\n%s", b)
		}
	})
	go func() { exited <- cmd.Wait() }()
	select {
	case ok := <-up:
		if !ok {
			t.Fatal("playground exited before it was up")
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("playground not up within 2 minutes")
	case <-context.Background().Done():
	}
}
