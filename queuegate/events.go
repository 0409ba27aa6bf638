package queuegate

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Mode is the gate's position, which follows its breaker's state.
type Mode uint32

const (
	// Flowing: the circuit is CLOSED (or disabled, or in dry-run); every
	// message is admitted and the consumer fetches at full speed.
	Flowing Mode = iota
	// Probing: the circuit is HALF_OPEN; the gate admits as many messages at
	// once as the breaker has probe slots.
	Probing
	// Paused: the circuit is OPEN; the gate admits nothing and the consumer
	// fetches nothing until the breaker moves.
	Paused
)

// String returns the mode in snake case: flowing, probing, paused.
func (m Mode) String() string {
	switch m {
	case Flowing:
		return "flowing"
	case Probing:
		return "probing"
	case Paused:
		return "paused"
	}
	return fmt.Sprintf("Mode(%d)", uint32(m))
}

// Event is one change of a gate's mode.
type Event struct {
	Gate     string
	From, To Mode
	At       time.Time
	// RetryAfter is, when To is Paused, how long until a probe is allowed.
	RetryAfter time.Duration
	// PausedFor is, when To is Flowing, how long the gate did not flow.
	PausedFor time.Duration
}

// Kind names the event: "paused", "probing" or "resumed".
func (e Event) Kind() string {
	switch e.To {
	case Paused:
		return "paused"
	case Probing:
		return "probing"
	}
	return "resumed"
}

// Stats is a gate's counters and current state, for metrics. Counters only
// grow.
type Stats struct {
	Name string
	Mode Mode

	// Pauses counts the times the gate paused (the circuit opened, or
	// reopened after a failed probe); Resumes the times it went back to
	// flowing.
	Pauses, Resumes uint64
	// PausedTime is the total time the gate was not flowing (paused or
	// probing), the current stretch included.
	PausedTime time.Duration

	// Admitted counts permits given; Probes those given as HALF_OPEN probes.
	Admitted, Probes uint64
	// InFlight is the number of permits given and not yet released.
	InFlight int

	// Verdicts by action. Deferred counts the messages given back because
	// of the outage: unattempted because their circuit was open, failed as
	// a probe or as the circuit opened (OutageFailures among them), or cut
	// short by a stopping consumer (CutShort among them). Retried counts
	// only failures charged to the message (the circuit stayed closed).
	Acked, Deferred, Retried, DeadLettered uint64
	// OutageFailures counts the deferred messages that were attempted and
	// failed, as a HALF_OPEN probe or with the circuit open once they
	// failed: the breaker counted them, the message's budget does not.
	OutageFailures uint64
	// CutShort counts the deferred messages whose handler's context ended
	// before the handler did (a consumer stopping past its drain timeout).
	CutShort uint64
}

// Stats returns the gate's counters and mode.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	s := Stats{
		Name:         g.name,
		Mode:         Mode(g.mode.Load()),
		Pauses:       g.pauses,
		Resumes:      g.resumes,
		PausedTime:   g.pausedTotal,
		InFlight:     int(g.inFlight.Load()),
		Admitted:     g.admitted.Load(),
		Probes:       g.probesAdmitted.Load(),
		Acked:        g.acked.Load(),
		Deferred:     g.deferred.Load(),
		Retried:      g.retried.Load(),
		DeadLettered: g.deadLetters.Load(),

		OutageFailures: g.outageFailures.Load(),
		CutShort:       g.cutShort.Load(),
	}
	if !g.notFlowing.IsZero() {
		s.PausedTime += g.clock.Now().Sub(g.notFlowing)
	}
	g.mu.Unlock()
	return s
}

// observe records that the gate saw its circuit in mode m, and emits an
// event if that changes the gate's mode. The flowing path reads one atomic
// word and takes no lock.
//
// m was read before the lock, so it may be stale by now: another goroutine
// may have seen a later transition and recorded it. Under the lock the
// breaker's state is read again and that, not m, is recorded, so a stale
// observation never overwrites a fresher one (nor emits a spurious pair of
// events).
func (g *Gate) observe(m Mode) {
	if Mode(g.mode.Load()) == m {
		return
	}
	g.mu.Lock()
	b := g.breaker()
	m = modeOf(b, b.State())
	from := Mode(g.mode.Load())
	if from == m {
		g.mu.Unlock()
		return
	}
	g.mode.Store(uint32(m))
	g.refresh(b)
	now := g.clock.Now()
	e := Event{Gate: g.name, From: from, To: m, At: now}
	switch {
	case m == Paused:
		g.pauses++
		e.RetryAfter = g.cur.RetryAfter()
	case m == Flowing:
		g.resumes++
	}
	if from == Flowing {
		g.notFlowing = now
	}
	if m == Flowing && !g.notFlowing.IsZero() {
		e.PausedFor = now.Sub(g.notFlowing)
		g.pausedTotal += e.PausedFor
		g.notFlowing = time.Time{}
	}
	g.pending = append(g.pending, e)
	if g.delivering {
		g.mu.Unlock()
		return
	}
	// Deliver in order, outside the lock: whoever finds no delivery running
	// delivers every event queued until the queue is empty.
	g.delivering = true
	for len(g.pending) > 0 {
		e := g.pending[0]
		g.pending = g.pending[1:]
		g.mu.Unlock()
		g.emit(e)
		g.mu.Lock()
	}
	g.pending = nil
	g.delivering = false
	g.mu.Unlock()
}

func (g *Gate) emit(e Event) {
	switch e.To {
	case Paused:
		g.logger.LogAttrs(context.Background(), slog.LevelWarn,
			"queue gate paused: circuit open, consumer stops fetching",
			slog.String("gate", e.Gate), slog.String("from", e.From.String()),
			slog.Duration("retry_after", e.RetryAfter))
	case Probing:
		g.logger.LogAttrs(context.Background(), slog.LevelInfo,
			"queue gate probing: circuit half-open, admitting probe messages",
			slog.String("gate", e.Gate), slog.String("from", e.From.String()))
	default:
		g.logger.LogAttrs(context.Background(), slog.LevelInfo,
			"queue gate resumed: circuit closed, consuming at full speed",
			slog.String("gate", e.Gate), slog.Duration("paused_for", e.PausedFor))
	}
	if g.cfg.OnEvent != nil {
		g.cfg.OnEvent(e)
	}
}
