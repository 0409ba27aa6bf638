package breaker

import (
	"errors"
	"fmt"
	"time"
)

// ErrOpen is the sentinel for a call the breaker refused without running it.
// Every rejection satisfies errors.Is(err, ErrOpen); errors.As with
// *OpenError gives the breaker's name and how long until a probe is allowed.
var ErrOpen = errors.New("circuit open")

// OpenError is the error returned for a rejected call. One value is made per
// open episode and shared by every rejection in it, so rejecting allocates
// nothing; RetryAfter is computed from the clock only when asked.
type OpenError struct {
	// Name is the breaker's name.
	Name string
	// State is the state that rejected the call: Open, ForcedOpen, or
	// HalfOpen when every probe slot was taken.
	State State

	until time.Time // zero: no known time (forced open)
	clock Clock     // nil: made by NewOpenError, RetryAfter is fixed
	after time.Duration
}

// NewOpenError returns the rejection a breaker named name makes in state s
// (Open, ForcedOpen, or HalfOpen with every probe slot taken), with a
// RetryAfter that stays retryAfter: for tests of code that handles
// rejections, such as a stub client or a fake breaker. The error satisfies
// errors.Is(err, ErrOpen) like a real one.
func NewOpenError(name string, s State, retryAfter time.Duration) *OpenError {
	return &OpenError{Name: name, State: s, after: max(retryAfter, 0)}
}

// Error returns e.g. `breaker "cloudflare": circuit open, probe allowed in 41s`.
func (e *OpenError) Error() string {
	switch {
	case e.State == ForcedOpen:
		return fmt.Sprintf("breaker %q: circuit forced open", e.Name)
	case e.State == HalfOpen:
		return fmt.Sprintf("breaker %q: circuit half-open, all probe slots taken, retry in %v", e.Name, e.RetryAfter().Round(time.Millisecond))
	default:
		return fmt.Sprintf("breaker %q: circuit open, probe allowed in %v", e.Name, e.RetryAfter().Round(time.Millisecond))
	}
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter returns how long until the breaker lets a probe through: the
// rest of the open timeout, or for HalfOpen the time until the oldest
// probe's lease runs out. It returns 0 when that time has passed or is not
// known (ForcedOpen).
func (e *OpenError) RetryAfter() time.Duration {
	if e.clock == nil {
		return e.after
	}
	if e.until.IsZero() {
		return 0
	}
	return max(e.until.Sub(e.clock.Now()), 0)
}

// RetryAfter reports how long until a probe is allowed if err is, or wraps,
// a rejection by a breaker.
func RetryAfter(err error) (time.Duration, bool) {
	var oe *OpenError
	if errors.As(err, &oe) {
		return oe.RetryAfter(), true
	}
	return 0, false
}
