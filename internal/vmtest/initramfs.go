package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// bootModules returns the modules /init loads before the user script: the
// virtio PCI transport and virtio-net, for -nic user,model=virtio-net-pci.
func bootModules() []string { return []string{"virtio_pci", "virtio_net"} }

// e2fsTools returns the e2fsprogs binaries copied from the host, with the
// shared libraries they need, into /usr/sbin.
func e2fsTools() []string { return []string{"mke2fs", "e2fsck", "debugfs"} }

// Guest paths of files the harness writes.
const (
	guestUserInit = "/vmtest/init.sh"
	guestBusybox  = "/bin/busybox"
)

// Result markers /init prints on the console.
const (
	markBegin = "VMTEST-BEGIN"
	markDmesg = "VMTEST-DMESG"
	markExit  = "VMTEST-EXIT"
)

// hostTools are the host files the initramfs copies: busybox and the
// e2fsprogs binaries, with the shared objects the latter load.
type hostTools struct {
	busybox string            // static busybox
	applets []string          // busybox --list-full: "bin/sh", "sbin/ip", ...
	tools   map[string]string // tool name -> host path
	libs    []string          // shared objects and the dynamic loader, absolute host paths
}

// findHostTools locates busybox and e2fsprogs on the host and lists what
// they need. A missing tool is an error that names its Debian package.
func findHostTools(ctx context.Context) (*hostTools, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("vmtest: busybox not found (apt-get install busybox-static): %w", err)
	}
	dyn, err := isDynamic(bb)
	if err != nil {
		return nil, fmt.Errorf("vmtest: checking busybox: %w", err)
	}
	if dyn {
		return nil, fmt.Errorf("vmtest: %s is not a static busybox (apt-get install busybox-static)", bb)
	}
	h := &hostTools{busybox: bb, tools: map[string]string{}}
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("vmtest: listing busybox applets: %w", err)
	}
	h.applets = strings.Fields(string(out))
	libs := map[string]bool{}
	for _, name := range e2fsTools() {
		p, err := lookSbin(name)
		if err != nil {
			return nil, fmt.Errorf("vmtest: %s not found (apt-get install e2fsprogs): %w", name, err)
		}
		h.tools[name] = p
		deps, err := sharedLibs(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, l := range deps {
			libs[l] = true
		}
	}
	for l := range libs {
		h.libs = append(h.libs, l)
	}
	sort.Strings(h.libs)
	return h, nil
}

// lookSbin finds a system binary on PATH or in the sbin directories, which
// a non-root PATH may lack.
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// isDynamic reports whether the ELF file at path has a program
// interpreter, that is, needs the dynamic loader.
func isDynamic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// sharedLibs runs ldd on bin and returns the absolute paths it loads,
// the dynamic loader included.
func sharedLibs(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("vmtest: ldd %s: %w", bin, err)
	}
	return parseLdd(out)
}

// parseLdd extracts absolute library paths from ldd's output. Lines look
// like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
// "/lib64/ld-linux-x86-64.so.2 (0x...)" or "linux-vdso.so.1 (0x...)" (no
// file: skipped). A library ldd could not find is an error.
func parseLdd(out []byte) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && f[2] == "not":
			return nil, fmt.Errorf("vmtest: ldd: %s not found", f[0])
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

// image is what goes into one initramfs.
type image struct {
	tools   *hostTools
	assets  *Assets
	modules []Module // boot modules and Config.Modules, dependencies first
	boot    []Module // the subset /init loads
	cfg     Config
}

// write writes the gzip-compressed initramfs to w.
func (im *image) write(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("vmtest: gzip: %w", err)
	}
	a := &archive{c: newCPIOWriter(zw), dirs: map[string]bool{}}
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/mnt", "/root", "/etc", "/var"} {
		a.mkdirAll(d)
	}
	if err := im.addTools(a); err != nil {
		return err
	}
	if err := im.addModules(a); err != nil {
		return err
	}
	for _, guest := range sortedKeys(im.cfg.Binaries) {
		if err := a.copyFile(guest, im.cfg.Binaries[guest], 0o755); err != nil {
			return err
		}
	}
	a.file(guestUserInit, 0o755, []byte(im.cfg.Init))
	a.file("/init", 0o755, []byte(im.initScript()))
	if err := a.c.close(); err != nil {
		return fmt.Errorf("vmtest: writing initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("vmtest: writing initramfs: %w", err)
	}
	return nil
}

// addTools adds busybox with its applet links, and e2fsprogs with their
// libraries at their host paths.
func (im *image) addTools(a *archive) error {
	t := im.tools
	if err := a.copyFile(guestBusybox, t.busybox, 0o755); err != nil {
		return err
	}
	own := map[string]bool{"mkfs.ext4": true}
	for name := range t.tools {
		own[name] = true
	}
	for _, app := range t.applets {
		if p := "/" + strings.TrimPrefix(app, "/"); p != guestBusybox && !own[path.Base(p)] {
			a.symlink(p, guestBusybox)
		}
	}
	for _, name := range sortedKeys(t.tools) {
		if err := a.copyFile("/usr/sbin/"+name, t.tools[name], 0o755); err != nil {
			return err
		}
	}
	a.symlink("/usr/sbin/mkfs.ext4", "mke2fs")
	for _, lib := range t.libs {
		if err := a.copyFile(lib, lib, 0o755); err != nil {
			return err
		}
	}
	if b, err := os.ReadFile("/etc/mke2fs.conf"); err == nil {
		a.file("/etc/mke2fs.conf", 0o644, b)
	}
	return nil
}

// addModules adds the modules under /lib/modules/RELEASE with a
// modules.dep, so both insmod and the guest's modprobe find them.
func (im *image) addModules(a *archive) error {
	dir := "/lib/modules/" + im.assets.Release
	for _, m := range im.modules {
		if err := a.copyFile(dir+"/"+m.Path, filepath.Join(im.assets.ModulesDir, m.Path), 0o644); err != nil {
			return err
		}
	}
	a.file(dir+"/modules.dep", 0o644, modulesDep(im.modules))
	return nil
}

// libDirs returns the guest directories holding shared objects.
func (im *image) libDirs() []string {
	seen := map[string]bool{}
	var dirs []string
	for _, l := range im.tools.libs {
		if d := path.Dir(l); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// initScript renders /init: mount the pseudo filesystems, load the boot
// modules, configure eth0 like qemu's user network expects, silence the
// kernel on the console, run the user script between markers, print the
// end of the kernel log and the exit status, and power off.
func (im *image) initScript() string {
	var b strings.Builder
	fmt.Fprintf(&b, `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export LD_LIBRARY_PATH=%s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
`, strings.Join(im.libDirs(), ":"))
	for _, m := range im.boot {
		fmt.Fprintf(&b, "insmod /lib/modules/%s/%s || echo 'vmtest: insmod %s failed'\n", im.assets.Release, m.Path, m.Name)
	}
	fmt.Fprintf(&b, `ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2 || echo 'vmtest: network setup failed'
echo 1 > /proc/sys/kernel/printk
cd /tmp
echo
echo %s
/bin/sh %s </dev/null 2>&1
code=$?
echo %s
dmesg | tail -n %d
echo "%s $code"
sync
poweroff -f
`, markBegin, guestUserInit, markDmesg, dmesgLines, markExit)
	return b.String()
}

// dmesgLines is how much of the kernel log /init prints after the script.
const dmesgLines = 60

// archive adds files to a cpio archive, creating parent directories once.
type archive struct {
	c    *cpioWriter
	dirs map[string]bool
}

func (a *archive) mkdirAll(dir string) {
	if dir == "/" || dir == "." || a.dirs[dir] {
		return
	}
	a.mkdirAll(path.Dir(dir))
	a.dirs[dir] = true
	a.c.dir(dir, 0o755)
}

func (a *archive) file(name string, perm uint32, data []byte) {
	a.mkdirAll(path.Dir(name))
	a.c.file(name, perm, data)
}

func (a *archive) symlink(name, target string) {
	a.mkdirAll(path.Dir(name))
	a.c.symlink(name, target)
}

// copyFile adds the host file src (symlinks followed) as name.
func (a *archive) copyFile(name, src string, perm uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("vmtest: adding %s to the initramfs: %w", name, err)
	}
	a.file(name, perm, b)
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
