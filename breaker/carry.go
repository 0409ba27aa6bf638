package breaker

import (
	"fmt"
	"time"
)

// Renew replaces the breaker for key with a new one built from the
// registry's config for key as it is now (Configure is asked again, so a
// Configure that reads a reloaded config picks up the new settings), and
// carries the old breaker's state over, so that new settings never silently
// change a circuit's state:
//
//   - OPEN stays OPEN until the old deadline (the new OpenTimeout applies
//     from the next opening); FORCED_OPEN and DISABLED stay forced;
//     HALF_OPEN stays HALF_OPEN.
//   - The failure streak in CLOSED and the successful probes in HALF_OPEN
//     carry over, shortened if need be to one below the new threshold: a
//     new setting alone never trips or closes a circuit.
//   - The backoff of the open timeout, the fleet's streak, the totals, the
//     transition counts and the last transition carry over; totals only grow.
//   - A failure-rate window starts afresh: its counts belong to the old
//     window's length.
//
// The old breaker is retired: its timers stop, its probe slots are freed,
// and an outcome still reported to it (a call that was in flight) is stale
// and changes nothing. Without an old breaker, Renew is Get. The returned
// breaker is the one Get returns from now on.
func (r *Registry) Renew(key string) (*Breaker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.breakers.Load(key)
	b, err := New(r.ConfigFor(key))
	if err != nil {
		return nil, fmt.Errorf("registry: key %q: %w", key, err)
	}
	if ok {
		b.inherit(v.(*entry).b)
	}
	e := &entry{b: b}
	e.used.Store(true)
	r.breakers.Store(key, e)
	return b, nil
}

// inherit moves old's state into b, which is new and not yet published to
// callers, and retires old.
func (b *Breaker) inherit(old *Breaker) {
	old.mu.Lock()
	old.gen++ // calls admitted before now report stale outcomes
	old.stopTimer()
	old.releaseProbes()
	old.storeWord()
	if old.changed != nil { // whoever waits on the old breaker looks again
		close(old.changed)
		old.changed = nil
	}
	b.mu.Lock()
	b.totals.carry(&old.totals)
	b.state, b.gen = old.state, old.gen
	b.halfOpenRejected, b.staleOutcomes = old.halfOpenRejected, old.staleOutcomes
	b.reopens, b.transitions, b.last = old.reopens, old.transitions, old.last
	if b.window == nil && old.window == nil {
		b.failures = min(old.failures, b.cfg.FailureThreshold-1)
	}
	b.probeSuccesses = min(old.probeSuccesses, b.cfg.HalfOpenSuccesses-1)
	b.fleetStreak = old.fleetStreak && b.state == Closed
	openUntil := old.openUntil
	old.mu.Unlock()

	switch b.state {
	case Open:
		// A deadline already passed (its timer had not fired yet) ends at
		// once, through the ordinary open_timeout transition.
		b.armOpen(b.clock.Now(), max(openUntil.Sub(b.clock.Now()), time.Nanosecond))
	case ForcedOpen:
		b.openErr.Store(&OpenError{Name: b.name, State: ForcedOpen, clock: b.clock})
	}
	b.storeWord()
	b.mu.Unlock()
}
