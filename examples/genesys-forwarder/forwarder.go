package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/retry"
)

// Forwarder sends inbound messages to a Genesys-style API, one circuit per
// region (T10: 10 consecutive failures open it, a probe after 60 s, 3
// successful probes close it, 1 probe at a time), with retries inside the
// breaker.
type Forwarder struct {
	api      string
	client   *http.Client
	registry *breaker.Registry
}

type regionKey struct{}

// NewForwarder returns a Forwarder that posts to api + "/" + region +
// inboundPath, e.g. http://127.0.0.1:7070/genesys/eu-west-1/api/v2/... when
// api is the breakerbox sidecar's genesys service. openTimeout overrides T10's
// 60 s (tests shorten it). shared, if not nil, shares the breakers with the
// other forwarders of a fleet (a redisstate.Fleet).
func NewForwarder(api string, openTimeout time.Duration, shared breaker.Sync, logger *slog.Logger) (*Forwarder, error) {
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{Logger: logger, Sync: shared},
		Profiles: map[string]breaker.Config{
			"genesys": {FailureThreshold: 10, OpenTimeout: openTimeout, HalfOpenSuccesses: 3, HalfOpenProbes: 1},
		},
	})
	if err != nil {
		return nil, err
	}
	transport := &httpbreaker.Transport{
		Registry: reg,
		// One breaker per region: "genesys/eu-west-1" selects the profile
		// "genesys".
		Key: func(r *http.Request) string {
			region, _ := r.Context().Value(regionKey{}).(string)
			return "genesys/" + region
		},
		// Retry each attempt inside the breaker: the breaker counts one
		// outcome per message, and an open circuit stops the retries too.
		Retry: &retryPolicy,
	}
	return &Forwarder{api: strings.TrimSuffix(api, "/"), client: &http.Client{Transport: transport}, registry: reg}, nil
}

// retryPolicy retries each message's call inside the breaker. Its worst case
// (maxHandlerTime) bounds how long a message stays in hand, which the NATS
// consumer's AckWait must exceed.
var retryPolicy = retry.Policy{
	MaxAttempts:    3,
	InitialBackoff: 100 * time.Millisecond,
	MaxBackoff:     2 * time.Second,
	AttemptTimeout: 10 * time.Second,
}

// maxHandlerTime is the longest one message's call can take: every attempt
// timing out, with the longest backoffs between them.
var maxHandlerTime = time.Duration(retryPolicy.MaxAttempts)*retryPolicy.AttemptTimeout +
	time.Duration(retryPolicy.MaxAttempts-1)*retryPolicy.MaxBackoff

// Registry returns the registry of the per-region breakers.
func (f *Forwarder) Registry() *breaker.Registry { return f.registry }

// inboundPath is Genesys Cloud's Open Messaging inbound endpoint.
const inboundPath = "/api/v2/conversations/messages/inbound/open"

// Forward posts one message for region. It returns nil once the API has
// accepted it; an error marked with queuegate.MarkDeadLetter if the API
// refused the message itself (4xx other than 429); the breaker's rejection
// if region's circuit is open; any other error for a failure worth a retry.
func (f *Forwarder) Forward(ctx context.Context, region, id string, body []byte) error {
	ctx = context.WithValue(ctx, regionKey{}, region)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.api+"/"+region+inboundPath, bytes.NewReader(body))
	if err != nil {
		return queuegate.MarkDeadLetter(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if id != "" {
		// Genesys deduplicates on it, which makes the POST safe to retry.
		req.Header.Set("Idempotency-Key", id)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("genesys %s: %s", region, resp.Status)
	}
	return queuegate.MarkDeadLetter(fmt.Errorf("genesys %s refused message %s: %s: %s", region, id, resp.Status, bytes.TrimSpace(msg)))
}
