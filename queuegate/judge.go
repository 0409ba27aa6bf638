package queuegate

import (
	"context"
	"errors"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Defer returns the verdict for a message in hand that is not attempted
// because the circuit is open: give it back to the broker with a delay of
// the breaker's RetryAfter plus jitter. It counts in Stats.Deferred and
// nowhere else.
func (g *Gate) Defer() Verdict {
	b := g.breaker()
	after := b.RetryAfter()
	g.observe(modeOf(b, b.State()))
	return g.deferFor(after, nil)
}

func (g *Gate) deferFor(after time.Duration, err error) Verdict {
	g.deferred.Add(1)
	return Verdict{Action: Defer, Delay: g.delay(after), Err: err}
}

// delay is the redelivery delay for a message deferred with after left
// until a probe: at least MinDelay, plus jitter.
func (g *Gate) delay(after time.Duration) time.Duration {
	g.mu.Lock()
	ot := g.openTimeout
	g.mu.Unlock()
	minDelay, jitter := g.cfg.MinDelay, g.cfg.Jitter
	if minDelay == 0 {
		minDelay = ot / 10
	}
	if jitter == 0 {
		jitter = ot / 10
	}
	return max(after, minDelay) + time.Duration(g.rand()*float64(jitter))
}

// judge turns a handler's error into a verdict. probe tells whether the
// message was a HALF_OPEN probe.
func (g *Gate) judge(ctx context.Context, err error, probe bool) Verdict {
	if err == nil {
		g.acked.Add(1)
		return Verdict{Action: Ack}
	}
	if errors.Is(err, breaker.ErrOpen) {
		after, ok := breaker.RetryAfter(err)
		if !ok {
			after = g.breaker().RetryAfter()
		}
		g.Mode() // a rejection may be the first sign that the circuit opened
		return g.deferFor(after, err)
	}
	if ctx.Err() != nil {
		// The handler's context ended first: with the adapters, the
		// consumer is stopping and its drain timeout ran out. The call
		// may or may not have reached the service, so the message is
		// neither judged nor charged; it comes back after RetryDelay,
		// never at once (an immediate requeue would send it again while
		// the cut-short call may still be landing).
		g.deferred.Add(1)
		g.cutShort.Add(1)
		return Verdict{Action: Defer, Delay: g.cfg.RetryDelay + g.jitter(), Err: err}
	}
	switch a := g.classify(err); a {
	case Ack:
		g.acked.Add(1)
		return Verdict{Action: Ack, Err: err}
	case DeadLetter:
		g.deadLetters.Add(1)
		return Verdict{Action: DeadLetter, Err: err}
	}
	b := g.breaker()
	s := b.State()
	open := (s == breaker.Open || s == breaker.ForcedOpen) && !b.DryRun()
	if probe || open {
		// The failure is the outage's, not the message's: a failed
		// probe (the service is still down), or a failure that opened
		// the circuit or came as it opened. Charging it to the message
		// would spend its delivery budget on an outage, once per probe,
		// and dead-letter healthy messages in a long one. Defer it: back
		// when a probe may run, not counted against it.
		g.deferred.Add(1)
		g.outageFailures.Add(1)
		g.Mode()
		delay := g.cfg.RetryDelay + g.jitter()
		if open {
			delay = g.delay(b.RetryAfter())
		}
		return Verdict{Action: Defer, Delay: delay, Err: err, Outage: true}
	}
	g.retried.Add(1)
	return Verdict{Action: Retry, Delay: g.cfg.RetryDelay + g.jitter(), Err: err}
}

func (g *Gate) jitter() time.Duration {
	g.mu.Lock()
	j := g.cfg.Jitter
	if j == 0 {
		j = g.openTimeout / 10
	}
	g.mu.Unlock()
	return time.Duration(g.rand() * float64(j))
}
