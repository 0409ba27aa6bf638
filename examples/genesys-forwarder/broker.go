package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/amqpgate"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
)

type handler func(ctx context.Context, region string, body []byte) error

// session connects to the broker, declares what is missing and consumes
// until ctx is done (nil) or the connection is lost (an error). It calls up
// once it consumes.
type session func(ctx context.Context, cfg Config, gates map[string]*queuegate.Gate, handle handler, logger *slog.Logger, up func()) error

// permanent marks an error that dialling again cannot cure.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// stayConnected runs session until ctx is done, and again after each
// connection lost or refused, with capped exponential backoff and jitter
// (natsgate.ReconnectDelay, the same as the NATS client's own reconnection).
// It logs each outage once: a warning when it starts, an info line when the
// forwarder consumes again. The messages in hand when the connection drops
// are not lost: unacknowledged, the broker delivers them again.
func stayConnected(ctx context.Context, broker string, logger *slog.Logger, s func(ctx context.Context, up func()) error) error {
	var down time.Time // zero while connected
	attempt := 0
	for {
		err := s(ctx, func() {
			if !down.IsZero() {
				logger.Info("broker connection back; consuming again", slog.String("broker", broker),
					slog.Duration("down_for", time.Since(down).Round(time.Millisecond)), slog.Int("attempts", attempt))
			}
			down, attempt = time.Time{}, 0
		})
		if ctx.Err() != nil {
			return nil
		}
		if p := (permanent{}); errors.As(err, &p) {
			return err
		}
		if err == nil { // a session ends without error only with ctx
			err = errors.New("consumers stopped")
		}
		attempt++
		wait := natsgate.ReconnectDelay(attempt)
		if down.IsZero() {
			down = time.Now()
			logger.Warn("broker connection lost; dialling again with backoff until it is back", slog.String("broker", broker), slog.Any("error", err))
		} else {
			logger.Debug("broker still unreachable", slog.String("broker", broker), slog.Any("error", err), slog.Duration("retry_in", wait))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

// natsSession consumes from JetStream. Within a session the NATS client
// reconnects by itself (natsgate.ReconnectOptions: forever, with backoff),
// and the consumers carry on: the session ends only if the stream or a
// consumer is gone, which a new session recreates.
func natsSession(ctx context.Context, cfg Config, gates map[string]*queuegate.Gate, handle handler, logger *slog.Logger, up func()) error {
	nc, err := nats.Connect(cfg.Broker, append(natsgate.ReconnectOptions(logger), nats.Name("genesys-forwarder"))...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return permanent{fmt.Errorf("-broker %s: %w", redact(cfg.Broker), err)}
		}
		return err
	}
	defer func() {
		_ = nc.FlushTimeout(ackTimeout) // the last naks out before the connection goes
		nc.Close()
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for name, subject := range map[string]string{"INBOUND": cfg.Prefix + ".>", "INBOUND_DEAD": cfg.Prefix + "-dead.>"} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			return natsSetupErr(fmt.Errorf("stream %s: %w", name, err))
		}
	}
	consumers := make([]*natsgate.Consumer, 0, len(cfg.Regions))
	for _, region := range cfg.Regions {
		cons, err := js.CreateOrUpdateConsumer(ctx, "INBOUND", jetstream.ConsumerConfig{
			Durable:       "genesys-forwarder-" + region,
			FilterSubject: cfg.Prefix + "." + region,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxDeliver:    -1, // natsgate bounds the failures charged to a message instead
		})
		if err != nil {
			return natsSetupErr(fmt.Errorf("consumer for %s: %w", region, err))
		}
		c, err := natsgate.New(natsgate.Config{
			Consumer: cons, Gate: gates[region], Concurrency: cfg.Concurrency, Logger: logger,
			Handler: func(ctx context.Context, msg jetstream.Msg) error {
				return handle(ctx, region, msg.Data())
			},
			DeadLetter: natsgate.DeadLetterTo(js, cfg.Prefix+"-dead."+region),
		})
		if err != nil {
			return permanent{err}
		}
		consumers = append(consumers, c)
	}
	logger.Info("forwarding", slog.String("broker", redact(cfg.Broker)), slog.String("api", cfg.API), slog.Any("regions", cfg.Regions))
	up()
	return runAll(ctx, len(consumers), func(ctx context.Context, i int) error { return consumers[i].Run(ctx) })
}

// natsSetupErr makes permanent a JetStream refusal of the forwarder's own
// request (400: e.g. a stream of that name with other subjects), and leaves
// the rest (no JetStream yet, a timeout) to a new session.
func natsSetupErr(err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code == 400 {
		return permanent{err}
	}
	return err
}

// amqpSession declares the queues on one connection, then runs a consumer
// per region. Each consumer dials its own connection and dials again by
// itself after a lost one (amqpgate's Config.Dial), so the session ends only
// on what a new connection cannot cure, or when the first dial or the
// declarations fail, which stayConnected retries.
func amqpSession(ctx context.Context, cfg Config, gates map[string]*queuegate.Gate, handle handler, logger *slog.Logger, up func()) error {
	conn, err := amqp.Dial(cfg.Broker)
	if err != nil {
		return amqpErr(fmt.Errorf("-broker %s: %w", redact(cfg.Broker), err))
	}
	defer conn.Close()
	if err := declareAMQP(conn, cfg); err != nil {
		return amqpErr(err)
	}
	consumers := make([]*amqpgate.Consumer, 0, len(cfg.Regions))
	for _, region := range cfg.Regions {
		c, err := amqpgate.New(amqpgate.Config{
			Dial:  func(context.Context) (*amqp.Connection, error) { return amqp.Dial(cfg.Broker) },
			Queue: cfg.Prefix + "." + region, Gate: gates[region], Concurrency: cfg.Concurrency, Logger: logger,
			Handler: func(ctx context.Context, d amqp.Delivery) error {
				return handle(ctx, region, d.Body)
			},
		})
		if err != nil {
			return permanent{err}
		}
		consumers = append(consumers, c)
	}
	logger.Info("forwarding", slog.String("broker", redact(cfg.Broker)), slog.String("api", cfg.API), slog.Any("regions", cfg.Regions))
	up()
	return runAll(ctx, len(consumers), func(ctx context.Context, i int) error { return amqpErr(consumers[i].Run(ctx)) })
}

// amqpErr makes permanent what the broker refuses for good: the login, the
// permissions, a queue declared with other arguments. A closed connection
// or channel (the broker restarting: 320 CONNECTION_FORCED, or no answer)
// is for a new session.
func amqpErr(err error) error {
	var e *amqp.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, amqp.ErrCredentials), errors.Is(err, amqp.ErrVhost), errors.Is(err, amqp.ErrSASL):
		return permanent{err}
	case errors.As(err, &e) && (e.Code == amqp.AccessRefused || e.Code == amqp.PreconditionFailed || e.Code == amqp.NotAllowed):
		return permanent{err}
	}
	return err
}

// declareAMQP declares, if missing, the dead-letter exchange and queue and,
// per region, the quorum work queue and its retry queue.
func declareAMQP(conn *amqp.Connection, cfg Config) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	dlx, dead := cfg.Prefix+".dlx", cfg.Prefix+".dead"
	if err := ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return fmt.Errorf("queue %s: %w", dead, err)
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		return fmt.Errorf("binding %s: %w", dead, err)
	}
	for _, r := range cfg.Regions {
		q := cfg.Prefix + "." + r
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{
			"x-queue-type": "quorum", "x-dead-letter-exchange": dlx,
		}); err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		if _, err := amqpgate.DeclareRetryQueue(ch, q); err != nil {
			return err
		}
	}
	return nil
}

// runAll runs n consumers until all stop and returns the first one's error;
// the first error stops the others (they settle what they hold first).
func runAll(ctx context.Context, n int, run func(ctx context.Context, i int) error) error {
	ctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- run(ctx, i) }()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
			stopAll()
		}
	}
	return first
}
