package grpcbreaker_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/grpcbreaker"
)

// BenchmarkUnaryOverhead measures what the interceptor adds to a call: the
// invoker is an in-process stub, so "bare" is the cost of calling it through
// a func value and "closed" adds the interceptor on a CLOSED breaker. The
// difference is the interceptor's cost per call.
func BenchmarkUnaryOverhead(b *testing.B) {
	conn, err := grpc.NewClient("passthrough:///bench", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil }
	const method = "/grpc.testing.TestService/UnaryCall"
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			invoker(ctx, method, nil, nil, conn)
		}
	})
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: slog.New(slog.DiscardHandler)}})
	for _, k := range []struct {
		name string
		key  func(context.Context, *grpc.ClientConn, string) string
	}{{"closed-by-target", grpcbreaker.ByTarget}, {"closed-by-method", grpcbreaker.ByMethod}} {
		cb := grpcbreaker.New(grpcbreaker.Config{Registry: reg, Key: k.key})
		var unary grpc.UnaryClientInterceptor = cb.Unary
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			measureCPU(b)
			for b.Loop() {
				unary(ctx, method, nil, nil, conn, invoker)
			}
		})
	}
	// Reference points: the parts of the closed path that are the core's.
	b.Run("core-registry-get", func(b *testing.B) {
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			reg.Get(conn.Target())
		}
	})
	b.Run("core-allow-report", func(b *testing.B) {
		br := reg.MustGet(conn.Target())
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			t, _ := br.Allow()
			t.Report(breaker.Success)
		}
	})
	// Rejections by an OPEN breaker: the status is rebuilt when the delay
	// to the next probe changes (each millisecond), reused in between.
	b.Run("open-rejection", func(b *testing.B) {
		cb := grpcbreaker.New(grpcbreaker.Config{Registry: reg, Key: func(context.Context, *grpc.ClientConn, string) string { return "down" }})
		down := reg.MustGet("down")
		for down.State() != breaker.Open {
			down.Do(ctx, func(context.Context) error { return context.DeadlineExceeded })
		}
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			cb.Unary(ctx, method, nil, nil, conn, invoker)
		}
	})
}

// BenchmarkUnaryLoopback is a real call to a server on loopback, without and
// with the interceptor, for scale: the interceptor's cost is lost in it.
func BenchmarkUnaryLoopback(b *testing.B) {
	svc := &service{}
	cb := grpcbreaker.New(grpcbreaker.Config{})
	defer cb.Close()
	for _, tc := range []struct {
		name string
		opts []grpc.DialOption
	}{
		{"bare", nil},
		{"intercepted", []grpc.DialOption{grpc.WithUnaryInterceptor(cb.Unary)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			_, addr := serve(b, svc)
			conn, err := grpc.NewClient(addr, append(tc.opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := testgrpc.NewTestServiceClient(conn)
			ctx := context.Background()
			b.ReportAllocs()
			measureCPU(b)
			for b.Loop() {
				if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fakeStream is a ClientStream whose first RecvMsg ends the stream.
type fakeStream struct{ grpc.ClientStream }

func (fakeStream) RecvMsg(any) error { return io.EOF }

// BenchmarkStreamOverhead measures opening a stream and reading it to its
// end over an in-process streamer stub, bare and through the interceptor,
// with a cancellable context (the interceptor then watches it).
func BenchmarkStreamOverhead(b *testing.B) {
	conn, err := grpc.NewClient("passthrough:///bench", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	desc := &grpc.StreamDesc{ServerStreams: true}
	streamer := func(context.Context, *grpc.StreamDesc, *grpc.ClientConn, string, ...grpc.CallOption) (grpc.ClientStream, error) {
		return fakeStream{}, nil
	}
	const method = "/grpc.testing.TestService/StreamingOutputCall"
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			s, _ := streamer(ctx, desc, conn, method)
			s.RecvMsg(nil)
		}
	})
	cb := grpcbreaker.New(grpcbreaker.Config{})
	defer cb.Close()
	b.Run("closed", func(b *testing.B) {
		b.ReportAllocs()
		measureCPU(b)
		for b.Loop() {
			s, _ := cb.Stream(ctx, desc, conn, method, streamer)
			s.RecvMsg(nil)
		}
	})
}
