package raft

import "encoding/binary"

// Key layout of the host's Pebble DB. All integers are big-endian so keys of
// one group sort together and log entries sort by index.
//
//	'r' group                  -> registry record (group exists on this host)
//	'g' group 'h'              -> HardState
//	'g' group 'c'              -> applied ConfState (SnapshotMetadata: index = conf index)
//	'g' group 't'              -> truncated state (SnapshotMetadata: last index/term not in the log)
//	'g' group 'p'              -> pending snapshot restore (SnapshotMetadata of a staged snapshot)
//	'g' group 'l' index        -> log entry
//	'i'                        -> host incarnation (bumped at every open)
const (
	prefixRegistry = 'r'
	prefixGroup    = 'g'
	suffixHard     = 'h'
	suffixConf     = 'c'
	suffixTrunc    = 't'
	suffixPending  = 'p'
	suffixLog      = 'l'
)

var incarnationKey = []byte{'i'}

func registryKey(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixRegistry}, group)
}

func groupPrefix(group uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixGroup}, group)
}

func groupKey(group uint64, suffix byte) []byte {
	return append(groupPrefix(group), suffix)
}

func logKey(group, index uint64) []byte {
	return binary.BigEndian.AppendUint64(groupKey(group, suffixLog), index)
}

func registryGroup(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[1:9])
}

func logKeyIndex(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(key)-8:])
}
