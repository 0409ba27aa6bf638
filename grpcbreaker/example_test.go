package grpcbreaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/grpcbreaker"
)

// down is a TestService whose UnaryCall always fails with Unavailable.
type down struct {
	testgrpc.UnimplementedTestServiceServer
}

func (down) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return nil, status.Error(codes.Unavailable, "maintenance")
}

// inMemory serves svc over an in-memory listener (no network) and returns
// the dial option that reaches it, and a func that stops it.
func inMemory(svc testgrpc.TestServiceServer) (grpc.DialOption, func()) {
	l := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, svc)
	go srv.Serve(l)
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }), srv.Stop
}

// Client interceptors on a connection: after the failure threshold the
// breaker rejects calls at once, with a gRPC Unavailable status that carries
// the time until the next probe (RetryInfo) and still matches
// breaker.ErrOpen.
func ExampleNew() {
	dialer, stop := inMemory(down{})
	defer stop()

	clock := breakertest.NewClock() // real code leaves Clock nil
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{
		FailureThreshold: 3, OpenTimeout: time.Minute, Clock: clock, Logger: slog.New(slog.DiscardHandler)}})
	cb := grpcbreaker.New(grpcbreaker.Config{Registry: reg}) // keyed by target
	conn, _ := grpc.NewClient("passthrough:///billing", dialer,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(cb.Unary),
		grpc.WithChainStreamInterceptor(cb.Stream))
	defer conn.Close()
	billing := testgrpc.NewTestServiceClient(conn)

	for range 3 {
		_, err := billing.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
		fmt.Println(status.Code(err), errors.Is(err, breaker.ErrOpen))
	}
	clock.Advance(15 * time.Second)
	_, err := billing.UnaryCall(context.Background(), &testgrpc.SimpleRequest{})
	delay, _ := grpcbreaker.RetryDelay(err)
	fmt.Println(status.Code(err), errors.Is(err, breaker.ErrOpen), "retry in", delay)
	// Output:
	// Unavailable false
	// Unavailable false
	// Unavailable false
	// Unavailable true retry in 45s
}

// One breaker per region, as T10 asks of Genesys: the region travels in the
// call's metadata, and a region that is down does not reject the others.
func ExampleByMetadata() {
	dialer, stop := inMemory(down{})
	defer stop()

	cb := grpcbreaker.New(grpcbreaker.Config{Key: grpcbreaker.ByMetadata("x-region")})
	defer cb.Close()
	conn, _ := grpc.NewClient("passthrough:///genesys", dialer,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(cb.Unary))
	defer conn.Close()
	genesys := testgrpc.NewTestServiceClient(conn)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-region", "eu-west-1")
	for range breaker.DefaultFailureThreshold {
		genesys.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	}
	for _, b := range cb.Registry().All() {
		fmt.Println(b.Name(), b.State())
	}
	// Output: eu-west-1 open
}
