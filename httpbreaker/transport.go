package httpbreaker

import (
	"net/http"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/retry"
)

// DefaultIdleTTL is how long a Transport without a Registry keeps the
// breaker of a key that is healthy and unused. Keys come from request URLs,
// which callers may not control, so an unbounded map would grow with every
// host ever called; a breaker evicted while CLOSED with no failure streak
// loses nothing.
const DefaultIdleTTL = 10 * time.Minute

// Transport is an http.RoundTripper that makes each round trip through the
// breaker of the request's key. Its zero value is ready to use: breakers per
// host with ADR-002's defaults, T10's classification, http.DefaultTransport
// underneath. Set the fields before the first round trip and do not change
// them afterwards. It is safe for concurrent use.
type Transport struct {
	// Next makes the round trips. nil means http.DefaultTransport.
	Next http.RoundTripper

	// Registry is where the breakers come from, so profiles and defaults
	// apply per key. nil means a registry of its own with the default config
	// (breaker.Config's zero value) that evicts breakers idle for
	// DefaultIdleTTL; Breakers returns it.
	Registry *breaker.Registry

	// Key maps a request to its breaker's key. nil means ByHost. See
	// package genesys for T10's one breaker per Genesys Cloud region.
	Key func(*http.Request) string

	// Classify turns a round trip's result into an outcome for the breaker.
	// nil means DefaultClassifier.
	Classify Classifier

	// Retry, if set, retries each request by this policy inside the breaker
	// (see retry.Transport): the breaker counts the outcome of the last
	// attempt only, and an open breaker stops the whole retried request
	// before its first attempt.
	Retry *retry.Policy

	once     sync.Once
	next     http.RoundTripper // Next, or a retry.Transport around it
	registry *breaker.Registry
	key      func(*http.Request) string
	classify Classifier
}

// resolve fills in the defaults once, on the first use.
func (t *Transport) resolve() {
	t.next = t.Next
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	if t.Retry != nil {
		t.next = &retry.Transport{Policy: *t.Retry, Next: t.next}
	}
	t.registry = t.Registry
	if t.registry == nil {
		t.registry, _ = breaker.NewRegistry(breaker.RegistryConfig{IdleTTL: DefaultIdleTTL}) // valid: a zero config and a positive TTL
	}
	t.key = t.Key
	if t.key == nil {
		t.key = ByHost
	}
	t.classify = t.Classify
	if t.classify == nil {
		t.classify = DefaultClassifier
	}
}

// Breakers returns the registry the breakers come from: Registry, or the
// Transport's own when Registry is nil.
func (t *Transport) Breakers() *breaker.Registry {
	t.once.Do(t.resolve)
	return t.registry
}

// ByHost keys a request by its upstream host and port as written in the URL,
// e.g. "api.example.com" or "127.0.0.1:8080".
func ByHost(req *http.Request) string { return req.URL.Host }

// RoundTrip implements http.RoundTripper. A rejection returns the breaker's
// *breaker.OpenError; any other error is the wrapped transport's. The
// outcome is reported before RoundTrip returns, so a probe's slot is freed
// whatever the caller does with the response.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.resolve)
	b, err := t.registry.Get(t.key(req))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	ticket, err := b.AllowContext(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	reported := false
	defer func() {
		if !reported { // the wrapped transport panicked: count it, keep panicking
			ticket.Report(breaker.Failure)
		}
	}()
	resp, err := t.next.RoundTrip(req)
	reported = true
	ticket.Report(t.classify(req, resp, err))
	return resp, err
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
