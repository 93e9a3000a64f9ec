package client

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// updateVectors rewrites testdata/batches.json with this client's encodings.
var updateVectors = flag.Bool("update", false, "rewrite testdata/batches.json with the Go client's encodings")

// batchVectors is testdata/batches.json, the test vectors the Go client
// and the Spark plugin's Java client (rss/spark, CodecVectorsTest) share:
// the records of one batch, and that batch as each client encoded it with
// each codec. Each side must decode every batch to exactly the records.
type batchVectors struct {
	Comment string            `json:"comment"`
	Records []string          `json:"records"` // hex
	Go      map[string]string `json:"go"`      // codec name -> batch data, hex
	Java    map[string]string `json:"java"`    // written by the Java test with -Dbasalt.updateVectors=true
}

var codecNames = map[string]Codec{"none": CodecNone, "zstd": CodecZstd, "lz4": CodecLZ4}

// vectorRecords are the records of the shared batch: empty, short,
// repetitive (compressible) and pseudo-random (not).
func vectorRecords() [][]byte {
	random := make([]byte, 300)
	x := uint32(1)
	for i := range random {
		x = x*1664525 + 1013904223
		random[i] = byte(x >> 24)
	}
	return [][]byte{{}, []byte("hello, shuffle"), bytes.Repeat([]byte("basalt-"), 700), random}
}

// TestBatchVectors decodes the batches both clients encoded (the Java
// client's too: the formats must stay byte-compatible).
func TestBatchVectors(t *testing.T) {
	path := filepath.Join("testdata", "batches.json")
	var v batchVectors
	b, err := os.ReadFile(path)
	if err != nil && !*updateVectors {
		t.Fatal(err)
	}
	if err == nil {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
	}
	recs := vectorRecords()
	var framed []byte
	for _, r := range recs {
		framed = appendRecord(framed, r)
	}
	if *updateVectors {
		v.Comment = "Shared codec test vectors: rss/client (go test -run TestBatchVectors -update) and rss/spark (CodecVectorsTest, -Dbasalt.updateVectors=true) write their encodings; both decode all."
		v.Records, v.Go = nil, map[string]string{}
		for _, r := range recs {
			v.Records = append(v.Records, hex.EncodeToString(r))
		}
		var c codecs
		defer c.close()
		for name, codec := range codecNames {
			data, err := c.encode(codec, framed)
			if err != nil {
				t.Fatal(err)
			}
			v.Go[name] = hex.EncodeToString(data)
		}
		out, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range v.Records {
		if r != hex.EncodeToString(recs[i]) {
			t.Fatalf("record %d of %s differs from vectorRecords(); run with -update", i, path)
		}
	}
	if len(v.Java) != len(codecNames) && !*updateVectors {
		t.Errorf("%s has %d Java batches, want one per codec (%d)", path, len(v.Java), len(codecNames))
	}
	for side, batches := range map[string]map[string]string{"go": v.Go, "java": v.Java} {
		for name, h := range batches {
			data, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			var c codecs
			got, err := c.decode(data)
			c.close()
			if err != nil || !bytes.Equal(got, framed) {
				t.Errorf("%s batch %s: decoded %d bytes (%v), want the %d framed records", side, name, len(got), err, len(framed))
			}
			if side == "java" && name != "none" && codecNames[name] != Codec(data[0]) {
				t.Errorf("java batch %s has codec byte %d", name, data[0])
			}
		}
	}
}
