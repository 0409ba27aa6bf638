package amqpgate_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
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
// test's own, since a node takes seconds to boot. The tests that kill the
// node come last.
func TestRabbitMQ(t *testing.T) {
	srv := brokertest.StartRabbitMQ(t)
	url := srv.URL()
	conn := dial(t, url)
	declare(t, conn, "inbound", "quorum", append(chaos.Regions, chaos.ScenarioRegions...)...)
	t.Run("Chaos", func(t *testing.T) { chaos.Run(t, broker(t, url)) })
	t.Run("Scenarios", func(t *testing.T) { chaos.Scenarios(t, broker(t, url)) })
	t.Run("DeletedRetryQueueKeepsTheMessage", func(t *testing.T) { testDeletedRetryQueue(t, url) })
	t.Run("RetryQueueWithOtherArguments", func(t *testing.T) { testRetryQueueArgs(t, url) })
	t.Run("ClassicRetryQueueIsRefusedWithTheMigration", func(t *testing.T) { testClassicRetryQueue(t, url) })
	t.Run("DeadLetterPauseAndDelayedRequeue", func(t *testing.T) { testDeadLetterPauseAndDelayedRequeue(t, url) })
	t.Run("DroppedConnectionIsDialledAgain", func(t *testing.T) { testDroppedConnection(t, url) })
	conn.Close()
	t.Run("BrokerKilledWhileCopiesWait", func(t *testing.T) { testKillWhileCopiesWait(t, srv) })
	t.Run("BrokerKilledMidTraffic", func(t *testing.T) { testKillMidTraffic(t, srv) })
}

// dial connects to the broker; the connection is closed when the test ends.
func dial(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialer is a Config.Dial for url.
func dialer(url string) func(context.Context) (*amqp.Connection, error) {
	return func(context.Context) (*amqp.Connection, error) { return amqp.Dial(url) }
}

// declare declares, per region, a work queue <prefix>.<region> of the type
// kind ("quorum": delivery limit 20; "classic": durable), dead letters to the
// queue <prefix>.dead, and its retry queue.
func declare(t *testing.T, conn *amqp.Connection, prefix, kind string, regions ...string) {
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
		args := amqp.Table{"x-dead-letter-exchange": prefix + ".dlx"}
		if kind == "quorum" {
			args["x-queue-type"] = "quorum"
			args["x-delivery-limit"] = 20 // a message spinning through the outage would run out
		}
		_, err := ch.QueueDeclare(prefix+"."+r, true, false, false, false, args)
		must(err)
		_, err = amqpgate.DeclareRetryQueue(ch, prefix+"."+r)
		must(err)
	}
}

// publish puts persistent messages with the ids on queue, confirmed.
func publish(ctx context.Context, url, queue string, ids []string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
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

// queueInfo returns queue's message and consumer counts.
func queueInfo(url, queue string) (amqp.Queue, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return amqp.Queue{}, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return amqp.Queue{}, err
	}
	return ch.QueueDeclarePassive(queue, true, false, false, false, nil)
}

func messages(url, queue string) (int, error) {
	q, err := queueInfo(url, queue)
	return q.Messages, err
}

func broker(t *testing.T, url string) chaos.Broker {
	return chaos.Broker{
		Name: "rabbitmq",
		// Handlers running, plus a prefetch's worth pushed to a new
		// subscription while the old one's are still in hand.
		InFlight: 2 * concurrency,
		Publish: func(ctx context.Context, region string, ids []string) error {
			return publish(ctx, url, "inbound."+region, ids)
		},
		Consume: func(ctx context.Context, region string, gate *queuegate.Gate, handle func(context.Context, string) error, o chaos.Options) chaos.Consumer {
			c, wait := start(t, ctx, amqpgate.Config{
				Dial: dialer(url), Queue: "inbound." + region, Gate: gate, Concurrency: concurrency, Logger: quiet,
				DrainTimeout: o.DrainTimeout,
				Handler:      func(ctx context.Context, d amqp.Delivery) error { return handle(ctx, string(d.Body)) },
			})
			return chaos.Consumer{
				Wait:       wait,
				Fetches:    func() uint64 { return c.Stats().Consumes },
				Deliveries: func() uint64 { return c.Stats().Delivered },
			}
		},
		DeadLettered: func(context.Context) (int, error) { return messages(url, "inbound.dead") },
	}
}

// waitFor polls cond until it holds, or fails the test at ctx's end.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The retry queue deleted under a running consumer: the copy of a deferred
// message is returned as unroutable (mandatory), the consumer stops with an
// error naming the retry queue, and the original stays on the work queue,
// to be delivered once the retry queue is back.
func testDeletedRetryQueue(t *testing.T, url string) {
	conn := dial(t, url)
	declare(t, conn, "gone", "quorum", "us-east-1")
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
	cfg := amqpgate.Config{Dial: dialer(url), Queue: "gone.us-east-1", Gate: gate, Logger: quiet, Handler: handler}
	c, wait := start(t, ctx, cfg)
	// Wait until the consumer is subscribed (it checked the retry queue at
	// start), then delete the retry queue under it.
	waitFor(t, ctx, "the consumer to subscribe", func() bool { return c.Stats().Consumes > 0 })
	if _, err := ch.QueueDelete("gone.us-east-1.retry", false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := publish(ctx, url, "gone.us-east-1", []string{"kept-1"}); err != nil {
		t.Fatal(err)
	}
	err = wait()
	if err == nil || !strings.Contains(err.Error(), "returned the copy as unroutable") || !strings.Contains(err.Error(), "gone.us-east-1.retry") {
		t.Fatalf("Run returned %v, want an error about the unroutable copy naming the retry queue", err)
	}
	if s := c.Stats(); s.Returned != 1 || s.Requeued != 0 || s.Reconnects != 0 {
		t.Fatalf("stats %+v, want 1 returned, 0 requeued, 0 reconnects", s)
	}
	// The original is still on the work queue.
	waitFor(t, ctx, "the message back on the work queue (else it is lost)", func() bool {
		n, _ := messages(url, "gone.us-east-1")
		return n == 1
	})
	// A restart without the retry queue fails at once; with it back, the
	// message is delivered once the other circuit closes.
	if _, wait := start(t, ctx, cfg); wait() == nil {
		t.Fatal("Run started without its retry queue")
	}
	if _, err := amqpgate.DeclareRetryQueue(ch, "gone.us-east-1"); err != nil {
		t.Fatal(err)
	}
	other.Reset()
	runCtx, stop := context.WithCancel(ctx)
	_, wait = start(t, runCtx, cfg)
	if id := <-handled; id != "kept-1" {
		t.Fatalf("handled %s, want kept-1", id)
	}
	stop()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
}

// A retry queue that exists but was declared without DeclareRetryQueue's
// dead-lettering would drop its expired copies: Run refuses to start, and
// says what to do.
func testRetryQueueArgs(t *testing.T, url string) {
	ch, err := dial(t, url).Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("noroute.us-east-1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("noroute.us-east-1.retry", true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	err = runOnce(t, url, "noroute.us-east-1")
	if err == nil || !strings.Contains(err.Error(), "declared with other arguments than DeclareRetryQueue's") || !strings.Contains(err.Error(), "PRECONDITION_FAILED") {
		t.Fatalf("Run returned %v, want the retry queue's arguments refused", err)
	}
}

// A retry queue declared by an earlier amqpgate (classic: at-most-once
// dead-lettering) is refused, by Run and by DeclareRetryQueue, with the
// migration in the error.
func testClassicRetryQueue(t *testing.T, url string) {
	conn := dial(t, url)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("old.us-east-1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	// The arguments of the earlier DeclareRetryQueue.
	if _, err := ch.QueueDeclare("old.us-east-1.retry", true, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "old.us-east-1"}); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"Run": runOnce(t, url, "old.us-east-1"),
		"DeclareRetryQueue": func() error {
			_, err := amqpgate.DeclareRetryQueue(ch, "old.us-east-1")
			return err
		}(),
	} {
		if err == nil || !strings.Contains(err.Error(), "a classic retry queue") || !strings.Contains(err.Error(), "wait until old.us-east-1.retry is empty") {
			t.Errorf("%s returned %v, want the classic retry queue refused with the migration", what, err)
		}
	}
}

// runOnce runs a consumer of queue, whose handler acks everything, and
// returns Run's error, or nil if it was still running after 10s.
func runOnce(t *testing.T, url, queue string) error {
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, wait := start(t, ctx, amqpgate.Config{Dial: dialer(url), Queue: queue, Gate: gate, Logger: quiet,
		Handler: func(context.Context, amqp.Delivery) error { return nil }})
	return wait()
}

// A 4xx goes to the work queue's dead-letter exchange, a success is acked;
// while the circuit is open the consumer is cancelled and nothing is
// delivered; a deferred message comes back through the retry queue.
func testDeadLetterPauseAndDelayedRequeue(t *testing.T, url string) {
	declare(t, dial(t, url), "unit", "quorum", "us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := publish(ctx, url, "unit.us-east-1", []string{"good-1", "bad-1", "good-2"}); err != nil {
		t.Fatal(err)
	}
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", OpenTimeout: time.Hour, Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet, MinDelay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond})
	handled := make(chan string, 10)
	other, _ := breaker.New(breaker.Config{Name: "other", FailureThreshold: 1, OpenTimeout: 200 * time.Millisecond, Logger: quiet})
	runCtx, stop := context.WithCancel(ctx)
	c, wait := start(t, runCtx, amqpgate.Config{
		Dial: dialer(url), Queue: "unit.us-east-1", Gate: gate, Logger: quiet,
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
	waitFor(t, ctx, "the 4xx message on the dead-letter queue", func() bool {
		n, _ := messages(url, "unit.dead")
		return n == 1
	})

	// Deferred through the retry queue: comes back after ~200ms, once.
	other.Do(ctx, func(context.Context) error { return errors.New("down") })
	if err := publish(ctx, url, "unit.us-east-1", []string{"later-1"}); err != nil {
		t.Fatal(err)
	}
	if id := <-handled; id != "later-1" {
		t.Fatalf("handled %s, want later-1 after its delay", id)
	}
	if s := c.Stats(); s.Requeued != 1 {
		t.Fatalf("stats %+v, want 1 requeued", s)
	}

	b.ForceOpen()
	// The broker's own count says when the consumer is cancelled: no
	// guess of how long the cancel takes.
	waitFor(t, ctx, "the consumer to be cancelled", func() bool {
		q, err := queueInfo(url, "unit.us-east-1")
		return err == nil && q.Consumers == 0
	})
	before := c.Stats()
	if err := publish(ctx, url, "unit.us-east-1", []string{"good-3"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a consumer that was not cancelled would be pushed good-3 by now
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

// The broker closes the consumer's connection (as an operator's
// close_connection, or a proxy's cut, would) while the consumer rests in the
// gate, and again while it consumes: Run dials again each time, and every
// message is handled.
func testDroppedConnection(t *testing.T, url string) {
	declare(t, dial(t, url), "dropped", "quorum", "us-east-1")
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	b.ForceOpen() // the consumer rests in the gate
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var conns []*amqp.Connection
	handled := make(chan string, 10)
	runCtx, stop := context.WithCancel(ctx)
	c, wait := start(t, runCtx, amqpgate.Config{Queue: "dropped.us-east-1", Gate: gate, Logger: quiet,
		ReconnectDelay: 10 * time.Millisecond, MaxReconnectDelay: 100 * time.Millisecond,
		Dial: func(context.Context) (*amqp.Connection, error) {
			conn, err := amqp.Dial(url)
			if err == nil {
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
			return conn, err
		},
		Handler: func(_ context.Context, d amqp.Delivery) error { handled <- string(d.Body); return nil }})
	last := func() *amqp.Connection {
		mu.Lock()
		defer mu.Unlock()
		if len(conns) == 0 {
			return nil
		}
		return conns[len(conns)-1]
	}
	waitFor(t, ctx, "the consumer to rest in the gate", func() bool { return gate.Stats().Pauses > 0 && last() != nil })
	last().Close()
	waitFor(t, ctx, "a reconnect", func() bool { return c.Stats().Reconnects == 1 })
	b.Reset()
	if err := publish(ctx, url, "dropped.us-east-1", []string{"m-1"}); err != nil {
		t.Fatal(err)
	}
	if id := <-handled; id != "m-1" {
		t.Fatalf("handled %s, want m-1", id)
	}
	last().Close()
	waitFor(t, ctx, "a second reconnect", func() bool { return c.Stats().Reconnects == 2 })
	if err := publish(ctx, url, "dropped.us-east-1", []string{"m-2"}); err != nil {
		t.Fatal(err)
	}
	if id := <-handled; id != "m-2" {
		t.Fatalf("handled %s, want m-2", id)
	}
	stop()
	if err := wait(); err != nil {
		t.Fatalf("Run returned %v after its context ended, want nil", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b})
	d := dialer("amqp://127.0.0.1:1/")
	h := func(context.Context, amqp.Delivery) error { return nil }
	for _, tc := range []struct {
		cfg  amqpgate.Config
		want string
	}{
		{amqpgate.Config{Queue: "q", Gate: gate, Handler: h}, "Config.Dial is nil"},
		{amqpgate.Config{Dial: d, Gate: gate, Handler: h}, "Config.Queue is empty"},
		{amqpgate.Config{Dial: d, Queue: "q", Handler: h}, "Config.Gate is nil"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate}, "Config.Handler is nil"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate, Handler: h, Concurrency: -2}, "Config.Concurrency is -2"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate, Handler: h, MaxRetries: -1}, "Config.MaxRetries is -1"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate, Handler: h, ReconnectDelay: -1}, "Config.ReconnectDelay is -1ns"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate, Handler: h, MaxReconnectDelay: time.Millisecond}, "Config.MaxReconnectDelay 1ms is below Config.ReconnectDelay 250ms"},
		{amqpgate.Config{Dial: d, Queue: "q", Gate: gate, Handler: h, RetryQueue: "q"}, "Config.RetryQueue is \"q\", the work queue itself"},
	} {
		if _, err := amqpgate.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want an error containing %q", err, tc.want)
		}
	}
}
