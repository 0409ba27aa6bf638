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
// the retry queue that brings deferred messages back after their delay.
//
// The example needs a RabbitMQ node, so it is compiled but not run (no
// Output): an example function cannot take the *testing.T that package
// brokertest needs to start and clean up a node of its own. The tests of this
// package run the same code against a real node.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		log.Fatal(err)
	}
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
		Conn:  conn,
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
	if err := consumer.Run(ctx); err != nil {
		log.Fatal(err) // the connection closed: reconnect and Run again
	}
}

func send(context.Context, []byte) error { return errors.New("not implemented") }
