package testwait_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"basalt/internal/testwait"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	testwait.For(t, time.Second, "three polls", func() error {
		if n.Add(1) < 3 {
			return errors.New("fewer than three")
		}
		return nil
	})
	if n.Load() != 3 {
		t.Fatalf("polled %d times, want 3", n.Load())
	}
}

func TestStaysObservesTheWindow(t *testing.T) {
	start := time.Now()
	testwait.Stays(t, 30*time.Millisecond, "true", func() bool { return true })
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("Stays returned before its window ended")
	}
}
