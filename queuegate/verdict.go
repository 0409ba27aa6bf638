package queuegate

import (
	"errors"
	"fmt"
	"time"
)

// Action is what a consumer does with a message once the gate has judged it.
type Action uint8

const (
	// Ack: the message is done; acknowledge it.
	Ack Action = iota
	// Defer: the message is given back because of the outage, not
	// because of anything wrong with it: it was not attempted because its
	// circuit is open; or it was attempted and failed as a HALF_OPEN probe
	// or as the circuit opened (Verdict.Outage, with the failure in
	// Verdict.Err); or its handler was cut short by the end of its context
	// (a consumer stopping past its drain timeout). Give it back to the
	// broker to come back after Verdict.Delay, never at once, and do not
	// count it against the message's delivery or retry budget.
	Defer
	// Retry: processing failed for a transient reason (a 5xx after the
	// retries, a timeout) while the circuit stayed closed, so the failure
	// may be the message's own. Give it back to come back after
	// Verdict.Delay; it counts against the message's retry budget as usual.
	Retry
	// DeadLetter: the message itself is bad (a 4xx). Send it down the
	// queue's dead-letter path; the gate has no part in it.
	DeadLetter
)

// String returns the action in snake case: ack, defer, retry, dead_letter.
func (a Action) String() string {
	switch a {
	case Ack:
		return "ack"
	case Defer:
		return "defer"
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead_letter"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Verdict is what to do with one message: the action, the redelivery delay
// for Defer and Retry, and the handler's error, if any.
type Verdict struct {
	Action Action
	Delay  time.Duration
	Err    error
	// Outage is set, with Action Defer, when the message was attempted and
	// failed, but the failure is charged to the outage rather than to the
	// message: the message was a HALF_OPEN probe, or the circuit was open
	// once the call failed. The breaker counted the failure; the message's
	// budget must not.
	Outage bool
}

// MarkDeadLetter marks err as a failure of the message itself, one that no retry
// will fix (a 4xx answer, a message that does not parse): the default
// classifier sends such a message to the dead-letter path. It returns nil for
// nil.
func MarkDeadLetter(err error) error {
	if err == nil {
		return nil
	}
	return &deadLetterError{err}
}

type deadLetterError struct{ err error }

func (e *deadLetterError) Error() string { return e.err.Error() }
func (e *deadLetterError) Unwrap() error { return e.err }

// IsDeadLetter reports whether err, or an error it wraps, was marked with
// MarkDeadLetter.
func IsDeadLetter(err error) bool {
	var d *deadLetterError
	return errors.As(err, &d)
}

// DefaultClassifier sends errors marked with MarkDeadLetter to the dead-letter
// path and retries every other error.
func DefaultClassifier(err error) Action {
	if IsDeadLetter(err) {
		return DeadLetter
	}
	return Retry
}
