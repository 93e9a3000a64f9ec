package worker

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"basalt/rss/rsspb"
)

// headerSize is the size of the header before each batch's data in a
// partition file.
const headerSize = 32

// headerMagic starts every batch header ("RSSB" little-endian).
const headerMagic uint32 = 0x42535352

// castagnoli is the CRC-32C table (hardware accelerated on amd64/arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum returns the CRC-32C of data.
func checksum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// entry describes one stored batch: its identity, where it is in the file
// and its checksum. Offset is where its header starts.
type entry struct {
	Map, Attempt, Seq int32
	Offset            int64
	Length            uint32 // of the data, without the header
	CRC               uint32
}

// end returns the offset just past the batch's data.
func (e entry) end() int64 { return e.Offset + headerSize + int64(e.Length) }

// entryOf returns the entry of b (Offset unset).
func entryOf(b *rsspb.Batch) entry {
	return entry{Map: b.GetMapIndex(), Attempt: b.GetAttempt(), Seq: b.GetSeq(), Length: uint32(len(b.GetData())), CRC: b.GetCrc32C()}
}

// appendHeader appends e's 32-byte header: magic, map, attempt, seq,
// length, crc (little-endian, 4 bytes each), 8 reserved zero bytes.
func appendHeader(buf []byte, e entry) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, headerMagic)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(e.Map))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(e.Attempt))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(e.Seq))
	buf = binary.LittleEndian.AppendUint32(buf, e.Length)
	buf = binary.LittleEndian.AppendUint32(buf, e.CRC)
	return append(buf, 0, 0, 0, 0, 0, 0, 0, 0)
}

// checkHeader reports how the header h differs from e, or "" if it
// matches.
func checkHeader(h []byte, e entry) string {
	le := binary.LittleEndian
	switch {
	case le.Uint32(h) != headerMagic:
		return fmt.Sprintf("bad header magic %#x", le.Uint32(h))
	case int32(le.Uint32(h[4:])) != e.Map || int32(le.Uint32(h[8:])) != e.Attempt || int32(le.Uint32(h[12:])) != e.Seq:
		return fmt.Sprintf("header names map %d attempt %d seq %d, index says map %d attempt %d seq %d",
			int32(le.Uint32(h[4:])), int32(le.Uint32(h[8:])), int32(le.Uint32(h[12:])), e.Map, e.Attempt, e.Seq)
	case le.Uint32(h[16:]) != e.Length || le.Uint32(h[20:]) != e.CRC:
		return fmt.Sprintf("header says length %d crc %#x, index says length %d crc %#x",
			le.Uint32(h[16:]), le.Uint32(h[20:]), e.Length, e.CRC)
	}
	return ""
}

// indexVersion is the first byte of an encoded index.
const indexVersion = 1

// entrySize is the encoded size of one entry.
const entrySize = 28

// encodeIndex encodes a committed partition file's entries: version,
// count (uint32), then per entry map, attempt, seq, offset (8 bytes),
// length, crc, all little-endian.
func encodeIndex(es []entry) []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, 5+len(es)*entrySize)
	b = le.AppendUint32(append(b, indexVersion), uint32(len(es)))
	for _, e := range es {
		b = le.AppendUint32(b, uint32(e.Map))
		b = le.AppendUint32(b, uint32(e.Attempt))
		b = le.AppendUint32(b, uint32(e.Seq))
		b = le.AppendUint64(b, uint64(e.Offset))
		b = le.AppendUint32(b, e.Length)
		b = le.AppendUint32(b, e.CRC)
	}
	return b
}

// decodeIndex decodes what encodeIndex encoded.
func decodeIndex(b []byte) ([]entry, error) {
	le := binary.LittleEndian
	if len(b) < 5 || b[0] != indexVersion {
		return nil, fmt.Errorf("index of %d bytes: unknown version or truncated", len(b))
	}
	n := int(le.Uint32(b[1:]))
	if len(b) != 5+n*entrySize {
		return nil, fmt.Errorf("index of %d entries has %d bytes", n, len(b))
	}
	es := make([]entry, n)
	for i := range es {
		p := b[5+i*entrySize:]
		es[i] = entry{Map: int32(le.Uint32(p)), Attempt: int32(le.Uint32(p[4:])), Seq: int32(le.Uint32(p[8:])),
			Offset: int64(le.Uint64(p[12:])), Length: le.Uint32(p[20:]), CRC: le.Uint32(p[24:])}
	}
	return es, nil
}

// shuffleKey names a shuffle of an application.
type shuffleKey struct {
	app     string
	shuffle int32
}

// partKey names one epoch of one partition: one partition file.
type partKey struct {
	shuffleKey
	partition, epoch int32
}

func (k partKey) String() string {
	return fmt.Sprintf("app %s shuffle %d partition %d epoch %d", k.app, k.shuffle, k.partition, k.epoch)
}

// Pebble keys: 'p' for a committed partition file's index, 's' for a
// committed shuffle's marker; then the application id prefixed by its
// length (one byte), then big-endian shuffle, partition and epoch, so an
// application's and a shuffle's keys are contiguous ranges.
const (
	indexKeyTag   = 'p'
	shuffleKeyTag = 's'
)

// appPrefix returns the key prefix of an application's keys under tag.
func appPrefix(tag byte, app string) []byte {
	return append([]byte{tag, byte(len(app))}, app...)
}

// shufflePrefix returns the key prefix of a shuffle's keys under tag.
func shufflePrefix(tag byte, k shuffleKey) []byte {
	return binary.BigEndian.AppendUint32(appPrefix(tag, k.app), uint32(k.shuffle))
}

// indexKey returns the Pebble key of a partition file's index.
func indexKey(k partKey) []byte {
	b := binary.BigEndian.AppendUint32(shufflePrefix(indexKeyTag, k.shuffleKey), uint32(k.partition))
	return binary.BigEndian.AppendUint32(b, uint32(k.epoch))
}

// parseIndexKey decodes indexKey; ok is false for any other key.
func parseIndexKey(b []byte) (k partKey, ok bool) {
	if len(b) < 2 || b[0] != indexKeyTag || len(b) != 2+int(b[1])+12 {
		return partKey{}, false
	}
	n := int(b[1])
	be := binary.BigEndian
	k.app = string(b[2 : 2+n])
	k.shuffle, k.partition, k.epoch = int32(be.Uint32(b[2+n:])), int32(be.Uint32(b[6+n:])), int32(be.Uint32(b[10+n:]))
	return k, true
}

// parseShuffleKey decodes shufflePrefix(shuffleKeyTag, ...).
func parseShuffleKey(b []byte) (k shuffleKey, ok bool) {
	if len(b) < 2 || b[0] != shuffleKeyTag || len(b) != 2+int(b[1])+4 {
		return shuffleKey{}, false
	}
	n := int(b[1])
	return shuffleKey{app: string(b[2 : 2+n]), shuffle: int32(binary.BigEndian.Uint32(b[2+n:]))}, true
}

// maxAppLen is the longest application id.
const maxAppLen = 200

// checkApp validates an application id: it names a directory, so it is 1
// to 200 characters of [A-Za-z0-9._-] and does not start with a dot.
func checkApp(app string) error {
	if app == "" || len(app) > maxAppLen || app[0] == '.' {
		return fmt.Errorf("%w: application id %q: want 1 to %d characters, not starting with a dot", ErrInvalidArgument, app, maxAppLen)
	}
	for _, c := range []byte(app) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: application id %q: only [A-Za-z0-9._-] allowed", ErrInvalidArgument, app)
		}
	}
	return nil
}

// appsDir is the directory under each data directory holding the
// applications' directories.
const appsDir = "apps"

// dataSuffix ends every partition file name.
const dataSuffix = ".data"

// fileName returns the name of a partition file in its shuffle directory.
func fileName(k partKey) string {
	return strconv.Itoa(int(k.partition)) + "-" + strconv.Itoa(int(k.epoch)) + dataSuffix
}

// parseFileName decodes fileName; ok is false for any other name.
func parseFileName(name string) (partition, epoch int32, ok bool) {
	base, found := strings.CutSuffix(name, dataSuffix)
	if !found {
		return 0, 0, false
	}
	ps, es, found := strings.Cut(base, "-")
	p, perr := strconv.ParseInt(ps, 10, 32)
	e, eerr := strconv.ParseInt(es, 10, 32)
	if !found || perr != nil || eerr != nil || p < 0 || e < 0 {
		return 0, 0, false
	}
	return int32(p), int32(e), true
}
