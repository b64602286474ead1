package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"time"
)

// softMemoryLimit is the Go heap target strata sets unless GOMEMLIMIT says otherwise. Without
// it the GC lets the heap grow to twice what is live before collecting, so a build whose live
// set is briefly large (parsing a 200 MB heredoc, a million-entry selection) peaks at double
// that; with it the GC collects earlier as the heap nears the limit. It is soft: above it the GC
// runs more often (capped by the runtime at about half the CPU), nothing fails.
const softMemoryLimit = 192 << 20

func setSoftMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
}

// startPeakHeapProfile writes a heap profile to path each time the heap in use passes its
// previous high by 10%, so the file left at exit shows what was live near the peak, which is
// what bounds RSS (a profile taken at exit shows only what survived). It is a debugging hook
// (STRATA_MEMPROFILE) for the bounded-memory tests, not a feature: ReadMemStats stops the world.
func startPeakHeapProfile(path string) (stop func()) {
	runtime.MemProfileRate = 64 << 10
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var high uint64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse < high+high/10 {
				continue
			}
			high = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
