package testnet_test

import (
	"net"
	"strconv"
	"testing"

	"basalt/internal/testnet"
)

// TestFreeAddr: addresses are distinct, on loopback, outside the
// ephemeral range, and bindable on TCP and UDP; a port already taken is
// skipped.
func TestFreeAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr := testnet.FreeAddr(t)
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("tcp %s: %v", addr, err)
		}
		// Hold it: the next calls must not return it.
		t.Cleanup(func() { _ = l.Close() })
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("udp %s: %v", addr, err)
		}
		_ = c.Close()
		host, p, _ := net.SplitHostPort(addr)
		if port, err := strconv.Atoi(p); err != nil || host != "127.0.0.1" || port >= 32768 {
			t.Fatalf("%s: want 127.0.0.1 below port 32768", addr)
		}
	}
}
