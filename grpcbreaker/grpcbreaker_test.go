package grpcbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/grpcbreaker"
)

// service is grpc's interop TestService with the behaviour each test sets:
// UnaryCall runs unary, StreamingOutputCall sends sent messages then returns
// streamErr. It counts the calls that reached it.
type service struct {
	testgrpc.UnimplementedTestServiceServer
	calls     atomic.Int64
	unary     func(ctx context.Context) error
	sent      int
	streamErr func(ctx context.Context) error
}

func (s *service) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.calls.Add(1)
	if s.unary != nil {
		if err := s.unary(ctx); err != nil {
			return nil, err
		}
	}
	return &testgrpc.SimpleResponse{}, nil
}

func (s *service) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for range s.sent {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	if s.streamErr != nil {
		return s.streamErr(stream.Context())
	}
	return nil
}

func (s *service) StreamingInputCall(stream grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	s.calls.Add(1)
	for {
		if _, err := stream.Recv(); err == io.EOF {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{})
		} else if err != nil {
			return err
		}
	}
}

// serve starts svc on a free loopback port and returns its server and
// address; the server is stopped when the test ends.
func serve(t testing.TB, svc *service) (*grpc.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, svc)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return srv, l.Addr().String()
}

// registry returns a registry on a manual clock: threshold consecutive
// failures open a breaker for a minute, one successful probe closes it.
func registry(t *testing.T, threshold int) (*breaker.Registry, *breakertest.Clock) {
	t.Helper()
	clock := breakertest.NewClock()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{
		FailureThreshold:  threshold,
		OpenTimeout:       time.Minute,
		HalfOpenSuccesses: 1,
		CountSuccesses:    true,
		Clock:             clock,
		Logger:            slog.New(slog.DiscardHandler),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return reg, clock
}

// client dials addr through cfg's interceptors.
func client(t *testing.T, addr string, cfg grpcbreaker.Config) (testgrpc.TestServiceClient, *grpc.ClientConn) {
	t.Helper()
	cb := grpcbreaker.New(cfg)
	t.Cleanup(cb.Close)
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(cb.Unary),
		grpc.WithChainStreamInterceptor(cb.Stream))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn), conn
}

func unary(c testgrpc.TestServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	return err
}

type counts struct{ successes, failures, ignored, rejected uint64 }

func countsOf(b *breaker.Breaker) counts {
	s := b.Snapshot()
	return counts{s.Successes, s.Failures, s.Ignored, s.Rejected + s.RejectedHalfOpen}
}

// breakerOf returns the breaker of conn's target, failing if there is none.
func breakerOf(t *testing.T, reg *breaker.Registry, conn *grpc.ClientConn) *breaker.Breaker {
	t.Helper()
	b, ok := reg.Lookup(conn.Target())
	if !ok {
		t.Fatalf("no breaker for target %q", conn.Target())
	}
	return b
}

func TestStatusCodesAreClassifiedAsT10Says(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		want breaker.Outcome
	}{
		{codes.Unavailable, breaker.Failure},
		{codes.DeadlineExceeded, breaker.Failure},
		{codes.Internal, breaker.Failure},
		{codes.Unknown, breaker.Failure},
		{codes.DataLoss, breaker.Failure},
		{codes.ResourceExhausted, breaker.Ignored},
		{codes.Canceled, breaker.Ignored},
		{codes.InvalidArgument, breaker.Success},
		{codes.NotFound, breaker.Success},
		{codes.PermissionDenied, breaker.Success},
		{codes.Unauthenticated, breaker.Success},
		{codes.FailedPrecondition, breaker.Success},
		{codes.Unimplemented, breaker.Success},
		{codes.OK, breaker.Success},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			svc := &service{unary: func(context.Context) error { return status.Error(tc.code, "from the server") }}
			_, addr := serve(t, svc)
			reg, _ := registry(t, 100)
			c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
			if err := unary(c); status.Code(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			var want counts
			switch tc.want {
			case breaker.Success:
				want.successes = 1
			case breaker.Failure:
				want.failures = 1
			case breaker.Ignored:
				want.ignored = 1
			}
			if got := countsOf(breakerOf(t, reg, conn)); got != want {
				t.Errorf("counts = %+v, want %+v", got, want)
			}
		})
	}
}

func TestResourceExhaustedNeverOpens(t *testing.T) {
	svc := &service{unary: func(context.Context) error { return status.Error(codes.ResourceExhausted, "slow down") }}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 2)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	for range 10 {
		if err := unary(c); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("err = %v, want ResourceExhausted from the server", err)
		}
	}
	b := breakerOf(t, reg, conn)
	if b.State() != breaker.Closed || svc.calls.Load() != 10 || countsOf(b).ignored != 10 {
		t.Fatalf("state %v, server calls %d, counts %+v: want closed, 10 calls, 10 ignored", b.State(), svc.calls.Load(), countsOf(b))
	}
}

// A server that goes away: its calls fail with Unavailable, the breaker
// opens after the threshold, and the next calls are rejected with
// Unavailable plus RetryInfo, without a connection attempt.
func TestServerGoneOpensBreakerAndRejectsWithRetryInfo(t *testing.T) {
	svc := &service{}
	srv, addr := serve(t, svc)
	reg, clock := registry(t, 3)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	if err := unary(c); err != nil {
		t.Fatalf("healthy call: %v", err)
	}
	srv.Stop()
	for i := range 3 {
		if err := unary(c); status.Code(err) != codes.Unavailable || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("call %d to a stopped server: err = %v, want Unavailable from the transport", i, err)
		}
	}
	b := breakerOf(t, reg, conn)
	if b.State() != breaker.Open {
		t.Fatalf("state = %v after 3 failures, want open", b.State())
	}

	clock.Advance(20 * time.Second)
	err := unary(c)
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("rejection: code %v, want Unavailable", st.Code())
	}
	if !errors.Is(err, breaker.ErrOpen) {
		t.Errorf("errors.Is(%v, breaker.ErrOpen) = false", err)
	}
	if d, ok := breaker.RetryAfter(err); !ok || d != 40*time.Second {
		t.Errorf("breaker.RetryAfter = %v, %v; want 40s", d, ok)
	}
	var retry *errdetails.RetryInfo
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ErrorInfo:
			info = d
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() != 40*time.Second {
		t.Errorf("RetryInfo = %v, want a delay of 40s", retry)
	}
	if info == nil || info.Reason != grpcbreaker.RejectionReason || info.Metadata["breaker"] != conn.Target() || info.Metadata["state"] != "open" {
		t.Errorf("ErrorInfo = %v, want reason %s for breaker %q, state open", info, grpcbreaker.RejectionReason, conn.Target())
	}
	// The delay survives a status rebuilt from its proto, as a client in
	// another process would receive it; the ErrOpen link does not.
	remote := status.FromProto(st.Proto()).Err()
	if d, ok := grpcbreaker.RetryDelay(remote); !ok || d != 40*time.Second {
		t.Errorf("RetryDelay(status from the wire) = %v, %v; want 40s", d, ok)
	}
	clock.Advance(5 * time.Second)
	if d, ok := grpcbreaker.RetryDelay(unary(c)); !ok || d != 35*time.Second {
		t.Errorf("RetryInfo 5s later = %v, %v; want 35s", d, ok)
	}
	if got := countsOf(b); got != (counts{successes: 1, failures: 3, rejected: 2}) {
		t.Errorf("counts = %+v, want 1 success, 3 failures, 2 rejected", got)
	}
}

// A server that hangs: the caller's deadline ends the call, which counts as
// a failure (a timeout is an outage to T10), and the server is not asked
// again once the breaker is open.
func TestHangingServerTimesOutAndOpens(t *testing.T) {
	svc := &service{unary: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 2)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	for i := range 2 {
		if err := call(); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d: err = %v, want DeadlineExceeded", i, err)
		}
	}
	if err := call(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("third call: err = %v, want a rejection", err)
	}
	if n := svc.calls.Load(); n != 2 {
		t.Errorf("server saw %d calls, want 2", n)
	}
	if got := countsOf(breakerOf(t, reg, conn)); got != (counts{failures: 2, rejected: 1}) {
		t.Errorf("counts = %+v, want 2 failures, 1 rejected", got)
	}
}

func TestCallerCancellingIsIgnored(t *testing.T) {
	started := make(chan struct{}, 1)
	svc := &service{unary: func(ctx context.Context) error { started <- struct{}{}; <-ctx.Done(); return ctx.Err() }}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 1)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("err = %v, want Canceled", err)
	}
	// A context that ended before the call never reaches the breaker.
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Canceled {
		t.Fatalf("call with an ended context: err = %v, want Canceled", err)
	}
	b := breakerOf(t, reg, conn)
	if b.State() != breaker.Closed || countsOf(b) != (counts{ignored: 1}) {
		t.Fatalf("state %v, counts %+v: want closed, 1 ignored", b.State(), countsOf(b))
	}
}

// HALF_OPEN lets one probe through: a second call while the probe is in
// flight is rejected, and the probe's success closes the breaker.
func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	release := make(chan struct{})
	inProbe := make(chan struct{})
	var fail atomic.Bool
	fail.Store(true)
	svc := &service{unary: func(ctx context.Context) error {
		if fail.Load() {
			return status.Error(codes.Unavailable, "down")
		}
		close(inProbe)
		<-release
		return nil
	}}
	_, addr := serve(t, svc)
	reg, clock := registry(t, 2)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	unary(c)
	unary(c)
	b := breakerOf(t, reg, conn)
	fail.Store(false)
	clock.Advance(time.Minute)
	if b.State() != breaker.HalfOpen {
		t.Fatalf("state = %v after the open timeout, want half_open", b.State())
	}

	probe := make(chan error, 1)
	go func() { probe <- unary(c) }()
	<-inProbe
	err := unary(c)
	if !errors.Is(err, breaker.ErrOpen) || status.Code(err) != codes.Unavailable {
		t.Fatalf("call during the probe: err = %v, want a rejection", err)
	}
	if _, ok := grpcbreaker.RetryDelay(err); !ok {
		t.Errorf("rejection in half_open carries no RetryInfo: %v", err)
	}
	close(release)
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}
	if b.State() != breaker.Closed || svc.calls.Load() != 3 {
		t.Fatalf("state %v, server calls %d: want closed, 3", b.State(), svc.calls.Load())
	}
}

// readStream opens a StreamingOutputCall and reads it to its end; it returns
// the number of messages and the error that ended it, after reading once
// more past the end (which must count nothing more).
func readStream(t *testing.T, c testgrpc.TestServiceClient) (int, error) {
	t.Helper()
	stream, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, err = stream.Recv(); err != nil {
			stream.Recv()
			return n, err
		}
	}
}

func TestStreamToTheEndIsOneSuccess(t *testing.T) {
	svc := &service{sent: 3}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 1)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	n, err := readStream(t, c)
	if got := countsOf(breakerOf(t, reg, conn)); n != 3 || err != io.EOF || got != (counts{successes: 1}) {
		t.Fatalf("received %d then %v, counts %+v: want 3 messages, EOF, 1 success", n, err, got)
	}
}

// A client-streaming call ends with its one response: counted then, though
// the caller never reads io.EOF.
func TestClientStreamEndsWithItsResponse(t *testing.T) {
	_, addr := serve(t, &service{})
	reg, _ := registry(t, 1)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	stream, err := c.StreamingInputCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := stream.Send(&testgrpc.StreamingInputCallRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if got := countsOf(breakerOf(t, reg, conn)); got != (counts{successes: 1}) {
		t.Fatalf("counts %+v, want 1 success", got)
	}
}

func TestStreamFailingMidwayIsOneFailure(t *testing.T) {
	svc := &service{sent: 2, streamErr: func(context.Context) error { return status.Error(codes.Internal, "lost the shard") }}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 1)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	if n, err := readStream(t, c); n != 2 || status.Code(err) != codes.Internal {
		t.Fatalf("received %d then %v, want 2 then Internal", n, err)
	}
	b := breakerOf(t, reg, conn)
	if got := countsOf(b); got != (counts{failures: 1}) || b.State() != breaker.Open {
		t.Fatalf("counts %+v, state %v: want 1 failure, open", got, b.State())
	}
	if _, err := c.StreamingOutputCall(context.Background(), &testgrpc.StreamingOutputCallRequest{}); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("stream while open: err = %v, want a rejection", err)
	}
}

// A probe stream the caller abandons by cancelling its context, without
// reading it, frees its probe slot: the next call is let through.
func TestAbandonedStreamReleasesItsProbe(t *testing.T) {
	hold := make(chan struct{})
	svc := &service{unary: func(context.Context) error { return status.Error(codes.Unavailable, "down") },
		streamErr: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	_, addr := serve(t, svc)
	defer close(hold)
	reg, clock := registry(t, 1)
	c, conn := client(t, addr, grpcbreaker.Config{Registry: reg})
	unary(c)
	b := breakerOf(t, reg, conn)
	clock.Advance(time.Minute)
	if b.State() != breaker.HalfOpen {
		t.Fatalf("state = %v, want half_open", b.State())
	}

	ctx, cancel := context.WithCancel(context.Background())
	if _, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{}); err != nil {
		t.Fatalf("probe stream: %v", err)
	}
	if s := b.Snapshot(); s.ProbesInFlight != 1 {
		t.Fatalf("probes in flight = %d after opening the stream, want 1", s.ProbesInFlight)
	}
	cancel() // abandoned: never read
	for deadline := time.Now().Add(10 * time.Second); b.Snapshot().ProbesInFlight != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned stream still holds its probe slot after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if b.State() != breaker.HalfOpen || countsOf(b).ignored != 1 {
		t.Fatalf("state %v, counts %+v: want half_open and the abandoned probe ignored", b.State(), countsOf(b))
	}
	if err := unary(c); errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("next call after the abandoned probe: rejected (%v), want a probe", err)
	}
}

// Keyed by a metadata value: a failing region opens its breaker only.
func TestByMetadataKeysPerRegion(t *testing.T) {
	svc := &service{unary: func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if r := md.Get("x-region"); len(r) > 0 && r[0] == "eu-west-1" {
			return status.Error(codes.Unavailable, "region down")
		}
		return nil
	}}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 2)
	c, _ := client(t, addr, grpcbreaker.Config{Registry: reg, Key: grpcbreaker.ByMetadata("x-region")})
	call := func(region string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "x-region", region)
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	for range 3 {
		call("eu-west-1")
		if err := call("us-east-1"); err != nil {
			t.Fatalf("us-east-1: %v", err)
		}
	}
	if err := call("eu-west-1"); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("eu-west-1: err = %v, want a rejection", err)
	}
	for key, want := range map[string]breaker.State{"eu-west-1": breaker.Open, "us-east-1": breaker.Closed} {
		if b, ok := reg.Lookup(key); !ok || b.State() != want {
			t.Errorf("breaker %q: found %v, want state %v", key, ok, want)
		}
	}
}

// An empty key bypasses the breakers; ByMethod keys by the method.
func TestKeyFuncs(t *testing.T) {
	svc := &service{unary: func(context.Context) error { return status.Error(codes.Unavailable, "down") }}
	_, addr := serve(t, svc)
	reg, _ := registry(t, 1)
	c, _ := client(t, addr, grpcbreaker.Config{Registry: reg, Key: func(_ context.Context, _ *grpc.ClientConn, method string) string {
		if method == testgrpc.TestService_UnaryCall_FullMethodName {
			return ""
		}
		return grpcbreaker.ByMethod(nil, nil, method)
	}})
	for range 3 {
		if err := unary(c); errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("bypassed call rejected: %v", err)
		}
	}
	if all := reg.All(); len(all) != 0 {
		t.Fatalf("bypassed calls made breaker %q", all[0].Name())
	}
	if _, err := c.EmptyCall(context.Background(), &testgrpc.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("EmptyCall: %v, want Unimplemented", err)
	}
	if _, ok := reg.Lookup(testgrpc.TestService_EmptyCall_FullMethodName); !ok {
		t.Fatalf("no breaker keyed by method %s", testgrpc.TestService_EmptyCall_FullMethodName)
	}
}

// The zero Config: a registry of its own, one breaker per target.
func TestZeroConfigKeysByTarget(t *testing.T) {
	_, addr := serve(t, &service{})
	cb := grpcbreaker.New(grpcbreaker.Config{})
	defer cb.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(cb.Unary))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := unary(testgrpc.NewTestServiceClient(conn)); err != nil {
		t.Fatal(err)
	}
	if b, ok := cb.Registry().Lookup(addr); !ok || b.Config().FailureThreshold != breaker.DefaultFailureThreshold {
		t.Fatalf("breaker for %q: found %v, want one with the default config", addr, ok)
	}
}

// DefaultClassifier on errors a server does not send.
func TestDefaultClassifierBeyondStatusCodes(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	other, _ := breaker.New(breaker.Config{Name: "downstream", Logger: slog.New(slog.DiscardHandler)})
	other.ForceOpen()
	rejected := other.Do(context.Background(), func(context.Context) error { return nil })
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want breaker.Outcome
	}{
		{"an error without a status is Unknown", context.Background(), errors.New("connection reset"), breaker.Failure},
		{"any error after the caller cancelled", cancelled, status.Error(codes.Unavailable, "x"), breaker.Ignored},
		{"another breaker's rejection", context.Background(), fmt.Errorf("charge: %w", rejected), breaker.Ignored},
		{"a deadline the caller set and the service missed", context.Background(), status.Error(codes.DeadlineExceeded, "x"), breaker.Failure},
	} {
		if got := grpcbreaker.DefaultClassifier(tc.ctx, "/m", tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A panicking invoker counts as a failure and keeps panicking.
func TestInvokerPanicCountsAsFailure(t *testing.T) {
	reg, _ := registry(t, 1)
	cb := grpcbreaker.New(grpcbreaker.Config{Registry: reg, Key: func(context.Context, *grpc.ClientConn, string) string { return "k" }})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic did not reach the caller")
			}
		}()
		cb.Unary(context.Background(), "/m", nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
			panic("codec bug")
		})
	}()
	if b, _ := reg.Lookup("k"); b.State() != breaker.Open {
		t.Fatalf("state %v after a panic with threshold 1, want open", b.State())
	}
}
