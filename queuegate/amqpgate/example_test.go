package amqpgate_test

import (
	"context"
	"errors"
	"log"
	"os/signal"
	"syscall"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/amqpgate"
)

// One region's consumer on a quorum queue with a dead-letter exchange, and
// the retry queue that brings deferred messages back after their delay, at
// least once, also across a restart of the broker.
//
// The example needs a RabbitMQ node, so it is compiled but not run (no
// Output): an example function cannot take the *testing.T that package
// brokertest needs to start and clean up a node of its own. The tests of this
// package run the same code against a real node.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	const url = "amqp://guest:guest@127.0.0.1:5672/"
	conn, err := amqp.Dial(url)
	if err != nil {
		log.Fatal(err)
	}
	// A connection of its own to declare the queues: the consumer's are
	// dialled by Run.
	defer conn.Close()
	ch, _ := conn.Channel()
	_, err = ch.QueueDeclare("inbound.eu-west-1", true, false, false, false, amqp.Table{
		"x-queue-type":           "quorum",
		"x-dead-letter-exchange": "inbound.dlx", // where 4xx messages go
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := amqpgate.DeclareRetryQueue(ch, "inbound.eu-west-1"); err != nil {
		log.Fatal(err)
	}
	ch.Close()

	region, _ := breaker.New(breaker.Config{Name: "genesys/eu-west-1", FailureThreshold: 10, HalfOpenSuccesses: 3}) // T10
	gate, err := queuegate.New(queuegate.Config{Breaker: region})
	if err != nil {
		log.Fatal(err)
	}
	consumer, err := amqpgate.New(amqpgate.Config{
		// Run dials with this, and again after a lost connection (the broker
		// restarted, the network cut): it reconnects with backoff on its own.
		Dial:  func(context.Context) (*amqp.Connection, error) { return amqp.Dial(url) },
		Queue: "inbound.eu-west-1",
		Gate:  gate,
		Handler: func(ctx context.Context, d amqp.Delivery) error {
			return region.Do(ctx, func(ctx context.Context) error {
				return send(ctx, d.Body) // an open circuit never gets here: the message is deferred
			})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	// Run returns nil once ctx ends (SIGTERM), after the messages in hand
	// are settled; an error only for a fault reconnecting cannot cure (a
	// queue missing or declared otherwise, refused credentials).
	if err := consumer.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func send(context.Context, []byte) error { return errors.New("not implemented") }
