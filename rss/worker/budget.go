package worker

import (
	"fmt"
	"sync/atomic"
)

// budget is the admission budget of bytes received but not yet
// acknowledged. used never exceeds limit.
type budget struct {
	limit int64
	used  atomic.Int64
	peak  atomic.Int64 // the highest used ever seen (for tests)
}

// acquire reserves n bytes, or returns ErrMemoryLimit when they do not
// fit. It never blocks.
func (b *budget) acquire(n int64) error {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return fmt.Errorf("%w: %d bytes in use, %d more requested, limit %d; back off and retry", ErrMemoryLimit, used, n, b.limit)
		}
		if b.used.CompareAndSwap(used, used+n) {
			b.notePeak(used + n)
			return nil
		}
	}
}

// release returns n bytes reserved by acquire.
func (b *budget) release(n int64) { b.used.Add(-n) }

func (b *budget) notePeak(v int64) {
	for {
		p := b.peak.Load()
		if v <= p || b.peak.CompareAndSwap(p, v) {
			return
		}
	}
}
