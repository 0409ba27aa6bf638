package queuegate

import (
	"context"
	"sync/atomic"

	"github.com/breakerbox/breakerbox/breaker"
)

// Acquire waits until the gate admits one message and returns the permit
// to process it. A consumer calls it before it fetches: while the circuit
// is open Acquire blocks without polling (it wakes at the breaker's next
// transition), so the consumer stops fetching. In HALF_OPEN it admits as
// many messages at once as the breaker has probe slots; in CLOSED, all.
// It returns ctx's error if ctx is done first.
func (g *Gate) Acquire(ctx context.Context) (*Permit, error) {
	for {
		p, wait, freed := g.tryAcquire()
		if p != nil {
			return p, nil
		}
		var stop func() bool
		var timeout chan struct{}
		if g.cfg.Registry != nil {
			timeout = make(chan struct{})
			stop = g.clockNow().AfterFunc(recheck, func() { close(timeout) })
		}
		select {
		case <-wait:
		case <-freed:
		case <-timeout:
		case <-ctx.Done():
			if stop != nil {
				stop()
			}
			return nil, ctx.Err()
		}
		if stop != nil {
			stop()
		}
	}
}

// TryAcquire is Acquire without the wait: it reports false when the gate
// would block. A consumer that finds the gate closed with a message already
// in hand gives the message back with the Verdict of Defer.
func (g *Gate) TryAcquire() (*Permit, bool) {
	p, _, _ := g.tryAcquire()
	return p, p != nil
}

func (g *Gate) clockNow() breaker.Clock {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.clock
}

// tryAcquire returns a permit, or the channels to wait on before trying
// again: the breaker's next transition and, in HALF_OPEN, the release of a
// probe permit.
func (g *Gate) tryAcquire() (p *Permit, wait, freed <-chan struct{}) {
	b := g.breaker()
	if s := b.State(); s == breaker.Closed || s == breaker.Disabled {
		g.observe(Flowing)
		return g.admit(false), nil, nil
	}
	// Ask for the channel before reading the state again, so that a
	// transition in between closes the channel we wait on.
	wait = b.Changed()
	m := modeOf(b, b.State())
	g.observe(m)
	switch m {
	case Flowing:
		return g.admit(false), nil, nil
	case Paused:
		return nil, wait, nil
	}
	g.mu.Lock()
	g.refresh(b)
	if g.probes < g.slots {
		g.probes++
		g.mu.Unlock()
		return g.admit(true), nil, nil
	}
	if g.freed == nil {
		g.freed = make(chan struct{})
	}
	freed = g.freed
	g.mu.Unlock()
	return nil, wait, freed
}

func (g *Gate) admit(probe bool) *Permit {
	g.admitted.Add(1)
	if probe {
		g.probesAdmitted.Add(1)
	}
	g.inFlight.Add(1)
	return &Permit{g: g, probe: probe}
}

// Permit is the gate's leave to process one message, from Acquire or
// TryAcquire. Use it exactly once: Run the handler under it, or Release it
// unused.
type Permit struct {
	g     *Gate
	probe bool
	done  atomic.Bool
}

// Probe reports whether the permit is one of the HALF_OPEN probe slots.
func (p *Permit) Probe() bool { return p.probe }

// Release gives an unused permit back, e.g. when a fetch returned fewer
// messages than the consumer had permits for. Releasing twice, or after
// Run, does nothing.
func (p *Permit) Release() {
	if !p.done.CompareAndSwap(false, true) {
		return
	}
	g := p.g
	g.inFlight.Add(-1)
	if !p.probe {
		return
	}
	g.mu.Lock()
	g.probes--
	if g.freed != nil {
		close(g.freed)
		g.freed = nil
	}
	g.mu.Unlock()
}

// Run processes one message with fn under the permit, releases the permit,
// and returns what the consumer must do with the message.
//
// If the circuit has opened since the permit was given, fn is not run and
// the message is deferred: it was never attempted, so it counts as nothing.
// fn's error decides the rest: nil acks; a rejection by an open circuit
// (errors.Is(err, breaker.ErrOpen), e.g. from httpbreaker or Breaker.Do
// inside fn) defers the message by the breaker's RetryAfter plus jitter;
// anything else goes to Config.Classify (by default: errors marked with
// DeadLetter are dead-lettered, the rest retried after a delay).
//
// If fn panics, the permit is released and the panic continues.
func (p *Permit) Run(ctx context.Context, fn func(context.Context) error) Verdict {
	if p.done.Load() {
		panic("queuegate: Permit used twice")
	}
	if !p.stillAdmits() {
		p.Release()
		return p.g.Defer()
	}
	var err error
	probe := p.probe
	func() {
		defer p.Release()
		err = fn(ctx)
	}()
	return p.g.judge(ctx, err, probe)
}

// stillAdmits reports whether the circuit still admits the permit's message:
// a permit given while CLOSED that finds the breaker HALF_OPEN becomes a
// probe if a slot is free.
func (p *Permit) stillAdmits() bool {
	g := p.g
	b := g.breaker()
	m := modeOf(b, b.State())
	g.observe(m)
	switch {
	case m == Flowing:
		return true
	case m == Paused:
		return false
	case p.probe:
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refresh(b)
	if g.probes >= g.slots {
		return false
	}
	g.probes++
	p.probe = true
	g.probesAdmitted.Add(1)
	return true
}
