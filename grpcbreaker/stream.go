package grpcbreaker

import (
	"context"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/breakerbox/breakerbox/breaker"
)

// Stream is a grpc.StreamClientInterceptor: a stream takes one ticket when
// it opens and reports one outcome, when it ends or at its first failure
// (see the package doc, Streams).
func (i *Interceptor) Stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	b, err := i.breakerFor(ctx, cc, method)
	if b == nil {
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	t, err := b.AllowContext(ctx)
	if err != nil {
		return nil, i.reject(err)
	}
	s := &stream{i: i, ctx: ctx, method: method, ticket: t, serverStreams: desc.ServerStreams}
	opened := false
	defer func() {
		if !opened { // the streamer panicked: count it, keep panicking
			s.finish(breaker.Failure)
		}
	}()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	opened = true
	if err != nil {
		s.finish(i.outcome(ctx, method, err))
		return nil, err
	}
	s.ClientStream = cs
	// A caller that stops reading and cancels ctx never sees the stream's
	// end: report when ctx ends, so the ticket (maybe a probe slot) is not
	// held. AfterFunc starts no goroutine until ctx ends.
	s.stop = context.AfterFunc(ctx, func() {
		s.finish(i.outcome(ctx, method, status.FromContextError(ctx.Err()).Err()))
	})
	return s, nil
}

// stream reports its call's outcome once, at the first of: RecvMsg seeing
// the end or a failure, SendMsg failing, ctx ending.
type stream struct {
	grpc.ClientStream
	i             *Interceptor
	ctx           context.Context
	method        string
	ticket        breaker.Ticket
	serverStreams bool
	done          atomic.Bool
	stop          func() bool // set before the stream is returned; read by RecvMsg and SendMsg only
}

// finish reports o unless an outcome was reported already. It may run on
// the AfterFunc goroutine, so it touches nothing but done and the ticket.
func (s *stream) finish(o breaker.Outcome) {
	if s.done.CompareAndSwap(false, true) {
		s.ticket.Report(o)
	}
}

// end reports the outcome of err (nil: success) and stops watching ctx.
func (s *stream) end(err error) {
	if s.done.Load() {
		return
	}
	s.finish(s.i.outcome(s.ctx, s.method, err))
	s.stop()
}

// RecvMsg reports the end of the stream: io.EOF is a success, another error
// is classified, and for a call without server streaming the one response
// ends the call.
func (s *stream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == io.EOF:
		s.end(nil)
	case err != nil:
		s.end(err)
	case !s.serverStreams:
		s.end(nil)
	}
	return err
}

// SendMsg reports a failure to send. io.EOF means the server ended the
// stream: its status comes from RecvMsg, so it is not reported here.
func (s *stream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && err != io.EOF {
		s.end(err)
	}
	return err
}
