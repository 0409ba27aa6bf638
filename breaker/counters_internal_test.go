package breaker

import (
	"sync"
	"testing"
	"unsafe"
)

// A breaker's totals cost 48 bytes until two goroutines count at once: at
// 10,000 circuits, striping each up front was 10 MB.
func TestCountersStartUnstripedAndSmall(t *testing.T) {
	var cs counters
	for range 1000 {
		cs.add(countRejected)
	}
	if cs.striped.Load() != nil {
		t.Fatal("one goroutine counting striped the counters")
	}
	if got := cs.load(countRejected); got != 1000 {
		t.Fatalf("load = %d, want 1000", got)
	}
	if size := unsafe.Sizeof(cs); size > 64 {
		t.Fatalf("unstriped counters are %d bytes, want at most one cache line", size)
	}
}

// Counts added before and after striping, and from many goroutines at once,
// all add up.
func TestCountersSumAcrossStripingAndGoroutines(t *testing.T) {
	var cs counters
	cs.add(countSuccess)
	cs.striped.Store(newStripes()) // as after a lost compare-and-swap
	cs.add(countSuccess)
	if got := cs.load(countSuccess); got != 2 {
		t.Fatalf("load across striping = %d, want 2", got)
	}

	var fresh counters
	const goroutines, each = 8, 5000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				fresh.add(countFailure)
			}
		}()
	}
	wg.Wait()
	if got := fresh.load(countFailure); got != goroutines*each {
		t.Fatalf("concurrent adds = %d, want %d", got, goroutines*each)
	}
	var carried counters
	carried.carry(&fresh)
	if got := carried.load(countFailure); got != goroutines*each {
		t.Fatalf("carried = %d, want %d", got, goroutines*each)
	}
}

// next's verdict must stay small enough for registers (see machine).
func TestVerdictFitsInRegisters(t *testing.T) {
	if size := unsafe.Sizeof(verdict{}); size > 32 {
		t.Fatalf("verdict is %d bytes; over 32 the compiler builds it in memory, a stall on every counted outcome", size)
	}
}
