package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config describes one VM run.
type Config struct {
	// Init is the shell script busybox sh runs once the guest is set up:
	// /proc, /sys and devtmpfs mounted, tmpfs on /tmp (the working
	// directory), the boot modules loaded, lo up, eth0 up as 10.0.2.15/24
	// with gateway 10.0.2.2 (the host; qemu's user network forwards the
	// guest's 10.0.2.2:PORT to the host's 127.0.0.1:PORT), and the kernel's
	// console log level lowered so kernel messages do not interleave with
	// the script's output (Result.Console ends with the kernel log's
	// tail). Its stdout and stderr become Result.Output and its exit status
	// Result.ExitCode; stdin is /dev/null. PATH holds busybox's applets,
	// mke2fs, mkfs.ext4, e2fsck and debugfs. Required.
	Init string
	// Binaries maps guest paths to host files copied there, executable
	// (static binaries: the guest has only the libraries e2fsprogs needs).
	// BuildStatic makes Go ones.
	Binaries map[string]string
	// Modules are more kernel modules (by name, such as "nbd") put in the
	// guest's /lib/modules with their dependencies and a modules.dep, so
	// `modprobe NAME` works there. They are not loaded. The virtio-net
	// modules are always present and loaded.
	Modules []string
	// MemoryMiB is the guest's memory. Zero means 512.
	MemoryMiB int
	// CPUs is the number of virtual CPUs. Zero means 1 (TCG runs each on a
	// host thread; more rarely helps on small hosts).
	CPUs int
	// Timeout bounds the whole run, boot to power-off; qemu is killed when
	// it passes or ctx ends. Zero means 3 minutes.
	Timeout time.Duration
	// QEMUArgs are appended to qemu's command line (extra devices, -nic
	// hostfwd=..., ...).
	QEMUArgs []string
	// Console, when not nil, receives the console as it arrives (for
	// example a writer to t.Log), in addition to Result.Console.
	Console io.Writer
	// Netns, when set, runs qemu inside that network namespace (with `ip
	// netns exec`), so the guest's 10.0.2.2:PORT reaches that namespace's
	// 127.0.0.1:PORT instead of the host's. Default empty: the host's.
	Netns string
	// AssetsDir is where the kernel assets are. Empty means AssetsDir().
	AssetsDir string
	// WorkDir holds the initramfs while the VM runs. Empty means a
	// temporary directory removed afterwards.
	WorkDir string
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.MemoryMiB <= 0 {
		c.MemoryMiB = 512
	}
	if c.CPUs <= 0 {
		c.CPUs = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Minute
	}
	return c
}

// Result is what a run left behind.
type Result struct {
	// Console is everything the guest wrote on its serial console, with
	// carriage returns removed.
	Console string
	// Output is the init script's output: the console between the
	// harness's start and end markers.
	Output string
	// ExitCode is the init script's exit status, or -1 when the guest did
	// not report one.
	ExitCode int
	// Duration is the wall time from starting qemu until it exited.
	Duration time.Duration
	// InitramfsBytes is the size of the compressed initramfs.
	InitramfsBytes int64
}

// ErrNoResult means the VM stopped (or was stopped) before the init script
// reported an exit status.
var ErrNoResult = errors.New("vmtest: the VM ended without reporting the init script's exit status")

// ErrInitFailed means the init script exited with a non-zero status.
var ErrInitFailed = errors.New("vmtest: the init script failed")

// Run boots a VM under qemu-system-x86_64 with TCG (software emulation),
// runs cfg.Init as described in Config, and returns once the guest has
// powered off. The error wraps ErrInitFailed when the script exited
// non-zero, ErrNoResult when it never finished, ErrNoAssets when the
// kernel is missing, and ctx's error when ctx ended or cfg.Timeout passed
// (then qemu is killed). The Result is non-nil whenever qemu was started,
// so a failing test can print its console.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Init == "" {
		return nil, errors.New("vmtest: Config.Init is empty")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("vmtest: qemu not found (apt-get install qemu-system-x86): %w", err)
	}
	im, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	work := cfg.WorkDir
	if work == "" {
		if work, err = os.MkdirTemp("", "vmtest-"); err != nil {
			return nil, fmt.Errorf("vmtest: %w", err)
		}
		defer func() { _ = os.RemoveAll(work) }()
	}
	initrd := filepath.Join(work, "initramfs.cpio.gz")
	size, err := writeImage(im, initrd)
	if err != nil {
		return nil, err
	}
	res, err := boot(ctx, cfg, qemu, im.assets.Kernel, initrd)
	if res != nil {
		res.InitramfsBytes = size
	}
	return res, err
}

// prepare finds the assets and host tools and resolves the modules.
func prepare(ctx context.Context, cfg Config) (*image, error) {
	dir := cfg.AssetsDir
	if dir == "" {
		var err error
		if dir, err = AssetsDir(); err != nil {
			return nil, err
		}
	}
	assets, err := LoadAssets(dir)
	if err != nil {
		return nil, err
	}
	tools, err := findHostTools(ctx)
	if err != nil {
		return nil, err
	}
	boot, err := assets.Resolve(bootModules()...)
	if err != nil {
		return nil, err
	}
	all, err := assets.Resolve(append(bootModules(), cfg.Modules...)...)
	if err != nil {
		return nil, err
	}
	return &image{tools: tools, assets: assets, modules: all, boot: boot, cfg: cfg}, nil
}

// writeImage writes the initramfs to path and returns its size.
func writeImage(im *image, path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("vmtest: %w", err)
	}
	if err := im.write(f); err != nil {
		_ = f.Close()
		return 0, err
	}
	st, err := f.Stat()
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return 0, fmt.Errorf("vmtest: writing %s: %w", path, err)
	}
	return st.Size(), nil
}

// qemuArgs returns qemu's command line for kernel and initrd.
func qemuArgs(cfg Config, kernel, initrd string) []string {
	args := []string{
		"-accel", "tcg", "-cpu", "max",
		"-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1",
		"-nic", "user,model=virtio-net-pci",
	}
	return append(args, cfg.QEMUArgs...)
}

// boot runs qemu until the guest powers off and reads the result.
func boot(ctx context.Context, cfg Config, qemu, kernel, initrd string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var console, stderr bytes.Buffer
	name, args := qemu, qemuArgs(cfg, kernel, initrd)
	if cfg.Netns != "" {
		name, args = "ip", append([]string{"netns", "exec", cfg.Netns, qemu}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &console
	if cfg.Console != nil {
		cmd.Stdout = io.MultiWriter(&console, cfg.Console)
	}
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res := &Result{Console: strings.ReplaceAll(console.String(), "\r", ""), Duration: time.Since(start)}
	var ok bool
	res.Output, res.ExitCode, ok = parseConsole(res.Console)
	switch {
	case ok && res.ExitCode != 0:
		return res, fmt.Errorf("%w: exit status %d", ErrInitFailed, res.ExitCode)
	case ok:
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("vmtest: VM still running after %v, killed: %w", res.Duration.Round(time.Millisecond), ctx.Err())
	case runErr != nil:
		return res, fmt.Errorf("%w: qemu: %w; stderr: %s", ErrNoResult, runErr, strings.TrimSpace(stderr.String()))
	}
	return res, fmt.Errorf("%w (qemu stderr: %s)", ErrNoResult, strings.TrimSpace(stderr.String()))
}

// parseConsole finds the init script's output and exit status in the
// console. ok is false when the exit marker is missing.
func parseConsole(console string) (output string, code int, ok bool) {
	lines := strings.SplitAfter(console, "\n")
	begin, end := -1, len(lines)
	code = -1
	for i, l := range lines {
		t := strings.TrimRight(l, "\n")
		switch {
		case strings.HasSuffix(t, markBegin) && begin < 0: // firmware may leave escapes on the line
			begin = i
		case t == markDmesg && begin >= 0 && end == len(lines):
			end = i
		case strings.HasPrefix(t, markExit+" "):
			if n, err := strconv.Atoi(strings.TrimPrefix(t, markExit+" ")); err == nil {
				code, ok = n, true
			}
		}
	}
	if begin >= 0 {
		output = strings.Join(lines[begin+1:end], "")
	}
	return output, code, ok
}

// BuildStatic builds the Go main package pkg (an import path or a
// directory, resolved from the working directory) into out as a static
// linux/amd64 binary (CGO_ENABLED=0, stripped) for a guest. It runs the go
// command on PATH.
func BuildStatic(ctx context.Context, pkg, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("vmtest: go command not found: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vmtest: building %s: %w\n%s", pkg, err, b)
	}
	return nil
}
