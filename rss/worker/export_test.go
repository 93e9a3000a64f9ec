package worker

// MemoryPeakBytes returns the most memory the admission budget ever held
// reserved (for tests).
func (w *Worker) MemoryPeakBytes() int64 { return w.mem.peak.Load() }
