package copyset

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is a copyset command's operation.
type Op byte

// Operations.
const (
	OpWrite   Op = 1 // write Data at Offset of Chunk
	OpDiscard Op = 2 // zero Length bytes at Offset of Chunk
	OpDelete  Op = 3 // delete Chunk
)

// ErrBadCommand is returned for a command that cannot be decoded.
var ErrBadCommand = errors.New("copyset: malformed command")

// Command is one replicated chunk operation.
type Command struct {
	Op     Op
	Chunk  uint64
	Offset int64
	Length int64  // OpDiscard only
	Data   []byte // OpWrite only; aliases the encoded entry
}

// Fixed binary layout: op(1) chunk(8) offset(8) length(8) data(...).
const headerLen = 25

// Encode returns the command's log entry payload.
func (c Command) Encode() []byte {
	b := make([]byte, headerLen, headerLen+len(c.Data))
	b[0] = byte(c.Op)
	binary.BigEndian.PutUint64(b[1:], c.Chunk)
	binary.BigEndian.PutUint64(b[9:], uint64(c.Offset))
	n := c.Length
	if c.Op == OpWrite {
		n = int64(len(c.Data))
	}
	binary.BigEndian.PutUint64(b[17:], uint64(n))
	return append(b, c.Data...)
}

// Decode parses an encoded command without copying its data.
func Decode(b []byte) (Command, error) {
	if len(b) < headerLen {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	c := Command{
		Op:     Op(b[0]),
		Chunk:  binary.BigEndian.Uint64(b[1:]),
		Offset: int64(binary.BigEndian.Uint64(b[9:])),
		Length: int64(binary.BigEndian.Uint64(b[17:])),
	}
	switch {
	case c.Op == OpWrite && c.Length == int64(len(b)-headerLen):
		c.Data = b[headerLen:]
	case (c.Op == OpDiscard || c.Op == OpDelete) && len(b) == headerLen:
	default:
		return Command{}, fmt.Errorf("%w: op %d with %d payload bytes", ErrBadCommand, c.Op, len(b)-headerLen)
	}
	return c, nil
}
