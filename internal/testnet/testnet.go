package testnet

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
)

// Ports come from [lowPort, highPort): below the default ephemeral range
// (net.ipv4.ip_local_port_range 32768 60999) and above the usual fixed
// service ports the tests start (the playground's 9090, 10809, ...).
const (
	lowPort  = 20000
	highPort = 32768
)

// next counts the ports this process has tried. It is the package's one
// piece of state, which it needs: every test of a binary must get ports
// no other test of it has.
var next atomic.Uint32

// start is where this process's sequence begins: a stretch of its own
// (by process id) so the test binaries of different packages, which run
// at the same time, rarely meet.
func start() uint32 { return uint32(os.Getpid()) * 7919 % (highPort - lowPort) }

// FreeAddr returns a 127.0.0.1:port whose TCP and UDP ports were both
// free when it returned, and that no other FreeAddr caller of this
// process gets. It fails the test when it finds none.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range highPort - lowPort {
		port := lowPort + int((start()+next.Add(1))%(highPort-lowPort))
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := probe(addr); err == nil {
			return addr
		}
	}
	t.Fatalf("testnet: no free port in [%d, %d)", lowPort, highPort)
	return ""
}

// probe binds addr on TCP and UDP and releases both.
func probe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("probing tcp %s: %w", addr, err)
	}
	defer l.Close()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("probing udp %s: %w", addr, err)
	}
	return c.Close()
}
