package breaker

import "time"

// Snapshot is a consistent view of a breaker for dashboards and metrics.
// Counters (Successes … DryRunRejected) only grow; the rest describes the
// current state.
type Snapshot struct {
	Name       string
	State      State
	Generation uint64
	DryRun     bool

	// ConsecutiveFailures is the current failure streak in CLOSED.
	ConsecutiveFailures int
	// ConsecutiveSuccesses is the number of successful probes in this
	// HALF_OPEN episode.
	ConsecutiveSuccesses int
	// FleetStreak says the fleet sharing this breaker (Config.Sync) has a
	// failure streak in progress that this replica has not yet ended.
	FleetStreak bool
	// ProbesInFlight is the number of HALF_OPEN slots taken.
	ProbesInFlight int
	// WindowCalls and WindowFailures are the failure-rate window's counts
	// (failure-rate policy only).
	WindowCalls, WindowFailures int

	// Successes counts successful calls if Config.CountSuccesses is set, and
	// is 0 otherwise (SuccessesCounted tells which).
	Successes        uint64
	SuccessesCounted bool
	Failures         uint64 // failed calls, expired probes included
	Ignored          uint64 // calls whose outcome was Ignored
	Rejected         uint64 // calls rejected by OPEN or FORCED_OPEN
	RejectedHalfOpen uint64 // calls rejected because every probe slot was taken
	DryRunRejected   uint64 // calls that dry-run mode let through instead of rejecting
	StaleOutcomes    uint64 // outcomes of calls admitted under an earlier state, not counted in it

	// Transitions[from][to] counts transitions between each pair of states.
	Transitions [numStates][numStates]uint64
	// LastTransition is the most recent transition; its At is zero if the
	// breaker never changed state.
	LastTransition Transition

	// OpenUntil is when the open timeout ends (OPEN only).
	OpenUntil time.Time
	// RetryAfter is how long until a probe is allowed, computed at the time
	// of the snapshot: the rest of the open timeout in OPEN, the time until
	// the oldest probe's lease ends in HALF_OPEN with every slot taken, else 0.
	RetryAfter time.Duration
}

// Snapshot returns the breaker's current counts and state. It takes the
// breaker's lock briefly and never blocks calls in CLOSED.
func (b *Breaker) Snapshot() Snapshot {
	s := Snapshot{
		Name:             b.name,
		Successes:        b.successes.Load(),
		SuccessesCounted: b.countSuccesses,
		Failures:         b.failuresTotal.Load(),
		Ignored:          b.ignoredTotal.Load(),
		Rejected:         b.rejected.Load(),
		DryRunRejected:   b.dryRunRejected.Load(),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s.State = b.state
	s.Generation = b.gen
	s.DryRun = b.dryRun
	s.ConsecutiveFailures = b.failures
	s.ConsecutiveSuccesses = b.probeSuccesses
	s.ProbesInFlight = len(b.probes)
	s.FleetStreak = b.fleetStreak
	if b.window != nil {
		b.window.advance(b.clock.Now())
		s.WindowCalls, s.WindowFailures = b.window.calls, b.window.failures
		s.ConsecutiveFailures = 0
	}
	s.RejectedHalfOpen = b.halfOpenRejected
	s.StaleOutcomes = b.staleOutcomes
	s.Transitions = b.transitions
	s.LastTransition = b.last
	switch {
	case b.state == Open:
		s.OpenUntil = b.openUntil
		s.RetryAfter = max(b.openUntil.Sub(b.clock.Now()), 0)
	case b.state == HalfOpen && len(b.probes) >= b.cfg.HalfOpenProbes:
		s.RetryAfter = b.halfOpenError().RetryAfter()
	}
	return s
}
