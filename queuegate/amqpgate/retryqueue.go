package amqpgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/queuegate"
)

// DeclareRetryQueue declares the retry queue of the work queue queue, named
// queue + ".retry", and returns its name. The retry queue is a durable
// quorum queue without consumers that dead-letters expired messages, at
// least once, through the default exchange back to queue:
//
//	x-queue-type: quorum
//	x-dead-letter-exchange: ""
//	x-dead-letter-routing-key: <queue>
//	x-dead-letter-strategy: at-least-once
//	x-overflow: reject-publish (which at-least-once requires)
//
// It needs RabbitMQ 3.10 or later. It is the one way to make a retry queue:
// Run checks that the retry queue has exactly these arguments (see the
// package documentation). A retry queue declared by an earlier version (a
// classic queue) is refused with an error that says how to migrate; the
// broker then closes ch, as it does on every refused declaration.
func DeclareRetryQueue(ch *amqp.Channel, queue string) (string, error) {
	name := queue + ".retry"
	_, err := ch.QueueDeclare(name, true, false, false, false, retryQueueArgs(queue))
	if err != nil {
		return "", fmt.Errorf("amqpgate: declaring retry queue %s: %w", name, explainArgs(err, name, queue))
	}
	return name, nil
}

func retryQueueArgs(queue string) amqp.Table {
	return amqp.Table{
		"x-queue-type":              "quorum",
		"x-dead-letter-exchange":    "",
		"x-dead-letter-routing-key": queue,
		"x-dead-letter-strategy":    "at-least-once",
		"x-overflow":                "reject-publish",
	}
}

// explainArgs adds to the broker's refusal of DeclareRetryQueue's arguments
// what to do about it. The broker names the first argument that differs,
// which for a retry queue of an earlier version (classic, at-most-once) may
// be any of the ones added since, so the advice covers both cases.
func explainArgs(err error, retryQueue, queue string) error {
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		return err
	}
	return fmt.Errorf("%w: the retry queue was declared with other arguments than DeclareRetryQueue's, so its expired copies may never come back, or not at least once "+
		"(a classic retry queue, as earlier versions of amqpgate declared it, dead-letters at most once: its copies can be lost when the broker restarts). "+
		"To migrate: stop the consumers of %s, wait until %s is empty (its copies go back to %s as they expire), delete it and declare it again with DeclareRetryQueue; "+
		"or set Config.SkipRetryQueueCheck if it routes back at least once another way", err, queue, retryQueue, queue)
}

// checkQueues checks that the work queue and the retry queue exist and,
// unless Config.SkipRetryQueueCheck, that the retry queue was declared with
// DeclareRetryQueue's arguments. Each question is asked on a channel of its
// own, since a refusal closes the channel that asked.
func (c *Consumer) checkQueues(conn *amqp.Connection) error {
	for _, q := range []struct{ field, name string }{{"Queue", c.cfg.Queue}, {"RetryQueue", c.cfg.RetryQueue}} {
		err := onChannel(conn, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q.name, true, false, false, false, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("amqpgate: Config.%s %q: %w (declare it first; see DeclareRetryQueue)", q.field, q.name, err)
		}
	}
	if c.cfg.SkipRetryQueueCheck {
		return nil
	}
	err := onChannel(conn, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(c.cfg.RetryQueue, true, false, false, false, retryQueueArgs(c.cfg.Queue))
		return err
	})
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.AccessRefused {
		return nil // a user who may not configure the queue cannot tell
	}
	if err != nil {
		return fmt.Errorf("amqpgate: Config.RetryQueue %q: %w", c.cfg.RetryQueue, explainArgs(err, c.cfg.RetryQueue, c.cfg.Queue))
	}
	return nil
}

func onChannel(conn *amqp.Connection, f func(*amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// confirmTimeout bounds the wait for the broker's confirmation of a copy.
const confirmTimeout = 10 * time.Second

// errUnconfirmed says the broker nacked a copy or did not confirm it in
// time: the retry queue cannot take it now.
var errUnconfirmed = errors.New("the broker did not confirm the copy")

// requeue republishes d to the retry queue to come back after v.Delay, and
// acks it once the broker has confirmed the copy and not returned it.
//
// A copy the broker does not confirm (nacked, or no answer within
// confirmTimeout: a quorum retry queue without a leader, as after a restart)
// is published again, with backoff, while d stays in hand: giving d back to
// the work queue would spend one of its deliveries on a quorum work queue,
// over and over for as long as the retry queue cannot take it. Each attempt
// may still land later, so this can duplicate, never lose. The retries end
// with the handlers' context (the drain timeout, or a lost connection).
//
// If the copy is returned (no retry queue), or the channel fails, or the
// retries end, d is left unsettled, for the broker to requeue when the run's
// connection closes, and the run ends with the fault: requeueing d at once
// would only spin on the same fault.
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
	msg := amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: d.DeliveryMode, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
		Expiration: strconv.FormatInt(max(v.Delay.Milliseconds(), 1), 10), MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, AppId: d.AppId, Body: d.Body,
	}
	if msg.DeliveryMode == 0 {
		msg.DeliveryMode = amqp.Persistent
	}
	err := r.publishCopy(msg)
	for wait := r.c.cfg.ReconnectDelay; errors.Is(err, errUnconfirmed); wait = min(2*wait, r.c.cfg.MaxReconnectDelay) {
		if wait == r.c.cfg.ReconnectDelay {
			r.c.cfg.Logger.Warn("amqpgate: the retry queue does not take copies; holding the message and publishing its copy again",
				slog.String("queue", r.c.cfg.Queue), slog.String("retry_queue", r.c.cfg.RetryQueue), slog.String("message_id", d.MessageId))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			err = fmt.Errorf("%w, and the handlers' context ended: %w", err, ctx.Err())
		case <-t.C:
			err = r.publishCopy(msg)
		}
		if ctx.Err() != nil {
			break
		}
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

// publishCopy publishes msg, marked with a new HeaderCopy, to the retry
// queue, mandatory, and waits for its confirmation: it returns
// errUnconfirmed if the broker nacks it or does not answer in time, a
// fatalError if the broker returns it.
func (r *run) publishCopy(msg amqp.Publishing) error {
	id := fmt.Sprintf("%s-%p-%d", r.c.cfg.ConsumerTag, r, r.c.copies.Add(1))
	msg.Headers[HeaderCopy] = id
	ctx, cancel := context.WithTimeout(context.Background(), confirmTimeout)
	defer cancel()
	conf, err := r.pub.PublishWithDeferredConfirmWithContext(ctx, "", r.c.cfg.RetryQueue, true, false, msg)
	if err != nil {
		return err
	}
	ok, err := conf.WaitContext(ctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded), err == nil && !ok:
		return errUnconfirmed
	case err != nil:
		return err
	case r.wasReturned(id):
		r.c.returned.Add(1)
		// A missing retry queue: no reconnection brings it back.
		return fatalError{fmt.Errorf("the broker returned the copy as unroutable: does the retry queue %s exist? (see DeclareRetryQueue)", r.c.cfg.RetryQueue)}
	}
	return nil
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
