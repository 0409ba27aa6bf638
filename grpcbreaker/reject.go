package grpcbreaker

import (
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
	RejectionDomain = "breakerbox.github.com"
)

// rejection is the error of a call a breaker refused: a gRPC status for
// gRPC-aware code, the breaker's *OpenError for errors.Is and errors.As.
type rejection struct {
	open *breaker.OpenError
	st   *status.Status
}

func (r *rejection) Error() string              { return r.st.Err().Error() }
func (r *rejection) GRPCStatus() *status.Status { return r.st }
func (r *rejection) Unwrap() error              { return r.open }

// reject turns the error of breaker.Allow into the call's error. Allow
// returns a *breaker.OpenError for every rejection; anything else is passed
// through unchanged.
func reject(err error) error {
	var open *breaker.OpenError
	if !errors.As(err, &open) {
		return err
	}
	st := status.New(codes.Unavailable, open.Error())
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   RejectionReason,
		Domain:   RejectionDomain,
		Metadata: map[string]string{"breaker": open.Name, "state": open.State.String()},
	}}
	// A breaker forced open has no next probe: no RetryInfo rather than a
	// delay of 0, which would tell clients to retry at once.
	if open.State != breaker.ForcedOpen {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(open.RetryAfter())})
	}
	// WithDetails fails only for code OK or details that do not marshal;
	// neither can happen here.
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return &rejection{open: open, st: st}
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
