// Package grpcbreaker puts gRPC client calls behind circuit breakers: a unary
// and a streaming client interceptor that take each call's breaker from a
// breaker.Registry, reject at once while it is open, and report each call's
// outcome by its gRPC status.
//
// # Use
//
//	cb := grpcbreaker.New(grpcbreaker.Config{}) // per target, T10's classification
//	conn, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(creds),
//		grpc.WithChainUnaryInterceptor(cb.Unary),
//		grpc.WithChainStreamInterceptor(cb.Stream))
//
// The zero Config keys breakers by the connection's target (cc.Target());
// ByMethod keys them per method, ByMetadata by an outgoing metadata value
// such as a region, and any func can pick the key.
//
// # Classification
//
// DefaultClassifier is T10's rule in gRPC terms: Unavailable,
// DeadlineExceeded, Internal, Unknown and DataLoss mean the service is down
// or too slow (Failure); ResourceExhausted is the service asking us to slow
// down, like HTTP 429 (Ignored); Canceled is the caller giving up (Ignored);
// every other code means the service answered (Success). A call made with a
// context that had already ended does not reach the service and is not
// counted at all.
//
// # Rejections
//
// A call the breaker refuses fails without leaving the process, with a gRPC
// status Unavailable carrying an errdetails.RetryInfo (the time until the
// breaker lets a probe through; absent for a breaker forced open) and an
// errdetails.ErrorInfo (reason CIRCUIT_OPEN, the breaker's name and state),
// so retry-aware clients back off. In the calling process the error also
// unwraps to the breaker's *breaker.OpenError: errors.Is(err,
// breaker.ErrOpen) and breaker.RetryAfter(err) work on it as returned, or
// wrapped with %w. An interceptor that rebuilds errors from their status
// (status.Convert(err).Err()) keeps the code and details but loses that link;
// RetryDelay reads the delay from the status alone, in any process.
//
// # Streams
//
// A stream is one call: it takes a ticket when it opens and reports one
// outcome, when it ends (io.EOF from RecvMsg is a success, any other error is
// classified) or at its first failure. If the caller abandons a stream by
// cancelling its context without reading it to the end, the outcome is
// reported when the context ends, so a half-open probe slot is freed then. A
// stream abandoned with a context that never ends holds its ticket; for a
// probe, the breaker's ProbeTimeout frees the slot.
//
// # Cost
//
// On the closed path a unary call adds a registry lookup and two atomic
// loads, and allocates nothing with ByTarget or ByMethod (see the package
// benchmarks). ByMetadata allocates, because grpc copies the outgoing metadata
// to read it.
package grpcbreaker
