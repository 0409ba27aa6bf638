package queuegate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Config configures a Gate. Exactly one of Breaker and Registry must be set.
type Config struct {
	// Breaker is the circuit the gate follows.
	Breaker *breaker.Breaker

	// Registry and Key name the circuit the gate follows by key, e.g. the
	// registry of an httpbreaker.Transport and "genesys/eu-west-1". The
	// breaker is looked up again whenever the gate asks, so a breaker the
	// registry evicted and re-created is followed.
	Registry *breaker.Registry
	Key      string

	// Name identifies the gate in events, logs and metrics. "" means the
	// breaker's name (or Key).
	Name string

	// Jitter is the most random extra delay added to each redelivery delay,
	// so that the messages deferred together do not come back together.
	// 0 means a tenth of the breaker's OpenTimeout. Must be ≥ 0.
	Jitter time.Duration

	// MinDelay is the least delay of a message deferred because its circuit
	// is open, for when the breaker cannot say how long it will stay open
	// (forced open, or a probe lease ending now). 0 means a tenth of the
	// breaker's OpenTimeout. Must be ≥ 0.
	MinDelay time.Duration

	// RetryDelay is the delay before a message whose processing failed for
	// a transient reason comes back, while its circuit is still closed. (Once
	// the circuit is open, a failed message comes back after the open
	// timeout instead.) 0 means 1s. Must be ≥ 0.
	RetryDelay time.Duration

	// Classify decides what becomes of a message whose handler returned a
	// non-nil error that is not a rejection by an open circuit: Retry or
	// DeadLetter (or Ack to drop it). nil means DefaultClassifier.
	Classify func(error) Action

	// OnEvent, if set, is called once per change of the gate's mode
	// (paused, probing, resumed), in order, outside the gate's lock. It may
	// call the gate's methods.
	OnEvent func(Event)

	// Logger receives one record per change of mode: WARN when pausing,
	// INFO when probing or resuming. nil means slog.Default().
	Logger *slog.Logger

	// Rand returns a uniform random number in [0, 1) for the jitter. nil
	// means math/rand/v2's Float64. Tests and examples set it to make delays
	// predictable.
	Rand func() float64
}

// DefaultRetryDelay is the RetryDelay of a zero Config.
const DefaultRetryDelay = time.Second

// recheck bounds a wait on a registry-keyed breaker, in case the registry
// drops the breaker the gate waits on (an operator's Remove): the gate then
// looks the key up again. A wait on a breaker given directly needs no
// recheck, since every way out of OPEN is a transition that wakes it.
const recheck = 5 * time.Second

// Gate admits the messages of one consumer according to one circuit. It is
// safe for concurrent use.
type Gate struct {
	cfg      Config
	name     string
	classify func(error) Action
	logger   *slog.Logger
	rand     func() float64

	// mode is the last mode observed, read without the lock so that the
	// flowing path takes none.
	mode atomic.Uint32

	admitted, probesAdmitted              atomic.Uint64
	acked, deferred, retried, deadLetters atomic.Uint64
	outageFailures, cutShort              atomic.Uint64
	inFlight                              atomic.Int64
	lastBreaker                           atomic.Pointer[breaker.Breaker] // from the registry, for when Get fails

	mu sync.Mutex
	// Guarded by mu.
	cur         *breaker.Breaker // the breaker the derived fields below are for
	slots       int              // its HalfOpenProbes
	openTimeout time.Duration    // its OpenTimeout
	clock       breaker.Clock    // its Clock
	probes      int              // probe permits out
	freed       chan struct{}    // closed when a probe permit is released; nil until asked for
	pauses      uint64
	resumes     uint64
	notFlowing  time.Time // when the gate last stopped flowing; zero while flowing
	pausedTotal time.Duration
	pending     []Event
	delivering  bool
}

// New returns a gate following cfg's circuit, or an error naming the first
// invalid field of cfg.
func New(cfg Config) (*Gate, error) {
	switch {
	case cfg.Breaker == nil && cfg.Registry == nil:
		return nil, errors.New("queuegate: Config.Breaker and Config.Registry are both nil: set Breaker, or Registry and Key, to the circuit the gate follows")
	case cfg.Breaker != nil && cfg.Registry != nil:
		return nil, errors.New("queuegate: Config.Breaker and Config.Registry are both set: set one, the circuit the gate follows")
	case cfg.Registry != nil && cfg.Key == "":
		return nil, errors.New("queuegate: Config.Key is empty: with Config.Registry, set Key to the circuit's key, e.g. \"genesys/eu-west-1\"")
	case cfg.Breaker != nil && cfg.Key != "":
		return nil, fmt.Errorf("queuegate: Config.Key is %q with Config.Breaker set: Key selects a breaker of Config.Registry; leave it empty", cfg.Key)
	case cfg.Jitter < 0:
		return nil, fmt.Errorf("queuegate: Config.Jitter is %v: must be ≥ 0 (0 means a tenth of the breaker's OpenTimeout)", cfg.Jitter)
	case cfg.MinDelay < 0:
		return nil, fmt.Errorf("queuegate: Config.MinDelay is %v: must be ≥ 0 (0 means a tenth of the breaker's OpenTimeout)", cfg.MinDelay)
	case cfg.RetryDelay < 0:
		return nil, fmt.Errorf("queuegate: Config.RetryDelay is %v: must be ≥ 0 (0 means %v)", cfg.RetryDelay, DefaultRetryDelay)
	}
	g := &Gate{cfg: cfg, classify: cfg.Classify, logger: cfg.Logger, rand: cfg.Rand}
	if cfg.Registry != nil {
		b, err := cfg.Registry.Get(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("queuegate: Config.Key %q: %w", cfg.Key, err)
		}
		g.lastBreaker.Store(b)
	}
	if g.classify == nil {
		g.classify = DefaultClassifier
	}
	if g.logger == nil {
		g.logger = slog.Default()
	}
	if g.rand == nil {
		g.rand = rand.Float64
	}
	if cfg.RetryDelay == 0 {
		g.cfg.RetryDelay = DefaultRetryDelay
	}
	g.name = cfg.Name
	if g.name == "" {
		g.name = g.breaker().Name()
	}
	if g.name == "" {
		g.name = cfg.Key
	}
	g.mu.Lock()
	g.refresh(g.breaker())
	g.mu.Unlock()
	g.mode.Store(uint32(Flowing))
	return g, nil
}

// Name returns the gate's name.
func (g *Gate) Name() string { return g.name }

// Breaker returns the breaker the gate follows now.
func (g *Gate) Breaker() *breaker.Breaker { return g.breaker() }

func (g *Gate) breaker() *breaker.Breaker {
	if g.cfg.Breaker != nil {
		return g.cfg.Breaker
	}
	// Validated in New; a later failure can only come from a Configure
	// hook that changed its mind for a re-created key: keep following the
	// breaker the gate had, and say so.
	b, err := g.cfg.Registry.Get(g.cfg.Key)
	if err != nil {
		g.logger.Error("queuegate: registry refused the circuit's breaker; following the last one", "gate", g.name, "err", err)
		return g.lastBreaker.Load()
	}
	g.lastBreaker.Store(b)
	return b
}

// refresh caches the fields of b the gate needs. It requires g.mu.
func (g *Gate) refresh(b *breaker.Breaker) {
	if g.cur == b {
		return
	}
	c := b.Config()
	g.cur, g.slots, g.openTimeout, g.clock = b, c.HalfOpenProbes, c.OpenTimeout, c.Clock
}

// modeOf maps a breaker state to the gate's mode. A breaker in dry-run mode
// lets every call through, so the gate does too.
func modeOf(b *breaker.Breaker, s breaker.State) Mode {
	switch s {
	case breaker.Closed, breaker.Disabled:
		return Flowing
	}
	if b.DryRun() {
		return Flowing
	}
	if s == breaker.HalfOpen {
		return Probing
	}
	return Paused
}

// Mode returns the gate's mode now, from its breaker's state.
func (g *Gate) Mode() Mode {
	b := g.breaker()
	m := modeOf(b, b.State())
	g.observe(m)
	return m
}

// Changed returns a channel that is closed at the next transition of the
// gate's breaker, for adapters that must notice a change of mode while they
// consume (to pause, or to widen a prefetch). Ask again after each wake-up.
func (g *Gate) Changed() <-chan struct{} { return g.breaker().Changed() }

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

// Watch keeps the gate's mode, events and Stats in step with its breaker
// while the consumer is idle (between messages, or blocked in a long fetch):
// it wakes at each transition of the breaker and records it. It returns when
// ctx is done. The adapters run it for as long as they consume; a consumer
// that uses the gate directly runs it in a goroutine of its own.
func (g *Gate) Watch(ctx context.Context) {
	for {
		ch := g.Changed()
		g.Mode()
		var timeout chan struct{}
		stop := func() bool { return false }
		if g.cfg.Registry != nil {
			timeout = make(chan struct{})
			stop = g.clockNow().AfterFunc(recheck, func() { close(timeout) })
		}
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
			stop()
			return
		}
		stop()
	}
}
