package breaker

import (
	"context"
	"fmt"
	"time"
)

// Sync connects a breaker to state shared by a fleet of replicas, so that
// one breaker per key holds across processes (package redisstate implements
// it on Redis). Set it as Config.Sync. The breaker keeps deciding locally;
// the fleet hears what it needs to know through the hooks below and answers
// through the FleetLink it was given at Attach.
//
// Sync has one method and will keep exactly one. Every other hook is an
// optional interface, discovered by type assertion once, at New, as
// net/http discovers an http.Flusher: an implementation implements those it
// needs (OutcomeSync, ProbeSync, TransitionSync, DecideSync), and a later version adds a
// hook as a new optional interface, never as a method of an existing one, so
// no implementation breaks. Assert at compile time the ones you mean to
// implement, so that a signature mistake is not silently a missing hook:
//
//	var _ interface {
//		breaker.Sync
//		breaker.OutcomeSync
//	} = (*MyFleet)(nil)
//
// A healthy call in CLOSED never reaches the Sync.
type Sync interface {
	// Attach is called once by New, before the breaker is returned, with
	// the breaker's link: the only way to move the breaker to the fleet's
	// state. It must not call the breaker back.
	Attach(l *FleetLink)
}

// OutcomeSync is a Sync that hears the outcomes the fleet counts.
type OutcomeSync interface {
	// Report is called, with the breaker's lock held, for each counted
	// failure in CLOSED, the first success after a failure streak (the
	// breaker's own, or the fleet's as told by FleetLink.SetStreak), and
	// every probe's outcome in HALF_OPEN (Probe non-zero, expired and slow
	// probes as failures). It must not block, nor call the breaker or the
	// link back.
	Report(l *FleetLink, r Report)
}

// ProbeSync is a Sync that leases HALF_OPEN probes fleet-wide.
type ProbeSync interface {
	// AcquireProbe is called, outside the lock, when a call is about to run
	// as a HALF_OPEN probe with local slot id probe. false rejects the call,
	// which may be retried after retryAfter. It may wait on the network,
	// for a bounded time, and must return promptly once ctx (the caller's,
	// from AllowContext or Do) is done: a refusal then is reported to the
	// caller as ctx's error, not as a rejection. When the fleet cannot be
	// asked, it should say true and let the local decision stand.
	AcquireProbe(ctx context.Context, l *FleetLink, probe uint64) (ok bool, retryAfter time.Duration)
}

// TransitionSync is a Sync that hears the breaker's own transitions.
type TransitionSync interface {
	// Transition is called outside the lock for each transition the breaker
	// made by itself (every reason but ReasonFleet), before OnTransition;
	// and for a Reset of a CLOSED breaker, which is no transition (From and
	// To are Closed) but resets the fleet's failure streak too.
	Transition(l *FleetLink, t Transition)
}

// DecideSync is a Sync whose fleet makes the transitions that counts of
// consecutive outcomes decide, because it counts every replica's: the
// fleet-wide failure streak, the successful probes of all replicas. A
// breaker whose own counts reach a threshold first asks it whether to wait:
// its last outcome may still be on its way to the fleet, and a replica that
// moved ahead of it would close while the fleet still probes (its ordinary
// calls reaching a service that has passed fewer probes than
// HalfOpenSuccesses) or open on a streak the fleet saw broken elsewhere.
type DecideSync interface {
	// FleetDecides is called, with the breaker's lock held, when the
	// breaker's own counts would make a transition for reason
	// (ReasonFailureThreshold in CLOSED, ReasonProbesSucceeded in
	// HALF_OPEN). true keeps the breaker in its state, counting on, until
	// the fleet's decision arrives through FleetLink.Apply; the outcome is
	// still reported (OutcomeSync). false lets the breaker decide, as it
	// must when the fleet cannot be reached. It must not block, nor call the
	// breaker or the link back.
	FleetDecides(l *FleetLink, reason Reason) bool
}

// FleetLink is a breaker's handle for its Sync, handed to Sync.Attach: the
// Sync reads the breaker through Breaker and moves it to the fleet's state
// through Apply and SetStreak, which the breaker's own API does not offer.
type FleetLink struct {
	b *Breaker
}

// Breaker returns the linked breaker, for reading (Name, Config, State,
// Snapshot).
func (l *FleetLink) Breaker() *Breaker { return l.b }

// Report is an outcome passed to OutcomeSync.Report.
type Report struct {
	Outcome Outcome
	// Probe is the HALF_OPEN slot id of the call, 0 for a call in CLOSED.
	Probe uint64
	// OpenFor is, when the outcome left the breaker OPEN, how long it stays
	// open (the open timeout with backoff applied).
	OpenFor time.Duration
}

// FleetState is a state decided by the fleet, for FleetLink.Apply.
type FleetState struct {
	State State
	// OpenFor is, in Open, the time left until a probe is allowed, counted
	// from the fleet's clock: a duration, never another host's wall time.
	// 0 means the breaker's own open timeout.
	OpenFor time.Duration
	// Streak says the fleet (in Closed) has a failure streak in progress: the
	// next success here is reported so the fleet-wide streak can end.
	Streak bool
	// Reason is why the fleet changed state, if known; the transition
	// carries it as FleetReason.
	Reason Reason
	// DecidedBy names the replica whose call made the fleet's transition,
	// if known; the transition carries it as DecidedBy.
	DecidedBy string
}

// Apply moves the breaker to the fleet's state. A change of state is a
// transition with ReasonFleet: listeners and logs see it like any other. In
// the same state, an Open breaker takes the fleet's remaining time. It
// reports whether the state changed. A FleetState that is not valid (an
// unknown state or reason, a negative OpenFor) changes nothing and is
// returned as an error naming the field. Apply must not be called from
// OutcomeSync.Report, which runs under the breaker's lock.
func (l *FleetLink) Apply(f FleetState) (changed bool, err error) {
	if err := f.validate(); err != nil {
		return false, err
	}
	b := l.b
	b.mu.Lock()
	switch {
	case f.State != b.state:
		b.setStateFor(f.State, ReasonFleet, f.OpenFor)
		b.last.FleetReason, b.last.DecidedBy = f.Reason, f.DecidedBy
		b.pending[len(b.pending)-1].FleetReason = f.Reason
		b.pending[len(b.pending)-1].DecidedBy = f.DecidedBy
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

// SetStreak tells a CLOSED breaker whether the fleet has a failure streak
// in progress (see FleetState.Streak). It does nothing in other states.
func (l *FleetLink) SetStreak(on bool) {
	b := l.b
	b.mu.Lock()
	b.setFleetStreak(on)
	b.mu.Unlock()
}

// setFleetStreak is SetStreak for a caller holding b.mu.
func (b *Breaker) setFleetStreak(on bool) {
	if b.state == Closed && b.fleetStreak != on {
		b.fleetStreak = on
		b.storeWord()
	}
}

// fleet is a breaker's Sync and the optional hooks it implements, found
// once at New. Every field is nil for a breaker with no Sync.
type fleet struct {
	link       *FleetLink
	outcomes   OutcomeSync
	probes     ProbeSync
	transition TransitionSync
	decides    DecideSync
}

func newFleet(b *Breaker, s Sync) fleet {
	if s == nil {
		return fleet{}
	}
	f := fleet{link: &FleetLink{b: b}}
	f.outcomes, _ = s.(OutcomeSync)
	f.probes, _ = s.(ProbeSync)
	f.transition, _ = s.(TransitionSync)
	f.decides, _ = s.(DecideSync)
	return f
}
