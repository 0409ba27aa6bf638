package breaker

import (
	"context"
	"errors"
)

// Outcome is what a finished call means to the breaker.
type Outcome uint8

const (
	// Success resets the failure streak and counts toward closing.
	Success Outcome = iota
	// Failure counts toward opening.
	Failure
	// Ignored neither counts nor resets: the call tells nothing about the
	// health of the protected service (a rate limit, the caller giving up).
	Ignored
)

var outcomeNames = [...]string{"success", "failure", "ignored"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(?)"
}

// A Classifier maps a non-nil error returned by a protected call to an
// Outcome. It must be safe for concurrent use and cheap.
type Classifier func(error) Outcome

// DefaultClassifier: the caller's own cancellation (context.Canceled) is
// Ignored; everything else, context.DeadlineExceeded included, is a Failure.
func DefaultClassifier(err error) Outcome {
	if errors.Is(err, context.Canceled) {
		return Ignored
	}
	return Failure
}
