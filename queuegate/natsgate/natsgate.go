// Package natsgate runs a NATS JetStream pull consumer behind a queuegate.Gate,
// so that it waits out an outage of the service its messages go to.
//
// The consumer fetches only as many messages as the gate gives it permits
// for: as many as it has free handlers while the circuit is CLOSED, as many as
// the breaker has probe slots while HALF_OPEN, and none while OPEN, when it
// blocks in the gate (no pull requests, no CPU) until the breaker moves. A
// message whose circuit opened while it was in hand goes back with
// NakWithDelay(RetryAfter + jitter), never with a plain Nak that JetStream
// would redeliver at once. A message that failed for its own reasons goes to
// the dead-letter path (Term, or a dead-letter subject with DeadLetterTo).
//
// # The JetStream consumer
//
// Use a durable pull consumer with AckPolicy explicit and MaxAckPending of at
// least Concurrency. Each deferral is a delivery, so MaxDeliver, if set, needs
// room for a few per outage: a message is deferred only when it was in hand as
// the circuit opened, or when a rejection came from another circuit than the
// gate's. For one gate per region, give each region its own subject (e.g.
// "inbound.<region>") and its own consumer filtered on it.
//
// nats-server 2.11 can pause a consumer on the server (PauseConsumer); this
// package does not need it, since not fetching is pause enough for a pull
// consumer, and it works with older servers.
package natsgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/queuegate"
)

// Defaults for zero Config fields.
const (
	DefaultConcurrency = 8
	DefaultFetchWait   = time.Second
)

// Config configures a Consumer.
type Config struct {
	// Consumer is the JetStream pull consumer to fetch from. Required.
	Consumer jetstream.Consumer
	// Gate decides when to fetch and how many messages. Required.
	Gate *queuegate.Gate
	// Handler processes one message. Its calls to the service go through
	// the gate's breaker (httpbreaker, Breaker.Do); it marks errors of the
	// message itself with queuegate.MarkDeadLetter. It must not ack or nak
	// the message: the Consumer does, by the gate's verdict. Required.
	Handler func(ctx context.Context, msg jetstream.Msg) error
	// Concurrency is the most messages handled at once. 0 means 8.
	Concurrency int
	// FetchWait is the longest one pull request waits for messages; it
	// also bounds how long Run takes to return once its context is done.
	// 0 means 1s.
	FetchWait time.Duration
	// DeadLetter sends a message that failed for its own reasons down the
	// dead-letter path. nil means msg.Term(), which stops its redelivery
	// and emits JetStream's terminated advisory. See DeadLetterTo.
	DeadLetter func(ctx context.Context, msg jetstream.Msg, err error) error
	// Logger receives errors of fetches and acknowledgements. nil means
	// slog.Default().
	Logger *slog.Logger
}

// Consumer is a gated JetStream pull consumer.
type Consumer struct {
	cfg     Config
	fetches atomic.Uint64
	msgs    atomic.Uint64
}

// Stats counts a Consumer's pull requests and messages.
type Stats struct {
	// Fetches is the number of pull requests made; Messages the messages
	// they returned.
	Fetches, Messages uint64
}

// New returns a Consumer, or an error naming the first invalid field of cfg.
func New(cfg Config) (*Consumer, error) {
	switch {
	case cfg.Consumer == nil:
		return nil, errors.New("natsgate: Config.Consumer is nil: set it to a JetStream pull consumer (js.CreateOrUpdateConsumer)")
	case cfg.Gate == nil:
		return nil, errors.New("natsgate: Config.Gate is nil: set it to the queuegate.Gate of the circuit the handler calls through")
	case cfg.Handler == nil:
		return nil, errors.New("natsgate: Config.Handler is nil: set it to the function that processes one message")
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("natsgate: Config.Concurrency is %d: must be ≥ 1 (0 means %d)", cfg.Concurrency, DefaultConcurrency)
	case cfg.FetchWait < 0:
		return nil, fmt.Errorf("natsgate: Config.FetchWait is %v: must be > 0 (0 means %v)", cfg.FetchWait, DefaultFetchWait)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = DefaultFetchWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DeadLetter == nil {
		cfg.DeadLetter = func(_ context.Context, msg jetstream.Msg, _ error) error { return msg.Term() }
	}
	return &Consumer{cfg: cfg}, nil
}

// Stats returns the consumer's counts.
func (c *Consumer) Stats() Stats {
	return Stats{Fetches: c.fetches.Load(), Messages: c.msgs.Load()}
}

// Run consumes until ctx is done, then waits for the running handlers and
// returns nil. It returns early only if the consumer is gone for good (its
// stream or consumer was deleted).
func (c *Consumer) Run(ctx context.Context) error {
	gate, conc := c.cfg.Gate, c.cfg.Concurrency
	slots := make(chan struct{}, conc) // a token per running handler
	var wg sync.WaitGroup
	defer wg.Wait()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch() // before wg.Wait, on every way out
	wg.Go(func() { gate.Watch(watchCtx) })

	permits := make([]*queuegate.Permit, 0, conc)
	failures := 0
	for {
		// One free handler and one permit, waiting for them: this is where
		// the consumer rests while the circuit is open.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		p, err := gate.Acquire(ctx)
		if err != nil {
			<-slots
			return nil
		}
		permits = append(permits[:0], p)
		// As many more as are free now, without waiting.
	more:
		for len(permits) < conc {
			select {
			case slots <- struct{}{}:
			default:
				break more // no free handler
			}
			q, ok := gate.TryAcquire()
			if !ok {
				<-slots
				break
			}
			permits = append(permits, q)
		}

		c.fetches.Add(1)
		batch, err := c.cfg.Consumer.Fetch(len(permits), jetstream.FetchMaxWait(c.cfg.FetchWait))
		n := 0
		if err == nil {
			for msg := range batch.Messages() {
				p := permits[n]
				n++
				c.msgs.Add(1)
				wg.Go(func() {
					defer func() { <-slots }()
					c.handle(ctx, p, msg)
				})
			}
			err = batch.Error()
		}
		for _, p := range permits[n:] {
			p.Release()
			<-slots
		}
		if err == nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			failures = 0
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natsgate: %s: %w", gate.Name(), err)
		}
		// A fetch that failed (no connection, server busy): back off, so
		// that an unreachable server is not polled in a hot loop.
		failures++
		wait := min(time.Duration(1<<min(failures, 6))*50*time.Millisecond, 5*time.Second)
		c.cfg.Logger.Warn("natsgate: fetch failed", slog.String("gate", gate.Name()), slog.Any("error", err), slog.Duration("retry_in", wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
	}
}

// handle runs the handler for msg under p and settles msg by the verdict.
func (c *Consumer) handle(ctx context.Context, p *queuegate.Permit, msg jetstream.Msg) {
	if ctx.Err() != nil {
		// Fetched as the consumer stopped: give it back for another.
		p.Release()
		c.settle(msg.Nak(), msg, "nak")
		return
	}
	v := p.Run(ctx, func(ctx context.Context) error { return c.cfg.Handler(ctx, msg) })
	switch v.Action {
	case queuegate.Ack:
		// Wait for the server's confirmation, so that a success is not
		// delivered again after the consumer stops.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		c.settle(msg.DoubleAck(actx), msg, "ack")
		cancel()
	case queuegate.Defer, queuegate.Retry:
		if v.Delay > 0 {
			c.settle(msg.NakWithDelay(v.Delay), msg, "nak")
		} else {
			c.settle(msg.Nak(), msg, "nak")
		}
	case queuegate.DeadLetter:
		if err := c.cfg.DeadLetter(context.WithoutCancel(ctx), msg, v.Err); err != nil {
			// Not on the dead-letter path: keep it rather than lose it.
			c.settle(msg.NakWithDelay(time.Second), msg, "nak")
			c.settle(err, msg, "dead-letter")
		}
	}
}

func (c *Consumer) settle(err error, msg jetstream.Msg, what string) {
	if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
		c.cfg.Logger.Warn("natsgate: "+what+" failed; the message will be redelivered after the consumer's AckWait",
			slog.String("gate", c.cfg.Gate.Name()), slog.String("subject", msg.Subject()), slog.Any("error", err))
	}
}

// DeadLetterTo returns a Config.DeadLetter that republishes the message to
// subject, with its headers and two more (Queuegate-Error: the handler's
// error; Queuegate-Subject: the subject it came from), then terminates the
// original. Put a stream on subject to keep the dead letters.
func DeadLetterTo(js jetstream.JetStream, subject string) func(ctx context.Context, msg jetstream.Msg, err error) error {
	return func(ctx context.Context, msg jetstream.Msg, err error) error {
		dl := nats.NewMsg(subject)
		dl.Data = msg.Data()
		for k, vs := range msg.Headers() {
			for _, v := range vs {
				dl.Header.Add(k, v)
			}
		}
		dl.Header.Del(jetstream.MsgIDHeader) // the original's id would deduplicate the copy away
		if err != nil {
			dl.Header.Set("Queuegate-Error", err.Error())
		}
		dl.Header.Set("Queuegate-Subject", msg.Subject())
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, perr := js.PublishMsg(ctx, dl); perr != nil {
			return fmt.Errorf("natsgate: dead-letter to %s: %w", subject, perr)
		}
		return msg.Term()
	}
}
