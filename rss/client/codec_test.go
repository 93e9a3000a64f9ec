package client

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestBatchRoundTrip frames records, encodes them with each codec and
// decodes them back; a damaged frame is ErrDataLost, not a short read.
func TestBatchRoundTrip(t *testing.T) {
	var recs [][]byte
	var framed []byte
	for i := range 1000 {
		rec := bytes.Repeat(fmt.Appendf(nil, "r%d-", i), i%7)
		recs = append(recs, rec)
		framed = appendRecord(framed, rec)
	}
	for _, codec := range []Codec{CodecNone, CodecZstd, CodecLZ4} {
		var c codecs
		data, err := c.encode(codec, framed)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.decode(data)
		if err != nil {
			t.Fatalf("codec %d: %v", codec, err)
		}
		for i, want := range recs {
			var rec []byte
			if rec, got, err = nextRecord(got); err != nil || !bytes.Equal(rec, want) {
				t.Fatalf("codec %d record %d: %q, %v; want %q", codec, i, rec, err, want)
			}
		}
		if len(got) != 0 {
			t.Fatalf("codec %d: %d trailing bytes", codec, len(got))
		}
		if codec != CodecNone && len(data) >= len(framed) {
			t.Errorf("codec %d did not compress repetitive records: %d >= %d bytes", codec, len(data), len(framed))
		}
		c.close()
	}
	if _, _, err := nextRecord(appendRecord(nil, []byte("hello"))[:3]); !errors.Is(err, ErrDataLost) {
		t.Fatalf("truncated frame: %v, want ErrDataLost", err)
	}
	var c codecs
	if _, err := c.decode([]byte{byte(CodecLZ4), 200, 1, 7}); !errors.Is(err, ErrDataLost) {
		t.Fatalf("damaged lz4 batch: %v, want ErrDataLost", err)
	}
	if data, err := c.encode(CodecLZ4, []byte{1, 2, 3}); err != nil || Codec(data[0]) != CodecNone {
		t.Fatalf("incompressible lz4 batch: %v, %v; want stored as none", data, err)
	}
	if _, err := c.decode([]byte{9, 1, 2}); !errors.Is(err, ErrDataLost) {
		t.Fatalf("unknown codec byte: %v, want ErrDataLost", err)
	}
	if _, err := c.encode(Codec(9), framed); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown codec: %v, want ErrConfig", err)
	}
}

// TestConfigErrors: required fields are checked before any network call.
func TestConfigErrors(t *testing.T) {
	if _, err := Connect(Config{MasterAddr: "127.0.0.1:1", AppID: "a"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Connect without token: %v", err)
	}
	if _, err := Connect(Config{AppID: "a", Token: "t"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Connect without master: %v", err)
	}
}
