package breaker

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// counter names one of a breaker's totals (Snapshot's Successes …
// DryRunRejected).
type counter uint8

const (
	countSuccess counter = iota
	countFailure
	countIgnored
	countRejected
	countDryRunRejected
	numCounters
)

// counters are a breaker's totals. They start as one set of counts in the
// breaker itself (40 bytes), and become striped the first time two
// goroutines are seen adding at once (a compare-and-swap that loses): from
// then on each goroutine adds to the stripe its stack address hashes to, so
// goroutines on different CPUs counting successes or rejections of one
// breaker do not bounce one cache line between them (one shared counter
// made counting under RunParallel slower than serial). Striping every
// breaker up front cost 1 KiB each, 10 MB for 10,000 circuits, most of which
// are never called from two CPUs at once.
//
// Reading sums the counts; totals only grow, so a sum taken while others add
// is still a value the total had or passed.
type counters struct {
	one     [numCounters]atomic.Uint64
	striped atomic.Pointer[stripes] // nil until contention is seen
}

// stripes are the striped counts.
type stripes struct {
	s     []stripe
	shift uint          // 64 - log2(len(s)): a hash's top bits pick the stripe
	salt  atomic.Uint64 // changed when two goroutines are seen sharing a stripe
}

// stripe is one cache line of counts.
type stripe struct {
	n [numCounters]atomic.Uint64
	_ [64 - 8*numCounters]byte
}

// maxStripes bounds the memory of one contended breaker's totals (64 × 64 B).
const maxStripes = 64

func newStripes() *stripes {
	// Eight stripes per CPU make two goroutines sharing one unlikely.
	n, shift := 1, uint(64)
	for n < 8*runtime.GOMAXPROCS(0) && n < maxStripes {
		n <<= 1
		shift--
	}
	return &stripes{s: make([]stripe, n), shift: shift}
}

// add adds one to counter c.
func (cs *counters) add(c counter) {
	if st := cs.striped.Load(); st != nil {
		st.add(c)
		return
	}
	n := &cs.one[c]
	if v := n.Load(); n.CompareAndSwap(v, v+1) {
		return
	}
	// Another goroutine added in between: contended. Stripe (once; a loser
	// of this race uses the winner's stripes) and count there.
	st := newStripes()
	if !cs.striped.CompareAndSwap(nil, st) {
		st = cs.striped.Load()
	}
	st.add(c)
}

func (st *stripes) add(c counter) {
	// A goroutine's stack is its own: the address of a local variable is a
	// stable, free per-goroutine key (stdlib has no per-P index), stable at
	// one call site, changed only when the stack moves as it grows. Hashed
	// (Fibonacci) because stacks are spaced by their size. Two goroutines
	// whose keys pick one stripe would bounce its line as one shared
	// counter does: a compare-and-swap lost there changes the salt, which
	// moves every key to another stripe (LongAdder rehashes the same way).
	var here byte
	key := uint64(uintptr(unsafe.Pointer(&here)) >> 10)
	for {
		salt := st.salt.Load()
		n := &st.s[((key+salt)*0x9e3779b97f4a7c15)>>st.shift].n[c]
		if v := n.Load(); n.CompareAndSwap(v, v+1) {
			return
		}
		st.salt.CompareAndSwap(salt, salt+1)
	}
}

// load returns the total of counter c.
func (cs *counters) load(c counter) uint64 {
	sum := cs.one[c].Load()
	if st := cs.striped.Load(); st != nil {
		for i := range st.s {
			sum += st.s[i].n[c].Load()
		}
	}
	return sum
}

// carry adds old's totals to cs (a reload's new breaker takes its
// predecessor's totals: they only grow).
func (cs *counters) carry(old *counters) {
	for c := range numCounters {
		cs.one[c].Add(old.load(c))
	}
}
