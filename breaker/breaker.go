package breaker

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Breaker is a circuit breaker. It is safe for concurrent use. Create one with
// New, or get one per key from a Registry.
type Breaker struct {
	// word is the only memory the closed, healthy path touches: one atomic
	// load before the call and one after. See word in state.go.
	word atomic.Uint64
	_    [56]byte // keep counters written by other paths off word's cache line

	totals  counters                  // successes only with CountSuccesses; rejections by OPEN or FORCED_OPEN
	openErr atomic.Pointer[OpenError] // shared by the rejections of one open episode

	// Immutable after New.
	cfg            Config
	name           string
	classify       Classifier
	clock          Clock
	logger         *slog.Logger
	onTransition   func(Transition)
	countSuccesses bool
	timed          bool      // slow-call detection: admission reads the clock
	origin         time.Time // the clock at New: instants count from here
	sysClock       bool      // Clock is SystemClock (see now)
	rules          rules
	fleet          fleet  // Config.Sync and its hooks; zero unless shared with a fleet
	probeMsg       string // logged per probe sent; built once, so that a probe allocates nothing

	_  [64]byte // keep the lock and what it guards off the lines read lock-free
	mu sync.Mutex
	// Guarded by mu.
	state            State
	gen              uint64
	dryRun           bool
	failures         int // consecutive failures in CLOSED
	probeSuccesses   int // consecutive successful probes in HALF_OPEN
	probes           []probe
	halfOpenErr      *OpenError // rejection while the slots are full; nil after they change
	nextProbe        uint64
	halfOpenRejected uint64
	staleOutcomes    uint64
	reopens          int
	openUntil        time.Time
	timer            deadlineTimer
	window           *window
	transitions      [numStates][numStates]uint64
	last             Transition
	pending          []Transition
	delivering       bool
	changed          chan struct{} // closed at the next transition; nil until asked for
	rng              *rand.Rand
	fleetStreak      bool // the fleet has a failure streak: report the next success
}

// probe is a HALF_OPEN slot lease.
type probe struct {
	id       uint64
	deadline instant
}

// New returns a CLOSED breaker, or an error naming the first invalid field
// of cfg.
func New(cfg Config) (*Breaker, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	b := &Breaker{
		cfg:            cfg,
		name:           cfg.Name,
		classify:       cfg.Classify,
		clock:          cfg.Clock,
		logger:         cfg.Logger,
		onTransition:   cfg.OnTransition,
		countSuccesses: cfg.CountSuccesses,
		dryRun:         cfg.DryRun,
		rules:          rules{failureThreshold: cfg.FailureThreshold, halfOpenSuccesses: cfg.HalfOpenSuccesses, rate: cfg.FailureRate != nil},
	}
	b.probeMsg = "Circuit breaker HALF_OPEN for " + b.name + ": letting a probe through"
	b.origin = b.clock.Now()
	_, b.sysClock = cfg.Clock.(SystemClock)
	if r := cfg.FailureRate; r != nil {
		b.window = newWindow(*r)
		b.timed = r.SlowCall > 0
	}
	b.storeWord()
	if cfg.Sync != nil {
		b.fleet = newFleet(b, cfg.Sync)
		cfg.Sync.Attach(b.fleet.link)
	}
	return b, nil
}

// instant is a time on the breaker's clock as the time since New: the
// breaker's own bookkeeping (probe leases, slow calls, the failure-rate
// window, its timer) adds and compares plain integers, where time.Time's Add
// was a tenth of a probe's cost. Events and errors carry time.Time.
type instant time.Duration

// now is the current instant. With the system clock it reads the monotonic
// clock alone (time.Since a reading with one), one clock read where
// time.Now makes two.
func (b *Breaker) now() instant {
	if b.sysClock {
		return instant(time.Since(b.origin))
	}
	return b.instant(b.clock.Now())
}

// instant converts a time of the breaker's clock.
func (b *Breaker) instant(t time.Time) instant { return instant(t.Sub(b.origin)) }

// time converts an instant back.
func (b *Breaker) time(i instant) time.Time { return b.origin.Add(time.Duration(i)) }

// after is i + d, saturating at the largest instant.
func (i instant) after(d time.Duration) instant {
	if j := i + instant(d); j >= i {
		return j
	}
	return math.MaxInt64
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.name }

// Config returns the breaker's configuration with defaults filled in.
func (b *Breaker) Config() Config { return b.cfg }

// State returns the current state.
func (b *Breaker) State() State { return word(b.word.Load()).state() }

// Do runs fn if the breaker allows it and records its outcome. A rejected
// call returns an error satisfying errors.Is(err, ErrOpen) and fn is not run.
// Otherwise Do returns fn's error unchanged. If fn panics, the panic counts as
// a failure and continues up the stack.
//
// In CLOSED, a successful call costs two atomic loads and writes nothing.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) (err error) {
	w := word(b.word.Load())
	if w&wordFast != 0 { // not CLOSED, or timed
		if s := w.state(); s.rejects() && !w.dryRun() {
			b.totals.add(countRejected)
			return b.openErr.Load() // set before the word said open
		}
		return b.doTicketed(ctx, w, fn)
	}
	panicked := true
	defer func() {
		if panicked {
			b.record(&Ticket{b: b, gen: w.gen()}, Failure)
		}
	}()
	err = fn(ctx)
	panicked = false
	if err == nil {
		// Nothing to write unless the word changed (another call failed, the
		// state moved on) or a success must end a failure streak.
		if word(b.word.Load()) == w && !w.slow() {
			if w&wordCounted != 0 {
				b.totals.add(countSuccess)
			}
			return nil
		}
		b.record(&Ticket{b: b, gen: w.gen()}, Success)
		return nil
	}
	b.record(&Ticket{b: b, gen: w.gen()}, b.classify(err))
	return err
}

// doTicketed is Do for a call that needs a Ticket: a probe, a timed call, a
// call let through by dry run. The Ticket stays in this frame and is
// recorded directly, not through Done: nothing else can report it twice.
func (b *Breaker) doTicketed(ctx context.Context, w word, fn func(context.Context) error) (err error) {
	var t Ticket
	if w.state() == HalfOpen { // Do's load said so: straight to the probe slots
		err = b.allowProbe(ctx, &t)
	} else {
		t, err = b.AllowContext(ctx)
	}
	if err != nil {
		return err
	}
	panicked := true
	defer func() {
		if panicked {
			b.record(&t, Failure)
		}
	}()
	err = fn(ctx)
	panicked = false
	o := Success
	if err != nil {
		o = b.classify(err)
	}
	b.record(&t, o)
	return err
}

// Call is Do for a function that returns a value.
func Call[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := b.Do(ctx, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

// Ticket is the permission to make one call, returned by Allow. Report the
// call's outcome with Done or Report: the first report counts, later ones on
// the same Ticket do nothing (a Ticket is a value: a copy made before the
// first report is a second permission, so report through one variable). A
// probe ticket that is never reported holds its HALF_OPEN slot until
// ProbeTimeout, then counts as a failed probe.
type Ticket struct {
	b       *Breaker
	gen     uint64
	probe   uint64  // probe slot id, 0 if not a probe
	start   instant // admission, for slow-call detection
	clocked bool    // start is set
	stale   bool    // let through by dry run: the outcome counts in totals only
}

// Allow asks for permission to make one call. On success the caller makes
// the call and reports its outcome on the returned Ticket. On rejection the
// error satisfies errors.Is(err, ErrOpen). Use Allow where a closure does not
// fit (HTTP middleware, queue consumers); prefer Do otherwise. Allow is
// AllowContext with context.Background(): a breaker shared with a fleet
// may wait for a probe's lease; pass the call's context with AllowContext.
func (b *Breaker) Allow() (Ticket, error) { return b.AllowContext(context.Background()) }

// AllowContext is Allow for a call made under ctx. The only wait is a
// HALF_OPEN probe's lease from a fleet (Config.Sync); if ctx ends before the
// fleet grants it, AllowContext returns ctx's error: the call is not
// admitted, and neither counted as a rejection nor as an outcome. Without a
// fleet, or in any other state, ctx is not read.
func (b *Breaker) AllowContext(ctx context.Context) (Ticket, error) {
	w := word(b.word.Load())
	switch w.state() {
	case Closed, Disabled:
		t := Ticket{b: b, gen: w.gen()}
		if b.timed {
			t.start, t.clocked = b.now(), true
		}
		return t, nil
	case Open, ForcedOpen:
		if w.dryRun() {
			b.totals.add(countDryRunRejected)
			return Ticket{b: b, stale: true}, nil
		}
		b.totals.add(countRejected)
		return Ticket{}, b.openErr.Load()
	}
	var t Ticket
	err := b.allowProbe(ctx, &t)
	return t, err
}

// allowProbe admits a call, probably a probe, into t: a Ticket filled in
// place, not returned, is copied once instead of at every call on the way.
func (b *Breaker) allowProbe(ctx context.Context, t *Ticket) error {
	b.mu.Lock()
	err := b.takeProbe(t)
	b.mu.Unlock()
	if err != nil || t.probe == 0 {
		return err
	}
	if b.fleet.probes == nil {
		b.logProbe(t.probe)
		return nil
	}
	// The slot is ours locally; the fleet may still hold its slots
	// elsewhere. Asked outside the lock: it may wait on the network.
	ok, retry, err := false, time.Duration(0), ctx.Err()
	if err == nil {
		ok, retry = b.fleet.probes.AcquireProbe(ctx, b.fleet.link, t.probe)
		err = ctx.Err()
	}
	if ok {
		b.logProbe(t.probe)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.releaseProbe(t.probe)
	*t = Ticket{}
	if err != nil { // the caller gave up waiting: no call, no rejection
		return err
	}
	b.halfOpenRejected++
	return &OpenError{Name: b.name, State: HalfOpen, until: b.clock.Now().Add(retry), clock: b.clock}
}

// takeProbe admits a call in a state that is not CLOSED at the last load,
// into t (the zero Ticket when it returns an error). It requires b.mu.
func (b *Breaker) takeProbe(t *Ticket) error {
	switch {
	case b.state == Closed || b.state == Disabled: // moved on since the load
		*t = Ticket{b: b, gen: b.gen}
		if b.timed {
			t.start, t.clocked = b.now(), true
		}
		return nil
	case b.state != HalfOpen || len(b.probes) >= b.cfg.HalfOpenProbes:
		if b.dryRun {
			b.totals.add(countDryRunRejected)
			*t = Ticket{b: b, stale: true}
			return nil
		}
		if b.state == HalfOpen {
			b.halfOpenRejected++
			return b.halfOpenError()
		}
		b.totals.add(countRejected)
		return b.openErr.Load()
	}
	b.nextProbe++
	id, gen, now := b.nextProbe, b.gen, b.now()
	deadline := now.after(b.cfg.ProbeTimeout)
	b.probes = append(b.probes, probe{id: id, deadline: deadline})
	b.wake(now, deadline)
	b.halfOpenErr = nil
	*t = Ticket{b: b, gen: gen, probe: id}
	if b.timed {
		t.start, t.clocked = now, true
	}
	return nil
}

// halfOpenError is the rejection while every probe slot is taken: retry when
// the oldest lease runs out at the latest. It requires b.mu.
func (b *Breaker) halfOpenError() *OpenError {
	if b.halfOpenErr == nil {
		first, _ := b.firstProbe() // every slot is taken: there is one
		b.halfOpenErr = &OpenError{Name: b.name, State: HalfOpen, until: b.time(first.deadline), clock: b.clock}
	}
	return b.halfOpenErr
}

// Done reports the call's outcome by classifying its error: nil is a
// success, anything else goes through the breaker's Classifier. Done on the
// zero Ticket (returned with a rejection) or on a Ticket already reported
// does nothing.
func (t *Ticket) Done(err error) {
	b := t.b
	if b == nil {
		return
	}
	t.b = nil // report once: a second Done or Report finds no breaker
	if err == nil {
		b.record(t, Success)
		return
	}
	b.record(t, b.classify(err))
}

// Report reports the call's outcome directly. Report on the zero Ticket or
// on a Ticket already reported does nothing.
func (t *Ticket) Report(o Outcome) {
	b := t.b
	if b == nil {
		return
	}
	t.b = nil
	b.record(t, o)
}

// record applies an outcome and counts it in the totals.
// t is a pointer only to spare copies: record keeps nothing of it.
func (b *Breaker) record(t *Ticket, o Outcome) {
	if t.probe == 0 {
		if o == Success {
			if w := word(b.word.Load()); !t.stale && !b.timed && w.gen() == t.gen && !w.slow() {
				b.count(Success) // CLOSED or DISABLED with no failure streak: nothing to change
				return
			}
		}
		b.count(o)
		if o == Ignored {
			return // changes nothing
		}
	}
	// A slow success fails for the state machine (the totals keep it a
	// success): in CLOSED toward the rate, in HALF_OPEN as a failed probe.
	reported := o
	if b.timed && o == Success && t.clocked && time.Duration(b.now()-t.start) > b.cfg.FailureRate.SlowCall {
		o = Failure
	}

	b.mu.Lock()
	if !b.current(t, reported) {
		b.mu.Unlock()
		return
	}
	tripped := false
	if b.window != nil && b.state == Closed && o != Ignored {
		tripped = b.window.add(b.now(), o == Failure)
	}
	b.apply(next(b.machine(), o, b.rules, tripped), o, t.probe)
	b.unlockAndDeliver()
}

// current reports whether t's outcome is one the state machine counts, and
// counts a probe's in the totals (those of other calls are counted before
// the lock). An outcome is not counted when its probe's lease expired (that
// counted as a failed probe then) or the call was admitted under an earlier
// state: it tells nothing about this one. It requires b.mu.
func (b *Breaker) current(t *Ticket, o Outcome) bool {
	if t.probe != 0 {
		if !b.releaseProbe(t.probe) {
			b.staleOutcomes++
			return false
		}
		b.count(o)
	}
	if t.stale || t.gen != b.gen {
		b.staleOutcomes++
		return false
	}
	return true
}

// machine returns the counts the state machine reads. It requires b.mu.
func (b *Breaker) machine() machine {
	return machine{state: b.state, failures: b.failures, successes: b.probeSuccesses, fleetStreak: b.fleetStreak}
}

// apply makes a verdict of next take effect: the one place an outcome
// changes the breaker. o is the outcome as the state machine counted it (a
// slow success is a Failure: the fleet hears that too), probe the slot id of
// a probe (0 otherwise). It requires b.mu.
func (b *Breaker) apply(v verdict, o Outcome, probe uint64) {
	b.failures, b.probeSuccesses, b.fleetStreak = v.m.failures, v.m.successes, v.m.fleetStreak
	switch {
	case v.reason != 0 && b.fleetDecides(v.reason):
		// The fleet's transition comes through FleetLink.Apply; the counts
		// stay. The word is published as for a streak's first failure (a
		// threshold of 1 skips it). Decided here, not by changing v: the
		// verdict stays in registers on the paths without a transition.
		b.storeWord()
	case v.reason != 0:
		b.setState(v.m.state, v.reason) // reads the counts into the event, then resets them
	case v.publish:
		b.storeWord()
	}
	if v.report {
		b.report(o, probe)
	}
}

// fleetDecides asks the fleet (DecideSync), if any, whether it makes the
// transition the breaker's own counts reached for reason. It requires b.mu.
func (b *Breaker) fleetDecides(reason Reason) bool {
	return b.fleet.decides != nil && (reason == ReasonFailureThreshold || reason == ReasonProbesSucceeded) &&
		b.fleet.decides.FleetDecides(b.fleet.link, reason)
}

// report tells the fleet, if any, an outcome it needs. It requires b.mu.
func (b *Breaker) report(o Outcome, probe uint64) {
	if b.fleet.outcomes == nil {
		return
	}
	r := Report{Outcome: o, Probe: probe}
	if b.state == Open {
		r.OpenFor = b.openUntil.Sub(b.clock.Now())
	}
	b.fleet.outcomes.Report(b.fleet.link, r)
}

// count adds an outcome to the totals.
func (b *Breaker) count(o Outcome) {
	switch o {
	case Success:
		if b.countSuccesses {
			b.totals.add(countSuccess)
		}
	case Failure:
		b.totals.add(countFailure)
	case Ignored:
		b.totals.add(countIgnored)
	}
}

// releaseProbe frees the slot of probe id and reports whether it was still
// held. It requires b.mu.
func (b *Breaker) releaseProbe(id uint64) bool {
	for i, p := range b.probes {
		if p.id == id {
			last := len(b.probes) - 1
			b.probes[i] = b.probes[last] // order does not matter: firstProbe scans them all
			b.probes = b.probes[:last]
			b.halfOpenErr = nil
			return true
		}
	}
	return false
}

// releaseProbes frees every slot. It requires b.mu.
func (b *Breaker) releaseProbes() {
	b.probes = b.probes[:0]
	b.halfOpenErr = nil
}

func (b *Breaker) rand() float64 {
	if b.rng == nil {
		b.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return b.rng.Float64()
}

// ForceOpen rejects every call until Reset or ForceClosed. Nothing moves the
// breaker out of FORCED_OPEN by itself.
func (b *Breaker) ForceOpen() { b.manual(ForcedOpen, ReasonForcedOpen) }

// ForceClosed disables the breaker: every call passes, outcomes are still
// counted, nothing trips, until Reset or ForceOpen.
func (b *Breaker) ForceClosed() { b.manual(Disabled, ReasonForcedClosed) }

// Reset returns the breaker to CLOSED with its failure streak, window and
// backoff cleared. Totals (Snapshot counters) are kept: they only grow.
func (b *Breaker) Reset() {
	b.mu.Lock()
	if b.state != Closed {
		b.setState(Closed, ReasonReset)
		b.unlockAndDeliver()
		return
	}
	b.failures = 0
	b.fleetStreak = false
	if b.window != nil {
		b.window.reset(b.now())
	}
	b.reopens = 0
	b.storeWord()
	t := Transition{Name: b.name, From: Closed, To: Closed, Reason: ReasonReset, At: b.clock.Now(), Generation: b.gen}
	b.mu.Unlock()
	if b.fleet.transition != nil {
		b.fleet.transition.Transition(b.fleet.link, t) // the fleet's streak is reset too
	}
}

func (b *Breaker) manual(to State, reason Reason) {
	b.mu.Lock()
	if b.state != to {
		b.setState(to, reason)
	}
	b.unlockAndDeliver()
}

// Changed returns a channel that is closed at the breaker's next transition,
// for code that waits for a state change instead of polling (a queue
// consumer paused while the circuit is open). Ask again after each wake-up.
func (b *Breaker) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.changed
}

// SetDryRun turns dry-run mode on or off (see Config.DryRun).
func (b *Breaker) SetDryRun(on bool) {
	b.mu.Lock()
	b.dryRun = on
	b.storeWord()
	b.mu.Unlock()
}
