package natsgate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/genesys"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
	"github.com/breakerbox/breakerbox/retry"
)

// One region's consumer: messages on inbound.eu-west-1 are posted to the
// region's API through the region's breaker; while it is open the consumer
// stops pulling.
//
// The example needs a nats-server and a network API, so it is compiled but
// not run (no Output): an example function cannot take the *testing.T that
// package brokertest needs to start and clean up a broker of its own. The
// tests of this package run the same code against a real server.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	nc, err := nats.Connect(nats.DefaultURL, natsgate.ReconnectOptions(nil)...) // outlives a server restart
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, "INBOUND", jetstream.ConsumerConfig{
		Durable:       "forwarder-eu-west-1",
		FilterSubject: "inbound.eu-west-1",
		AckPolicy:     jetstream.AckExplicitPolicy,
		MaxDeliver:    -1, // see the package documentation: natsgate keeps the retry budget
	})
	if err != nil {
		log.Fatal(err)
	}

	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Profiles: map[string]breaker.Config{
		"genesys": {FailureThreshold: 10, HalfOpenSuccesses: 3}, // T10
	}})
	client := &http.Client{Transport: &httpbreaker.Transport{
		Registry: reg,
		Key:      genesys.Key,
		Retry:    &retry.Policy{},
	}}
	gate, err := queuegate.New(queuegate.Config{Registry: reg, Key: "genesys/eu-west-1"})
	if err != nil {
		log.Fatal(err)
	}

	consumer, err := natsgate.New(natsgate.Config{
		Consumer:   cons,
		Gate:       gate,
		DeadLetter: natsgate.DeadLetterTo(js, "dead.inbound.eu-west-1"),
		Handler: func(ctx context.Context, msg jetstream.Msg) error {
			// bytes.NewReader sets GetBody, so the retry layer can resend it.
			req, err := http.NewRequestWithContext(ctx, http.MethodPost,
				"https://api.mypurecloud.ie/api/v2/conversations/messages/inbound/open", bytes.NewReader(msg.Data()))
			if err != nil {
				return queuegate.MarkDeadLetter(err)
			}
			req.Header.Set("Content-Type", "application/json")
			if md, err := msg.Metadata(); err == nil {
				// The retry layer retries a POST only with an idempotency
				// key; the API deduplicates on it.
				req.Header.Set("Idempotency-Key", fmt.Sprintf("inbound-%d", md.Sequence.Stream))
			}
			resp, err := client.Do(req)
			if err != nil {
				// errors.Is(err, breaker.ErrOpen): the open circuit's
				// rejection, deferred; anything else a failure.
				return err
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
				return errors.New(resp.Status) // retried later
			case resp.StatusCode >= 400:
				return queuegate.MarkDeadLetter(errors.New(resp.Status)) // the message is bad
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := consumer.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
