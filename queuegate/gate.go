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
