package breaker

import (
	"math"
	"math/bits"
	"time"
)

// window counts calls in a ring of time buckets for the failure-rate policy.
// It is guarded by Breaker.mu.
type window struct {
	rate     FailureRate
	parts    uint64 // rate.Threshold in parts per rateScale (see rateParts)
	buckets  []bucket
	head     int64 // index of the newest bucket (instant / Bucket)
	calls    int   // totals over the live buckets
	failures int
}

type bucket struct{ calls, failures int }

// newWindow returns an empty window at instant 0 (New).
func newWindow(r FailureRate) *window {
	return &window{rate: r, parts: rateParts(r.Threshold), buckets: make([]bucket, r.Window/r.Bucket)}
}

func (w *window) reset(now instant) {
	clear(w.buckets)
	w.calls, w.failures = 0, 0
	w.head = w.index(now)
}

func (w *window) index(now instant) int64 { return int64(time.Duration(now) / w.rate.Bucket) }

// advance drops the buckets that slid out of the window by now.
func (w *window) advance(now instant) {
	idx := w.index(now)
	n := int64(len(w.buckets))
	if idx-w.head >= n {
		clear(w.buckets)
		w.calls, w.failures = 0, 0
	} else {
		for i := w.head + 1; i <= idx; i++ {
			b := &w.buckets[i%n]
			w.calls -= b.calls
			w.failures -= b.failures
			*b = bucket{}
		}
	}
	if idx > w.head {
		w.head = idx
	}
}

// add records one call and reports whether the window now trips the breaker.
func (w *window) add(now instant, failed bool) bool {
	w.advance(now)
	b := &w.buckets[w.head%int64(len(w.buckets))]
	b.calls++
	w.calls++
	if failed {
		b.failures++
		w.failures++
	}
	return w.calls >= w.rate.MinCalls && rateReached(w.failures, w.calls, w.parts)
}

// rateScale is the resolution of FailureRate.Threshold: parts per billion.
const rateScale = 1_000_000_000

// rateParts is a threshold in parts per rateScale. Rounding recovers the
// decimal the user wrote (any threshold with at most nine decimals is exact:
// float64's relative error, 2⁻⁵³, moves t × 10⁹ by far less than ½); a
// positive threshold is at least one part, so it always needs a failure.
func rateParts(t float64) uint64 { return max(uint64(math.Round(t*rateScale)), 1) }

// rateReached reports failures/calls ≥ parts/rateScale exactly, comparing
// failures × rateScale with calls × parts in 128 bits: in floating point,
// 0.55 × 100 is 55.000000000000007 and 55 failures of 100 did not trip.
func rateReached(failures, calls int, parts uint64) bool {
	fh, fl := bits.Mul64(uint64(failures), rateScale)
	ch, cl := bits.Mul64(uint64(calls), parts)
	return fh > ch || fh == ch && fl >= cl
}
