package amqpgate_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/amqpgate"
	"github.com/breakerbox/breakerbox/queuegate/internal/chaos"
)

const concurrency = 4

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestRabbitMQ runs the tests that need a broker on one RabbitMQ node of the
// test's own, since a node takes seconds to boot.
func TestRabbitMQ(t *testing.T) {
	url := brokertest.RabbitMQ(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	declare(t, conn, "inbound", append(chaos.Regions, chaos.ScenarioRegions...)...)
	t.Run("Chaos", func(t *testing.T) { testChaos(t, conn) })
	t.Run("Scenarios", func(t *testing.T) { chaos.Scenarios(t, broker(t, conn)) })
	t.Run("DeletedRetryQueueKeepsTheMessage", func(t *testing.T) { testDeletedRetryQueue(t, conn) })
	t.Run("RetryQueueWithOtherArguments", func(t *testing.T) { testRetryQueueArgs(t, conn) })
	t.Run("DeadLetterPauseAndDelayedRequeue", func(t *testing.T) { testDeadLetterPauseAndDelayedRequeue(t, conn) })
	t.Run("LostConnectionEndsRunWhilePaused", func(t *testing.T) { testLostConnection(t, url) })
}

func testLostConnection(t *testing.T, url string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	declare(t, conn, "lost", "us-east-1")
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	b.ForceOpen() // the consumer rests in the gate
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, wait := start(t, ctx, amqpgate.Config{Conn: conn, Queue: "lost.us-east-1", Gate: gate, Logger: quiet,
		Handler: func(context.Context, amqp.Delivery) error { return nil }})
	for gate.Stats().Pauses == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	if err := wait(); err == nil || ctx.Err() != nil {
		t.Fatalf("Run returned %v after the connection closed (ctx %v), want an error at once", err, ctx.Err())
	}
}

// declare declares, per region, a quorum work queue <prefix>.<region>
// (delivery limit 20, dead letters to the queue <prefix>.dead) and its retry
// queue.
func declare(t *testing.T, conn *amqp.Connection, prefix string, regions ...string) {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.ExchangeDeclare(prefix+".dlx", "fanout", true, false, false, false, nil))
	_, err = ch.QueueDeclare(prefix+".dead", true, false, false, false, nil)
	must(err)
	must(ch.QueueBind(prefix+".dead", "", prefix+".dlx", false, nil))
	for _, r := range regions {
		_, err := ch.QueueDeclare(prefix+"."+r, true, false, false, false, amqp.Table{
			"x-queue-type":           "quorum",
			"x-delivery-limit":       20, // a message spinning through the outage would run out
			"x-dead-letter-exchange": prefix + ".dlx",
		})
		must(err)
		_, err = amqpgate.DeclareRetryQueue(ch, prefix+"."+r)
		must(err)
	}
}

func publish(ctx context.Context, conn *amqp.Connection, queue string, ids []string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		return err
	}
	var confs []*amqp.DeferredConfirmation
	for _, id := range ids {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false,
			amqp.Publishing{MessageId: id, Body: []byte(id), DeliveryMode: amqp.Persistent})
		if err != nil {
			return err
		}
		confs = append(confs, c)
	}
	for _, c := range confs {
		if ok, err := c.WaitContext(ctx); err != nil || !ok {
			return errors.Join(errors.New("publish not confirmed"), err)
		}
	}
	return nil
}

func start(t *testing.T, ctx context.Context, cfg amqpgate.Config) (*amqpgate.Consumer, func() error) {
	t.Helper()
	c, err := amqpgate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return c, func() error { return <-done }
}

func deadLettered(conn *amqp.Connection, queue string) (int, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return q.Messages, err
}

func broker(t *testing.T, conn *amqp.Connection) chaos.Broker {
	return chaos.Broker{
		Name: "rabbitmq",
		// Handlers running, plus a prefetch's worth pushed to a new
		// subscription while the old one's are still in hand.
		InFlight: 2 * concurrency,
		Publish: func(ctx context.Context, region string, ids []string) error {
			return publish(ctx, conn, "inbound."+region, ids)
		},
		Consume: func(ctx context.Context, region string, gate *queuegate.Gate, handle func(context.Context, string) error, o chaos.Options) chaos.Consumer {
			c, wait := start(t, ctx, amqpgate.Config{
				Conn: conn, Queue: "inbound." + region, Gate: gate, Concurrency: concurrency, Logger: quiet,
				DrainTimeout: o.DrainTimeout,
				Handler:      func(ctx context.Context, d amqp.Delivery) error { return handle(ctx, string(d.Body)) },
			})
			return chaos.Consumer{
				Wait:       wait,
				Fetches:    func() uint64 { return c.Stats().Consumes },
				Deliveries: func() uint64 { return c.Stats().Delivered },
			}
		},
		DeadLettered: func(context.Context) (int, error) { return deadLettered(conn, "inbound.dead") },
	}
}

func testChaos(t *testing.T, conn *amqp.Connection) {
	chaos.Run(t, broker(t, conn))
}

// The retry queue deleted under a running consumer: the copy of a deferred
// message is returned as unroutable (mandatory), the consumer stops with an
// error naming the retry queue, and the original stays on the work queue,
// to be delivered once the retry queue is back.
func testDeletedRetryQueue(t *testing.T, conn *amqp.Connection) {
	declare(t, conn, "gone", "us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet, MinDelay: 50 * time.Millisecond, Jitter: 10 * time.Millisecond})
	other, _ := breaker.New(breaker.Config{Name: "other", FailureThreshold: 1, OpenTimeout: time.Hour, Logger: quiet})
	other.Do(ctx, func(context.Context) error { return errors.New("down") }) // open: every message is deferred
	handled := make(chan string, 10)
	handler := func(ctx context.Context, d amqp.Delivery) error {
		if err := other.Do(ctx, func(context.Context) error { return nil }); err != nil {
			return err
		}
		handled <- string(d.Body)
		return nil
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	c, wait := start(t, ctx, amqpgate.Config{Conn: conn, Queue: "gone.us-east-1", Gate: gate, Logger: quiet, Handler: handler})
	// Wait until the consumer is subscribed (it checked the retry queue at
	// start), then delete the retry queue under it.
	for c.Stats().Consumes == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := ch.QueueDelete("gone.us-east-1.retry", false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := publish(ctx, conn, "gone.us-east-1", []string{"kept-1"}); err != nil {
		t.Fatal(err)
	}
	err = wait()
	if err == nil || !strings.Contains(err.Error(), "returned the copy as unroutable") || !strings.Contains(err.Error(), "gone.us-east-1.retry") {
		t.Fatalf("Run returned %v, want an error about the unroutable copy naming the retry queue", err)
	}
	if s := c.Stats(); s.Returned != 1 || s.Requeued != 0 {
		t.Fatalf("stats %+v, want 1 returned, 0 requeued", s)
	}
	// The original is still on the work queue.
	for {
		if n, _ := deadLettered(conn, "gone.us-east-1"); n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the message is not back on the work queue: lost")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A restart without the retry queue fails at once; with it back, the
	// message is delivered once the other circuit closes.
	if _, wait := start(t, ctx, amqpgate.Config{Conn: conn, Queue: "gone.us-east-1", Gate: gate, Logger: quiet, Handler: handler}); wait() == nil {
		t.Fatal("Run started without its retry queue")
	}
	if _, err := amqpgate.DeclareRetryQueue(ch, "gone.us-east-1"); err != nil {
		t.Fatal(err)
	}
	other.Reset()
	runCtx, stop := context.WithCancel(ctx)
	_, wait = start(t, runCtx, amqpgate.Config{Conn: conn, Queue: "gone.us-east-1", Gate: gate, Logger: quiet, Handler: handler})
	if id := <-handled; id != "kept-1" {
		t.Fatalf("handled %s, want kept-1", id)
	}
	stop()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// A retry queue that exists but was declared without DeclareRetryQueue's
// dead-lettering would drop its expired copies: Run refuses to start.
func testRetryQueueArgs(t *testing.T, conn *amqp.Connection) {
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare("noroute.us-east-1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("noroute.us-east-1.retry", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, wait := start(t, ctx, amqpgate.Config{Conn: conn, Queue: "noroute.us-east-1", Gate: gate, Logger: quiet,
		Handler: func(context.Context, amqp.Delivery) error { return nil }})
	if err := wait(); err == nil || !strings.Contains(err.Error(), "not declared with DeclareRetryQueue's arguments") {
		t.Fatalf("Run returned %v, want the retry queue's arguments refused", err)
	}
}

// A 4xx goes to the work queue's dead-letter exchange, a success is acked;
// while the circuit is open the consumer is cancelled and nothing is
// delivered; a deferred message comes back through the retry queue.
func testDeadLetterPauseAndDelayedRequeue(t *testing.T, conn *amqp.Connection) {
	declare(t, conn, "unit", "us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := publish(ctx, conn, "unit.us-east-1", []string{"good-1", "bad-1", "good-2"}); err != nil {
		t.Fatal(err)
	}
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", OpenTimeout: time.Hour, Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet, MinDelay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond})
	handled := make(chan string, 10)
	other, _ := breaker.New(breaker.Config{Name: "other", FailureThreshold: 1, OpenTimeout: 200 * time.Millisecond, Logger: quiet})
	runCtx, stop := context.WithCancel(ctx)
	c, wait := start(t, runCtx, amqpgate.Config{
		Conn: conn, Queue: "unit.us-east-1", Gate: gate, Logger: quiet,
		Handler: func(ctx context.Context, d amqp.Delivery) error {
			id := string(d.Body)
			switch {
			case strings.HasPrefix(id, "bad"):
				handled <- id
				return queuegate.MarkDeadLetter(errors.New("400 Bad Request"))
			case strings.HasPrefix(id, "later"):
				// Another circuit on the way is open: not attempted.
				if err := other.Do(ctx, func(context.Context) error { return nil }); err != nil {
					return err
				}
			}
			handled <- id
			return nil
		},
	})
	for range 3 {
		<-handled
	}
	for {
		if n, _ := deadLettered(conn, "unit.dead"); n == 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Deferred through the retry queue: comes back after ~200ms, once.
	other.Do(ctx, func(context.Context) error { return errors.New("down") })
	if err := publish(ctx, conn, "unit.us-east-1", []string{"later-1"}); err != nil {
		t.Fatal(err)
	}
	if id := <-handled; id != "later-1" {
		t.Fatalf("handled %s, want later-1 after its delay", id)
	}
	if s := c.Stats(); s.Requeued != 1 {
		t.Fatalf("stats %+v, want 1 requeued", s)
	}

	b.ForceOpen()
	for gate.Mode() != queuegate.Paused {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the cancel on its way
	before := c.Stats()
	if err := publish(ctx, conn, "unit.us-east-1", []string{"good-3"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if s := c.Stats(); s.Delivered != before.Delivered || s.Consumes != before.Consumes {
		t.Fatalf("while open: %d deliveries, %d consumes, want none", s.Delivered-before.Delivered, s.Consumes-before.Consumes)
	}
	b.Reset()
	if id := <-handled; id != "good-3" {
		t.Fatalf("handled %s after the circuit closed, want good-3", id)
	}
	stop()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b})
	conn := &amqp.Connection{}
	h := func(context.Context, amqp.Delivery) error { return nil }
	for _, tc := range []struct {
		cfg  amqpgate.Config
		want string
	}{
		{amqpgate.Config{Queue: "q", Gate: gate, Handler: h}, "Config.Conn is nil"},
		{amqpgate.Config{Conn: conn, Gate: gate, Handler: h}, "Config.Queue is empty"},
		{amqpgate.Config{Conn: conn, Queue: "q", Handler: h}, "Config.Gate is nil"},
		{amqpgate.Config{Conn: conn, Queue: "q", Gate: gate}, "Config.Handler is nil"},
		{amqpgate.Config{Conn: conn, Queue: "q", Gate: gate, Handler: h, Concurrency: -2}, "Config.Concurrency is -2"},
		{amqpgate.Config{Conn: conn, Queue: "q", Gate: gate, Handler: h, MaxRetries: -1}, "Config.MaxRetries is -1"},
		{amqpgate.Config{Conn: conn, Queue: "q", Gate: gate, Handler: h, RetryQueue: "q"}, "Config.RetryQueue is \"q\", the work queue itself"},
	} {
		if _, err := amqpgate.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want an error containing %q", err, tc.want)
		}
	}
}
