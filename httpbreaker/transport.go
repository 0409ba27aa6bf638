package httpbreaker

import (
	"net/http"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/retry"
)

// Transport is an http.RoundTripper that makes each round trip through the
// breaker of the request's key. It is safe for concurrent use.
type Transport struct {
	next     http.RoundTripper
	registry *breaker.Registry
	key      func(*http.Request) string
	classify Classifier
	retry    *retry.Transport
}

// An Option configures a Transport.
type Option func(*Transport)

// WithTransport sets the transport that makes the round trips. The default
// is http.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(t *Transport) { t.next = rt }
}

// WithKey sets the function that maps a request to its breaker's key. The
// default is ByHost.
func WithKey(key func(*http.Request) string) Option {
	return func(t *Transport) { t.key = key }
}

// WithClassifier sets the rule that turns a round trip's result into an
// outcome for the breaker. The default is DefaultClassifier.
func WithClassifier(c Classifier) Option {
	return func(t *Transport) { t.classify = c }
}

// WithRetry retries each request by p inside the breaker (see
// retry.Transport): the breaker counts the outcome of the last attempt only.
func WithRetry(p retry.Policy) Option {
	return func(t *Transport) { t.retry = &retry.Transport{Policy: p} }
}

// New returns a Transport whose breakers come from registry. A nil registry
// means a new one with the default config (breaker.Config's zero value).
func New(registry *breaker.Registry, opts ...Option) *Transport {
	t := &Transport{registry: registry, next: http.DefaultTransport, key: ByHost, classify: DefaultClassifier}
	for _, o := range opts {
		o(t)
	}
	if t.registry == nil {
		t.registry, _ = breaker.NewRegistry(breaker.RegistryConfig{}) // the zero config is valid
	}
	if t.next == nil {
		t.next = http.DefaultTransport
	}
	if t.key == nil {
		t.key = ByHost
	}
	if t.classify == nil {
		t.classify = DefaultClassifier
	}
	if t.retry != nil {
		t.retry.Next = t.next
		t.next = t.retry
	}
	return t
}

// Registry returns the registry the breakers come from.
func (t *Transport) Registry() *breaker.Registry { return t.registry }

// ByHost keys a request by its upstream host and port as written in the URL,
// e.g. "api.example.com" or "127.0.0.1:8080".
func ByHost(req *http.Request) string { return req.URL.Host }

// RoundTrip implements http.RoundTripper. A rejection returns the breaker's
// *breaker.OpenError; any other error is the wrapped transport's. The
// outcome is reported before RoundTrip returns, so a probe's slot is freed
// whatever the caller does with the response.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	b, err := t.registry.Get(t.key(req))
	if err != nil {
		closeBody(req)
		return nil, err
	}
	ticket, err := b.Allow()
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
