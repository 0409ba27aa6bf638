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

	// transitions[from][to] counts transitions between each pair of states:
	// unexported, so that adding a state changes no exported type.
	transitions [numStates][numStates]uint64
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
		Successes:        b.totals.load(countSuccess),
		SuccessesCounted: b.countSuccesses,
		Failures:         b.totals.load(countFailure),
		Ignored:          b.totals.load(countIgnored),
		Rejected:         b.totals.load(countRejected),
		DryRunRejected:   b.totals.load(countDryRunRejected),
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
		b.window.advance(b.now())
		s.WindowCalls, s.WindowFailures = b.window.calls, b.window.failures
		s.ConsecutiveFailures = 0
	}
	s.RejectedHalfOpen = b.halfOpenRejected
	s.StaleOutcomes = b.staleOutcomes
	s.transitions = b.transitions
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

// TransitionCount returns how many times the breaker went from one state to
// the other (0 for a state that is not one of States()).
func (s Snapshot) TransitionCount(from, to State) uint64 {
	if !from.valid() || !to.valid() {
		return 0
	}
	return s.transitions[from][to]
}

// DryRun reports whether dry-run mode is on (see Config.DryRun). It reads
// one atomic word: no lock, no copy.
func (b *Breaker) DryRun() bool { return word(b.word.Load()).dryRun() }

// RetryAfter is Snapshot().RetryAfter without the snapshot: how long until a
// probe is allowed, 0 unless OPEN or HALF_OPEN with every probe slot taken.
// In OPEN it takes no lock.
func (b *Breaker) RetryAfter() time.Duration {
	switch word(b.word.Load()).state() {
	case Open:
		return b.openErr.Load().RetryAfter() // stored before the word said Open
	case HalfOpen:
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.state == HalfOpen && len(b.probes) >= b.cfg.HalfOpenProbes {
			return b.halfOpenError().RetryAfter()
		}
	}
	return 0
}
