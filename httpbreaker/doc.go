// Package httpbreaker puts circuit breakers in an HTTP client: Transport is
// an http.RoundTripper that wraps any other, so
//
//	client := &http.Client{Transport: &httpbreaker.Transport{Registry: registry}}
//
// protects every call the client makes.
//
// # The model
//
// Each request is mapped to a key (by default its upstream host, e.g.
// "api.example.com:8443"; package genesys maps Genesys Cloud hosts to
// their region) and the key to a breaker of a breaker.Registry, so profiles
// and defaults apply per key. While that breaker is open, RoundTrip returns
// its rejection at once, with no network I/O: the error satisfies
// errors.Is(err, breaker.ErrOpen) and breaker.RetryAfter(err) tells how
// long until a probe is allowed. Otherwise the request goes to the wrapped
// transport and the outcome is reported to the breaker as soon as the
// response headers arrive (or the round trip fails). http.Client follows a
// redirect with another round trip, so each hop goes through the breaker of
// its own key.
//
// What counts as a failure is T10's rule, DefaultClassifier: 5xx responses,
// timeouts and connection errors are failures; other responses, 4xx
// included, are successes (the service answered); 429 is ignored (a rate
// limit is a signal for the retry layer, not an outage), and so is a round
// trip ended by the caller cancelling its own context. Transport.Classify
// replaces it.
//
// # Bodies
//
// The response is returned as the wrapped transport made it: its body is not
// read, buffered or wrapped, so streaming works and the caller closes it as
// usual. Because the outcome is reported on headers, a failure while reading
// the body does not count, and a half-open probe never holds its slot longer
// than the time to headers, even when the caller never reads the body. A
// rejected request never had a response; its request body is closed, as the
// RoundTripper contract asks.
//
// # Retries
//
// Transport.Retry puts a retry.Transport inside the breaker: the breaker sees one
// outcome per logical request, after the retries, and an open breaker stops
// the whole retried request before its first attempt.
package httpbreaker
