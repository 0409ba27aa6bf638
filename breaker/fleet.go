package breaker

import (
	"fmt"
	"time"
)

// Sync connects a breaker to state shared by a fleet of replicas, so that
// one breaker per key holds across processes (package redisstate implements
// it on Redis). The breaker keeps deciding locally; Sync hears what the fleet
// needs to know and the fleet answers through ApplyFleet.
//
// A healthy call in CLOSED never reaches Sync. Implementations must not call
// the breaker back from Attach or Report.
type Sync interface {
	// Attach is called once by New, before the breaker is used.
	Attach(b *Breaker)
	// Report is called, with the breaker's lock held, for every outcome the
	// fleet counts: each counted failure in CLOSED, the first success after a
	// failure streak (the breaker's own, or the fleet's as told by
	// ApplyFleet), and every probe's outcome in HALF_OPEN (Probe non-zero,
	// expired and slow probes as failures). It must not block.
	Report(b *Breaker, r Report)
	// AcquireProbe is called, outside the lock, when a call is about to run
	// as a HALF_OPEN probe with local slot id probe. false rejects the call,
	// which may be retried after retryAfter. It may wait on the network, for
	// a bounded time; when the fleet cannot be asked, it should say true and
	// let the local decision stand.
	AcquireProbe(b *Breaker, probe uint64) (ok bool, retryAfter time.Duration)
	// Transition is called outside the lock for each transition the breaker
	// made by itself (every reason but ReasonFleet), before OnTransition;
	// and for a Reset of a CLOSED breaker, which is no transition (From and
	// To are Closed) but resets the fleet's failure streak too.
	Transition(b *Breaker, t Transition)
}

// Report is an outcome passed to Sync.Report.
type Report struct {
	Outcome Outcome
	// Probe is the HALF_OPEN slot id of the call, 0 for a call in CLOSED.
	Probe uint64
	// OpenFor is, when the outcome left the breaker OPEN, how long it stays
	// open (the open timeout with backoff applied).
	OpenFor time.Duration
}

// FleetState is a state decided by the fleet, for ApplyFleet.
type FleetState struct {
	State State
	// OpenFor is, in Open, the time left until a probe is allowed, counted
	// from the fleet's clock: a duration, never another host's wall time.
	OpenFor time.Duration
	// Streak says the fleet (in Closed) has a failure streak in progress: the
	// next success here is reported so the fleet-wide streak can end.
	Streak bool
	// Reason is why the fleet changed state, if known; the transition
	// carries it as FleetReason.
	Reason Reason
}

// ApplyFleet moves the breaker to the fleet's state. A change of state is a
// transition with ReasonFleet: listeners and logs see it like any other. In
// the same state, an Open breaker takes the fleet's remaining time. It
// reports whether the state changed. A FleetState that is not valid (an
// unknown state or reason, a negative OpenFor) changes nothing and is
// returned as an error naming the field.
func (b *Breaker) ApplyFleet(f FleetState) (changed bool, err error) {
	if err := f.validate(); err != nil {
		return false, err
	}
	b.mu.Lock()
	switch {
	case f.State != b.state:
		b.setStateFor(f.State, ReasonFleet, f.OpenFor)
		b.last.FleetReason = f.Reason
		b.pending[len(b.pending)-1].FleetReason = f.Reason
		changed = true
	case f.State == Open && f.OpenFor > 0:
		b.armOpen(b.clock.Now(), f.OpenFor)
	}
	b.setFleetStreak(f.Streak)
	b.unlockAndDeliver()
	return changed, nil
}

// validate checks what comes from outside before it reaches the lock: an
// unknown state used to panic there and leave the breaker locked for good.
func (f FleetState) validate() error {
	switch {
	case !f.State.valid():
		return fmt.Errorf("breaker: FleetState.State = %d: not a state (want one of %v)", uint8(f.State), States())
	case f.OpenFor < 0:
		return fmt.Errorf("breaker: FleetState.OpenFor = %v: must be ≥ 0 (0 means the breaker's own open timeout)", f.OpenFor)
	case f.Reason != 0 && !f.Reason.valid():
		return fmt.Errorf("breaker: FleetState.Reason = %d: not a reason (0 when not known)", uint8(f.Reason))
	}
	return nil
}

// SetFleetStreak tells a CLOSED breaker whether the fleet has a failure
// streak in progress (see FleetState.Streak). It does nothing in other states.
func (b *Breaker) SetFleetStreak(on bool) {
	b.mu.Lock()
	b.setFleetStreak(on)
	b.mu.Unlock()
}

// setFleetStreak is SetFleetStreak for a caller holding b.mu.
func (b *Breaker) setFleetStreak(on bool) {
	if b.state == Closed && b.fleetStreak != on {
		b.fleetStreak = on
		b.storeWord()
	}
}
