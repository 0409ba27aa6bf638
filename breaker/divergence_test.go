package breaker_test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// Divergences found by porting other breakers' own test suites.

// slowCall makes one call that succeeds after taking d on the manual clock.
func (h *harness) slowCall(d time.Duration) error {
	return h.b.Do(context.Background(), func(context.Context) error {
		h.clk.Advance(d)
		return nil
	})
}

// A breaker opened because calls were slow must not be closed by probes that
// are just as slow: a slow probe is a failed probe (resilience4j judges the
// slow-call rate in HALF_OPEN too).
func TestSlowProbeIsAFailedProbe(t *testing.T) {
	h := newHarness(t, breaker.Config{HalfOpenSuccesses: 2, HalfOpenProbes: 1,
		FailureRate: &breaker.FailureRate{Threshold: 1, MinCalls: 3, SlowCall: time.Second}})
	for range 3 {
		h.slowCall(2 * time.Second)
	}
	h.wantState(breaker.Open)
	for i := range 3 { // no flapping: every slow probe reopens
		h.clk.Advance(time.Minute)
		h.wantState(breaker.HalfOpen)
		if err := h.slowCall(2 * time.Second); err != nil {
			t.Fatalf("probe %d: %v, want it to run and succeed", i, err)
		}
		h.wantState(breaker.Open)
		if tr := h.lastTransition(); tr.From != breaker.HalfOpen || tr.Reason != breaker.ReasonProbeFailed {
			t.Fatalf("probe %d: transition %v→%v (%v), want half_open→open (probe_failed)", i, tr.From, tr.To, tr.Reason)
		}
	}
	// Probes within SlowCall still close it.
	h.clk.Advance(time.Minute)
	h.slowCall(time.Second) // exactly SlowCall is not slow
	h.succeed(1)
	h.wantState(breaker.Closed)
	if s := h.b.Snapshot(); s.Failures != 0 {
		t.Fatalf("Snapshot.Failures = %d, want 0: a slow call succeeded; it fails only for the state machine", s.Failures)
	}
}

// The failure rate trips at exactly the documented threshold, not one call
// later because 0.55 × 100 is 55.000000000000007 in floating point.
func TestFailureRateTripsExactlyAtThreshold(t *testing.T) {
	tests := []struct {
		threshold       float64
		failures, calls int
	}{
		{0.55, 55, 100},
		{0.28, 7, 25},
		{0.5, 5, 10},
		{0.1, 1, 10},
		{0.3, 3, 10},
		{0.7, 7, 10},
		{1, 20, 20},
		{0.01, 1, 100},
		{0.99, 99, 100},
		{0.333, 333, 1000},
	}
	for _, tt := range tests {
		for _, fails := range []int{tt.failures - 1, tt.failures} {
			name := fmt.Sprintf("%v/%d-of-%d", tt.threshold, fails, tt.calls)
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, breaker.Config{FailureRate: &breaker.FailureRate{Threshold: tt.threshold, MinCalls: tt.calls}})
				// The first calls - 1 are not judged (fewer than MinCalls).
				first := min(fails, tt.calls-1)
				h.fail(first)
				h.succeed(tt.calls - 1 - first)
				h.wantState(breaker.Closed)
				if fails > first {
					h.fail(1)
				} else {
					h.succeed(1)
				}
				want := breaker.Closed
				if fails == tt.failures {
					want = breaker.Open
				}
				h.wantState(want)
			})
		}
	}
}

// The sweep behind the cases above, through the public API: every threshold
// k/100 and every call count up to 40 (MinCalls = calls, so the rate is
// judged once, on the last call). Exhaustive up to 1,000 calls in
// TestTripsAtRateExhaustive (window_internal_test.go).
func TestFailureRateBoundarySweep(t *testing.T) {
	for k := 1; k <= 100; k++ {
		threshold := float64(k) / 100
		for calls := 1; calls <= 40; calls++ {
			need := (k*calls + 99) / 100 // the least failures with failures/calls ≥ k/100
			for _, fails := range []int{need - 1, need} {
				if fails < 0 || fails > calls {
					continue
				}
				b, err := breaker.New(breaker.Config{Logger: discard, Clock: newClock(),
					FailureRate: &breaker.FailureRate{Threshold: threshold, MinCalls: calls}})
				if err != nil {
					t.Fatal(err)
				}
				for i := range calls {
					var e error
					if i < fails {
						e = errBoom
					}
					b.Do(ctx, func(context.Context) error { return e })
				}
				if got, want := b.State() == breaker.Open, fails == need; got != want {
					t.Fatalf("Threshold %v, %d of %d failed: open = %v, want %v", threshold, fails, calls, got, want)
				}
			}
		}
	}
}

// OpenBackoff at the top of the Duration range saturates instead of
// overflowing the float conversion (which made the timeout 1 ms).
func TestOpenBackoffSaturatesAtTheTopOfTheDurationRange(t *testing.T) {
	const top = time.Duration(math.MaxInt64)
	tests := []struct {
		name        string
		openTimeout time.Duration
		backoff     breaker.Backoff
		floor       time.Duration // every timeout is at least this
	}{
		{"MaxAtTheTop", time.Hour, breaker.Backoff{Max: top}, time.Hour},
		{"MaxOneBelowTheTop", time.Hour, breaker.Backoff{Max: top - 1}, time.Hour},
		{"HugeMultiplier", time.Hour, breaker.Backoff{Multiplier: 1e300, Max: top}, time.Hour},
		{"Jitter", time.Hour, breaker.Backoff{Max: top, Jitter: 0.9}, time.Hour / 10},
		{"DefaultMaxOverflows", top/10 + 1, breaker.Backoff{}, top / 10},
		{"DefaultMaxOverflowsWithJitter", top/10 + 1, breaker.Backoff{Jitter: 0.5}, top / 20},
		{"OpenTimeoutAtTheTop", top, breaker.Backoff{Jitter: 0.5}, top / 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bo := tt.backoff
			h := newHarness(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1, OpenTimeout: tt.openTimeout, OpenBackoff: &bo})
			h.fail(1)
			prev := time.Duration(0)
			for i := range 80 {
				tr := h.lastTransition()
				if tr.To != breaker.Open || tr.OpenFor < tt.floor {
					t.Fatalf("open #%d: %v for %v, want open for at least %v", i+1, tr.To, tr.OpenFor, tt.floor)
				}
				if bo.Jitter == 0 && tr.OpenFor < prev {
					t.Fatalf("open #%d: %v, shorter than the previous %v without jitter", i+1, tr.OpenFor, prev)
				}
				prev = tr.OpenFor
				h.clk.Advance(tr.OpenFor)
				h.wantState(breaker.HalfOpen)
				h.fail(1) // the probe fails: reopen, one backoff step longer
			}
		})
	}
}

// Misuse is harmless: a Ticket reported twice counts once. (One call
// reported twice used to open a threshold-2 breaker.)
func TestTicketReportedTwiceCountsOnce(t *testing.T) {
	reports := []struct {
		name  string
		twice func(tk *breaker.Ticket)
	}{
		{"DoneDone", func(tk *breaker.Ticket) { tk.Done(errBoom); tk.Done(errBoom) }},
		{"ReportReport", func(tk *breaker.Ticket) { tk.Report(breaker.Failure); tk.Report(breaker.Failure) }},
		{"DoneReport", func(tk *breaker.Ticket) { tk.Done(errBoom); tk.Report(breaker.Failure) }},
		{"ReportDone", func(tk *breaker.Ticket) { tk.Report(breaker.Failure); tk.Done(errBoom) }},
	}
	for _, r := range reports {
		t.Run(r.name, func(t *testing.T) {
			h := newHarness(t, breaker.Config{FailureThreshold: 2})
			tk, err := h.b.Allow()
			if err != nil {
				t.Fatal(err)
			}
			r.twice(&tk)
			h.wantState(breaker.Closed)
			if s := h.b.Snapshot(); s.Failures != 1 || s.ConsecutiveFailures != 1 || s.StaleOutcomes != 0 {
				t.Fatalf("Failures %d, ConsecutiveFailures %d, StaleOutcomes %d; want 1, 1, 0", s.Failures, s.ConsecutiveFailures, s.StaleOutcomes)
			}
		})
	}
	t.Run("Probe", func(t *testing.T) {
		h := newHarness(t, breaker.Config{HalfOpenSuccesses: 2})
		h.halfOpen()
		tk, err := h.b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		tk.Done(nil)
		tk.Done(nil)
		h.wantState(breaker.HalfOpen) // one success of two
		if s := h.b.Snapshot(); s.ConsecutiveSuccesses != 1 || s.StaleOutcomes != 0 {
			t.Fatalf("ConsecutiveSuccesses %d, StaleOutcomes %d; want 1, 0", s.ConsecutiveSuccesses, s.StaleOutcomes)
		}
	})
	t.Run("SuccessAllocatesNothing", func(t *testing.T) {
		h := newHarness(t, breaker.Config{})
		if n := testing.AllocsPerRun(100, func() {
			tk, _ := h.b.Allow()
			tk.Done(nil)
			tk.Done(nil)
		}); n != 0 {
			t.Fatalf("%v allocs, want 0", n)
		}
	})
}

// A probe needs no timer of its own: admitting and releasing probes
// allocates nothing once the breaker's one timer is armed.
func TestProbeAllocatesNothing(t *testing.T) {
	h := newHarness(t, breaker.Config{HalfOpenSuccesses: 1 << 30, HalfOpenProbes: 2, ProbeTimeout: time.Minute})
	h.halfOpen()
	pending := h.clk.Pending()
	if n := testing.AllocsPerRun(100, func() {
		tk, err := h.b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		tk.Done(nil)
	}); n != 0 && !raceDetector {
		t.Fatalf("a probe: %v allocs, want 0", n)
	}
	if got := h.clk.Pending(); got > pending+1 {
		t.Fatalf("%d timers pending after 101 probes (%d before): want at most one for the breaker", got, pending)
	}
	// The lease is still enforced: a probe that never returns reopens the
	// breaker at its deadline, not at the first probe's.
	h.clk.Advance(30 * time.Second)
	if _, err := h.b.Allow(); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(30 * time.Second) // the first probes' leases would end here
	h.wantState(breaker.HalfOpen)
	h.clk.Advance(30 * time.Second)
	h.wantState(breaker.Open)
	leaseEnd := breakertest.Epoch.Add(time.Minute + 30*time.Second + time.Minute) // half-open at 1m, admitted 30s later
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonProbeTimeout || !tr.At.Equal(leaseEnd) {
		t.Fatalf("transition %v at %v, want probe_timeout at the lease's end", tr.Reason, tr.At)
	}
}
