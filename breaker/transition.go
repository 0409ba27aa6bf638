package breaker

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// Reason says why a transition happened.
type Reason uint8

const (
	// ReasonFailureThreshold: FailureThreshold consecutive failures in CLOSED.
	ReasonFailureThreshold Reason = iota + 1
	// ReasonFailureRate: the failure rate over the window reached its threshold.
	ReasonFailureRate
	// ReasonOpenTimeout: the open timeout elapsed; probes are allowed.
	ReasonOpenTimeout
	// ReasonProbesSucceeded: HalfOpenSuccesses consecutive probes succeeded.
	ReasonProbesSucceeded
	// ReasonProbeFailed: a probe failed in HALF_OPEN.
	ReasonProbeFailed
	// ReasonProbeTimeout: a probe held its slot longer than ProbeTimeout.
	ReasonProbeTimeout
	// ReasonForcedOpen: an operator forced the breaker open.
	ReasonForcedOpen
	// ReasonForcedClosed: an operator disabled the breaker.
	ReasonForcedClosed
	// ReasonReset: an operator reset the breaker to CLOSED.
	ReasonReset
	// ReasonFleet: the state was decided by the fleet of replicas sharing the
	// breaker (see package redisstate) and applied here.
	ReasonFleet
)

var reasonNames = [...]string{"", "failure_threshold", "failure_rate", "open_timeout", "probes_succeeded",
	"probe_failed", "probe_timeout", "forced_open", "forced_closed", "reset", "fleet"}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, error) {
	for i, n := range reasonNames {
		if n == s && i > 0 {
			return Reason(i), nil
		}
	}
	return 0, fmt.Errorf("breaker: unknown reason %q (want one of %s)", s, strings.Join(reasonNames[1:], ", "))
}

// valid reports whether r is one of the reasons.
func (r Reason) valid() bool { return r != 0 && int(r) < len(reasonNames) }

// String returns the reason in snake case, e.g. "failure_threshold".
func (r Reason) String() string {
	if int(r) < len(reasonNames) && r != 0 {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Transition is the event delivered once per state change.
type Transition struct {
	Name       string
	From, To   State
	Reason     Reason
	At         time.Time
	Generation uint64 // the breaker's generation after the transition
	// Failures is the consecutive failures (or, for a failure-rate policy,
	// the failures in the window) that led to the transition.
	Failures int
	// Calls is the number of calls in the window (failure-rate policy only).
	Calls int
	// Successes is the number of consecutive successful probes.
	Successes int
	// OpenFor is, when To is Open, how long until a probe is allowed.
	OpenFor time.Duration
	// FleetReason is, for ReasonFleet, why the fleet changed state (e.g.
	// ReasonFailureThreshold on another replica), or 0 if not known.
	FleetReason Reason
	// DecidedBy is, for ReasonFleet, the replica whose call made the fleet's
	// transition (FleetState.DecidedBy), or "" if not known.
	DecidedBy string
}

// Message is the human-readable log line for the transition.
func (t Transition) Message() string {
	switch t.To {
	case Open:
		switch t.Reason {
		case ReasonFailureThreshold:
			return fmt.Sprintf("Circuit breaker OPEN for %s after %d consecutive failures", t.Name, t.Failures)
		case ReasonFailureRate:
			return fmt.Sprintf("Circuit breaker OPEN for %s: %d of %d calls failed in the window", t.Name, t.Failures, t.Calls)
		case ReasonProbeFailed:
			return fmt.Sprintf("Circuit breaker OPEN for %s again: probe failed, next probe in %v", t.Name, t.OpenFor)
		case ReasonProbeTimeout:
			return fmt.Sprintf("Circuit breaker OPEN for %s again: probe timed out, next probe in %v", t.Name, t.OpenFor)
		case ReasonFleet:
			return fmt.Sprintf("Circuit breaker OPEN for %s: opened by the fleet%s, next probe in %v", t.Name, t.fleetCause(), t.OpenFor.Round(time.Millisecond))
		}
		return fmt.Sprintf("Circuit breaker OPEN for %s (%s)", t.Name, t.Reason)
	case HalfOpen:
		// No probe yet: one is logged when it is let through (logProbe), which
		// a fleet's replica may never be.
		return fmt.Sprintf("Circuit breaker HALF_OPEN for %s: probes allowed", t.Name)
	case Closed:
		switch t.Reason {
		case ReasonProbesSucceeded:
			return fmt.Sprintf("Circuit breaker CLOSED for %s — recovered after %d successful probes", t.Name, t.Successes)
		case ReasonFleet:
			return fmt.Sprintf("Circuit breaker CLOSED for %s — recovered (closed by the fleet%s)", t.Name, t.fleetCause())
		}
		return fmt.Sprintf("Circuit breaker CLOSED for %s (%s)", t.Name, t.Reason)
	case ForcedOpen:
		return fmt.Sprintf("Circuit breaker FORCED OPEN for %s (%s)", t.Name, t.Reason)
	case Disabled:
		return fmt.Sprintf("Circuit breaker DISABLED for %s: calls pass, nothing trips (%s)", t.Name, t.Reason)
	}
	return fmt.Sprintf("Circuit breaker %s for %s (%s)", t.To, t.Name, t.Reason)
}

// fleetCause is " (<fleet reason>)" when known.
func (t Transition) fleetCause() string {
	if t.FleetReason == 0 {
		return ""
	}
	return " (" + t.FleetReason.String() + ")"
}

// Level is the log level of the transition: ERROR when opening, WARN when
// half-opening or disabling, INFO when closing.
func (t Transition) Level() slog.Level {
	switch t.To {
	case Open, ForcedOpen:
		return slog.LevelError
	case HalfOpen, Disabled:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// setState moves the breaker to state to and queues the event.
// It requires that b.mu is held; the caller delivers the event with
// unlockAndDeliver.
func (b *Breaker) setState(to State, reason Reason) { b.setStateFor(to, reason, 0) }

// setStateFor is setState with the open timeout given (if openFor > 0)
// instead of computed: the fleet hands its remaining time to each replica.
func (b *Breaker) setStateFor(to State, reason Reason, openFor time.Duration) {
	from := b.state
	now := b.clock.Now()
	t := Transition{Name: b.name, From: from, To: to, Reason: reason, At: now,
		Failures: b.failures, Successes: b.probeSuccesses}
	if b.window != nil {
		t.Failures, t.Calls = b.window.failures, b.window.calls
	}
	if from == HalfOpen && to == Open {
		t.Failures = 1 // the failed or expired probe
	}

	b.gen++
	b.state = to
	if to != Open && to != HalfOpen {
		b.stopTimer() // nothing falls due in this state
	}
	b.releaseProbes()
	b.failures, b.probeSuccesses = 0, 0
	b.openUntil = time.Time{}

	switch to {
	case Open:
		if from == HalfOpen {
			b.reopens++
		}
		d := openFor
		if d <= 0 {
			d = b.openTimeout()
		}
		t.OpenFor = d
		b.armOpen(now, d)
	case ForcedOpen:
		b.openErr.Store(&OpenError{Name: b.name, State: ForcedOpen, clock: b.clock})
	case Closed:
		b.reopens = 0
		b.fleetStreak = false
		if b.window != nil {
			b.window.reset(b.instant(now))
		}
	}
	t.Generation = b.gen
	b.storeWord()
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	b.transitions[from][to]++
	b.last = t
	b.pending = append(b.pending, t)
}

// armOpen sets the end of the open timeout to now+d and makes the timer
// wake the breaker then. It requires b.mu and b.state == Open.
func (b *Breaker) armOpen(now time.Time, d time.Duration) {
	b.openUntil = now.Add(d)
	b.openErr.Store(&OpenError{Name: b.name, State: Open, until: b.openUntil, clock: b.clock})
	at := b.instant(b.openUntil)
	if b.timer.stop != nil && b.timer.at < at {
		// An earlier wake-up (a probe's lease of the HALF_OPEN just left)
		// would find nothing due and re-arm; replace it now instead.
		b.stopTimer()
	}
	b.wake(b.instant(now), at)
}

// storeWord publishes the state for the lock-free paths. It requires that
// b.mu is held.
func (b *Breaker) storeWord() {
	slow := b.state == Closed && (b.failures > 0 || b.window != nil || b.fleetStreak)
	w := makeWord(b.state, slow, b.gen)
	if b.dryRun {
		w |= wordDryRun
	}
	if b.timed {
		w |= wordTimed
	}
	if b.countSuccesses {
		w |= wordCounted
	}
	b.word.Store(uint64(w))
}

// openTimeout is the time to stay OPEN now: the configured timeout, grown by
// the backoff for each reopen since the last close. It requires b.mu.
func (b *Breaker) openTimeout() time.Duration {
	if b.cfg.OpenBackoff == nil {
		return b.cfg.OpenTimeout
	}
	return backoffTimeout(b.cfg.OpenTimeout, *b.cfg.OpenBackoff, b.reopens, b.rand)
}

// backoffTimeout is d × bo.Multiplier^reopens capped at bo.Max, then spread
// by ±bo.Jitter with rnd() in [0, 1) (called only with jitter). It saturates
// at the top of the Duration range: converting a float64 of 2⁶³ or more to a
// Duration overflows (to a negative value, which became 1 ms).
func backoffTimeout(d time.Duration, bo Backoff, reopens int, rnd func() float64) time.Duration {
	f := float64(d)
	for i := 0; i < reopens && f < float64(bo.Max); i++ {
		f *= bo.Multiplier
	}
	d = min(saturate(f), bo.Max)
	if bo.Jitter > 0 {
		d = saturate(float64(d) * (1 + bo.Jitter*(2*rnd()-1)))
	}
	return max(d, time.Millisecond)
}

// saturate converts f to a Duration, clamped to [0, the largest Duration].
func saturate(f float64) time.Duration {
	switch {
	case f >= float64(math.MaxInt64): // 2⁶³: the first float64 out of range
		return math.MaxInt64
	case f <= 0:
		return 0
	}
	return time.Duration(f)
}

// unlockAndDeliver releases b.mu and delivers queued events in order,
// outside the lock. Only one goroutine delivers at a time; events queued
// meanwhile by others are delivered by it, so order is kept.
func (b *Breaker) unlockAndDeliver() {
	if b.delivering || len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	b.delivering = true
	done := false
	defer func() {
		if !done { // a listener panicked; b.mu is not held
			b.mu.Lock()
			b.delivering = false
			b.mu.Unlock()
		}
	}()
	for len(b.pending) > 0 {
		batch := b.pending
		b.pending = nil
		b.mu.Unlock()
		for _, t := range batch {
			b.emit(t)
		}
		b.mu.Lock()
	}
	b.delivering = false
	done = true
	b.mu.Unlock()
}

// logProbe logs a probe let through: only here, once the fleet (if any)
// granted its lease, since the transition to HALF_OPEN sends none by itself.
func (b *Breaker) logProbe(id uint64) {
	// The handler asked directly: Logger.Enabled's wrapper was a tenth of a probe.
	if l := b.logger; l.Handler().Enabled(context.Background(), slog.LevelInfo) {
		l.LogAttrs(context.Background(), slog.LevelInfo, b.probeMsg,
			slog.String("breaker", b.name), slog.Uint64("probe", id))
	}
}

func (b *Breaker) emit(t Transition) {
	if l := b.logger; l.Enabled(context.Background(), t.Level()) {
		attrs := []slog.Attr{
			slog.String("breaker", t.Name),
			slog.String("from", t.From.String()),
			slog.String("to", t.To.String()),
			slog.String("reason", t.Reason.String()),
			slog.Int("failures", t.Failures),
			slog.Int("successes", t.Successes),
			slog.Uint64("generation", t.Generation),
		}
		if t.Calls > 0 {
			attrs = append(attrs, slog.Int("calls", t.Calls))
		}
		if t.FleetReason != 0 {
			attrs = append(attrs, slog.String("fleet_reason", t.FleetReason.String()))
		}
		if t.DecidedBy != "" {
			attrs = append(attrs, slog.String("decided_by", t.DecidedBy))
		}
		if t.To == Open {
			attrs = append(attrs, slog.Duration("open_for", t.OpenFor))
		}
		l.LogAttrs(context.Background(), t.Level(), t.Message(), attrs...)
	}
	if b.fleet.transition != nil && t.Reason != ReasonFleet {
		b.fleet.transition.Transition(b.fleet.link, t)
	}
	if b.onTransition != nil {
		b.onTransition(t)
	}
}
