package vmtest

import (
	"fmt"
	"io"
	"strings"
)

// newc mode bits (the st_mode file types).
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
)

// cpioWriter writes a "newc" (SVR4, no CRC) cpio archive, the format the
// kernel unpacks as an initramfs. Every entry is owned by root with mtime
// 0, so an archive depends only on its contents.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

func newCPIOWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

// dir adds a directory.
func (c *cpioWriter) dir(name string, perm uint32) {
	c.entry(name, modeDir|perm, 2, nil)
}

// file adds a regular file.
func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, modeRegular|perm, 1, data)
}

// symlink adds a symbolic link to target.
func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, modeSymlink|0o777, 1, []byte(target))
}

// close writes the trailer and returns the first error of any write.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 1, nil)
	return c.err
}

// entry writes one header, name and body, each padded to 4 bytes.
func (c *cpioWriter) entry(name string, mode, nlink uint32, data []byte) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.write(make([]byte, pad4(len(hdr)+len(name)+1)))
	c.write(data)
	c.write(make([]byte, pad4(len(data))))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil && len(b) > 0 {
		_, c.err = c.w.Write(b)
	}
}

// pad4 returns how many bytes bring n to a multiple of 4.
func pad4(n int) int { return (4 - n%4) % 4 }
