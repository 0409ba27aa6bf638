package breaker

import "time"

// Clock is the breaker's source of time. The zero Config uses the system
// clock; tests pass a manual clock (see package breakertest) so that no test
// ever sleeps.
//
// The breaker reads the clock only off the hot path: when it changes state,
// when it admits a probe (its lease's deadline), when it records an outcome
// under a failure-rate policy, and when a caller asks how long until a probe
// is allowed.
//
// Deadlines (the end of the open timeout, the probes' leases) are times the
// breaker keeps; no goroutine waits for them. One timer per breaker, armed
// with AfterFunc, wakes it at the earliest so that the transition happens
// on time even when no call comes; it is re-armed only to move earlier, so
// a stream of probes arms at most one timer per ProbeTimeout.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a manual clock, from
	// the goroutine that advances time) once d has elapsed. stop cancels the
	// call and reports whether it did so before f started.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the real clock: time.Now and time.AfterFunc.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (SystemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
