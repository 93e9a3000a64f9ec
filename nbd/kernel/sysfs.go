package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// readSysfs fills d's Backend, PID and SizeBytes from sysRoot/nbdN (and
// procRoot, see processOf). Missing files leave the fields zero.
func readSysfs(sysRoot, procRoot string, d *Device) error {
	dir := filepath.Join(sysRoot, fmt.Sprintf("nbd%d", d.Index))
	backend, err := readAttr(dir, "backend")
	if err != nil {
		return err
	}
	pid, err := readAttr(dir, "pid")
	if err != nil {
		return err
	}
	size, err := readAttr(dir, "size")
	if err != nil {
		return err
	}
	d.Backend = backend
	if pid != "" {
		if d.PID, err = strconv.Atoi(pid); err != nil {
			return fmt.Errorf("parsing %s/pid: %w", dir, err)
		}
		d.PID = processOf(procRoot, d.PID)
	}
	if size != "" {
		sectors, err := strconv.ParseUint(size, 10, 64)
		if err != nil {
			return fmt.Errorf("parsing %s/size: %w", dir, err)
		}
		d.SizeBytes = sectors * 512
	}
	return nil
}

// readAttr returns a sysfs attribute without its trailing newline, or ""
// when it does not exist.
func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading nbd sysfs attribute: %w", err)
	}
	return string(bytes.TrimRight(b, "\n")), nil
}

// processOf returns the process (thread group) of task id tid, from
// procRoot/TID/status, or tid itself when that cannot be read. The nbd
// driver records the task that sent NBD_CMD_CONNECT: in a multi-threaded
// process such as a Go program that is a thread, not the process.
func processOf(procRoot string, tid int) int {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(tid), "status"))
	if err != nil {
		return tid
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("Tgid:")); ok {
			if pid, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil {
				return pid
			}
		}
	}
	return tid
}
