package breaker_test

import (
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
)

// decidingSync is a recordingSync whose fleet decides the count-driven
// transitions while decide is true.
type decidingSync struct {
	recordingSync
	decide bool
	asked  []breaker.Reason
}

var _ breaker.DecideSync = (*decidingSync)(nil)

func (s *decidingSync) FleetDecides(_ *breaker.FleetLink, r breaker.Reason) bool {
	s.asked = append(s.asked, r)
	return s.decide
}

func TestAFleetThatDecidesKeepsTheBreakerWhereItsOwnCountsWouldMoveIt(t *testing.T) {
	s := &decidingSync{decide: true}
	h := newHarness(t, breaker.Config{FailureThreshold: 3, HalfOpenSuccesses: 2, HalfOpenProbes: 1, Sync: s})

	h.fail(5) // 3 reach the threshold: the fleet decides, the calls keep running
	h.wantState(breaker.Closed)
	if got := len(s.takeReports()); got != 5 {
		t.Fatalf("%d failures reported, want all 5: the fleet counts them", got)
	}
	if want := []breaker.Reason{breaker.ReasonFailureThreshold, breaker.ReasonFailureThreshold, breaker.ReasonFailureThreshold}; len(s.asked) != len(want) {
		t.Fatalf("asked %v, want once per failure at or above the threshold: %v", s.asked, want)
	}
	s.link.Apply(breaker.FleetState{State: breaker.Open, Reason: breaker.ReasonFailureThreshold, DecidedBy: "replica-b"})
	h.wantState(breaker.Open)
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonFleet || tr.DecidedBy != "replica-b" || tr.FleetReason != breaker.ReasonFailureThreshold {
		t.Fatalf("transition %+v, want the fleet's, decided by replica-b", tr)
	}

	h.clk.Advance(h.b.Config().OpenTimeout)
	h.wantState(breaker.HalfOpen)
	s.asked = nil
	h.succeed(3) // probes one after another: 2 would close it, the fleet decides
	h.wantState(breaker.HalfOpen)
	if len(s.asked) != 2 || s.asked[0] != breaker.ReasonProbesSucceeded {
		t.Fatalf("asked %v, want ProbesSucceeded at the 2nd and 3rd successful probe", s.asked)
	}
	s.link.Apply(breaker.FleetState{State: breaker.Closed, Reason: breaker.ReasonProbesSucceeded, DecidedBy: "replica-a"})
	h.wantState(breaker.Closed)

	// The fleet cannot be reached: the breaker's own counts decide.
	s.decide = false
	h.fail(3)
	h.wantState(breaker.Open)
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonFailureThreshold || tr.DecidedBy != "" {
		t.Fatalf("transition %+v, want the breaker's own, decided by no fleet replica", tr)
	}
	h.clk.Advance(h.b.Config().OpenTimeout)
	h.succeed(2)
	h.wantState(breaker.Closed)
}

func TestAFleetThatDecidesIsNotAskedAboutAFailedProbe(t *testing.T) {
	s := &decidingSync{decide: true}
	h := newHarness(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 2, Sync: s})
	h.fail(1) // threshold 1: asked, kept CLOSED
	h.wantState(breaker.Closed)
	s.link.Apply(breaker.FleetState{State: breaker.Open})
	h.clk.Advance(h.b.Config().OpenTimeout)
	s.asked = nil
	h.fail(1) // a failed probe reopens at once: no count is involved
	h.wantState(breaker.Open)
	if len(s.asked) != 0 {
		t.Fatalf("asked %v about a failed probe", s.asked)
	}
}
