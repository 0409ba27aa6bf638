package breaker

import "time"

// The breaker's deadlines (the end of the open timeout, each probe's lease)
// are times kept under b.mu; one timer per breaker wakes it at the earliest.
// No goroutine waits for them: a timer of the Clock (time.AfterFunc for the
// system clock) runs wakeUp when it falls due, and a manual clock runs it in
// the goroutine that advances time, so tests see each transition at the
// instant it is due.
//
// The timer is re-armed only to move it earlier. A timer that fires before
// anything is due (the probe it was armed for has returned) re-arms for the
// next deadline, so a stream of probes arms at most one timer per
// ProbeTimeout instead of allocating one per probe.

// wake makes the breaker's timer fire by at. It requires b.mu.
func (b *Breaker) wake(now, at instant) {
	if b.timer.stop != nil && b.timer.at <= at {
		return // an earlier or equal wake-up is armed (every probe but the first): it re-arms if needed
	}
	b.arm(now, at)
}

// arm replaces the timer with one that fires at at. It requires b.mu.
func (b *Breaker) arm(now, at instant) {
	b.timer.stop.call()
	b.timer.seq++
	seq := b.timer.seq
	b.timer.at = at
	b.timer.stop = b.clock.AfterFunc(time.Duration(at-now), func() { b.wakeUp(seq) })
}

// stopTimer cancels the timer: nothing is due in the breaker's state. It
// requires b.mu.
func (b *Breaker) stopTimer() {
	b.timer.stop.call()
	b.timer = deadlineTimer{seq: b.timer.seq}
}

// wakeUp applies what fell due and arms the timer for the next deadline.
func (b *Breaker) wakeUp(seq uint64) {
	b.mu.Lock()
	if b.timer.seq != seq {
		b.mu.Unlock() // replaced while it fired: the newer timer is in charge
		return
	}
	b.timer = deadlineTimer{seq: seq}
	now := b.now()
	b.expire(now)
	if at, ok := b.nextDeadline(); ok {
		b.wake(now, at)
	}
	b.unlockAndDeliver()
}

// expire makes the transitions due by now: OPEN's timeout elapsed, or a
// probe's lease ran out (a failed probe). It requires b.mu.
func (b *Breaker) expire(now instant) {
	switch b.state {
	case Open:
		if now >= b.instant(b.openUntil) {
			b.setState(HalfOpen, ReasonOpenTimeout)
		}
	case HalfOpen:
		if first, ok := b.firstProbe(); ok && now >= first.deadline {
			b.releaseProbe(first.id)
			b.totals.add(countFailure)
			b.setState(Open, ReasonProbeTimeout)
			b.report(Failure, first.id)
		}
	}
}

// nextDeadline is when the breaker next changes by itself, if it will. It
// requires b.mu.
func (b *Breaker) nextDeadline() (instant, bool) {
	switch b.state {
	case Open:
		return b.instant(b.openUntil), true
	case HalfOpen:
		first, ok := b.firstProbe()
		return first.deadline, ok
	}
	return 0, false
}

// firstProbe is the probe whose lease ends first, if any. It requires b.mu.
func (b *Breaker) firstProbe() (probe, bool) {
	if len(b.probes) == 0 {
		return probe{}, false
	}
	first := b.probes[0]
	for _, p := range b.probes[1:] {
		if p.deadline < first.deadline {
			first = p
		}
	}
	return first, true
}

// deadlineTimer is the breaker's one armed timer. It is guarded by b.mu.
type deadlineTimer struct {
	at   instant
	stop stopFunc // nil when none is armed
	seq  uint64   // which wakeUp is current
}

// stopFunc is a Clock timer's stop function.
type stopFunc func() bool

func (f stopFunc) call() {
	if f != nil {
		f()
	}
}
