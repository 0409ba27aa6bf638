// Package amqpgate runs a RabbitMQ consumer behind a queuegate.Gate, so that
// it waits out an outage of the service its messages go to.
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
// broker dead-letters it to the retry queue's dead-letter exchange, which
// routes it back to the work queue. The original is acked only once the
// broker has confirmed the copy (publisher confirms), so a crash in between
// can duplicate a message but never lose it. The copy is a new message: it
// has a fresh delivery count. DeclareRetryQueue declares such a retry queue.
//
// Per-message TTLs expire at the head of the retry queue only, so a message
// can come back later than its delay, by as much as the rest of the delay of
// the message ahead of it. Within an outage the gate's delays all end near the
// same moment (the breaker's next probe, plus jitter), which keeps that lag
// short; a transient failure's RetryDelay ahead of them can add to it. A
// message never comes back early.
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
// closes), stops, and Run returns an error that names the retry queue. A
// deferred message is never acked before its copy is safely in the retry
// queue.
//
// What the mandatory flag cannot catch is a retry queue that exists but does
// not route back: without x-dead-letter-exchange "" and
// x-dead-letter-routing-key <the work queue> (or a policy that sets them),
// expired copies are dropped. Declare it with DeclareRetryQueue, which sets
// exactly those arguments (durable, classic). At start, Run checks that the
// retry queue exists and, by redeclaring it with DeclareRetryQueue's
// arguments, that it was declared with them: a retry queue declared otherwise
// fails the check with the broker's PRECONDITION_FAILED (set
// Config.SkipRetryQueueCheck for a retry queue that is deliberately declared
// another way, e.g. with its dead-lettering set by a policy). A user without
// the configure permission on the retry queue cannot redeclare it; the check
// is then skipped.
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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/queuegate"
)

// Defaults for zero Config fields.
const (
	DefaultConcurrency  = 8
	DefaultMaxRetries   = 5
	DefaultDrainTimeout = 30 * time.Second
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
	// Conn is the connection to consume on; the Consumer opens two channels
	// on it (one to consume, one to republish with confirms). Required.
	Conn *amqp.Connection
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
	// SkipRetryQueueCheck skips Run's start-up check that the retry queue
	// was declared with DeclareRetryQueue's arguments. Its existence is
	// checked regardless.
	SkipRetryQueueCheck bool
	// ConsumerTag prefixes the tags of the consumer's subscriptions. ""
	// means "queuegate-" + Queue.
	ConsumerTag string
	// Logger receives errors of acknowledgements and republishing. nil
	// means slog.Default().
	Logger *slog.Logger
}

// Consumer is a gated RabbitMQ consumer.
type Consumer struct {
	cfg       Config
	consumes  atomic.Uint64
	delivered atomic.Uint64
	requeued  atomic.Uint64
	exhausted atomic.Uint64
	returned  atomic.Uint64
	copies    atomic.Uint64
}

// Stats counts a Consumer's subscriptions and messages.
type Stats struct {
	// Consumes is the number of basic.consume made (one per change of the
	// gate's mode); Delivered the messages received (redeliveries
	// included); Requeued those republished to the retry queue.
	Consumes, Delivered, Requeued uint64
	// Exhausted counts the messages dead-lettered because they failed more
	// than MaxRetries times; Returned the copies the broker returned as
	// unroutable (each one ends the run).
	Exhausted, Returned uint64
}

// New returns a Consumer, or an error naming the first invalid field of cfg.
func New(cfg Config) (*Consumer, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("amqpgate: Config.Conn is nil: set it to an open *amqp.Connection")
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
	if cfg.ConsumerTag == "" {
		cfg.ConsumerTag = "queuegate-" + cfg.Queue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Consumer{cfg: cfg}, nil
}

// DeclareRetryQueue declares the retry queue of the work queue queue, named
// queue + ".retry": durable, without consumers, dead-lettering expired
// messages through the default exchange back to queue. It returns the retry
// queue's name. It is the recommended way to make a retry queue: Run checks
// that the retry queue has exactly these arguments (see the package
// documentation).
func DeclareRetryQueue(ch *amqp.Channel, queue string) (string, error) {
	name := queue + ".retry"
	_, err := ch.QueueDeclare(name, true, false, false, false, retryQueueArgs(queue))
	if err != nil {
		return "", fmt.Errorf("amqpgate: declaring retry queue %s: %w", name, err)
	}
	return name, nil
}

func retryQueueArgs(queue string) amqp.Table {
	return amqp.Table{
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
	}
}

// Stats returns the consumer's counts.
func (c *Consumer) Stats() Stats {
	return Stats{Consumes: c.consumes.Load(), Delivered: c.delivered.Load(), Requeued: c.requeued.Load(),
		Exhausted: c.exhausted.Load(), Returned: c.returned.Load()}
}

// Run consumes until ctx is done, then cancels the consumer, settles the
// messages in hand (see DrainTimeout) and returns nil. It returns an error
// if a channel cannot be opened, a queue is missing, the retry queue was
// declared with other arguments than DeclareRetryQueue's, the broker returns
// a copy as unroutable or fails to confirm it, or the connection closes; the
// caller reconnects and runs again, after a backoff.
func (c *Consumer) Run(ctx context.Context) error {
	ch, err := c.cfg.Conn.Channel()
	if err != nil {
		return fmt.Errorf("amqpgate: opening a channel: %w", err)
	}
	defer ch.Close()
	pub, err := c.cfg.Conn.Channel()
	if err != nil {
		return fmt.Errorf("amqpgate: opening a channel: %w", err)
	}
	defer pub.Close()
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("amqpgate: publisher confirms: %w", err)
	}
	// A copy can come back only before its confirmation, and at most one
	// per publish in flight (one per handler slot): a buffer that large
	// never blocks the channel. See requeue.
	returns := pub.NotifyReturn(make(chan amqp.Return, 2*c.cfg.Concurrency+4))
	for field, q := range map[string]string{"Queue": c.cfg.Queue, "RetryQueue": c.cfg.RetryQueue} {
		if err := checkQueue(c.cfg.Conn, q); err != nil {
			return fmt.Errorf("amqpgate: Config.%s %q: %w (declare it first; see DeclareRetryQueue)", field, q, err)
		}
	}
	if !c.cfg.SkipRetryQueueCheck {
		if err := checkRetryArgs(c.cfg.Conn, c.cfg.RetryQueue, c.cfg.Queue); err != nil {
			return fmt.Errorf("amqpgate: Config.RetryQueue %q was not declared with DeclareRetryQueue's arguments (x-dead-letter-exchange \"\", x-dead-letter-routing-key %q, durable), so its expired copies may never come back: %w (redeclare it with DeclareRetryQueue, or set Config.SkipRetryQueueCheck if it routes back another way)",
				c.cfg.RetryQueue, c.cfg.Queue, err)
		}
	}

	gate := c.cfg.Gate
	slots := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	// Handlers run on a context of their own: not cancelled with the run's,
	// but DrainTimeout after it.
	hctx, cutShort := context.WithCancel(context.WithoutCancel(ctx))
	defer cutShort()
	// A channel that closes under us (the connection dropped, the broker
	// closed it) ends the run, even while it rests in the gate; so does a
	// fault of the retry path.
	ctx, stopRun := context.WithCancel(ctx)
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.DrainTimeout, cutShort)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stopDrain()
	defer wg.Wait()
	defer stopRun() // before wg.Wait, on every way out
	var lost atomic.Pointer[amqp.Error]
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pubClosed := pub.NotifyClose(make(chan *amqp.Error, 1))
	wg.Go(func() {
		var e *amqp.Error
		select {
		case e = <-chClosed:
		case e = <-pubClosed:
		case <-ctx.Done():
			return
		}
		if e == nil {
			e = &amqp.Error{Reason: "channel closed"}
		}
		lost.Store(e)
		stopRun()
	})
	wg.Go(func() { gate.Watch(ctx) })
	r := &run{c: c, ch: ch, pub: pub, slots: slots, wg: &wg, hctx: hctx, stop: stopRun,
		returns: returns, returned: map[string]bool{}}

	for n := 0; ; n++ {
		p, err := gate.Acquire(ctx) // the consumer rests here while the circuit is open
		if err == nil {
			err = r.consume(ctx, p, fmt.Sprintf("%s-%d", c.cfg.ConsumerTag, n))
		}
		if e := lost.Load(); e != nil {
			return fmt.Errorf("amqpgate: consuming from %s: %w", c.cfg.Queue, e)
		}
		if f := r.fault(); f != nil {
			wg.Wait() // the other messages in hand are settled first
			return f
		}
		if err != nil && ctx.Err() == nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// checkQueue reports whether queue exists, on a channel of its own, since a
// missing queue closes the channel that asked.
func checkQueue(conn *amqp.Connection, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	return err
}

// checkRetryArgs redeclares the retry queue with DeclareRetryQueue's
// arguments, on a channel of its own: the broker answers PRECONDITION_FAILED
// (and closes that channel) if the queue was declared with others. A user
// who may not configure the queue cannot tell; that is no error.
func checkRetryArgs(conn *amqp.Connection, retryQueue, queue string) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(retryQueue, true, false, false, false, retryQueueArgs(queue))
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
		return nil
	}
	return err
}

// run is one Run's state.
type run struct {
	c     *Consumer
	ch    *amqp.Channel
	pub   *amqp.Channel
	slots chan struct{}
	wg    *sync.WaitGroup
	hctx  context.Context // the handlers' context; see DrainTimeout
	stop  func()          // ends the run

	mu       sync.Mutex
	returns  <-chan amqp.Return
	returned map[string]bool // copies returned and not yet claimed, by HeaderCopy
	err      error           // the first fault
}

// fail records a fault of the retry path and ends the run.
func (r *run) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.stop()
}

func (r *run) fault() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// wasReturned reports whether the broker returned the copy id. The broker
// sends basic.return before the confirmation, and the client hands the
// return to the channel before it reads the confirmation, so once the copy
// is confirmed its return, if any, is in r.returns or already taken from it.
func (r *run) wasReturned(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		select {
		case ret, ok := <-r.returns:
			if ok {
				if s, _ := ret.Headers[HeaderCopy].(string); s != "" {
					r.returned[s] = true
				}
				continue
			}
		default:
		}
		break
	}
	if r.returned[id] {
		delete(r.returned, id)
		return true
	}
	return false
}

// consume subscribes with the prefetch of the gate's mode, starting with the
// permit first, and handles deliveries until the mode changes or ctx is
// done; then it cancels the subscription and settles what was still on its
// way.
func (r *run) consume(ctx context.Context, first *queuegate.Permit, tag string) error {
	c, gate := r.c, r.c.cfg.Gate
	defer func() {
		if first != nil { // no delivery came to use it
			first.Release()
		}
	}()
	changed := gate.Changed()
	mode := gate.Mode()
	if mode == queuegate.Paused { // reopened since Acquire
		return nil
	}
	prefetch := c.cfg.Concurrency
	if mode == queuegate.Probing {
		prefetch = gate.Breaker().Config().HalfOpenProbes
	}
	if err := r.ch.Qos(prefetch, 0, false); err != nil {
		return fmt.Errorf("amqpgate: setting prefetch: %w", err)
	}
	deliveries, err := r.ch.Consume(c.cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("amqpgate: consuming from %s: %w", c.cfg.Queue, err)
	}
	c.consumes.Add(1)
	subscribed := true
	cancel := func() error {
		if !subscribed {
			return nil
		}
		subscribed = false
		if err := r.ch.Cancel(tag, false); err != nil {
			return fmt.Errorf("amqpgate: cancelling consumer %s: %w", tag, err)
		}
		return nil
	}
	done := ctx.Done()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				if subscribed {
					return fmt.Errorf("amqpgate: the channel of %s closed", c.cfg.Queue)
				}
				return nil // drained after the cancel
			}
			c.delivered.Add(1)
			p := first
			first = nil
			if p == nil {
				var ok bool
				if p, ok = gate.TryAcquire(); !ok {
					// The circuit opened with this message on its way:
					// give it back for later, and stop the pushes.
					r.dispatch(ctx, d, nil)
					if err := cancel(); err != nil {
						return err
					}
					continue
				}
			}
			r.dispatch(ctx, d, p)
		case <-changed:
			changed = gate.Changed()
			if gate.Mode() != mode {
				if err := cancel(); err != nil {
					return err
				}
			}
		case <-done:
			done = nil // the deliveries still on their way are given back; see dispatch
			if err := cancel(); err != nil {
				return err
			}
		}
	}
}

// dispatch handles d under p in a handler slot; with no permit, it defers
// d. Once the run is stopping, the messages in hand are still handled and
// settled as usual, on the handlers' context (see DrainTimeout).
func (r *run) dispatch(_ context.Context, d amqp.Delivery, p *queuegate.Permit) {
	r.slots <- struct{}{} // prefetch bounds the deliveries in hand, so this waits little
	ctx := r.hctx
	r.wg.Go(func() {
		defer func() { <-r.slots }()
		if p == nil {
			r.settle(r.requeue(ctx, d, r.c.cfg.Gate.Defer()), "requeue")
			return
		}
		v := p.Run(ctx, func(ctx context.Context) error { return r.c.cfg.Handler(ctx, d) })
		r.settle(r.apply(ctx, d, v), v.Action.String())
	})
}

// apply settles d by the verdict v.
func (r *run) apply(ctx context.Context, d amqp.Delivery, v queuegate.Verdict) error {
	switch v.Action {
	case queuegate.Ack:
		return d.Ack(false)
	case queuegate.DeadLetter:
		return d.Nack(false, false)
	case queuegate.Retry:
		if count(d.Headers, HeaderRetries) >= int64(r.c.cfg.MaxRetries) {
			r.c.cfg.Logger.Warn("amqpgate: message failed too often; dead-lettering it",
				slog.String("queue", r.c.cfg.Queue), slog.String("message_id", d.MessageId),
				slog.Int("max_retries", r.c.cfg.MaxRetries), slog.Any("error", v.Err))
			r.c.exhausted.Add(1)
			return d.Nack(false, false)
		}
	}
	return r.requeue(ctx, d, v)
}

// requeue republishes d to the retry queue to come back after v.Delay, and
// acks it once the broker has confirmed the copy and not returned it. If the
// copy is returned (no retry queue) or not confirmed, d is left unsettled,
// for the broker to requeue when the run's channel closes, and the run ends
// with the fault: requeueing d at once would only spin on the same fault.
func (r *run) requeue(ctx context.Context, d amqp.Delivery, v queuegate.Verdict) error {
	headers := amqp.Table{}
	for k, val := range d.Headers {
		headers[k] = val
	}
	key := HeaderDeferrals
	if v.Action == queuegate.Retry {
		key = HeaderRetries
	}
	headers[key] = count(d.Headers, key) + 1
	id := fmt.Sprintf("%s-%p-%d", r.c.cfg.ConsumerTag, r, r.c.copies.Add(1))
	headers[HeaderCopy] = id
	mode := d.DeliveryMode
	if mode == 0 {
		mode = amqp.Persistent
	}
	ms := max(v.Delay.Milliseconds(), 1)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	conf, err := r.pub.PublishWithDeferredConfirmWithContext(pctx, "", r.c.cfg.RetryQueue, true, false, amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: mode, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
		Expiration: strconv.FormatInt(ms, 10), MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, AppId: d.AppId, Body: d.Body,
	})
	if err == nil {
		var ok bool
		if ok, err = conf.WaitContext(pctx); err == nil && !ok {
			err = errors.New("the broker nacked the copy")
		}
	}
	if err == nil && r.wasReturned(id) {
		r.c.returned.Add(1)
		err = fmt.Errorf("the broker returned the copy as unroutable: does the retry queue %s exist? (see DeclareRetryQueue)", r.c.cfg.RetryQueue)
	}
	if err != nil {
		err = fmt.Errorf("amqpgate: republishing a message of %s to %s: %w; the message stays on %s",
			r.c.cfg.Queue, r.c.cfg.RetryQueue, err, r.c.cfg.Queue)
		r.fail(err)
		return err
	}
	r.c.requeued.Add(1)
	return d.Ack(false)
}

func (r *run) settle(err error, what string) {
	if err != nil {
		r.c.cfg.Logger.Warn("amqpgate: "+what+" failed", slog.String("queue", r.c.cfg.Queue), slog.Any("error", err))
	}
}

// count reads a counter header, whatever integer type it came back as.
func count(h amqp.Table, key string) int64 {
	switch v := h[key].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case int:
		return int64(v)
	case int16:
		return int64(v)
	case int8:
		return int64(v)
	case uint8:
		return int64(v)
	}
	return 0
}
