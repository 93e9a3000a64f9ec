package client

import (
	"context"
	"io"
)

// ReaderAt returns an io.ReaderAt that reads v with ctx. Unlike
// Volume.ReadAt, it follows io.ReaderAt at the end of the volume: a read
// that reaches past Size returns the bytes before Size and io.EOF.
func (v *Volume) ReaderAt(ctx context.Context) io.ReaderAt {
	return readerAt{ctx: ctx, v: v}
}

// WriterAt returns an io.WriterAt that writes v with ctx.
func (v *Volume) WriterAt(ctx context.Context) io.WriterAt {
	return writerAt{ctx: ctx, v: v}
}

type readerAt struct {
	ctx context.Context
	v   *Volume
}

var _ io.ReaderAt = readerAt{}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	size := r.v.Size()
	if off < 0 || off+int64(len(p)) <= size {
		return r.v.ReadAt(r.ctx, p, off)
	}
	if off >= size {
		return 0, io.EOF
	}
	n, err := r.v.ReadAt(r.ctx, p[:size-off], off)
	if err == nil {
		err = io.EOF
	}
	return n, err
}

type writerAt struct {
	ctx context.Context
	v   *Volume
}

var _ io.WriterAt = writerAt{}

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	return w.v.WriteAt(w.ctx, p, off)
}
