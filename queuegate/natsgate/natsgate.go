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
// # The JetStream consumer: MaxDeliver -1
//
// Use a durable pull consumer with AckPolicy explicit, MaxAckPending of at
// least Concurrency, and MaxDeliver -1 (unlimited, JetStream's default).
//
// JetStream counts every delivery against MaxDeliver, the ones that follow a
// NakWithDelay included, and a consumer has no way to give a delivery back.
// The gate keeps the count low (nothing is fetched while the circuit is
// open), but an outage still costs deliveries that are no fault of the
// messages: each failed HALF_OPEN probe is one delivery of the message that
// was the probe (and the next probe is often the same message, the first to
// come back), and each message in hand as the circuit opens is one more. In
// an outage longer than MaxDeliver × OpenTimeout a finite MaxDeliver would
// end a healthy message: JetStream stops delivering it and it is lost, or
// dead-lettered by whatever watches the max-deliveries advisory. So the
// retry budget of a message is kept by natsgate instead, in Config.MaxRetries:
// it counts only the failures charged to the message (verdict Retry: the
// circuit stayed closed), never deferrals nor failed probes (queuegate's
// Defer, Verdict.Outage), and sends a message that exhausts it down the
// dead-letter path. Run logs a warning when the consumer has a MaxDeliver.
//
// The count lives in the consumer's memory, keyed by the message's stream
// sequence: after a restart, or on another replica, a message starts again
// from zero. That errs on the side of more retries, never of a lost message.
//
// For one gate per region, give each region its own subject (e.g.
// "inbound.<region>") and its own consumer filtered on it.
//
// # Reconnection and AckWait
//
// The Consumer does not own its connection: nats.go reconnects it, and
// natsgate relies on that rather than dialling again itself, since a new
// connection would leave the pull requests, acks and subscriptions of the
// old one to sort out. Connect with ReconnectOptions, which reconnect
// forever (nats.go's default gives up after 60 attempts, about two minutes,
// and closes the connection), with capped exponential backoff and jitter.
// While the connection is down, a fetch returns nothing once its FetchWait
// is over (its pull request waits in nats.go's reconnect buffer), so the
// consumer neither spins nor needs to know; handlers in flight finish, and
// their acks either reach the server after the reconnection or fail. An ack
// that failed, or one that the server lost in a crash, brings its message
// back after the consumer's AckWait: at-least-once, never lost, and never
// charged to the message, since only a handler's failure is. A restarted
// server must keep the stream and the consumer: give them file storage.
// Run returns an error only if its connection is closed for good, or its
// stream or consumer is gone; the caller connects and runs again.
//
// The consumer's AckWait (set where it is created, so not a Config field
// here: a copy could only disagree with it) is how long a message may stay
// in hand unacknowledged. It is also how long the messages of a consumer
// that died (a crash, kill -9, a lost host) wait before JetStream delivers
// them again: shorter brings them back sooner, but it must exceed the
// longest a message stays in hand, the handler's longest call (retries
// included) plus the ack, or JetStream would deliver a message still being
// handled a second time. A stopping consumer does not wait for AckWait: it
// lets its handlers finish (see Stopping) and settles their messages.
//
// # A circuit other than the gate's
//
// The gate pauses the consumer only while its own circuit is open. If the
// handler also calls through another breaker (a second service, a shared
// dependency) and that one is open, its rejection defers the message
// (NakWithDelay of that breaker's RetryAfter plus jitter), but the consumer
// keeps fetching: every message is fetched, rejected and given back, one
// delivery each per RetryAfter, for as long as the other circuit stays open.
// That does not spin, but it is not a pause either. Gate the consumer on the
// circuit its messages depend on, or give the other dependency a consumer of
// its own.
//
// # Stopping
//
// When Run's context ends the consumer stops fetching and lets the handlers
// in flight finish, for up to DrainTimeout, on a context that is not
// cancelled with Run's (so a call to the service is not cut in the middle,
// which would send the message again on its next delivery). A handler still
// running at the drain timeout has its context cancelled; its message comes
// back after the gate's RetryDelay, never at once.
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/queuegate"
)

// Defaults for zero Config fields.
const (
	DefaultConcurrency  = 8
	DefaultFetchWait    = time.Second
	DefaultMaxRetries   = 5
	DefaultDrainTimeout = 30 * time.Second
)

// maxTracked bounds the failure counts kept in memory; past it the oldest
// are forgotten (those messages get more retries, never fewer).
const maxTracked = 100_000

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
	// MaxRetries is how many times a message that fails for a reason
	// charged to it (verdict Retry) is retried before it goes down the
	// dead-letter path. Deferrals and failed probes are not charged. 0
	// means 5. See the package documentation on MaxDeliver.
	MaxRetries int
	// DrainTimeout bounds how long Run, once its context is done, lets the
	// handlers in flight finish before it cancels their context. 0 means
	// 30s.
	DrainTimeout time.Duration
	// Logger receives errors of fetches and acknowledgements. nil means
	// slog.Default().
	Logger *slog.Logger
}

// Consumer is a gated JetStream pull consumer.
type Consumer struct {
	cfg       Config
	fetches   atomic.Uint64
	msgs      atomic.Uint64
	exhausted atomic.Uint64

	mu       sync.Mutex
	failures map[uint64]int // stream sequence → failures charged so far
	order    []uint64       // insertion order of failures, to bound it
}

// Stats counts a Consumer's pull requests and messages.
type Stats struct {
	// Fetches is the number of pull requests made; Messages the messages
	// they returned (redeliveries included).
	Fetches, Messages uint64
	// Exhausted counts the messages sent down the dead-letter path because
	// they failed more than MaxRetries times.
	Exhausted uint64
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
	case cfg.MaxRetries < 0:
		return nil, fmt.Errorf("natsgate: Config.MaxRetries is %d: must be ≥ 1 (0 means %d)", cfg.MaxRetries, DefaultMaxRetries)
	case cfg.DrainTimeout < 0:
		return nil, fmt.Errorf("natsgate: Config.DrainTimeout is %v: must be > 0 (0 means %v)", cfg.DrainTimeout, DefaultDrainTimeout)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
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
	return &Consumer{cfg: cfg, failures: map[uint64]int{}}, nil
}

// Stats returns the consumer's counts.
func (c *Consumer) Stats() Stats {
	return Stats{Fetches: c.fetches.Load(), Messages: c.msgs.Load(), Exhausted: c.exhausted.Load()}
}

// Run consumes until ctx is done, then stops fetching, lets the running
// handlers finish (see DrainTimeout) and returns nil. It returns early only
// if the consumer is gone for good: its stream or consumer was deleted, or
// its connection was closed (by its owner, or by nats.go after its last
// reconnection attempt; see ReconnectOptions). A connection that is down
// and reconnecting is not an error: see the package documentation.
func (c *Consumer) Run(ctx context.Context) error {
	gate, conc := c.cfg.Gate, c.cfg.Concurrency
	if info := c.cfg.Consumer.CachedInfo(); info != nil && info.Config.MaxDeliver > 0 {
		c.cfg.Logger.Warn("natsgate: the consumer has MaxDeliver set; JetStream counts every delivery against it, failed probes and deferrals included, so a long outage can end healthy messages: set MaxDeliver -1 and let Config.MaxRetries bound the failures",
			slog.String("gate", gate.Name()), slog.String("consumer", info.Name), slog.Int("max_deliver", info.Config.MaxDeliver))
	}
	slots := make(chan struct{}, conc) // a token per running handler
	var wg sync.WaitGroup
	// Handlers run on a context of their own: not cancelled with ctx, but
	// DrainTimeout after it.
	hctx, cutShort := context.WithCancel(context.WithoutCancel(ctx))
	defer cutShort()
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.DrainTimeout, cutShort)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stopDrain()
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
					c.handle(hctx, p, msg)
				})
			}
			err = batch.Error()
		}
		for _, p := range permits[n:] {
			p.Release()
			<-slots
		}
		if ctx.Err() != nil {
			return nil // the messages fetched are handled; fetch no more
		}
		if err == nil || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
			failures = 0
			continue
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
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
// ctx is the handlers' context, which outlives Run's by the drain timeout.
func (c *Consumer) handle(ctx context.Context, p *queuegate.Permit, msg jetstream.Msg) {
	v := p.Run(ctx, func(ctx context.Context) error { return c.cfg.Handler(ctx, msg) })
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	sctx := context.WithoutCancel(ctx) // settle even past the drain timeout
	switch v.Action {
	case queuegate.Ack:
		c.forget(seq)
		// Wait for the server's confirmation, so that a success is not
		// delivered again after the consumer stops.
		actx, cancel := context.WithTimeout(sctx, 5*time.Second)
		c.settle(msg.DoubleAck(actx), msg, "ack")
		cancel()
	case queuegate.Defer:
		// The outage's, not the message's: nothing charged.
		c.settle(msg.NakWithDelay(c.delay(v)), msg, "nak")
	case queuegate.Retry:
		if n := c.charge(seq); n > c.cfg.MaxRetries {
			c.cfg.Logger.Warn("natsgate: message failed too often; dead-lettering it",
				slog.String("gate", c.cfg.Gate.Name()), slog.String("subject", msg.Subject()),
				slog.Int("max_retries", c.cfg.MaxRetries), slog.Any("error", v.Err))
			c.exhausted.Add(1)
			c.deadLetter(sctx, msg, seq, fmt.Errorf("failed %d times: %w", n, v.Err))
			return
		}
		c.settle(msg.NakWithDelay(c.delay(v)), msg, "nak")
	case queuegate.DeadLetter:
		c.deadLetter(sctx, msg, seq, v.Err)
	}
}

func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, seq uint64, cause error) {
	if err := c.cfg.DeadLetter(ctx, msg, cause); err != nil {
		// Not on the dead-letter path: keep it rather than lose it.
		c.settle(msg.NakWithDelay(time.Second), msg, "nak")
		c.settle(err, msg, "dead-letter")
		return
	}
	c.forget(seq)
}

// delay is v's redelivery delay; never 0, which JetStream would take for a
// plain Nak.
func (c *Consumer) delay(v queuegate.Verdict) time.Duration {
	return max(v.Delay, 10*time.Millisecond)
}

// charge counts one more failure of the message at seq and returns the
// count, this one included.
func (c *Consumer) charge(seq uint64) int {
	if seq == 0 {
		return 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.failures[seq]
	if !ok {
		c.order = append(c.order, seq)
		for len(c.failures) >= maxTracked && len(c.order) > 0 {
			delete(c.failures, c.order[0])
			c.order = c.order[1:]
		}
	}
	n++
	c.failures[seq] = n
	return n
}

// forget drops the failure count of a message that is done.
func (c *Consumer) forget(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.failures, seq)
	if len(c.order) > 2*len(c.failures)+1024 { // compact the forgotten
		c.order = slices.DeleteFunc(c.order, func(s uint64) bool { _, ok := c.failures[s]; return !ok })
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
