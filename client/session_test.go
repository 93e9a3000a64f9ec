package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"basalt/client"
	"basalt/client/clienttest"
	"basalt/internal/testwait"
)

// TestReaderCannotWrite: writes and discards on a reader fail with
// ErrReadOnly; it reads fine.
func TestReaderCannotWrite(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	r := openVolume(t, options(c, false))
	if _, err := r.WriteAt(context.Background(), []byte{1}, 0); !errors.Is(err, client.ErrReadOnly) {
		t.Fatalf("WriteAt on a reader = %v, want ErrReadOnly", err)
	}
	if err := r.Discard(context.Background(), 0, 1); !errors.Is(err, client.ErrReadOnly) {
		t.Fatalf("Discard on a reader = %v, want ErrReadOnly", err)
	}
	checkRead(t, r, 0, make([]byte, 10))
	if r.Size() != volSize || r.Name() != "vol" {
		t.Fatalf("Size, Name = %d, %q", r.Size(), r.Name())
	}
}

// TestLeaseRenewal: with a short lease the writer renews every third of
// it; fencing the session makes writes fail with ErrLeaseLost while reads
// go on.
func TestLeaseRenewal(t *testing.T) {
	c := startCluster(t, clienttest.Config{LeaseMS: 60})
	v := writer(t, c)
	eventually(t, 5*time.Second, "3 renewals", func() bool { return c.MDS.Renewals() >= 3 })
	mustWrite(t, v, []byte{1}, 0)
	c.MDS.Fence("vol")
	eventually(t, 5*time.Second, "writes to fail with ErrLeaseLost", func() bool {
		_, err := v.WriteAt(context.Background(), []byte{1}, 0)
		return errors.Is(err, client.ErrLeaseLost)
	})
	if err := v.Discard(context.Background(), 0, 1); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("Discard after the lease was lost = %v", err)
	}
	checkRead(t, v, 0, []byte{1})
	n := c.MDS.Renewals()
	testwait.Stays(t, 100*time.Millisecond, "no renewal after the lease was lost", func() bool {
		return c.MDS.Renewals() == n
	})
}

// TestFencedAllocation: a write that needs a new segment after the
// session was fenced fails with ErrLeaseLost even before a renewal
// notices.
func TestFencedAllocation(t *testing.T) {
	c := startCluster(t, clienttest.Config{LeaseMS: 60_000})
	v := writer(t, c)
	c.MDS.Fence("vol")
	if _, err := v.WriteAt(context.Background(), []byte{1}, 0); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("WriteAt with a fenced session = %v, want ErrLeaseLost", err)
	}
	if _, err := v.WriteAt(context.Background(), []byte{1}, 0); !errors.Is(err, client.ErrLeaseLost) {
		t.Fatalf("second WriteAt = %v, want ErrLeaseLost", err)
	}
}

// TestSecondWriter: a second writer is refused with the holder's name;
// with Force it takes over and the first writer loses its lease.
func TestSecondWriter(t *testing.T) {
	c := startCluster(t, clienttest.Config{LeaseMS: 60})
	first := writer(t, c)
	o := options(c, true)
	o.ClientName = "second"
	_, err := client.Open(context.Background(), o, "vol")
	//basalt:allow errstring the holder's name is only in the MDS's message, which the error must keep
	if !errors.Is(err, client.ErrWriterExists) || !strings.Contains(err.Error(), `"test"`) {
		t.Fatalf("second writer Open = %v, want ErrWriterExists naming the holder", err)
	}
	o.Force = true
	second := openVolume(t, o)
	mustWrite(t, second, []byte{7}, 0)
	eventually(t, 5*time.Second, "the first writer to lose its lease", func() bool {
		_, err := first.WriteAt(context.Background(), []byte{1}, 100) // the fakes do not fence chunk writes
		return errors.Is(err, client.ErrLeaseLost)
	})
	checkRead(t, first, 0, []byte{7})
}

// TestOpenErrors: unknown volume, bad options.
func TestOpenErrors(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	o := options(c, false)
	if _, err := client.Open(context.Background(), o, "nope"); !errors.Is(err, client.ErrVolumeNotFound) {
		t.Fatalf("Open of a missing volume = %v, want ErrVolumeNotFound", err)
	}
	o.MDSAddrs = nil
	if _, err := client.Open(context.Background(), o, "vol"); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("Open without MDS addresses = %v, want ErrInvalidArgument", err)
	}
}

// TestClose: Close releases the writer lease (another writer may open
// without force), and every method fails with ErrClosed afterwards.
func TestClose(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v, err := client.Open(context.Background(), options(c, true), "vol")
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, []byte{1}, 0)
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := c.MDS.Session("vol"); s != 0 {
		t.Fatalf("session %d still held after Close", s)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"ReadAt":  second(v.ReadAt(ctx, make([]byte, 1), 0)),
		"WriteAt": second(v.WriteAt(ctx, []byte{1}, 0)),
		"Discard": v.Discard(ctx, 0, 1),
		"Flush":   v.Flush(ctx),
		"Close":   v.Close(),
	} {
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	openVolume(t, options(c, true))
}

func second(_ int, err error) error { return err }
