package pebbleutil_test

import (
	"bytes"
	"testing"

	"basalt/internal/pebbleutil"
)

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte("g"), []byte("h")},
		{[]byte{1, 0xff}, []byte{2}},
		{[]byte{0xff, 0xff}, nil},
	} {
		if got := pebbleutil.PrefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
