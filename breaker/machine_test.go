package breaker

import "testing"

// TestNext is DESIGN.md's state table for outcomes, one row per case, on the
// pure function next. (Rows driven by time — the open timeout, a probe's
// lease — are expire's, checked through the public API in
// statemachine_test.go; admission rows are Allow's.)
func TestNext(t *testing.T) {
	consecutive := rules{failureThreshold: 3, halfOpenSuccesses: 2}
	rate := rules{failureThreshold: 5, halfOpenSuccesses: 2, rate: true}
	closed := func(failures int) machine { return machine{state: Closed, failures: failures} }
	halfOpen := func(successes int) machine { return machine{state: HalfOpen, successes: successes} }
	tests := []struct {
		name    string
		m       machine
		o       Outcome
		r       rules
		tripped bool
		want    verdict
	}{
		// CLOSED, consecutive failures.
		{"ClosedSuccessWithoutStreakChangesNothing", closed(0), Success, consecutive, false,
			verdict{m: closed(0)}},
		{"ClosedSuccessResetsStreak", closed(2), Success, consecutive, false,
			verdict{m: closed(0), publish: true, report: true}},
		{"ClosedSuccessEndsTheFleetsStreak", machine{state: Closed, fleetStreak: true}, Success, consecutive, false,
			verdict{m: closed(0), publish: true, report: true}},
		{"ClosedFirstFailureStartsStreak", closed(0), Failure, consecutive, false,
			verdict{m: closed(1), publish: true, report: true}},
		{"ClosedFailureBelowThresholdStaysClosed", closed(1), Failure, consecutive, false,
			verdict{m: closed(2), report: true}},
		{"ClosedFailureAtThresholdOpens", closed(2), Failure, consecutive, false,
			verdict{m: machine{state: Open, failures: 3}, reason: ReasonFailureThreshold, report: true}},
		{"ClosedIgnoredLeavesCountUnchanged", closed(2), Ignored, consecutive, false,
			verdict{m: closed(2)}},
		// CLOSED, failure rate: the window decides.
		{"RateNotTrippedStaysClosed", closed(0), Failure, rate, false, verdict{m: closed(0)}},
		{"RateTrippedOpens", closed(0), Failure, rate, true,
			verdict{m: machine{state: Open}, reason: ReasonFailureRate}},
		{"RateTrippedBySuccessOpens", closed(0), Success, rate, true, // the call that reaches MinCalls
			verdict{m: machine{state: Open}, reason: ReasonFailureRate}},
		{"RateIgnoredChangesNothing", closed(0), Ignored, rate, true, verdict{m: closed(0)}},
		// HALF_OPEN: probes.
		{"HalfOpenSuccessesBelowNeededStayHalfOpen", halfOpen(0), Success, consecutive, false,
			verdict{m: halfOpen(1), report: true}},
		{"HalfOpenEnoughSuccessesClose", halfOpen(1), Success, consecutive, false,
			verdict{m: machine{state: Closed, successes: 2}, reason: ReasonProbesSucceeded, report: true}},
		{"HalfOpenProbeFailureReopens", halfOpen(1), Failure, consecutive, false,
			verdict{m: machine{state: Open, successes: 1}, reason: ReasonProbeFailed, report: true}},
		{"HalfOpenIgnoredProbeCountsNothing", halfOpen(1), Ignored, consecutive, false,
			verdict{m: halfOpen(1), report: true}},
		{"HalfOpenRateProbeFailureReopens", halfOpen(0), Failure, rate, false,
			verdict{m: machine{state: Open}, reason: ReasonProbeFailed, report: true}},
		// DISABLED counts in totals only.
		{"DisabledFailureNeverTrips", machine{state: Disabled}, Failure, consecutive, false,
			verdict{m: machine{state: Disabled}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := next(tt.m, tt.o, tt.r, tt.tripped); got != tt.want {
				t.Errorf("next(%+v, %v, tripped %v)\n got  %+v\n want %+v", tt.m, tt.o, tt.tripped, got, tt.want)
			}
		})
	}
}
