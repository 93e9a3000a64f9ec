package testwait

import (
	"fmt"
	"testing"
	"time"
)

// Poll is the interval between two checks of a condition.
const Poll = 5 * time.Millisecond

// For polls cond until it returns nil; after timeout it fails the test
// with what and cond's last error.
func For(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(Poll)
	}
}

// Until is For with a boolean condition.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	For(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("not yet")
	})
}

// Stays checks that cond keeps holding for the whole of d (for "this must
// not happen" assertions, which can only be observed over a window).
func Stays(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !cond() {
			t.Fatalf("%s stopped holding within %v", what, d)
		}
		time.Sleep(Poll)
	}
}
