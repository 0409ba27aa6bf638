package grpcbreaker

import (
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/breakerbox/breakerbox/breaker"
)

// ErrorInfo fields of a rejection's status, for clients that branch on them.
const (
	// RejectionReason is the ErrorInfo reason of a rejection.
	RejectionReason = "CIRCUIT_OPEN"
	// RejectionDomain is the ErrorInfo domain of a rejection.
	RejectionDomain = "github.com/breakerbox/breakerbox"
)

// rejection is the error of a call a breaker refused: a gRPC status for
// gRPC-aware code, the breaker's *OpenError for errors.Is and errors.As.
type rejection struct {
	open  *breaker.OpenError
	delay time.Duration // in RetryInfo, whole milliseconds; -1: none
	st    *status.Status
}

func (r *rejection) Error() string              { return r.st.Err().Error() }
func (r *rejection) GRPCStatus() *status.Status { return r.st }
func (r *rejection) Unwrap() error              { return r.open }

// reject turns the error of breaker.Allow into the call's error. Allow
// returns a *breaker.OpenError for every rejection; anything else is passed
// through unchanged.
//
// A status with details costs a few µs and ~20 allocations to build, so the
// last one is reused while its breaker episode and its delay, to the
// millisecond, are the same: a client hammering an open circuit gets its
// rejections at the core's cost.
func (i *Interceptor) reject(err error) error {
	open, ok := err.(*breaker.OpenError)
	if !ok {
		var wrapped *breaker.OpenError // apart from open, which must not escape
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			// The caller's ctx ended while the fleet was asked for a probe's
			// lease: Canceled or DeadlineExceeded, as grpc-go says it.
			return status.FromContextError(err).Err()
		}
		if !errors.As(err, &wrapped) {
			return err
		}
		open = wrapped
	}
	delay := time.Duration(-1)
	// A breaker forced open has no next probe: no RetryInfo rather than a
	// delay of 0, which would tell clients to retry at once.
	if open.State != breaker.ForcedOpen {
		delay = open.RetryAfter().Round(time.Millisecond)
	}
	if r := i.lastRejection.Load(); r != nil && r.open == open && r.delay == delay {
		return r
	}
	st := status.New(codes.Unavailable, open.Error())
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   RejectionReason,
		Domain:   RejectionDomain,
		Metadata: map[string]string{"breaker": open.Name, "state": open.State.String()},
	}}
	if delay >= 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	}
	// WithDetails fails only for code OK or details that do not marshal;
	// neither can happen here.
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	r := &rejection{open: open, delay: delay, st: st}
	i.lastRejection.Store(r)
	return r
}

// RetryDelay returns the RetryInfo delay of err's gRPC status, if it has
// one: for a rejection by a breaker, the time until it lets a probe through.
// It works on a status received from another process too.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
