package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// TestStateMachine is DESIGN.md's state-machine table, one row per case.
// Each row starts from a state reached through the public API, applies one
// event, and checks the resulting state plus what the row's notes promise.
func TestStateMachine(t *testing.T) {
	cfg := breaker.Config{FailureThreshold: 3, OpenTimeout: minute, HalfOpenSuccesses: 2, HalfOpenProbes: 1, ProbeTimeout: 10 * time.Second}
	tests := []struct {
		name  string
		from  func(*harness)
		event func(*harness)
		want  breaker.State
		check func(*harness)
	}{
		{
			name:  "ClosedSuccessResetsStreak",
			from:  func(h *harness) { h.fail(2) },
			event: func(h *harness) { h.succeed(1) },
			want:  breaker.Closed,
			check: func(h *harness) {
				if n := h.b.Snapshot().ConsecutiveFailures; n != 0 {
					h.t.Errorf("consecutive failures = %d, want 0", n)
				}
				h.fail(2)
				h.wantState(breaker.Closed) // the streak really restarted
			},
		},
		{
			name:  "ClosedFailureBelowThresholdStaysClosed",
			from:  func(h *harness) { h.fail(1) },
			event: func(h *harness) { h.fail(1) },
			want:  breaker.Closed,
			check: func(h *harness) {
				if n := h.b.Snapshot().ConsecutiveFailures; n != 2 {
					h.t.Errorf("consecutive failures = %d, want 2", n)
				}
			},
		},
		{
			name:  "ClosedFailureAtThresholdOpens",
			from:  func(h *harness) { h.fail(2) },
			event: func(h *harness) { h.fail(1) },
			want:  breaker.Open,
			check: func(h *harness) {
				tr := h.lastTransition()
				if tr.From != breaker.Closed || tr.Reason != breaker.ReasonFailureThreshold || tr.Failures != 3 {
					h.t.Errorf("transition = %+v, want closed→open, failure_threshold, 3 failures", tr)
				}
			},
		},
		{
			name: "ClosedIgnoredLeavesCountUnchanged",
			from: func(h *harness) { h.fail(2) },
			event: func(h *harness) {
				if err := h.do(context.Canceled); !errors.Is(err, context.Canceled) {
					h.t.Fatalf("ignored call returned %v", err)
				}
			},
			want: breaker.Closed,
			check: func(h *harness) {
				if n := h.b.Snapshot().ConsecutiveFailures; n != 2 {
					h.t.Errorf("consecutive failures = %d, want 2 (ignored neither counts nor resets)", n)
				}
				h.fail(1)
				h.wantState(breaker.Open)
			},
		},
		{
			name: "OpenRejectsWithoutRunning",
			from: (*harness).open,
			event: func(h *harness) {
				h.clk.Advance(20 * time.Second)
				before := h.calls
				oe := h.wantRejected(h.do(nil))
				if h.calls != before {
					h.t.Error("the protected function ran while OPEN")
				}
				if oe.Name != "svc" || oe.State != breaker.Open {
					h.t.Errorf("OpenError = %+v, want name svc, state open", oe)
				}
				if got := oe.RetryAfter(); got != 40*time.Second {
					h.t.Errorf("RetryAfter = %v, want 40s", got)
				}
			},
			want: breaker.Open,
		},
		{
			name:  "OpenTimeoutElapsedHalfOpens",
			from:  (*harness).open,
			event: func(h *harness) { h.clk.Advance(minute) },
			want:  breaker.HalfOpen,
			check: func(h *harness) {
				if tr := h.lastTransition(); tr.Reason != breaker.ReasonOpenTimeout || !tr.At.Equal(h.clk.Now()) {
					h.t.Errorf("transition = %+v, want open_timeout at %v", tr, h.clk.Now())
				}
			},
		},
		{
			name: "OpenJustBeforeTimeoutStaysOpen",
			from: (*harness).open,
			event: func(h *harness) {
				h.clk.Advance(minute - time.Nanosecond)
				h.wantRejected(h.do(nil))
			},
			want: breaker.Open,
		},
		{
			name: "HalfOpenCallWithFreeSlotRunsAsProbe",
			from: (*harness).halfOpen,
			event: func(h *harness) {
				tk, err := h.b.Allow()
				if err != nil {
					h.t.Fatalf("probe rejected: %v", err)
				}
				if n := h.b.Snapshot().ProbesInFlight; n != 1 {
					h.t.Errorf("probes in flight = %d, want 1", n)
				}
				tk.Done(nil)
			},
			want: breaker.HalfOpen,
		},
		{
			name: "HalfOpenFullSlotsReject",
			from: (*harness).halfOpen,
			event: func(h *harness) {
				tk, err := h.b.Allow()
				if err != nil {
					h.t.Fatal(err)
				}
				h.clk.Advance(4 * time.Second)
				oe := h.wantRejected(h.do(nil))
				if oe.State != breaker.HalfOpen || oe.RetryAfter() != 6*time.Second {
					h.t.Errorf("rejection = %v (retry after %v), want half_open, 6s until the probe lease ends", oe.State, oe.RetryAfter())
				}
				if s := h.b.Snapshot(); s.RejectedHalfOpen != 1 {
					h.t.Errorf("RejectedHalfOpen = %d, want 1", s.RejectedHalfOpen)
				}
				tk.Done(nil)
			},
			want: breaker.HalfOpen,
		},
		{
			name:  "HalfOpenSuccessesBelowNeededStayHalfOpen",
			from:  (*harness).halfOpen,
			event: func(h *harness) { h.succeed(1) },
			want:  breaker.HalfOpen,
		},
		{
			name:  "HalfOpenEnoughSuccessesClose",
			from:  func(h *harness) { h.halfOpen(); h.succeed(1) },
			event: func(h *harness) { h.succeed(1) },
			want:  breaker.Closed,
			check: func(h *harness) {
				if tr := h.lastTransition(); tr.Reason != breaker.ReasonProbesSucceeded || tr.Successes != 2 {
					h.t.Errorf("transition = %+v, want probes_succeeded with 2 successes", tr)
				}
				h.fail(2)
				h.wantState(breaker.Closed) // closing starts a fresh streak
			},
		},
		{
			name:  "HalfOpenProbeFailureReopensAndRestartsTimer",
			from:  func(h *harness) { h.halfOpen(); h.succeed(1) },
			event: func(h *harness) { h.fail(1) },
			want:  breaker.Open,
			check: func(h *harness) {
				oe := h.wantRejected(h.do(nil))
				if oe.RetryAfter() != minute {
					h.t.Errorf("RetryAfter = %v, want a fresh 1m", oe.RetryAfter())
				}
				if tr := h.lastTransition(); tr.Reason != breaker.ReasonProbeFailed {
					h.t.Errorf("reason = %v, want probe_failed", tr.Reason)
				}
			},
		},
		{
			name: "HalfOpenIgnoredProbeReleasesSlot",
			from: (*harness).halfOpen,
			event: func(h *harness) {
				tk, _ := h.b.Allow()
				tk.Report(breaker.Ignored)
				tk2, err := h.b.Allow()
				if err != nil {
					h.t.Fatalf("slot not released by an ignored probe: %v", err)
				}
				tk2.Done(nil)
				if s := h.b.Snapshot(); s.ConsecutiveSuccesses != 1 {
					h.t.Errorf("consecutive successes = %d, want 1 (the ignored probe counts nothing)", s.ConsecutiveSuccesses)
				}
			},
			want: breaker.HalfOpen,
		},
		{
			name: "HalfOpenProbeNeverReturnsReopensAfterProbeTimeout",
			from: (*harness).halfOpen,
			event: func(h *harness) {
				if _, err := h.b.Allow(); err != nil { // never reported
					h.t.Fatal(err)
				}
				h.clk.Advance(10 * time.Second)
			},
			want: breaker.Open,
			check: func(h *harness) {
				if tr := h.lastTransition(); tr.Reason != breaker.ReasonProbeTimeout {
					h.t.Errorf("reason = %v, want probe_timeout", tr.Reason)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, cfg)
			tt.from(h)
			tt.event(h)
			h.wantState(tt.want)
			if tt.check != nil {
				tt.check(h)
			}
		})
	}
}
