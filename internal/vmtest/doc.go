// Package vmtest boots a throwaway Linux VM under qemu with TCG (software
// emulation) to test what needs a kernel the host does not have, such as
// the nbd driver: Run builds an initramfs, boots it, runs a shell script
// as the guest's init and returns the serial console.
//
// # What it owns
//
// The initramfs: busybox-static with its applets, the host's mke2fs,
// mkfs.ext4, e2fsck and debugfs with the shared objects ldd lists, the
// virtio-net modules (loaded at boot) and any Config.Modules (with their
// dependencies and a modules.dep, for modprobe), Config.Binaries, and an
// /init that sets the guest up, runs Config.Init between marker lines,
// prints "VMTEST-EXIT <status>" and powers off. It writes the cpio
// archive itself ("newc", gzip). BuildStatic builds static Go binaries
// for the guest.
//
// # What it does not own
//
// The kernel: Debian's linux-image-6.1.*-cloud-amd64, which `make
// vm-assets` downloads and unpacks into $BASALT_VM_ASSETS (default
// $HOME/.cache/basalt-vm); Run fails with an error wrapping ErrNoAssets,
// naming that target, when it is missing. qemu, busybox-static, e2fsprogs
// and cpio come from Debian packages (make system-deps); a missing one is
// an error, never a reason to skip. The guest has no persistent disk and
// no state survives a run.
//
// # Concurrency and I/O
//
// Run blocks until the guest powers off, ctx ends or Config.Timeout
// passes (then qemu is killed). Separate Runs are independent and may
// run in parallel; each uses its own temporary directory and qemu user
// network. Run reads the assets and host binaries, writes the initramfs
// to a work directory and runs qemu-system-x86_64, ldd and busybox as
// subprocesses.
package vmtest
