// Package amqpgate runs a RabbitMQ consumer behind a queuegate.Gate, so that
// it waits out an outage of the service its messages go to, and survives the
// broker's own restarts.
//
// # Pausing
//
// While the circuit is OPEN the consumer is cancelled (basic.cancel): the
// broker pushes nothing, and the consumer rests in the gate, using no CPU,
// until the breaker moves. At HALF_OPEN it consumes again with a prefetch of
// the breaker's probe slots, so that exactly that many messages are in hand;
// at CLOSED it consumes with a prefetch of Concurrency. Each change of mode
// cancels the consumer and consumes again with the new prefetch.
//
// # Delayed requeue without spinning
//
// RabbitMQ has no "nack with delay": a nack with requeue puts the message
// back at once (the spin), and on a quorum queue spends one of the message's
// deliveries (x-delivery-limit). So a message to redeliver later is
// republished, with its body and properties and a per-message TTL of the
// delay, to a retry queue that has no consumer; when its TTL runs out the
// broker dead-letters it back to the work queue. The copy is a new message:
// it has a fresh delivery count. DeclareRetryQueue declares the retry queue.
//
// # Nothing is lost: at-least-once
//
// Every step of a deferred message's way holds it until the next step has
// it:
//
//   - The original is acked only once the broker has confirmed the copy
//     (publisher confirms) and not returned it as unroutable. A crash, a
//     dropped connection or a kill -9 of the broker before that ack leaves
//     the original on the work queue, to be delivered again.
//   - The retry queue is a quorum queue: a confirmed copy is on disk on a
//     majority of its replicas, and survives the broker's restart.
//   - Its dead-lettering is at-least-once (x-dead-letter-strategy
//     at-least-once, which RabbitMQ ≥ 3.10 allows only on quorum queues with
//     x-overflow reject-publish): an expired copy stays in the retry queue
//     until the work queue has confirmed it, and the broker publishes it
//     again until it does, also after a restart. A classic retry queue, or
//     the default at-most-once strategy, drops a copy that expires while the
//     work queue cannot take it (a quorum work queue whose leader is not
//     elected yet after a restart: "leader not known. Command is dropped").
//
// So whenever the broker is killed and restarted (before a copy's TTL runs
// out, during it, or after), each message is delivered again, with quorum and
// classic work queues alike. The price is duplicates: a message can come back
// twice (its copy and the original, if the broker died between the copy's
// confirmation and the original's ack; or a copy dead-lettered twice, if the
// broker died between the work queue's confirmation and the retry queue's
// settlement). Make the handler idempotent (an idempotency key per message).
// What the work queue itself promises is RabbitMQ's: publish with confirms
// and DeliveryMode Persistent to a durable queue. (A classic work queue may
// also forget acks made just before a kill -9: those messages come back too.)
//
// Three limits of the broker's remain.
//   - Do not put a length limit on the retry queue (a policy's max-length):
//     full, it refuses copies (reject-publish). A retry queue that does not
//     confirm copies (full, or without a leader) makes the consumer hold the
//     messages it would defer, unsettled, and publish their copies again
//     with backoff until it does: the consumer stalls, nothing is lost.
//   - RabbitMQ 3.10 keeps a quorum queue's Raft term in a table it saves to
//     disk only every few minutes: a queue declared shortly before a kill -9
//     can come back without a leader ("leader not known",
//     rabbitmq-server#10070), its copies held until an operator steps in
//     (seen with 3.10.8, where forcing an election with ra:trigger_election
//     then left its dead-letter worker deaf). Declare the retry queues at
//     deployment, not just before the broker may die, or use a RabbitMQ that
//     fixes it.
//   - A quorum work queue (before RabbitMQ 4.0) counts a message given back
//     by a lost connection as a delivery (x-delivery-limit): each loss of
//     the connection costs the messages in hand (at most Concurrency) one
//     delivery, so give the work queue a delivery limit well above the
//     broker restarts a message may live through.
//
// Per-message TTLs expire at the head of the retry queue only, so a message
// can come back later than its delay, by as much as the rest of the delay of
// the message ahead of it. Within an outage the gate's delays all end near the
// same moment (the breaker's next probe, plus jitter), which keeps that lag
// short; a transient failure's RetryDelay ahead of them can add to it. After
// a restart of the broker, a copy whose TTL ran out while it was down comes
// back once the retry queue has a leader again. A message never comes back
// early.
//
// The header x-queuegate-retries counts the failures charged to a message
// (verdict Retry: it failed while its circuit stayed closed); after MaxRetries
// the message is dead-lettered instead. Everything the outage caused is
// counted apart, in x-queuegate-deferrals, and never leads to a dead letter:
// messages not attempted because the circuit was open, failed HALF_OPEN probes,
// and failures that opened the circuit or came as it opened (queuegate's
// verdict Defer, with Verdict.Outage for the failures). So however long an
// outage lasts, and however many probes fail in it, a healthy message is
// never dead-lettered because of it.
//
// # The retry queue must route back
//
// The copy is published with the mandatory flag, so a retry queue that does
// not exist (never declared, or deleted while the consumer runs) makes the
// broker return the copy instead of dropping it: the consumer then keeps the
// original (it is not acked; the broker requeues it when Run's channel
// closes), stops, and Run returns an error that names the retry queue.
//
// What the mandatory flag cannot catch is a retry queue that exists but does
// not route back, or not at least once. At start, Run checks that the retry
// queue exists and, by redeclaring it with DeclareRetryQueue's arguments,
// that it was declared with them: a retry queue declared otherwise fails the
// check with the broker's PRECONDITION_FAILED, and Run returns an error that
// says what to do (set Config.SkipRetryQueueCheck for a retry queue that is
// deliberately declared another way, e.g. with its dead-lettering set by a
// policy). A user without the configure permission on the retry queue cannot
// redeclare it; the check is then skipped.
//
// # Migrating from a classic retry queue
//
// Earlier versions declared the retry queue as a classic queue. Run and
// DeclareRetryQueue refuse it, with an error that says how to move on: stop
// the consumers of the work queue, wait until the retry queue is empty (its
// copies go back to the work queue as they expire), delete it, and declare it
// again with DeclareRetryQueue. Deleting it with copies in it would lose
// them.
//
// # Reconnecting
//
// Run dials its connection with Config.Dial, and dials again whenever the
// connection or one of its channels is lost (the broker killed, restarted or
// unreachable, a network cut, a channel closed by the broker on a transient
// error), after a capped exponential backoff with jitter (ReconnectDelay up to
// MaxReconnectDelay). It logs the loss once, at WARN, and the recovery once, at
// INFO, with the number of attempts and how long it took. It then consumes
// again in the gate's current mode. The messages in hand when the connection
// went are not acked: their handlers' context is cancelled (their ack could
// not reach the broker anyway) and the broker delivers them again. Run
// returns only when its context ends, or on a fault that reconnecting cannot
// cure: a work queue or retry queue that is missing or declared otherwise,
// refused permissions or credentials, a copy returned as unroutable.
//
// # A circuit other than the gate's
//
// The consumer is cancelled only while the gate's own circuit is open. If
// the handler also calls through another breaker and that one is open, its
// rejection defers the message, but the consumer keeps consuming: every
// message is delivered, rejected and republished to the retry queue, one
// round trip per RetryAfter, for as long as the other circuit stays open. That
// does not spin, but it is not a pause either. Gate the consumer on the
// circuit its messages depend on.
//
// # Stopping
//
// When Run's context ends the consumer is cancelled, and the messages in hand
// (the handlers running, and the deliveries still on their way) are handled
// and settled as usual, on a context that is not cancelled with Run's, for up
// to DrainTimeout: a call to the service is not cut in the middle, which
// would send the message again on its next delivery. A handler still running
// at the drain timeout has its context cancelled, and its message goes to the
// retry queue for the gate's RetryDelay; nothing is requeued at once.
//
// # Dead letters
//
// A message that failed for its own reasons (verdict queuegate.DeadLetter) is
// rejected without requeue (basic.nack, requeue=false), so the work queue's
// own dead-letter exchange (x-dead-letter-exchange) takes it, as it would
// without the gate. Declare the work queue with one.
//
// For one gate per region, give each region its own work queue (and retry
// queue) and its own Consumer.
package amqpgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/queuegate"
)

// Defaults for zero Config fields.
const (
	DefaultConcurrency       = 8
	DefaultMaxRetries        = 5
	DefaultDrainTimeout      = 30 * time.Second
	DefaultReconnectDelay    = 250 * time.Millisecond
	DefaultMaxReconnectDelay = 30 * time.Second
)

// Headers the consumer sets on the copies it republishes to the retry queue.
const (
	HeaderRetries   = "x-queuegate-retries"
	HeaderDeferrals = "x-queuegate-deferrals"
	// HeaderCopy identifies one republished copy, to match a copy the
	// broker returns as unroutable.
	HeaderCopy = "x-queuegate-copy"
)

// Config configures a Consumer.
type Config struct {
	// Dial opens a connection to the broker, e.g.
	//
	//	func(context.Context) (*amqp.Connection, error) { return amqp.Dial(url) }
	//
	// Run calls it at start and again after each lost connection (see
	// Reconnecting in the package documentation). Run owns the connection
	// it returns: it opens its channels on it and closes it when it
	// reconnects or returns, so return a connection of the Consumer's own.
	// Required.
	Dial func(ctx context.Context) (*amqp.Connection, error)
	// Queue is the work queue. Required.
	Queue string
	// RetryQueue is the queue delayed messages wait in; see
	// DeclareRetryQueue. "" means Queue + ".retry".
	RetryQueue string
	// Gate decides when to consume and how many messages. Required.
	Gate *queuegate.Gate
	// Handler processes one message. Its calls to the service go through
	// the gate's breaker (httpbreaker, Breaker.Do); it marks errors of the
	// message itself with queuegate.MarkDeadLetter. It must not ack or nack
	// the delivery: the Consumer does, by the gate's verdict. Required.
	Handler func(ctx context.Context, d amqp.Delivery) error
	// Concurrency is the most messages handled at once, and the prefetch
	// while the circuit is closed. 0 means 8.
	Concurrency int
	// MaxRetries is how many times a message that fails for a reason
	// charged to it (verdict Retry) is retried before it is dead-lettered.
	// Deferrals and failed probes are not charged. 0 means 5.
	MaxRetries int
	// DrainTimeout bounds how long Run, once its context is done, lets the
	// messages in hand finish before it cancels their handlers' context. 0
	// means 30s.
	DrainTimeout time.Duration
	// ReconnectDelay is the wait before the first attempt to dial again
	// after the connection is lost; each failed attempt doubles it, up to
	// MaxReconnectDelay, and each wait is jittered by up to half of it
	// down. 0 means 250ms, and 30s for MaxReconnectDelay.
	ReconnectDelay, MaxReconnectDelay time.Duration
	// SkipRetryQueueCheck skips Run's start-up check that the retry queue
	// was declared with DeclareRetryQueue's arguments. Its existence is
	// checked regardless.
	SkipRetryQueueCheck bool
	// ConsumerTag prefixes the tags of the consumer's subscriptions. ""
	// means "queuegate-" + Queue.
	ConsumerTag string
	// Logger receives errors of acknowledgements and republishing, and the
	// connection's losses and recoveries. nil means slog.Default().
	Logger *slog.Logger
}

// Consumer is a gated RabbitMQ consumer.
type Consumer struct {
	cfg        Config
	consumes   atomic.Uint64
	delivered  atomic.Uint64
	requeued   atomic.Uint64
	exhausted  atomic.Uint64
	returned   atomic.Uint64
	copies     atomic.Uint64
	reconnects atomic.Uint64
}

// Stats counts a Consumer's subscriptions, messages and connections.
type Stats struct {
	// Consumes is the number of basic.consume made (one per change of the
	// gate's mode, and one per connection); Delivered the messages
	// received (redeliveries included); Requeued those republished to the
	// retry queue.
	Consumes, Delivered, Requeued uint64
	// Exhausted counts the messages dead-lettered because they failed more
	// than MaxRetries times; Returned the copies the broker returned as
	// unroutable (each one ends the run).
	Exhausted, Returned uint64
	// Reconnects counts the connections Run dialled after losing one.
	Reconnects uint64
}

// New returns a Consumer, or an error naming the first invalid field of cfg.
func New(cfg Config) (*Consumer, error) {
	switch {
	case cfg.Dial == nil:
		return nil, errors.New("amqpgate: Config.Dial is nil: set it to a function that dials the broker, e.g. func(context.Context) (*amqp.Connection, error) { return amqp.Dial(url) }")
	case cfg.Queue == "":
		return nil, errors.New("amqpgate: Config.Queue is empty: set it to the work queue's name")
	case cfg.Gate == nil:
		return nil, errors.New("amqpgate: Config.Gate is nil: set it to the queuegate.Gate of the circuit the handler calls through")
	case cfg.Handler == nil:
		return nil, errors.New("amqpgate: Config.Handler is nil: set it to the function that processes one message")
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("amqpgate: Config.Concurrency is %d: must be ≥ 1 (0 means %d)", cfg.Concurrency, DefaultConcurrency)
	case cfg.MaxRetries < 0:
		return nil, fmt.Errorf("amqpgate: Config.MaxRetries is %d: must be ≥ 1 (0 means %d)", cfg.MaxRetries, DefaultMaxRetries)
	case cfg.DrainTimeout < 0:
		return nil, fmt.Errorf("amqpgate: Config.DrainTimeout is %v: must be > 0 (0 means %v)", cfg.DrainTimeout, DefaultDrainTimeout)
	case cfg.ReconnectDelay < 0:
		return nil, fmt.Errorf("amqpgate: Config.ReconnectDelay is %v: must be > 0 (0 means %v)", cfg.ReconnectDelay, DefaultReconnectDelay)
	case cfg.MaxReconnectDelay < 0:
		return nil, fmt.Errorf("amqpgate: Config.MaxReconnectDelay is %v: must be > 0 (0 means %v)", cfg.MaxReconnectDelay, DefaultMaxReconnectDelay)
	case cfg.RetryQueue != "" && cfg.RetryQueue == cfg.Queue:
		return nil, fmt.Errorf("amqpgate: Config.RetryQueue is %q, the work queue itself: set it to a queue of its own (see DeclareRetryQueue)", cfg.RetryQueue)
	}
	if cfg.RetryQueue == "" {
		cfg.RetryQueue = cfg.Queue + ".retry"
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = DefaultReconnectDelay
	}
	if cfg.MaxReconnectDelay == 0 {
		cfg.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	if cfg.MaxReconnectDelay < cfg.ReconnectDelay {
		return nil, fmt.Errorf("amqpgate: Config.MaxReconnectDelay %v is below Config.ReconnectDelay %v: raise it, or leave it 0 (%v)",
			cfg.MaxReconnectDelay, cfg.ReconnectDelay, DefaultMaxReconnectDelay)
	}
	if cfg.ConsumerTag == "" {
		cfg.ConsumerTag = "queuegate-" + cfg.Queue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{cfg: cfg}, nil
}

// Stats returns the consumer's counts.
func (c *Consumer) Stats() Stats {
	return Stats{Consumes: c.consumes.Load(), Delivered: c.delivered.Load(), Requeued: c.requeued.Load(),
		Exhausted: c.exhausted.Load(), Returned: c.returned.Load(), Reconnects: c.reconnects.Load()}
}
