package breaker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

func TestPanicCountsAsFailureAndIsRepanicked(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 2})
	for range 2 {
		func() {
			defer func() {
				if r := recover(); r != "kaput" {
					t.Fatalf("recovered %v, want the original panic", r)
				}
			}()
			h.b.Do(context.Background(), func(context.Context) error { panic("kaput") })
		}()
	}
	h.wantState(breaker.Open)
}

func TestPanicInProbeReleasesSlotAndReopens(t *testing.T) {
	h := newHarness(t, breaker.Config{HalfOpenProbes: 1})
	h.halfOpen()
	func() {
		defer func() { recover() }()
		h.b.Do(context.Background(), func(context.Context) error { panic("kaput") })
	}()
	h.wantState(breaker.Open)
	if s := h.b.Snapshot(); s.ProbesInFlight != 0 {
		t.Fatalf("probe slot held after panic: %d in flight", s.ProbesInFlight)
	}
}

func TestStaleOutcomeFromEarlierGenerationDoesNotCount(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1})
	slow, err := h.b.Allow() // admitted while CLOSED
	if err != nil {
		t.Fatal(err)
	}
	slower, _ := h.b.Allow()
	h.fail(1) // opens
	h.clk.Advance(time.Minute)
	h.wantState(breaker.HalfOpen)
	slow.Done(nil) // would close the breaker if it counted as a probe
	h.wantState(breaker.HalfOpen)
	slower.Done(errBoom) // would reopen it
	h.wantState(breaker.HalfOpen)
	if s := h.b.Snapshot(); s.StaleOutcomes != 2 {
		t.Fatalf("StaleOutcomes = %d, want 2", s.StaleOutcomes)
	}
}

func TestLateReportOfExpiredProbeIsStale(t *testing.T) {
	h := newHarness(t, breaker.Config{ProbeTimeout: time.Second, HalfOpenSuccesses: 1})
	h.halfOpen()
	p, _ := h.b.Allow()
	h.clk.Advance(time.Second) // lease runs out: reopened
	h.clk.Advance(time.Minute) // half-open again
	h.wantState(breaker.HalfOpen)
	p.Done(nil)
	h.wantState(breaker.HalfOpen)
}

func TestTicketReportedTwiceDoesNotFreeAnotherProbe(t *testing.T) {
	h := newHarness(t, breaker.Config{HalfOpenProbes: 1, HalfOpenSuccesses: 5})
	h.halfOpen()
	p, _ := h.b.Allow()
	p.Done(nil)
	q, err := h.b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	p.Done(nil) // a bug in the caller: reported twice
	h.wantRejected(h.do(nil))
	q.Done(nil)
	if s := h.b.Snapshot(); s.ConsecutiveSuccesses != 2 {
		t.Fatalf("successes = %d, want 2", s.ConsecutiveSuccesses)
	}
}

func TestCallReturnsValueAndRejects(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1})
	v, err := breaker.Call(context.Background(), h.b, func(context.Context) (int, error) { return 42, nil })
	if v != 42 || err != nil {
		t.Fatalf("Call = %d, %v", v, err)
	}
	breaker.Call(context.Background(), h.b, func(context.Context) (int, error) { return 0, errBoom })
	v, err = breaker.Call(context.Background(), h.b, func(context.Context) (int, error) { return 7, nil })
	if v != 0 || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Call while open = %d, %v; want 0, ErrOpen", v, err)
	}
	if d, ok := breaker.RetryAfter(err); !ok || d != time.Minute {
		t.Fatalf("RetryAfter = %v, %v", d, ok)
	}
}

func TestClassifierOverridesDefault(t *testing.T) {
	errNotFound := errors.New("not found")
	h := newHarness(t, breaker.Config{FailureThreshold: 1, Classify: func(err error) breaker.Outcome {
		if errors.Is(err, errNotFound) {
			return breaker.Success
		}
		return breaker.Failure
	}})
	h.do(errNotFound)
	h.wantState(breaker.Closed)
	h.do(context.Canceled) // the override says failure
	h.wantState(breaker.Open)
}

func TestDefaultClassifier(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want breaker.Outcome
	}{
		{context.Canceled, breaker.Ignored},
		{context.DeadlineExceeded, breaker.Failure},
		{errBoom, breaker.Failure},
		{errors.Join(errBoom, context.Canceled), breaker.Ignored},
	} {
		if got := breaker.DefaultClassifier(tt.err); got != tt.want {
			t.Errorf("DefaultClassifier(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestForceOpenRejectsUntilReset(t *testing.T) {
	h := newHarness(t, breaker.Config{})
	h.b.ForceOpen()
	h.wantState(breaker.ForcedOpen)
	h.clk.Advance(time.Hour)
	oe := h.wantRejected(h.do(nil))
	if oe.State != breaker.ForcedOpen || oe.RetryAfter() != 0 {
		t.Fatalf("rejection %v retry %v", oe.State, oe.RetryAfter())
	}
	h.b.Reset()
	h.wantState(breaker.Closed)
	h.succeed(1)
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonReset {
		t.Fatalf("reason %v", tr.Reason)
	}
}

func TestForceClosedNeverTripsButCounts(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, CountSuccesses: true})
	h.b.ForceClosed()
	h.fail(100)
	h.succeed(3)
	h.wantState(breaker.Disabled)
	s := h.b.Snapshot()
	if s.Failures != 100 || s.Successes != 3 {
		t.Fatalf("counts failures=%d successes=%d, want 100, 3", s.Failures, s.Successes)
	}
	h.b.Reset()
	h.fail(1)
	h.wantState(breaker.Open)
}

func TestResetClearsStreakWithoutEventWhenClosed(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 3})
	h.fail(2)
	h.b.Reset()
	h.fail(2)
	h.wantState(breaker.Closed)
	if n := len(h.transitions()); n != 0 {
		t.Fatalf("%d events, want none", n)
	}
}

func TestDryRunRecordsInsteadOfRejecting(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 2, DryRun: true})
	h.fail(2)
	h.wantState(breaker.Open) // the state machine runs as usual
	before := h.calls
	h.succeed(3) // would be rejected: let through
	if h.calls != before+3 {
		t.Fatal("dry run rejected calls")
	}
	s := h.b.Snapshot()
	if s.DryRunRejected != 3 || s.Rejected != 0 {
		t.Fatalf("DryRunRejected %d Rejected %d, want 3, 0", s.DryRunRejected, s.Rejected)
	}
	h.wantState(breaker.Open) // the let-through calls do not count as probes
	h.b.SetDryRun(false)
	h.wantRejected(h.do(nil))
}

func TestFailureRateTripsAfterMinCalls(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 0.5, MinCalls: 10, Window: 10 * time.Second, Bucket: time.Second}})
	h.fail(5)
	h.succeed(4)
	h.wantState(breaker.Closed) // 9 calls < MinCalls
	h.succeed(1)
	h.wantState(breaker.Open) // 5 of 10 = 50 %: the threshold is reached
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonFailureRate || tr.Failures != 5 || tr.Calls != 10 {
		t.Fatalf("transition %+v", tr)
	}
}

func TestFailureRateWindowSlides(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 0.5, MinCalls: 4, Window: 4 * time.Second, Bucket: time.Second}})
	h.fail(3)
	h.clk.Advance(4 * time.Second) // the failures slide out
	h.succeed(3)
	h.fail(1)
	h.wantState(breaker.Closed) // 1 of 4
	if s := h.b.Snapshot(); s.WindowCalls != 4 || s.WindowFailures != 1 {
		t.Fatalf("window %d/%d, want 1/4", s.WindowFailures, s.WindowCalls)
	}
}

func TestSlowCallsCountAsFailures(t *testing.T) {
	var h *harness
	h = newHarness(t, breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 1, MinCalls: 3, SlowCall: time.Second}})
	for range 3 {
		h.b.Do(context.Background(), func(context.Context) error {
			h.clk.Advance(2 * time.Second)
			return nil
		})
	}
	h.wantState(breaker.Open)
}

func TestOpenBackoffGrowsAndResetsOnClose(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1,
		OpenBackoff: &breaker.Backoff{Multiplier: 2, Max: 5 * time.Minute}})
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	h.fail(1)
	for i, d := range want {
		if got := h.b.Snapshot().RetryAfter; got != d {
			t.Fatalf("open #%d: %v, want %v", i+1, got, d)
		}
		h.clk.Advance(d)
		h.fail(1) // probe fails
	}
	h.clk.Advance(5 * time.Minute)
	h.succeed(1)
	h.wantState(breaker.Closed)
	h.fail(1)
	if got := h.b.Snapshot().RetryAfter; got != time.Minute {
		t.Fatalf("after close: %v, want 1m", got)
	}
}

func TestOpenBackoffJitterStaysInBounds(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, OpenBackoff: &breaker.Backoff{Jitter: 0.2}})
	seen := map[time.Duration]bool{}
	for range 50 {
		h.fail(1)
		d := h.b.Snapshot().RetryAfter
		if d < 48*time.Second || d > 72*time.Second {
			t.Fatalf("jittered timeout %v outside 60s ± 20 %%", d)
		}
		seen[d] = true
		h.b.Reset()
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct timeouts in 50: no jitter", len(seen))
	}
}

func TestEventsAreDeliveredOnceInOrderAndListenerMayCallBreaker(t *testing.T) {
	clk := breakertest.NewClock()
	var b *breaker.Breaker
	var got []string
	b, _ = breaker.New(breaker.Config{FailureThreshold: 1, Clock: clk, Logger: discard, OnTransition: func(tr breaker.Transition) {
		got = append(got, tr.From.String()+"→"+tr.To.String())
		if tr.To == breaker.HalfOpen {
			b.ForceOpen() // re-entrant: queued, delivered after this event
		}
	}})
	b.Do(context.Background(), func(context.Context) error { return errBoom })
	clk.Advance(time.Minute)
	if s := strings.Join(got, " "); s != "closed→open open→half_open half_open→forced_open" {
		t.Fatalf("events: %s", s)
	}
}

func TestSnapshotCounts(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 3, CountSuccesses: true})
	h.succeed(4)
	h.fail(1)
	h.do(context.Canceled)
	h.fail(2)
	h.clk.Advance(15 * time.Second)
	h.do(nil)
	h.do(nil)
	s := h.b.Snapshot()
	want := breaker.Snapshot{Successes: 4, Failures: 3, Ignored: 1, Rejected: 2, RetryAfter: 45 * time.Second, State: breaker.Open, Generation: 1}
	if s.Successes != want.Successes || s.Failures != want.Failures || s.Ignored != want.Ignored ||
		s.Rejected != want.Rejected || s.RetryAfter != want.RetryAfter || s.State != want.State || s.Generation != want.Generation {
		t.Fatalf("snapshot %+v", s)
	}
	if !s.OpenUntil.Equal(breakertest.Epoch.Add(time.Minute)) || !s.LastTransition.At.Equal(breakertest.Epoch) {
		t.Fatalf("times: open until %v, last transition %v", s.OpenUntil, s.LastTransition.At)
	}
}

func TestSuccessesNotCountedByDefault(t *testing.T) {
	h := newHarness(t, breaker.Config{})
	h.succeed(10)
	if s := h.b.Snapshot(); s.Successes != 0 || s.SuccessesCounted {
		t.Fatalf("Successes %d counted %v", s.Successes, s.SuccessesCounted)
	}
}

func TestConfigValidationNamesFieldAndRange(t *testing.T) {
	for _, tt := range []struct {
		cfg  breaker.Config
		want string
	}{
		{breaker.Config{FailureThreshold: -1}, "Config.FailureThreshold = -1: must be ≥ 1"},
		{breaker.Config{OpenTimeout: -time.Second}, "Config.OpenTimeout = -1s: must be > 0"},
		{breaker.Config{HalfOpenSuccesses: -2}, "Config.HalfOpenSuccesses = -2"},
		{breaker.Config{HalfOpenProbes: -1}, "Config.HalfOpenProbes = -1"},
		{breaker.Config{ProbeTimeout: -1}, "Config.ProbeTimeout"},
		{breaker.Config{FailureThreshold: 3, FailureRate: &breaker.FailureRate{Threshold: .5}}, "exclusive"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 0}}, "FailureRate.Threshold = 0: must be in (0, 1]"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 1.5}}, "FailureRate.Threshold = 1.5: must be in (0, 1]"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: .5, Window: time.Second, Bucket: 2 * time.Second}}, "FailureRate.Window = 1s: must be at least one bucket"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: .5, Window: 3 * time.Second, Bucket: 2 * time.Second}}, "whole multiple"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: .5, Window: time.Hour, Bucket: time.Millisecond}}, "FailureRate.Bucket"},
		{breaker.Config{FailureRate: &breaker.FailureRate{Threshold: .5, MinCalls: -1}}, "FailureRate.MinCalls"},
		{breaker.Config{OpenBackoff: &breaker.Backoff{Multiplier: 0.5}}, "OpenBackoff.Multiplier = 0.5: must be > 1"},
		{breaker.Config{OpenBackoff: &breaker.Backoff{Jitter: 1}}, "OpenBackoff.Jitter = 1: must be in [0, 1)"},
		{breaker.Config{OpenBackoff: &breaker.Backoff{Max: time.Second}}, "OpenBackoff.Max = 1s: must be ≥ OpenTimeout (1m0s)"},
	} {
		_, err := breaker.New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestZeroTicketReportIsNoOp(t *testing.T) {
	h := newHarness(t, breaker.Config{})
	h.b.ForceOpen()
	tk, err := h.b.Allow()
	if err == nil {
		t.Fatal("admitted while forced open")
	}
	tk.Done(nil) // a caller that deferred Done before checking err must not crash
	tk.Report(breaker.Failure)
	if s := h.b.Snapshot(); s.Failures != 0 {
		t.Fatalf("failures %d", s.Failures)
	}
}

func TestRejectionsAllocateNothing(t *testing.T) {
	h := newHarness(t, breaker.Config{})
	h.halfOpen()
	p, _ := h.b.Allow()
	defer p.Done(nil)
	if n := testing.AllocsPerRun(100, func() { h.b.Allow() }); n != 0 {
		t.Errorf("half-open-full rejection: %v allocs, want 0", n)
	}
	if s := h.b.Snapshot(); s.RetryAfter != time.Minute {
		t.Errorf("Snapshot.RetryAfter with full slots = %v, want the probe lease's 1m", s.RetryAfter)
	}
	h.b.ForceOpen()
	if n := testing.AllocsPerRun(100, func() { h.do(nil) }); n != 0 {
		t.Errorf("open rejection: %v allocs, want 0", n)
	}
}

func TestExpiredProbeCountsOnceAsFailure(t *testing.T) {
	h := newHarness(t, breaker.Config{ProbeTimeout: time.Second})
	h.halfOpen()
	before := h.b.Snapshot().Failures
	p, _ := h.b.Allow()
	h.clk.Advance(time.Second) // the lease expires: one failed probe
	p.Done(errBoom)            // its late report changes nothing
	if got := h.b.Snapshot().Failures - before; got != 1 {
		t.Fatalf("one expired probe counted as %d failures", got)
	}
}

func TestChangedIsClosedAtTheNextTransition(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 2})
	ch := h.b.Changed()
	h.fail(1)
	select {
	case <-ch:
		t.Fatal("Changed closed without a transition")
	default:
	}
	h.fail(1) // opens
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed by the transition to OPEN")
	}
	next := h.b.Changed()
	if next == ch {
		t.Fatal("Changed returned the closed channel again")
	}
	h.clk.Advance(time.Minute) // HALF_OPEN
	select {
	case <-next:
	default:
		t.Fatal("Changed not closed by the transition to HALF_OPEN")
	}
}
