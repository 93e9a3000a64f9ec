package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// conn is a generic netlink socket: one request at a time, each waited for
// until the kernel acks it. Not safe for concurrent use.
type conn struct {
	f   *os.File // non-blocking, in Go's poller, so deadlines work
	seq uint32
}

// dial opens a NETLINK_GENERIC socket bound to a kernel-assigned port.
func dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("opening generic netlink socket: %w", err)
	}
	// Best effort: extended acks carry a reason with some errors, and
	// capped acks keep the request out of error replies.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("binding generic netlink socket: %w", err)
	}
	return &conn{f: os.NewFile(uintptr(fd), "netlink")}, nil
}

func (c *conn) Close() error { return c.f.Close() }

// nextSeq returns a fresh sequence number.
func (c *conn) nextSeq() uint32 {
	c.seq++
	return c.seq
}

// replyTimeout bounds the wait for the kernel's reply once a request is
// sent. The kernel handles generic netlink requests synchronously inside
// the send, so the reply is already queued when the wait starts; the bound
// only guards against the impossible.
const replyTimeout = 10 * time.Second

// execute sends req (whose sequence number is seq) and returns the
// replies to it, up to the kernel's ack. A refusal is a *NetlinkError.
//
// ctx is checked only before sending: the kernel runs the request inside
// the send system call, which cannot be interrupted, and once it has run
// its effect (a connected device) must be reported, not abandoned.
func (c *conn) execute(ctx context.Context, req []byte, seq uint32) ([]message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.roundTrip(req, seq)
}

// roundTrip sends req and reads replies until the ack of seq.
func (c *conn) roundTrip(req []byte, seq uint32) ([]message, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	var sendErr error
	if err := rc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(sendErr, unix.EAGAIN)
	}); err != nil {
		return nil, fmt.Errorf("sending netlink request: %w", err)
	}
	if sendErr != nil {
		return nil, fmt.Errorf("sending netlink request: %w", sendErr)
	}
	if err := c.f.SetReadDeadline(time.Now().Add(replyTimeout)); err != nil {
		return nil, fmt.Errorf("setting netlink deadline: %w", err)
	}
	var replies []message
	for {
		buf, err := c.receive(rc)
		if err != nil {
			return nil, err
		}
		msgs, err := parseMessages(buf)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch {
			case m.seq != seq:
				continue // a stale reply to an abandoned request
			case m.typ == nlmsgError:
				return replies, ackError(m)
			case m.typ == nlmsgDone:
				return replies, nil
			default:
				replies = append(replies, m)
			}
		}
	}
}

// receive reads one datagram, sized by peeking first so nothing is
// truncated.
func (c *conn) receive(rc interface {
	Read(func(uintptr) bool) error
}) ([]byte, error) {
	buf := make([]byte, os.Getpagesize())
	var n int
	var recvErr error
	read := func(flags int) error {
		return rc.Read(func(fd uintptr) bool {
			n, _, recvErr = unix.Recvfrom(int(fd), buf, flags)
			return !errors.Is(recvErr, unix.EAGAIN)
		})
	}
	if err := read(unix.MSG_PEEK | unix.MSG_TRUNC); err != nil {
		return nil, fmt.Errorf("receiving netlink reply: %w", err)
	}
	if recvErr != nil {
		return nil, fmt.Errorf("receiving netlink reply: %w", recvErr)
	}
	if n > len(buf) {
		buf = make([]byte, n)
	}
	if err := read(0); err != nil {
		return nil, fmt.Errorf("receiving netlink reply: %w", err)
	}
	if recvErr != nil {
		return nil, fmt.Errorf("receiving netlink reply: %w", recvErr)
	}
	return buf[:n], nil
}

// family resolves the nbd generic netlink family's id. A kernel without the
// family gives an error wrapping ErrNoDriver.
func (c *conn) family(ctx context.Context) (uint16, error) {
	seq := c.nextSeq()
	msgs, err := c.execute(ctx, familyRequest(seq), seq)
	if errors.Is(err, unix.ENOENT) {
		return 0, ErrNoDriver
	}
	if err != nil {
		return 0, fmt.Errorf("resolving generic netlink family %q: %w", familyName, err)
	}
	if len(msgs) == 0 {
		return 0, fmt.Errorf("resolving generic netlink family %q: %w: no reply", familyName, errMalformed)
	}
	return parseFamilyID(msgs[0].payload)
}
