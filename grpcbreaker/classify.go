package grpcbreaker

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/breakerbox/breakerbox/breaker"
)

// A Classifier turns the non-nil error of a finished call (unary, or a
// stream's final status) into an outcome for the breaker. ctx is the call's
// context and method its full name ("/package.Service/Method"). It must be
// safe for concurrent use and cheap.
type Classifier func(ctx context.Context, method string, err error) breaker.Outcome

// DefaultClassifier is T10's rule in gRPC terms:
//
//   - Unavailable, DeadlineExceeded, Internal, Unknown and DataLoss are
//     failures: the service is down, unreachable, broken, or did not answer
//     within the caller's deadline;
//   - ResourceExhausted is ignored: the service asks us to slow down, like
//     HTTP 429, which is the retry layer's business, not an outage;
//   - Canceled is ignored: the caller gave up, which says nothing of the
//     service; so is any error once the caller cancelled ctx;
//   - a rejection by another breaker (errors.Is(err, breaker.ErrOpen)) is
//     ignored, so stacked breakers do not count each other;
//   - every other code (InvalidArgument, NotFound, PermissionDenied, ...)
//     means the service answered: success.
//
// An error that carries no gRPC status counts as Unknown (a failure).
func DefaultClassifier(ctx context.Context, method string, err error) breaker.Outcome {
	if ctx.Err() == context.Canceled || errors.Is(err, breaker.ErrOpen) {
		return breaker.Ignored
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return breaker.Failure
	case codes.ResourceExhausted, codes.Canceled:
		return breaker.Ignored
	}
	return breaker.Success
}
