package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// A breaker around calls to one service. After the failure threshold the
// breaker rejects calls without running them, and says when to come back.
func ExampleBreaker_Do() {
	clock := breakertest.NewClock() // real code leaves Clock nil
	b, _ := breaker.New(breaker.Config{
		Name:   "cloudflare",
		Clock:  clock,
		Logger: slog.New(slog.DiscardHandler),
	})
	outage := errors.New("HTTP 503")
	for range 5 {
		b.Do(context.Background(), func(ctx context.Context) error { return outage })
	}
	clock.Advance(15 * time.Second)
	err := b.Do(context.Background(), func(ctx context.Context) error {
		panic("not called while open")
	})
	fmt.Println(errors.Is(err, breaker.ErrOpen), err)
	// Output: true breaker "cloudflare": circuit open, probe allowed in 45s
}

// Call returns the protected function's value.
func ExampleCall() {
	b, _ := breaker.New(breaker.Config{Name: "google-admin", FailureThreshold: 3, OpenTimeout: 30 * time.Second})
	user, err := breaker.Call(context.Background(), b, func(ctx context.Context) (string, error) {
		return "ada@example.com", nil // e.g. an Admin SDK lookup
	})
	fmt.Println(user, err)
	// Output: ada@example.com <nil>
}

// The two-step form, for code that cannot wrap the call in a closure: ask,
// call, report. A queue consumer NACKs the message when the circuit is open.
func ExampleBreaker_Allow() {
	b, _ := breaker.New(breaker.Config{Name: "genesys/eu-west-1", FailureThreshold: 10, HalfOpenSuccesses: 3})
	ticket, err := b.Allow()
	if err != nil {
		wait, _ := breaker.RetryAfter(err)
		fmt.Println("NACK, retry in", wait)
		return
	}
	err = nil // send the message here
	ticket.Done(err)
	fmt.Println("sent; state", b.State())
	// Output: sent; state closed
}

// A registry keyed by service, and by region for Genesys: ADR-002's table
// and T10's per-region profile. All tenants of a region share its breaker.
func ExampleRegistry() {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{}, // 5 failures, 60 s, 2 successes
		Profiles: map[string]breaker.Config{
			"google-admin":    {FailureThreshold: 3, OpenTimeout: 30 * time.Second},
			"microsoft-graph": {FailureThreshold: 3, OpenTimeout: 30 * time.Second},
			"smtp":            {FailureThreshold: 10, OpenTimeout: 120 * time.Second},
			"genesys":         {FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3},
		},
	})
	for _, key := range []string{"cloudflare", "smtp", "genesys/us-east-1", "genesys/eu-west-1"} {
		b, err := reg.Get(key)
		if err != nil {
			panic(err)
		}
		c := b.Config()
		fmt.Printf("%-18s %2d failures, open %v, %d successes\n", key, c.FailureThreshold, c.OpenTimeout, c.HalfOpenSuccesses)
	}
	// Output:
	// cloudflare          5 failures, open 1m0s, 2 successes
	// smtp               10 failures, open 2m0s, 2 successes
	// genesys/us-east-1  10 failures, open 1m0s, 3 successes
	// genesys/eu-west-1  10 failures, open 1m0s, 3 successes
}
