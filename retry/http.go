package retry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Transport is an http.RoundTripper that retries round trips by Policy.
// It is safe for concurrent use if Next is.
//
// A round trip is retried when it fails with a transport error the Policy
// finds retryable, or when the response status is one RetryStatus accepts.
// On 429 and 503, a Retry-After header (seconds or HTTP date) sets the wait
// instead of the backoff; if it asks for more than Policy.MaxBackoff, or more
// than the time left, the response is returned as it is.
//
// Only idempotent requests are retried (see Idempotent); a request with a
// body is retried only if it has GetBody, which Transport calls to rewind the
// body for each new attempt. The response of the last attempt is returned
// unread; the responses of earlier attempts are drained (up to 4 KiB, so the
// connection can be reused) and closed.
//
// With Policy.AttemptTimeout, each attempt, including the reading of the
// returned response's body, must finish within it, as with
// http.Client.Timeout; leave it zero for streaming responses.
type Transport struct {
	// Next makes the round trips. nil means http.DefaultTransport.
	Next http.RoundTripper
	// Policy is the retry budget.
	Policy Policy
	// RetryStatus reports whether a response status is worth another
	// attempt. nil means DefaultRetryStatus.
	RetryStatus func(code int) bool
}

// DefaultRetryStatus accepts 429 Too Many Requests, 500 Internal Server
// Error, 502 Bad Gateway, 503 Service Unavailable and 504 Gateway Timeout.
func DefaultRetryStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// StatusError is the cause a retried response gives to Policy.OnRetry and
// to the budget: its status and, on 429 and 503, its Retry-After.
type StatusError struct {
	Code int
	// After is the Retry-After of the response, 0 if it had none.
	After    time.Duration
	hasAfter bool
}

func (e *StatusError) Error() string {
	if e.hasAfter {
		return fmt.Sprintf("retry: HTTP %d %s, retry after %v", e.Code, http.StatusText(e.Code), e.After)
	}
	return fmt.Sprintf("retry: HTTP %d %s", e.Code, http.StatusText(e.Code))
}

// statusAfterError is a StatusError that carries a Retry-After, so that the
// loop finds it with errors.As(err, &retryAfterer).
type statusAfterError struct{ *StatusError }

func (e statusAfterError) RetryAfter() time.Duration { return e.After }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p, err := t.Policy.resolve()
	if err != nil {
		closeBody(req)
		return nil, err
	}
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	if !Idempotent(req) || req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		p.MaxAttempts = 1
	}
	retryStatus := t.RetryStatus
	if retryStatus == nil {
		retryStatus = DefaultRetryStatus
	}
	ctx := req.Context()
	l := newLoop(&p)
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 {
			body, err := rewind(req)
			if err != nil {
				return nil, fmt.Errorf("retry: rewinding the request body for attempt %d: %w", attempt, err)
			}
			r = req.WithContext(ctx)
			r.Body = body
		}
		resp, err := p.roundTrip(next, r)

		var cause error
		retryable := false
		if err != nil {
			cause = err
			retryable = p.retryable(err)
		} else if retryStatus(resp.StatusCode) {
			se := &StatusError{Code: resp.StatusCode}
			cause = se
			if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
				if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), p.Clock.Now()); ok {
					se.After, se.hasAfter = d, true
					cause = statusAfterError{se}
				}
			}
			retryable = true
		} else {
			return resp, nil
		}

		wait, ok := l.next(ctx, attempt, cause, retryable)
		if !ok {
			return resp, err
		}
		if resp != nil {
			discard(resp)
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, cause, wait)
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			return nil, stopped(cause, serr)
		}
	}
}

// roundTrip makes one attempt, under AttemptTimeout if set. The attempt's
// context lives until the response body is closed.
func (p *Policy) roundTrip(next http.RoundTripper, req *http.Request) (*http.Response, error) {
	if p.AttemptTimeout <= 0 {
		return next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), p.AttemptTimeout)
	resp, err := next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases an attempt's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// maxDrain bounds how much of a discarded response is read so that its
// connection can be reused; past it, closing the connection is cheaper.
const maxDrain = 4 << 10

func discard(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
}

// rewind returns a fresh copy of req's body for another attempt.
func rewind(req *http.Request) (io.ReadCloser, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req.Body, nil
	}
	return req.GetBody()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

type idempotentKey struct{}

// MarkIdempotent returns a context that marks requests made with it as safe
// to retry whatever their method, e.g. a POST the server deduplicates.
func MarkIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

// Idempotent reports whether req may be sent twice: its method is GET, HEAD,
// OPTIONS, TRACE, PUT or DELETE, or it has an Idempotency-Key or
// X-Idempotency-Key header (as net/http's own retries assume), or its
// context was marked with MarkIdempotent.
func Idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	if _, ok := req.Header["Idempotency-Key"]; ok {
		return true
	}
	if _, ok := req.Header["X-Idempotency-Key"]; ok {
		return true
	}
	marked, _ := req.Context().Value(idempotentKey{}).(bool)
	return marked
}

// ParseRetryAfter parses a Retry-After header value, either delay-seconds
// ("120") or an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT"), into a wait from
// now. A date in the past gives 0. It reports false for an empty or invalid
// value.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		s, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return time.Duration(1<<63 - 1), true
			}
			return 0, false
		}
		const maxSeconds = uint64((1<<63 - 1) / time.Second)
		return time.Duration(min(s, maxSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
