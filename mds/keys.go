package mds

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Key layout of the metadata store. Values are protobuf records from
// proto/basalt/mds/v1/state.proto (package mdspb); integers in keys are
// big-endian so that records sort by ID.
//
//	'm'                      -> MetaRecord (geometry and ID counters)
//	's' chunkserver          -> ChunkserverRecord
//	'p'                      -> PoolRecord (present once the pool exists)
//	'c' copyset              -> CopysetRecord
//	'v' name                 -> VolumeRecord
//	'g' volume index         -> SegmentRecord (volume is the volume's ID)
//	'w' volume               -> SessionRecord (the volume's writer session)
//	'd' copyset chunk        -> empty (a chunk of a deleted volume, to delete)
const (
	prefixChunkserver = 's'
	prefixCopyset     = 'c'
	prefixVolume      = 'v'
	prefixSegment     = 'g'
	prefixSession     = 'w'
	prefixDeletion    = 'd'
)

var (
	metaKey = []byte{'m'}
	poolKey = []byte{'p'}
)

// idKey returns prefix followed by the big-endian ids.
func idKey(prefix byte, ids ...uint64) []byte {
	k := make([]byte, 1, 1+8*len(ids))
	k[0] = prefix
	for _, id := range ids {
		k = binary.BigEndian.AppendUint64(k, id)
	}
	return k
}

func volumeKey(name string) []byte { return append([]byte{prefixVolume}, name...) }

// keyID returns the i-th big-endian ID of a key built by idKey.
func keyID(key []byte, i int) (uint64, error) {
	if len(key) < 1+8*(i+1) {
		return 0, fmt.Errorf("decoding key %x: too short", key)
	}
	return binary.BigEndian.Uint64(key[1+8*i:]), nil
}

// encode marshals a record; records are plain messages, so it cannot fail
// short of a broken invariant.
func encode(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("mds: encoding %T: %v", m, err))
	}
	return b
}

// decode unmarshals value into m, naming key in the error.
func decode(key, value []byte, m proto.Message) error {
	if err := proto.Unmarshal(value, m); err != nil {
		return fmt.Errorf("decoding record %x: %w", key, err)
	}
	return nil
}
