package amqpgate

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/queuegate"
)

// session consumes on conn until ctx is done (then it drains, see
// DrainTimeout, and returns nil), or until the connection, a channel or the
// retry path fails (then it cancels the handlers' context at once, waits for
// them, and returns the fault). The messages it did not settle go back to the
// work queue when conn closes. It leaves its channels to the closing of conn:
// a channel stuck in the broker would never answer its own close. It calls
// ready once its channels are open and the queues checked.
func (c *Consumer) session(ctx context.Context, conn *amqp.Connection, ready func()) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqpgate: opening a channel: %w", err)
	}
	pub, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("amqpgate: opening a channel: %w", err)
	}
	if err := pub.Confirm(false); err != nil {
		return fmt.Errorf("amqpgate: publisher confirms: %w", err)
	}
	// A copy can come back only before its confirmation, and at most one
	// per publish in flight (one per handler slot): a buffer that large
	// never blocks the channel. See requeue.
	returns := pub.NotifyReturn(make(chan amqp.Return, 2*c.cfg.Concurrency+4))
	if err := answered(conn, "the checks of the queues", func() error { return c.checkQueues(conn) }); err != nil {
		return err
	}
	ready()

	gate := c.cfg.Gate
	var wg sync.WaitGroup
	// Handlers run on a context of their own: not cancelled with the run's,
	// but DrainTimeout after it, or at once if the connection is lost.
	hctx, cutShort := context.WithCancel(context.WithoutCancel(ctx))
	defer cutShort()
	// A channel that closes under us (the connection dropped, the broker
	// closed it) ends the session, even while it rests in the gate; so does
	// a fault of the retry path.
	ctx, stopRun := context.WithCancel(ctx)
	stopDrain := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(c.cfg.DrainTimeout, cutShort)
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stopDrain()
	defer wg.Wait()
	defer stopRun() // before wg.Wait, on every way out
	r := &run{c: c, conn: conn, ch: ch, pub: pub, slots: make(chan struct{}, c.cfg.Concurrency), wg: &wg, hctx: hctx, stop: stopRun,
		returns: returns, returned: map[string]bool{}}
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
		r.lost.Store(e)
		// The messages in hand cannot be settled on this connection any
		// more; the broker delivers them again. Their handlers would only
		// hold up the reconnection.
		cutShort()
		stopRun()
	})
	wg.Go(func() { gate.Watch(ctx) })

	for n := 0; ; n++ {
		p, err := gate.Acquire(ctx) // the consumer rests here while the circuit is open
		if err == nil {
			err = r.consume(ctx, p, fmt.Sprintf("%s-%d", c.cfg.ConsumerTag, n))
		}
		if e := r.lost.Load(); e != nil {
			// Not wrapped: whatever the code (a broker closing the channel
			// on a consumer's ack timeout says PRECONDITION_FAILED), a lost
			// channel is worth another connection.
			return fmt.Errorf("amqpgate: consuming from %s: %v", c.cfg.Queue, e)
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

// run is one connection's session: its channels, and the messages in hand
// on them.
type run struct {
	c     *Consumer
	conn  *amqp.Connection
	ch    *amqp.Channel
	pub   *amqp.Channel
	slots chan struct{}
	wg    *sync.WaitGroup
	hctx  context.Context // the handlers' context; see DrainTimeout
	stop  func()          // ends the run

	mu       sync.Mutex
	returns  <-chan amqp.Return
	returned map[string]bool            // copies returned and not yet claimed, by HeaderCopy
	err      error                      // the first fault
	lost     atomic.Pointer[amqp.Error] // how the connection or a channel closed under the session
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
	var deliveries <-chan amqp.Delivery
	err := answered(r.conn, "basic.consume", func() error {
		if err := r.ch.Qos(prefetch, 0, false); err != nil {
			return fmt.Errorf("amqpgate: setting prefetch: %w", err)
		}
		var err error
		if deliveries, err = r.ch.Consume(c.cfg.Queue, tag, false, false, false, false, nil); err != nil {
			return fmt.Errorf("amqpgate: consuming from %s: %w", c.cfg.Queue, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.consumes.Add(1)
	subscribed := true
	cancel := func() error {
		if !subscribed {
			return nil
		}
		subscribed = false
		return answered(r.conn, "basic.cancel", func() error {
			if err := r.ch.Cancel(tag, false); err != nil {
				return fmt.Errorf("amqpgate: cancelling consumer %s: %w", tag, err)
			}
			return nil
		})
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

// settle logs the failure to settle a message, unless the connection is
// lost: then every settlement fails, and the broker delivers the message
// again.
func (r *run) settle(err error, what string) {
	if err != nil && r.lost.Load() == nil {
		r.c.cfg.Logger.Warn("amqpgate: "+what+" failed", slog.String("queue", r.c.cfg.Queue), slog.Any("error", err))
	}
}

// rpcTimeout bounds each request a session makes of the broker outside the
// flow of messages: the checks of the queues, prefetch, subscriptions. A
// broker that restarts can leave one unanswered for good (RabbitMQ 3.10
// forwards a declaration of a quorum queue whose leader is not elected yet,
// and may never answer it); the session then closes its connection, and Run
// dials again. Far above the answer time of a busy broker.
const rpcTimeout = 15 * time.Second

// answered runs f, which asks the broker over conn, and closes conn if the
// answer takes longer than rpcTimeout: that ends f with an error.
func answered(conn *amqp.Connection, what string, f func() error) error {
	var timedOut atomic.Bool
	t := time.AfterFunc(rpcTimeout, func() {
		timedOut.Store(true)
		_ = conn.CloseDeadline(time.Now().Add(time.Second))
	})
	err := f()
	t.Stop()
	if timedOut.Load() {
		return fmt.Errorf("amqpgate: the broker did not answer %s within %v (%v); dialling again", what, rpcTimeout, err)
	}
	return err
}
