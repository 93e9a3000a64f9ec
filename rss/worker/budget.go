package worker

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// budget is the admission budget of bytes received but not yet
// acknowledged, in total and per application. used never exceeds limit,
// and no application's share exceeds appLimit.
type budget struct {
	limit    int64
	appLimit int64 // Config.AppMemoryLimitBytes, after defaults
	used     atomic.Int64
	peak     atomic.Int64 // the highest used ever seen (for tests)

	apps struct {
		sync.Mutex
		used map[string]int64 // bytes held per application; no zero entries
	}
}

func newBudget(limit, appLimit int64) *budget {
	b := &budget{limit: limit, appLimit: appLimit}
	b.apps.used = map[string]int64{}
	return b
}

// acquire reserves n bytes for app, or returns ErrMemoryLimit when the
// whole budget is used up, ErrAppMemoryLimit when the application's
// share is. It never blocks.
func (b *budget) acquire(app string, n int64) error {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return fmt.Errorf("%w: %d bytes in use, %d more requested, limit %d; back off and retry", ErrMemoryLimit, used, n, b.limit)
		}
		if b.used.CompareAndSwap(used, used+n) {
			break
		}
	}
	if err := b.acquireApp(app, n); err != nil {
		b.used.Add(-n)
		return err
	}
	b.notePeak(b.used.Load())
	return nil
}

// acquireApp reserves n bytes of app's share.
func (b *budget) acquireApp(app string, n int64) error {
	b.apps.Lock()
	defer b.apps.Unlock()
	used := b.apps.used[app]
	if used+n > b.appLimit {
		return fmt.Errorf("%w: application %s holds %d bytes, %d more requested, per-application limit %d; back off and retry",
			ErrAppMemoryLimit, app, used, n, b.appLimit)
	}
	b.apps.used[app] = used + n
	return nil
}

func (b *budget) releaseApp(app string, n int64) {
	b.apps.Lock()
	defer b.apps.Unlock()
	if left := b.apps.used[app] - n; left > 0 {
		b.apps.used[app] = left
	} else {
		delete(b.apps.used, app)
	}
}

// release returns n bytes that acquire reserved for app.
func (b *budget) release(app string, n int64) {
	b.used.Add(-n)
	b.releaseApp(app, n)
}

func (b *budget) notePeak(v int64) {
	for {
		p := b.peak.Load()
		if v <= p || b.peak.CompareAndSwap(p, v) {
			return
		}
	}
}
