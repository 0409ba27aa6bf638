package httpbreaker

import (
	"context"
	"errors"
	"net/http"

	"github.com/breakerbox/breakerbox/breaker"
)

// A Classifier turns the result of a round trip into an outcome for the
// breaker. Exactly one of resp and err is non-nil. It must be safe for
// concurrent use and cheap: it runs on every request. It must not read the
// response body, which belongs to the caller.
type Classifier func(req *http.Request, resp *http.Response, err error) breaker.Outcome

// DefaultClassifier is T10's rule:
//
//   - a response with status 429 Too Many Requests is Ignored;
//   - a response with a 5xx status is a Failure;
//   - any other response, 4xx included, is a Success: the service answered;
//   - an error after the request's own context was cancelled (the caller
//     gave up) is Ignored, and so is a rejection by another breaker;
//   - any other error is a Failure. A transport error means no answer came
//     back: timeouts (http.Client.Timeout, context.DeadlineExceeded,
//     net.Error timeouts) and connection errors (refused, reset, DNS, TLS
//     handshake) are all of that kind.
func DefaultClassifier(req *http.Request, resp *http.Response, err error) breaker.Outcome {
	if err != nil {
		if req.Context().Err() == context.Canceled || errors.Is(err, breaker.ErrOpen) {
			return breaker.Ignored
		}
		return breaker.Failure
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return breaker.Ignored
	case resp.StatusCode >= 500:
		return breaker.Failure
	}
	return breaker.Success
}
