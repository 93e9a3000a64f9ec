package client

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc returns the CRC-32C of data.
func crc(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// appendRecord frames one record.
func appendRecord(buf, rec []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(rec)))
	return append(buf, rec...)
}

// codecs holds the coders of one Writer or Reader.
type codecs struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
	lz4 lz4.Compressor
}

// encode returns a batch's data: the codec byte and the framed records.
func (c *codecs) encode(codec Codec, records []byte) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append([]byte{byte(CodecNone)}, records...), nil
	case CodecZstd:
		if c.enc == nil {
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
			if err != nil {
				return nil, err
			}
			c.enc = enc
		}
		return c.enc.EncodeAll(records, []byte{byte(CodecZstd)}), nil
	case CodecLZ4:
		return c.encodeLZ4(records)
	}
	return nil, fmt.Errorf("%w: unknown codec %d", ErrConfig, codec)
}

// decode returns the framed records of a batch's data.
func (c *codecs) decode(data []byte) ([]byte, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrDataLost)
	}
	switch Codec(data[0]) {
	case CodecNone:
		return data[1:], nil
	case CodecZstd:
		if c.dec == nil {
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, err
			}
			c.dec = dec
		}
		return c.dec.DecodeAll(data[1:], nil)
	case CodecLZ4:
		return decodeLZ4(data[1:])
	}
	return nil, fmt.Errorf("%w: unknown codec byte %d", ErrDataLost, data[0])
}

// close releases the coders.
func (c *codecs) close() {
	if c.enc != nil {
		_ = c.enc.Close()
	}
	if c.dec != nil {
		c.dec.Close()
	}
}

// nextRecord splits the first record off framed records.
func nextRecord(buf []byte) (rec, rest []byte, err error) {
	n, k := binary.Uvarint(buf)
	if k <= 0 || uint64(len(buf)-k) < n {
		return nil, nil, fmt.Errorf("%w: malformed record framing", ErrDataLost)
	}
	return buf[k : k+int(n)], buf[k+int(n):], nil
}

// encodeLZ4 is an LZ4 block with the uncompressed length first (uvarint);
// records LZ4 cannot shrink are stored uncompressed (CodecNone).
func (c *codecs) encodeLZ4(records []byte) ([]byte, error) {
	out := binary.AppendUvarint([]byte{byte(CodecLZ4)}, uint64(len(records)))
	head := len(out)
	out = append(out, make([]byte, lz4.CompressBlockBound(len(records)))...)
	n, err := c.lz4.CompressBlock(records, out[head:])
	if err != nil {
		return nil, fmt.Errorf("compressing a batch with lz4: %w", err)
	}
	if n == 0 || n >= len(records) {
		return append([]byte{byte(CodecNone)}, records...), nil
	}
	return out[:head+n], nil
}

// maxBatchRecords bounds the uncompressed size an LZ4 batch may claim.
const maxBatchRecords = 1 << 30

// decodeLZ4 undoes encodeLZ4.
func decodeLZ4(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > maxBatchRecords {
		return nil, fmt.Errorf("%w: malformed lz4 batch header", ErrDataLost)
	}
	out := make([]byte, n)
	m, err := lz4.UncompressBlock(b[k:], out)
	if err != nil {
		return nil, fmt.Errorf("%w: decoding lz4 batch: %w", ErrDataLost, err)
	}
	if uint64(m) != n {
		return nil, fmt.Errorf("%w: lz4 batch: %d of %d bytes", ErrDataLost, m, n)
	}
	return out, nil
}
