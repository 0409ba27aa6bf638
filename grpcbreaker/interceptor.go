package grpcbreaker

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/breakerbox/breakerbox/breaker"
)

// DefaultIdleTTL is the idle eviction of the registry New creates when
// Config.Registry is nil: keys that stop being used (targets of closed
// connections, regions no longer called) do not pile up.
const DefaultIdleTTL = 10 * time.Minute

// Config configures the interceptors. The zero value works: one breaker per
// target from a new default registry, classified by DefaultClassifier.
type Config struct {
	// Registry supplies the breakers, one per key. nil means a new registry
	// with breaker.Config's defaults (ADR-002's breaker) and idle eviction
	// after DefaultIdleTTL; Close stops its sweep.
	Registry *breaker.Registry

	// Key returns the breaker key of a call. nil means ByTarget. An empty
	// key means the call bypasses the breakers (for calls that must never be
	// rejected, such as health checks).
	Key func(ctx context.Context, cc *grpc.ClientConn, method string) string

	// Classify turns a call's error into an outcome. nil means
	// DefaultClassifier. A nil error is always a success.
	Classify Classifier
}

// Interceptor holds the unary and streaming client interceptors. It is safe
// for concurrent use.
type Interceptor struct {
	registry *breaker.Registry
	owned    bool // the registry was made by New: Close stops its sweep
	key      func(ctx context.Context, cc *grpc.ClientConn, method string) string
	classify Classifier

	lastRejection atomic.Pointer[rejection] // see reject
}

// New returns the interceptors for cfg.
func New(cfg Config) *Interceptor {
	i := &Interceptor{registry: cfg.Registry, key: cfg.Key, classify: cfg.Classify}
	if i.registry == nil {
		// The zero breaker config is valid and the TTL positive: no error.
		i.registry, _ = breaker.NewRegistry(breaker.RegistryConfig{IdleTTL: DefaultIdleTTL})
		i.owned = true
	}
	if i.key == nil {
		i.key = ByTarget
	}
	if i.classify == nil {
		i.classify = DefaultClassifier
	}
	return i
}

// Registry returns the registry the breakers come from.
func (i *Interceptor) Registry() *breaker.Registry { return i.registry }

// Close stops the idle sweep of the registry New created. It does nothing to
// a registry given in Config, and the interceptors keep working.
func (i *Interceptor) Close() {
	if i.owned {
		i.registry.Close()
	}
}

// ByTarget keys a call by its connection's target as given to grpc.NewClient,
// e.g. "dns:///api.example.com:443". It is the default. A registry picks a
// key's profile by the part before its first "/" unless told otherwise: to
// give targets profiles, set breaker.RegistryConfig.Profile.
func ByTarget(_ context.Context, cc *grpc.ClientConn, _ string) string { return cc.Target() }

// ByMethod keys a call by its full method name, e.g.
// "/genesys.Messaging/SendInbound", so one broken method does not reject the
// others. Connections to different targets share a method's breaker.
func ByMethod(_ context.Context, _ *grpc.ClientConn, method string) string { return method }

// ByMetadata keys a call by the first value of the outgoing metadata field
// name (e.g. "x-region": one breaker per region, as T10 asks), and by the
// target when the call carries no such field. Reading outgoing metadata
// copies it, so this costs allocations per call; a Key reading a value the
// caller put in ctx under its own key costs none.
func ByMetadata(name string) func(ctx context.Context, cc *grpc.ClientConn, method string) string {
	return func(ctx context.Context, cc *grpc.ClientConn, _ string) string {
		md, _ := metadata.FromOutgoingContext(ctx)
		if v := md.Get(name); len(v) > 0 && v[0] != "" {
			return v[0]
		}
		return cc.Target()
	}
}

// breakerFor returns the breaker of a call, or nil for a call that bypasses
// the breakers, or the error to fail the call with.
func (i *Interceptor) breakerFor(ctx context.Context, cc *grpc.ClientConn, method string) (*breaker.Breaker, error) {
	// A call whose context has already ended fails locally without asking
	// the service: it tells nothing about it, so it is neither counted nor
	// rejected.
	if ctx.Err() != nil {
		return nil, nil
	}
	key := i.key(ctx, cc, method)
	if key == "" {
		return nil, nil
	}
	return i.registry.Get(key)
}

// outcome is the breaker's view of a call that ended with err.
func (i *Interceptor) outcome(ctx context.Context, method string, err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	return i.classify(ctx, method, err)
}

// Unary is a grpc.UnaryClientInterceptor: it makes the call through its
// breaker and reports the outcome before returning.
func (i *Interceptor) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	b, err := i.breakerFor(ctx, cc, method)
	if b == nil {
		if err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	t, err := b.AllowContext(ctx)
	if err != nil {
		return i.reject(err)
	}
	reported := false
	defer func() {
		if !reported { // the invoker panicked: count it, keep panicking
			t.Report(breaker.Failure)
		}
	}()
	err = invoker(ctx, method, req, reply, cc, opts...)
	reported = true
	t.Report(i.outcome(ctx, method, err))
	return err
}
