package queuegate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/queuegate"
)

// A consumer of one region's messages, gated by the region's breaker (T10:
// 10 failures, 60 s, 3 successes, 1 probe), on a manual clock so the example
// runs at once.
func Example() {
	clock := breakertest.NewClock()
	region, _ := breaker.New(breaker.Config{
		Name: "genesys/eu-west-1", FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3,
		Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	gate, _ := queuegate.New(queuegate.Config{
		Breaker: region,
		Jitter:  5 * time.Second,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnEvent: func(e queuegate.Event) { fmt.Println("event:", e.Kind()) },
	})

	apiDown := true
	forward := func(ctx context.Context) error { // the handler: its call goes through the breaker
		return region.Do(ctx, func(context.Context) error {
			if apiDown {
				return errors.New("503 Service Unavailable")
			}
			return nil
		})
	}
	consume := func() queuegate.Verdict {
		permit, ok := gate.TryAcquire() // a real consumer blocks in Acquire instead
		if !ok {
			return gate.Defer()
		}
		return permit.Run(context.Background(), forward)
	}

	for range 10 { // the outage: 10 failures open the circuit; the 10th is
		consume() // charged to the outage (deferred), the 9 before it retried
	}
	v := consume()
	fmt.Printf("while open: %v, back in [60s, 65s]: %v\n", v.Action, v.Delay >= 60*time.Second && v.Delay <= 65*time.Second)

	clock.Advance(60 * time.Second) // HALF_OPEN: one probe slot
	apiDown = false
	p, _ := gate.TryAcquire()
	_, second := gate.TryAcquire()
	fmt.Println("probe admitted, second message admitted:", p.Probe(), second)
	fmt.Println("probe:", p.Run(context.Background(), forward).Action)
	consume()
	consume()
	fmt.Println("mode:", gate.Mode())

	s := gate.Stats()
	fmt.Printf("pauses %d, resumes %d, retried %d, deferred %d (outage failures %d), acked %d\n",
		s.Pauses, s.Resumes, s.Retried, s.Deferred, s.OutageFailures, s.Acked)
	// Output:
	// event: paused
	// while open: defer, back in [60s, 65s]: true
	// event: probing
	// probe admitted, second message admitted: true false
	// probe: ack
	// event: resumed
	// mode: flowing
	// pauses 1, resumes 1, retried 9, deferred 2 (outage failures 1), acked 3
}

// A message that is bad in itself (the service answered 4xx) goes to the
// dead-letter path whatever the circuit's state.
func ExampleMarkDeadLetter() {
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1"})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b})
	permit, _ := gate.TryAcquire()
	v := permit.Run(context.Background(), func(ctx context.Context) error {
		return queuegate.MarkDeadLetter(errors.New("400 Bad Request: unknown integration"))
	})
	fmt.Println(v.Action, v.Err)
	// Output: dead_letter 400 Bad Request: unknown integration
}
