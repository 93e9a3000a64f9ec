package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestCPIO writes an archive and reads it back with GNU cpio.
func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.dir("/bin", 0o755)
	c.file("/bin/tool", 0o755, []byte("#!/bin/sh\necho hi\n"))
	c.file("/empty", 0o600, nil)
	c.symlink("/bin/link", "tool")
	c.dir("/odd-name-x", 0o700)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", buf.Len())
	}

	list := exec.Command("cpio", "-it", "--quiet")
	list.Stdin = bytes.NewReader(buf.Bytes())
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it (apt-get install cpio): %v\n%s", err, out)
	}
	if got, want := strings.Fields(string(out)), []string{"bin", "bin/tool", "empty", "bin/link", "odd-name-x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("cpio -it = %q, want %q", got, want)
	}

	dir := t.TempDir()
	extract := exec.Command("cpio", "-id", "--quiet", "--no-absolute-filenames")
	extract.Dir = dir
	extract.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin/tool")); err != nil || string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("bin/tool = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "bin/tool")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("bin/tool mode = %v, %v", st.Mode(), err)
	}
	if st, err := os.Stat(filepath.Join(dir, "empty")); err != nil || st.Size() != 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("empty: %v, %v", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/link")); err != nil || target != "tool" {
		t.Errorf("bin/link -> %q, %v", target, err)
	}
}

func TestParseLdd(t *testing.T) {
	out := []byte(`	linux-vdso.so.1 (0x00007ffd5e7f4000)
	libext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f2a30bf3000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a3099d000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f2a30c96000)
`)
	got, err := parseLdd(out)
	want := []string{"/lib/x86_64-linux-gnu/libext2fs.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseLdd = %q, %v; want %q", got, err, want)
	}
	if _, err := parseLdd([]byte("\tlibmissing.so.1 => not found\n")); err == nil {
		t.Error("parseLdd accepted a missing library")
	}
}

func TestParseModinfoDepends(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"license=GPL\x00depends=virtio_ring,virtio,net_failover\x00name=virtio_net\x00", []string{"net_failover", "virtio", "virtio_ring"}},
		{"depends=\x00name=nbd\x00", nil},
		{"name=x\x00", nil},
		{"depends=a-b\x00", []string{"a_b"}},
	} {
		if got := parseModinfoDepends([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseModinfoDepends(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestModulesDep(t *testing.T) {
	mods := []Module{
		{Name: "failover", Path: "kernel/net/core/failover.ko"},
		{Name: "net_failover", Path: "kernel/drivers/net/net_failover.ko", Depends: []string{"failover"}},
		{Name: "virtio", Path: "kernel/drivers/virtio/virtio.ko"},
		{Name: "virtio_net", Path: "kernel/drivers/net/virtio_net.ko", Depends: []string{"net_failover", "virtio"}},
	}
	want := `kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio.ko kernel/net/core/failover.ko
`
	if got := string(modulesDep(mods)); got != want {
		t.Errorf("modulesDep:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseConsole(t *testing.T) {
	for _, tc := range []struct {
		name    string
		console string
		output  string
		code    int
		ok      bool
	}{
		{"normal", "boot noise\x1bc\x1b[2JVMTEST-BEGIN\nhello\nworld\nVMTEST-DMESG\n[1.0] kernel\nVMTEST-EXIT 0\n", "hello\nworld\n", 0, true},
		{"failure", "VMTEST-BEGIN\noops\nVMTEST-DMESG\nVMTEST-EXIT 3\n[2.0] reboot: Power down\n", "oops\n", 3, true},
		{"crashed", "VMTEST-BEGIN\nhalfway\n", "halfway\n", -1, false},
		{"never started", "Kernel panic\n", "", -1, false},
		{"bad code", "VMTEST-BEGIN\nVMTEST-DMESG\nVMTEST-EXIT x\n", "", -1, false},
	} {
		out, code, ok := parseConsole(tc.console)
		if out != tc.output || code != tc.code || ok != tc.ok {
			t.Errorf("%s: parseConsole = %q, %d, %v; want %q, %d, %v", tc.name, out, code, ok, tc.output, tc.code, tc.ok)
		}
	}
}

// loadAssets loads the assets `make vm-assets` downloads; the test fails
// (never skips) without them.
func loadAssets(t *testing.T) *Assets {
	t.Helper()
	dir, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	a, err := LoadAssets(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadAssetsMissing(t *testing.T) {
	_, err := LoadAssets(t.TempDir())
	if !errors.Is(err, ErrNoAssets) {
		t.Errorf("LoadAssets(empty dir) = %v, want ErrNoAssets", err)
	}
	t.Setenv(EnvAssets, "/some/where")
	if dir, err := AssetsDir(); err != nil || dir != "/some/where" {
		t.Errorf("AssetsDir() = %q, %v", dir, err)
	}
}

func TestResolve(t *testing.T) {
	a := loadAssets(t)
	mods, err := a.Resolve("virtio_pci", "virtio_net", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for _, m := range mods {
		for _, d := range m.Depends {
			if p, ok := pos[d]; !ok || p > pos[m.Name] {
				t.Errorf("%s depends on %s, which is not loaded before it: %+v", m.Name, d, mods)
			}
		}
	}
	for _, want := range []string{"virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net", "nbd"} {
		if _, ok := pos[want]; !ok {
			t.Errorf("Resolve is missing %s: %+v", want, mods)
		}
	}
	if _, err := a.Resolve("no_such_module"); err == nil {
		t.Error("Resolve accepted an unknown module")
	}
}

// TestRun boots a VM and checks what Config promises: the script's output
// and exit status, copied binaries, modprobe of Config.Modules, mkfs.ext4
// and e2fsck, and the network to the host.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	script := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"hello from $0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	init := fmt.Sprintf(`set -e
/opt/hello
echo "cwd $(pwd)"
ip -4 addr show eth0 | grep -q 'inet 10.0.2.15/24' && echo net-ok
echo guest-says-hi | nc 10.0.2.2 %d && echo nc-ok
modprobe nbd && test -d /sys/module/nbd && echo modprobe-ok
truncate -s 64M /tmp/disk.img
mkfs.ext4 -q -F /tmp/disk.img && e2fsck -fn /tmp/disk.img >/dev/null 2>&1 && echo ext4-ok
echo to-stderr >&2
exit 3
`, port)
	start := time.Now()
	res, err := Run(context.Background(), Config{
		Init:     init,
		Binaries: map[string]string{"/opt/hello": script},
		Modules:  []string{"nbd"},
		Timeout:  2 * time.Minute,
	})
	if res == nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("VM ran in %v (Run total %v), initramfs %d bytes", res.Duration.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), res.InitramfsBytes)
	if !errors.Is(err, ErrInitFailed) || res.ExitCode != 3 {
		t.Fatalf("Run = exit %d, %v; want exit 3 and ErrInitFailed\nconsole:\n%s", res.ExitCode, err, res.Console)
	}
	want := "hello from /opt/hello\ncwd /tmp\nnet-ok\nnc-ok\nmodprobe-ok\next4-ok\nto-stderr\n"
	if res.Output != want {
		t.Errorf("Output = %q, want %q\nconsole:\n%s", res.Output, want, res.Console)
	}
	select {
	case s := <-got:
		if s != "guest-says-hi\n" {
			t.Errorf("host listener got %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Error("the guest never connected to the host")
	}
}

func TestRunNeedsInit(t *testing.T) {
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run without Init succeeded")
	}
}
