package natsgate_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
)

// One region's consumer: messages on inbound.eu-west-1 are posted to the
// region's API through the region's breaker; while it is open the consumer
// stops pulling.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Drain()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateOrUpdateConsumer(ctx, "INBOUND", jetstream.ConsumerConfig{
		Durable:       "forwarder-eu-west-1",
		FilterSubject: "inbound.eu-west-1",
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		log.Fatal(err)
	}

	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Profiles: map[string]breaker.Config{
		"genesys": {FailureThreshold: 10, HalfOpenSuccesses: 3}, // T10
	}})
	client := &http.Client{Transport: httpbreaker.New(reg, httpbreaker.WithKey(httpbreaker.GenesysRegion))}
	gate, err := queuegate.New(queuegate.Config{Registry: reg, Key: "genesys/eu-west-1"})
	if err != nil {
		log.Fatal(err)
	}

	consumer, err := natsgate.New(natsgate.Config{
		Consumer:   cons,
		Gate:       gate,
		DeadLetter: natsgate.DeadLetterTo(js, "dead.inbound.eu-west-1"),
		Handler: func(ctx context.Context, msg jetstream.Msg) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
				"https://api.mypurecloud.ie/api/v2/conversations/messages/inbound/open", nil)
			resp, err := client.Do(req) // a rejection while open defers the message
			if err != nil {
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
