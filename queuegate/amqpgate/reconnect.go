package amqpgate

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Run consumes until ctx is done, then cancels the consumer, settles the
// messages in hand (see DrainTimeout) and returns nil. A lost connection is
// dialled again (see Reconnecting in the package documentation). Run returns
// an error only for a fault that reconnecting cannot cure: a queue missing or
// declared with other arguments than DeclareRetryQueue's, a copy returned as
// unroutable, refused credentials or permissions.
func (c *Consumer) Run(ctx context.Context) error {
	var (
		delay    = c.cfg.ReconnectDelay
		attempts int       // failed attempts in the current outage
		down     time.Time // when the current outage began; zero while connected
	)
	for {
		conn, err := c.cfg.Dial(ctx)
		if err == nil {
			// The outage ends once a session is ready to consume, not
			// at the dial: a broker still booting may take connections
			// and fail what comes next.
			err = c.session(ctx, conn, func() {
				if !down.IsZero() {
					c.reconnects.Add(1)
					c.cfg.Logger.Info("amqpgate: reconnected to the broker", slog.String("queue", c.cfg.Queue),
						slog.Int("attempts", attempts+1), slog.Duration("outage", time.Since(down).Round(time.Millisecond)))
				}
				down, attempts, delay = time.Time{}, 0, c.cfg.ReconnectDelay
			})
			// The settlements are on the wire before the close; the
			// deadline bounds the wait for a broker that does not answer.
			_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
			if err == nil || ctx.Err() != nil {
				return nil
			}
		} else if ctx.Err() != nil {
			return nil
		}
		if permanent(err) {
			return err
		}
		if down.IsZero() {
			down = time.Now()
			c.cfg.Logger.Warn("amqpgate: lost the broker; reconnecting with backoff", slog.String("queue", c.cfg.Queue),
				slog.Duration("max_delay", c.cfg.MaxReconnectDelay), slog.Any("error", err))
		} else {
			attempts++
			c.cfg.Logger.Debug("amqpgate: reconnecting failed", slog.String("queue", c.cfg.Queue),
				slog.Int("attempts", attempts), slog.Any("error", err))
		}
		// Jittered down by up to half, so that consumers that lost the
		// same broker do not all come back at the same instant.
		wait := delay - time.Duration(rand.Int64N(int64(delay/2)+1))
		delay = min(2*delay, c.cfg.MaxReconnectDelay)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// closeTimeout bounds the wait for the broker's answer to closing a
// connection.
const closeTimeout = 2 * time.Second

// fatalError marks a fault that dialling again cannot cure.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// permanent reports whether err is a fault that reconnecting cannot cure:
// marked so by the consumer, refused credentials or virtual host, or a
// broker's answer that a queue is missing, declared otherwise, or not ours
// to use. Anything else (a lost connection or channel, a timeout, a copy
// the broker nacked) is worth another connection.
func permanent(err error) bool {
	if errors.As(err, new(fatalError)) || errors.Is(err, amqp.ErrCredentials) || errors.Is(err, amqp.ErrVhost) || errors.Is(err, amqp.ErrSASL) {
		return true
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.NotFound, amqp.AccessRefused, amqp.PreconditionFailed:
			return true
		}
	}
	return false
}
