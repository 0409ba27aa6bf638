package breaker_test

// Model-based randomized test.
//
// refModel is a plain reference model of a breaker, written from DESIGN.md's
// state-machine table and the doc comments of package breaker, not from the
// implementation: one mutex, a handful of fields, and each rule spelled out
// where it applies. modelRun feeds the same sequence of operations to the
// model and to a real *breaker.Breaker on a manual clock and, after every
// step, checks that they agree on every admission (admitted or rejected,
// probe or not, the rejecting state and RetryAfter), on State(), on the
// events emitted, and on the Snapshot (a probe shows as ProbesInFlight).
//
// Operations: Allow (the two-step form; admitted tickets stay outstanding),
// Report or Done on a random outstanding ticket (stale ones from earlier
// generations included; the oldest is dropped unreported beyond 24), clock
// advances (small, landing on/just before/just after the next open or probe
// deadline or window bucket boundary, and long), Do and Call with a function
// that returns nil, an error, context.Canceled or DeadlineExceeded, or
// panics, and that may advance the clock or make another operation while it
// runs, ForceOpen, ForceClosed, Reset and SetDryRun.
//
// Step counts (TestModelRandomized): len(modelConfigs) = 8 configs ×
// modelSeedsPerConfig = 8 seeds × modelStepsPerRun steps:
//   - normal run:  8 × 8 × 16 000 = 1 024 000 steps (≥ 10^6), ~1.5 s of CPU;
//   - with -race:  the same 1 024 000 steps (modelRaceDivisor = 1 in
//     model_race_test.go), ~10 s of CPU, ~6 s wall on 2 cores;
//   - with -short: 8 × 2 ×  2 000 =    32 000 steps.
//
// FuzzModel (fuzz_test.go) drives the same check from fuzz bytes.
// Seeds are fixed (so a failure reproduces); set BREAKER_MODEL_SEED to run
// other seeds.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// ---------------------------------------------------------------------------
// The reference model.

// modelParams is a Config with the documented defaults filled in.
type modelParams struct {
	threshold     int           // consecutive failures that open (default 5)
	openTimeout   time.Duration // default 60s
	halfOpenSucc  int           // consecutive successful probes that close (default 2)
	halfOpenProbe int           // probes in flight at once (default 1)
	probeTimeout  time.Duration // default: the open timeout

	rate          bool
	rateThreshold *big.Rat      // the shortest decimal that reads as Threshold
	minCalls      int           // default 20
	window        time.Duration // default 60s
	bucket        time.Duration // default window/10
	slowCall      time.Duration // 0: off

	backoff    bool
	multiplier float64       // default 2
	backoffMax time.Duration // default 10 × open timeout
}

func modelParamsOf(c breaker.Config) modelParams {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	ord := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	p := modelParams{
		threshold:     or(c.FailureThreshold, 5),
		openTimeout:   ord(c.OpenTimeout, 60*time.Second),
		halfOpenSucc:  or(c.HalfOpenSuccesses, 2),
		halfOpenProbe: or(c.HalfOpenProbes, 1),
	}
	p.probeTimeout = ord(c.ProbeTimeout, p.openTimeout)
	if r := c.FailureRate; r != nil {
		p.rate = true
		p.rateThreshold, _ = new(big.Rat).SetString(strconv.FormatFloat(r.Threshold, 'f', -1, 64))
		p.minCalls = or(r.MinCalls, 20)
		p.window = ord(r.Window, 60*time.Second)
		p.bucket = ord(r.Bucket, p.window/10)
		p.slowCall = r.SlowCall
	}
	if bo := c.OpenBackoff; bo != nil {
		p.backoff = true
		p.multiplier = bo.Multiplier
		if p.multiplier == 0 {
			p.multiplier = 2
		}
		p.backoffMax = ord(bo.Max, 10*p.openTimeout)
	}
	return p
}

// mTicket is the model's view of an admitted call.
type mTicket struct {
	gen   uint64    // generation at admission
	probe int       // probe slot id, 0 if not a probe
	start time.Time // admission time (for slow calls)
	dry   bool      // let through by dry-run mode instead of rejected
}

type mProbe struct {
	id       int
	deadline time.Time
}

type mCall struct {
	bucket int64
	failed bool
}

// refModel is the reference breaker.
type refModel struct {
	mu sync.Mutex

	p      modelParams
	name   string
	now    time.Time
	origin time.Time // buckets of the failure-rate window count from here

	state     breaker.State
	gen       uint64 // +1 per transition
	failures  int    // consecutive counted failures in CLOSED
	successes int    // consecutive successful probes in this HALF_OPEN episode
	probes    []mProbe
	lastProbe int
	reopens   int // reopens from HALF_OPEN since the last close
	openUntil time.Time
	calls     []mCall // failure-rate policy: calls counted in CLOSED since it was entered

	// Totals.
	dryRun bool // Config.DryRun / SetDryRun

	failuresTotal, ignoredTotal      uint64
	dryRunRejected                   uint64
	rejected, rejectedHalfOpen       uint64
	staleSure, staleMaybe            uint64 // StaleOutcomes must lie in [staleSure, staleSure+staleMaybe]
	transitions                      [5][5]uint64
	last                             breaker.Transition
	events                           []breaker.Transition // expected, not yet compared
	stepOpens, stepCloses, stepHalfs int                  // coverage counters
}

func newRefModel(cfg breaker.Config, now time.Time) *refModel {
	return &refModel{p: modelParamsOf(cfg), name: cfg.Name, now: now, origin: now, state: breaker.Closed}
}

// move is a transition: the state changes, the generation grows, and
// everything that belongs to one episode (streaks, probe slots) starts over.
func (m *refModel) move(to breaker.State, reason breaker.Reason) {
	from := m.state
	ev := breaker.Transition{Name: m.name, From: from, To: to, Reason: reason, At: m.now, Generation: m.gen + 1}
	switch reason {
	case breaker.ReasonFailureThreshold:
		ev.Failures = m.failures
	case breaker.ReasonFailureRate:
		ev.Calls, ev.Failures = m.windowCounts()
	case breaker.ReasonProbesSucceeded:
		ev.Successes = m.successes
	}
	m.gen++
	m.state = to
	m.failures, m.successes = 0, 0
	m.probes = nil
	m.openUntil = time.Time{}
	switch to {
	case breaker.Open:
		if from == breaker.HalfOpen {
			m.reopens++
		}
		d := m.openTimeout()
		ev.OpenFor = d
		m.openUntil = m.now.Add(d)
		m.stepOpens++
	case breaker.HalfOpen:
		m.stepHalfs++
	case breaker.Closed:
		m.reopens = 0
		m.calls = nil
		m.stepCloses++
	}
	m.transitions[from][to]++
	m.last = ev
	m.events = append(m.events, ev)
}

// openTimeout: OpenTimeout × Multiplier^reopens, capped at Max (no jitter in
// these tests).
func (m *refModel) openTimeout() time.Duration {
	d := m.p.openTimeout
	if !m.p.backoff {
		return d
	}
	f := float64(d)
	for range m.reopens {
		f *= m.p.multiplier
		if f >= float64(m.p.backoffMax) {
			return m.p.backoffMax
		}
	}
	return time.Duration(f)
}

func (m *refModel) bucketOf(t time.Time) int64 { return int64(t.Sub(m.origin) / m.p.bucket) }

// windowCounts counts the calls of the last Window, as of now.
func (m *refModel) windowCounts() (calls, failures int) {
	cur := m.bucketOf(m.now)
	n := int64(m.p.window / m.p.bucket)
	live := m.calls[:0]
	for _, c := range m.calls {
		if c.bucket > cur-n {
			live = append(live, c)
			calls++
			if c.failed {
				failures++
			}
		}
	}
	m.calls = live
	return calls, failures
}

// allow is the admission decision. It returns the ticket, or the state that
// rejected the call and the time until a probe is allowed.
func (m *refModel) allow() (t mTicket, ok bool, rejectedBy breaker.State, retry time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch m.state {
	case breaker.Closed, breaker.Disabled:
		return mTicket{gen: m.gen, start: m.now}, true, 0, 0
	case breaker.Open:
		if m.dryRun {
			m.dryRunRejected++
			return mTicket{dry: true}, true, 0, 0
		}
		m.rejected++
		return mTicket{}, false, breaker.Open, m.openUntil.Sub(m.now)
	case breaker.ForcedOpen:
		if m.dryRun {
			m.dryRunRejected++
			return mTicket{dry: true}, true, 0, 0
		}
		m.rejected++
		return mTicket{}, false, breaker.ForcedOpen, 0
	case breaker.HalfOpen:
		if len(m.probes) < m.p.halfOpenProbe {
			m.lastProbe++
			m.probes = append(m.probes, mProbe{id: m.lastProbe, deadline: m.now.Add(m.p.probeTimeout)})
			return mTicket{gen: m.gen, probe: m.lastProbe, start: m.now}, true, 0, 0
		}
		if m.dryRun {
			m.dryRunRejected++
			return mTicket{dry: true}, true, 0, 0
		}
		m.rejectedHalfOpen++
		first := m.probes[0].deadline
		for _, p := range m.probes {
			if p.deadline.Before(first) {
				first = p.deadline
			}
		}
		return mTicket{}, false, breaker.HalfOpen, first.Sub(m.now)
	}
	panic("unknown state")
}

// report applies the outcome of an admitted call.
func (m *refModel) report(t mTicket, o breaker.Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	countTotals := func() {
		switch o {
		case breaker.Failure:
			m.failuresTotal++
		case breaker.Ignored:
			m.ignoredTotal++
		}
	}
	if t.probe == 0 {
		countTotals()
	}
	if t.dry {
		// Would have been rejected: it counts in the totals only. Whether
		// it is tallied as a stale outcome is not pinned down by the docs.
		m.staleMaybe++
		return
	}
	if t.probe != 0 {
		held := false
		for i, p := range m.probes {
			if p.id == t.probe {
				m.probes = append(m.probes[:i:i], m.probes[i+1:]...)
				held = true
				break
			}
		}
		if !held || t.gen != m.gen {
			// The slot is gone: the probe's episode is over, and an expired
			// lease was already counted as a failure when it expired.
			m.staleSure++
			return
		}
		countTotals()
	} else if t.gen != m.gen {
		// Admitted under an earlier state: it says nothing about this one.
		// Whether an ignored stale outcome is tallied as stale is not
		// pinned down by the docs, so either is accepted.
		if o == breaker.Ignored {
			m.staleMaybe++
		} else {
			m.staleSure++
		}
		return
	}

	// A success that took longer than SlowCall counts as a failure for the
	// state machine (not in the totals), in CLOSED and HALF_OPEN alike.
	slow := m.p.rate && o == breaker.Success && m.p.slowCall > 0 && m.now.Sub(t.start) > m.p.slowCall
	switch m.state {
	case breaker.Closed:
		if o == breaker.Ignored {
			return // neither counts nor resets
		}
		if m.p.rate {
			m.windowCounts() // drop what slid out
			m.calls = append(m.calls, mCall{bucket: m.bucketOf(m.now), failed: o == breaker.Failure || slow})
			calls, failures := m.windowCounts()
			// The threshold as the decimal written, compared exactly.
			if calls >= m.p.minCalls && big.NewRat(int64(failures), int64(calls)).Cmp(m.p.rateThreshold) >= 0 {
				m.move(breaker.Open, breaker.ReasonFailureRate)
			}
			return
		}
		if o == breaker.Success {
			m.failures = 0
			return
		}
		m.failures++
		if m.failures >= m.p.threshold {
			m.move(breaker.Open, breaker.ReasonFailureThreshold)
		}
	case breaker.HalfOpen: // a current-generation ticket here is a probe
		if slow {
			o = breaker.Failure
		}
		switch o {
		case breaker.Success:
			m.successes++
			if m.successes >= m.p.halfOpenSucc {
				m.move(breaker.Closed, breaker.ReasonProbesSucceeded)
			}
		case breaker.Failure:
			m.move(breaker.Open, breaker.ReasonProbeFailed)
		}
		// Ignored: the slot is free again, nothing counted.
	case breaker.Disabled:
		// Counted in totals only; nothing trips.
	default:
		panic(fmt.Sprintf("model: current-generation ticket in state %v", m.state))
	}
}

// deadline is nextDeadline under the lock, with the model's clock.
func (m *refModel) deadline() (at, now time.Time, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok = m.nextDeadline()
	return at, m.now, ok
}

// bucketStart is the start of the window bucket k buckets after the current
// one, and the model's clock.
func (m *refModel) bucketStart(k int) (at, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.origin.Add(time.Duration(m.bucketOf(m.now)+int64(k)) * m.p.bucket), m.now
}

// nextDeadline is the next time at which the model changes by itself. It
// requires m.mu.
func (m *refModel) nextDeadline() (time.Time, bool) {
	switch m.state {
	case breaker.Open:
		return m.openUntil, true
	case breaker.HalfOpen:
		if len(m.probes) == 0 {
			return time.Time{}, false
		}
		first := m.probes[0].deadline
		for _, p := range m.probes {
			if p.deadline.Before(first) {
				first = p.deadline
			}
		}
		return first, true
	}
	return time.Time{}, false
}

// advance moves time forward; the open timeout and probe timeouts take effect
// at the instant they fall due.
func (m *refModel) advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	target := m.now.Add(d)
	for {
		at, ok := m.nextDeadline()
		if !ok || at.After(target) {
			break
		}
		m.now = at
		switch m.state {
		case breaker.Open:
			m.move(breaker.HalfOpen, breaker.ReasonOpenTimeout)
		case breaker.HalfOpen:
			// A probe held its slot for ProbeTimeout: a failed probe.
			m.failuresTotal++
			m.move(breaker.Open, breaker.ReasonProbeTimeout)
		}
	}
	m.now = target
}

func (m *refModel) forceOpen() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != breaker.ForcedOpen {
		m.move(breaker.ForcedOpen, breaker.ReasonForcedOpen)
	}
}

func (m *refModel) forceClosed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state != breaker.Disabled {
		m.move(breaker.Disabled, breaker.ReasonForcedClosed)
	}
}

func (m *refModel) setDryRun(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dryRun = on
}

func (m *refModel) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == breaker.Closed { // no transition: just clear the streaks
		m.failures = 0
		m.calls = nil
		m.reopens = 0
		return
	}
	m.move(breaker.Closed, breaker.ReasonReset)
}

func (m *refModel) takeEvents() []breaker.Transition {
	m.mu.Lock()
	defer m.mu.Unlock()
	ev := m.events
	m.events = nil
	return ev
}

func (m *refModel) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := fmt.Sprintf("model{state=%v gen=%d now=+%v failures=%d successes=%d probes=%v reopens=%d openUntil=+%v",
		m.state, m.gen, m.now.Sub(m.origin), m.failures, m.successes, m.probes, m.reopens, m.openUntil.Sub(m.origin))
	if m.p.rate {
		c, f := m.windowCounts()
		s += fmt.Sprintf(" window=%d/%d", f, c)
	}
	return s + "}"
}

// ---------------------------------------------------------------------------
// Operations.

type mOpKind uint8

const (
	mOpAllow mOpKind = iota
	mOpReport
	mOpDo
	mOpAdvance
	mOpForceOpen
	mOpForceClosed
	mOpReset
	mOpDryRun
)

// How a protected function in Do ends.
const (
	mEndNil = iota
	mEndBoom
	mEndDeadline
	mEndCanceled
	mEndPanic
)

type modelOp struct {
	kind    mOpKind
	ticket  int             // mOpReport: index into the outstanding tickets
	outcome breaker.Outcome // mOpReport
	viaDone bool            // mOpReport: Ticket.Done(err) instead of Report(o)
	d       time.Duration   // mOpAdvance; mOpDo: clock advance inside the function
	end     int             // mOpDo
	useCall bool            // mOpDo: breaker.Call instead of Do
	nested  *modelOp        // mOpDo: an operation made while the function runs
	on      bool            // mOpDryRun

	result string // filled in by exec, for the failure report
}

func (op modelOp) String() string {
	var s string
	switch op.kind {
	case mOpAllow:
		s = "Allow()"
	case mOpReport:
		how := "Report"
		if op.viaDone {
			how = "Done"
		}
		s = fmt.Sprintf("%s(%v) on outstanding ticket [%d]", how, op.outcome, op.ticket)
	case mOpDo:
		fn := "Do"
		if op.useCall {
			fn = "Call"
		}
		nested := ""
		if op.nested != nil {
			nested = fmt.Sprintf("[%v], ", op.nested)
		}
		s = fmt.Sprintf("%s(fn: %sadvance %v, end %s)", fn, nested, op.d, [...]string{"nil", "boom", "DeadlineExceeded", "Canceled", "panic"}[op.end])
	case mOpAdvance:
		s = fmt.Sprintf("Advance(%v)", op.d)
	case mOpForceOpen:
		s = "ForceOpen()"
	case mOpForceClosed:
		s = "ForceClosed()"
	case mOpReset:
		s = "Reset()"
	case mOpDryRun:
		s = fmt.Sprintf("SetDryRun(%v)", op.on)
	}
	if op.result != "" {
		s += " → " + op.result
	}
	return s
}

var (
	errModelBoom  = errors.New("model: boom")
	errModelPanic = errors.New("model: panic value")
)

func (op modelOp) err() error {
	switch op.end {
	case mEndBoom:
		return errModelBoom
	case mEndDeadline:
		return fmt.Errorf("upstream: %w", context.DeadlineExceeded)
	case mEndCanceled:
		return fmt.Errorf("caller gave up: %w", context.Canceled)
	}
	return nil
}

// outcomeOfEnd is the documented default classification.
func outcomeOfEnd(end int) breaker.Outcome {
	switch end {
	case mEndNil:
		return breaker.Success
	case mEndCanceled:
		return breaker.Ignored
	}
	return breaker.Failure // errors, DeadlineExceeded, panics
}

// opSource is where operations come from: a seeded PRNG or fuzz bytes.
type opSource interface {
	intn(n int) int
}

type randSource struct{ r *rand.Rand }

func (s randSource) intn(n int) int {
	if n <= 1 {
		return 0
	}
	return s.r.IntN(n)
}

// byteSource reads choices from fuzz input; past its end every choice is 0.
type byteSource struct {
	data []byte
	pos  int
}

func (s *byteSource) intn(n int) int {
	if n <= 1 {
		return 0
	}
	var v int
	for k := 0; k < 3 && 1<<(8*k) < n; k++ {
		if s.pos < len(s.data) {
			v = v<<8 | int(s.data[s.pos])
			s.pos++
		}
	}
	return v % n
}

func (s *byteSource) done() bool { return s.pos >= len(s.data) }

// ---------------------------------------------------------------------------
// The run: the model and a real breaker side by side.

type modelTicket struct {
	real breaker.Ticket
	m    mTicket
	seq  int // admission number, for reading failure reports
}

type modelRun struct {
	t    testing.TB
	name string
	seed string

	clk *breakertest.Clock
	b   *breaker.Breaker
	m   *refModel

	evMu   sync.Mutex
	events []breaker.Transition

	tickets  []modelTicket
	admitted int
	failPct  int // current failure share of outcomes, in percent
	step     int
	hist     [20]modelOp
	histN    int
}

const modelMaxTickets = 24

func newModelRun(t testing.TB, name, seed string, cfg breaker.Config) *modelRun {
	r := &modelRun{t: t, name: name, seed: seed, clk: breakertest.NewClock(), failPct: 30}
	cfg.Name = "model-" + name
	cfg.Clock = r.clk
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnTransition = func(tr breaker.Transition) {
		r.evMu.Lock()
		r.events = append(r.events, tr)
		r.evMu.Unlock()
	}
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatalf("%s: New: %v", name, err)
	}
	r.b = b
	r.m = newRefModel(cfg, r.clk.Now())
	return r
}

// fail reports a disagreement with the seed, the step and the last
// operations, and stops the test.
func (r *modelRun) fail(format string, args ...any) {
	r.t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "model disagreement: config %s, seed %s, step %d: %s\n", r.name, r.seed, r.step, fmt.Sprintf(format, args...))
	n := min(r.histN, len(r.hist))
	fmt.Fprintf(&sb, "last %d operations (oldest first):\n", n)
	for i := r.histN - n; i < r.histN; i++ {
		fmt.Fprintf(&sb, "  step %d: %v\n", i+1, r.hist[i%len(r.hist)])
	}
	fmt.Fprintf(&sb, "%v\nreal: %+v\n", r.m, r.b.Snapshot())
	r.t.Fatal(sb.String())
}

func (r *modelRun) pickOutcome(src opSource) breaker.Outcome {
	switch {
	case src.intn(100) < r.failPct:
		return breaker.Failure
	case src.intn(12) == 0:
		return breaker.Ignored
	}
	return breaker.Success
}

func (r *modelRun) pickEnd(src opSource) int {
	switch r.pickOutcome(src) {
	case breaker.Failure:
		if src.intn(40) == 0 {
			return mEndPanic
		}
		if src.intn(4) == 0 {
			return mEndDeadline
		}
		return mEndBoom
	case breaker.Ignored:
		return mEndCanceled
	}
	return mEndNil
}

// pickAdvance mixes small steps, steps landing just before, on or just after
// the model's next deadline (open timeout, probe timeout) or the next window
// bucket boundary, and long jumps.
func (r *modelRun) pickAdvance(src opSource) time.Duration {
	p := r.m.p
	small := []time.Duration{time.Nanosecond, time.Millisecond, 50 * time.Millisecond, 250 * time.Millisecond,
		time.Second, 2 * time.Second, 3 * time.Second}
	jitter := []time.Duration{-time.Nanosecond, 0, 0, time.Nanosecond, time.Millisecond}
	switch src.intn(10) {
	case 0, 1, 2, 3:
		return small[src.intn(len(small))]
	case 4, 5, 6:
		if at, now, ok := r.m.deadline(); ok {
			return max(at.Sub(now)+jitter[src.intn(len(jitter))], 0)
		}
		return small[src.intn(len(small))]
	case 7:
		if p.rate {
			next, now := r.m.bucketStart(1 + src.intn(3))
			return max(next.Sub(now)+jitter[src.intn(len(jitter))], 0)
		}
		return time.Duration(src.intn(1000)) * p.probeTimeout / 1000
	case 8:
		return time.Duration(src.intn(2000)) * p.openTimeout / 1000
	default:
		long := p.openTimeout * time.Duration(1+src.intn(4))
		if p.backoff && src.intn(2) == 0 {
			long = p.backoffMax + time.Duration(src.intn(3))*time.Second
		}
		return long
	}
}

// nextOp draws the next operation.
func (r *modelRun) nextOp(src opSource) modelOp {
	if src.intn(300) == 0 { // the health of the service changes
		r.failPct = []int{0, 10, 30, 60, 90, 100}[src.intn(6)]
	}
	switch k := src.intn(1000); {
	case k < 270:
		return modelOp{kind: mOpAllow}
	case k < 520:
		if len(r.tickets) == 0 {
			return modelOp{kind: mOpAllow}
		}
		return modelOp{kind: mOpReport, ticket: src.intn(len(r.tickets)), outcome: r.pickOutcome(src), viaDone: src.intn(3) == 0}
	case k < 680:
		op := modelOp{kind: mOpDo, end: r.pickEnd(src), useCall: src.intn(4) == 0}
		if src.intn(6) == 0 {
			op.d = r.pickAdvance(src)
		}
		if src.intn(8) == 0 {
			// Something else happens while the call runs, so that its
			// outcome may arrive in a later generation.
			var n modelOp
			for n = r.nextOp(src); n.kind == mOpDo; n = r.nextOp(src) {
			}
			op.nested = &n
		}
		return op
	case k < 966:
		return modelOp{kind: mOpAdvance, d: r.pickAdvance(src)}
	case k < 970:
		// Dry run is on for a while (about 1/4 of the time) now and then.
		return modelOp{kind: mOpDryRun, on: src.intn(4) == 0}
	case k < 982:
		return modelOp{kind: mOpReset}
	case k < 991:
		return modelOp{kind: mOpForceOpen}
	default:
		return modelOp{kind: mOpForceClosed}
	}
}

func (r *modelRun) addTicket(real breaker.Ticket, mt mTicket) {
	if len(r.tickets) == modelMaxTickets {
		// The oldest ticket is never reported (a leaked call): a probe's
		// slot is then reclaimed by the probe timeout.
		r.tickets = r.tickets[1:]
	}
	r.admitted++
	r.tickets = append(r.tickets, modelTicket{real: real, m: mt, seq: r.admitted})
}

// checkRejection compares a real rejection with the model's.
func (r *modelRun) checkRejection(err error, by breaker.State, retry time.Duration) {
	r.t.Helper()
	if !errors.Is(err, breaker.ErrOpen) {
		r.fail("rejection error %v does not satisfy errors.Is(err, ErrOpen)", err)
	}
	var oe *breaker.OpenError
	if !errors.As(err, &oe) {
		r.fail("rejection %T does not unwrap to *OpenError", err)
	}
	if oe.State != by {
		r.fail("rejected by %v, model says by %v", oe.State, by)
	}
	if oe.Name != r.b.Name() {
		r.fail("OpenError.Name = %q, want %q", oe.Name, r.b.Name())
	}
	got, ok := breaker.RetryAfter(err)
	if !ok || got != retry {
		r.fail("RetryAfter = %v (ok=%v), model says %v", got, ok, retry)
	}
}

// exec applies one operation to both and compares.
func (r *modelRun) exec(op modelOp) {
	r.t.Helper()
	r.step++
	slot := &r.hist[r.histN%len(r.hist)]
	r.histN++
	*slot = op
	r.apply(slot)
	r.check()
}

// apply applies one operation to the model and the real breaker, checking
// the admission decisions; it writes what happened into slot.result.
func (r *modelRun) apply(slot *modelOp) {
	r.t.Helper()
	op := *slot
	switch op.kind {
	case mOpAllow:
		mt, ok, by, retry := r.m.allow()
		t, err := r.b.Allow()
		switch {
		case ok && err != nil:
			slot.result = "real rejected: " + err.Error()
			r.fail("Allow rejected (%v), model admits (probe=%v)", err, mt.probe != 0)
		case !ok && err == nil:
			slot.result = "real admitted"
			r.fail("Allow admitted, model rejects by %v", by)
		case ok:
			r.addTicket(t, mt)
			slot.result = fmt.Sprintf("admitted #%d (gen %d, probe %d, dry-run %v)", r.admitted, mt.gen, mt.probe, mt.dry)
		default:
			slot.result = fmt.Sprintf("rejected by %v, retry %v", by, retry)
			r.checkRejection(err, by, retry)
			// The zero Ticket returned with a rejection ignores reports.
			switch r.admitted % 3 {
			case 0:
				t.Report(breaker.Failure)
			case 1:
				t.Done(errModelBoom)
			}
		}

	case mOpReport:
		tk := r.tickets[op.ticket]
		r.tickets = append(r.tickets[:op.ticket:op.ticket], r.tickets[op.ticket+1:]...)
		slot.result = fmt.Sprintf("ticket #%d (gen %d, probe %d, dry-run %v)", tk.seq, tk.m.gen, tk.m.probe, tk.m.dry)
		r.m.report(tk.m, op.outcome)
		if op.viaDone {
			end := map[breaker.Outcome]int{breaker.Success: mEndNil, breaker.Failure: mEndBoom, breaker.Ignored: mEndCanceled}[op.outcome]
			tk.real.Done(modelOp{end: end}.err())
		} else {
			tk.real.Report(op.outcome)
		}

	case mOpDo:
		// The model makes the call first, the real breaker second; a nested
		// operation and the clock advance happen during the call.
		mt, ok, by, retry := r.m.allow()
		if ok {
			slot.result = fmt.Sprintf("model runs it (gen %d, probe %d, dry-run %v)", mt.gen, mt.probe, mt.dry)
		} else {
			slot.result = fmt.Sprintf("model rejects by %v, retry %v", by, retry)
		}
		ran := 0
		fn := func(context.Context) error {
			ran++
			if !ok {
				return nil // the disagreement is reported below
			}
			if op.nested != nil {
				r.apply(op.nested)
			}
			if op.d > 0 {
				r.m.advance(op.d)
				r.clk.Advance(op.d)
			}
			if op.end == mEndPanic {
				panic(errModelPanic)
			}
			return op.err()
		}
		var err error
		var recovered any
		func() {
			defer func() { recovered = recover() }()
			if op.useCall {
				var v int
				v, err = breaker.Call(context.Background(), r.b, func(ctx context.Context) (int, error) {
					return 42, fn(ctx)
				})
				if ran == 1 && v != 42 {
					r.fail("Call returned %d, want the function's 42", v)
				}
			} else {
				err = r.b.Do(context.Background(), fn)
			}
		}()
		if ok {
			if ran == 0 && op.nested != nil {
				r.apply(op.nested) // keep the model in step before reporting
			}
			if ran == 0 && op.d > 0 {
				r.m.advance(op.d)
				r.clk.Advance(op.d)
			}
			r.m.report(mt, outcomeOfEnd(op.end))
		}
		switch {
		case ok && ran != 1:
			r.fail("function ran %d times, model admits the call once (Do returned %v)", ran, err)
		case !ok && ran != 0:
			r.fail("function ran %d times, model rejects the call by %v", ran, by)
		case ok && op.end == mEndPanic:
			if recovered != errModelPanic {
				r.fail("panic: recovered %v, want the function's panic re-raised", recovered)
			}
		case recovered != nil:
			r.fail("unexpected panic %v", recovered)
		case ok:
			if err != op.err() && !(op.err() != nil && err != nil && err.Error() == op.err().Error()) {
				r.fail("Do returned %v, want the function's error %v unchanged", err, op.err())
			}
		default:
			r.checkRejection(err, by, retry)
		}

	case mOpAdvance:
		r.m.advance(op.d)
		r.clk.Advance(op.d)

	case mOpForceOpen:
		r.m.forceOpen()
		r.b.ForceOpen()
	case mOpForceClosed:
		r.m.forceClosed()
		r.b.ForceClosed()
	case mOpReset:
		r.m.reset()
		r.b.Reset()
	case mOpDryRun:
		r.m.setDryRun(op.on)
		r.b.SetDryRun(op.on)
	}
}

// modelView is what check compares, copied out of the model under its lock.
type modelView struct {
	now                         time.Time
	state                       breaker.State
	gen                         uint64
	failures, successes, probes int
	rate, closed                bool
	windowCalls, windowFailures int
	failuresTotal, ignoredTotal uint64
	rejected, rejectedHalfOpen  uint64
	staleSure, staleMaybe       uint64
	transitions                 [5][5]uint64
	last                        breaker.Transition
	events                      []breaker.Transition
	openUntil                   time.Time
	retryAfter                  time.Duration
	dryRun                      bool
	dryRunRejected              uint64
}

func (m *refModel) view() modelView {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := modelView{now: m.now, state: m.state, gen: m.gen, failures: m.failures, successes: m.successes,
		probes: len(m.probes), rate: m.p.rate, closed: m.state == breaker.Closed,
		failuresTotal: m.failuresTotal, ignoredTotal: m.ignoredTotal, rejected: m.rejected,
		rejectedHalfOpen: m.rejectedHalfOpen, staleSure: m.staleSure, staleMaybe: m.staleMaybe,
		transitions: m.transitions, last: m.last, events: m.events, openUntil: m.openUntil,
		dryRun: m.dryRun, dryRunRejected: m.dryRunRejected}
	if m.p.rate {
		v.windowCalls, v.windowFailures = m.windowCounts()
	}
	// How long until a probe is allowed: the rest of the open timeout, or,
	// with every probe slot taken, until the earliest lease ends.
	if at, ok := m.nextDeadline(); ok && (m.state == breaker.Open || len(m.probes) >= m.p.halfOpenProbe) {
		v.retryAfter = at.Sub(m.now)
	}
	m.events = nil
	return v
}

// check compares everything observable after a step.
func (r *modelRun) check() {
	r.t.Helper()
	m := r.m.view()
	if got := r.clk.Now(); !got.Equal(m.now) {
		r.fail("clock at %v, model at %v (test bug)", got, m.now)
	}
	if got := r.b.State(); got != m.state {
		r.fail("State() = %v, model %v", got, m.state)
	}

	// Events of this step, in order.
	r.evMu.Lock()
	got := r.events
	r.events = nil
	r.evMu.Unlock()
	want := m.events
	if len(got) != len(want) {
		r.fail("events this step:\n  got  %v\n  want %v", fmtTransitions(got), fmtTransitions(want))
	}
	for i := range got {
		if d := diffTransition(got[i], want[i]); d != "" {
			r.fail("event %d this step: %s\n  got  %v\n  want %v", i, d, fmtTransitions(got), fmtTransitions(want))
		}
	}

	s := r.b.Snapshot()
	var diffs []string
	cmp := func(field string, got, want any) {
		if got != want {
			diffs = append(diffs, fmt.Sprintf("%s = %v, model %v", field, got, want))
		}
	}
	cmp("Snapshot.State", s.State, m.state)
	cmp("Generation", s.Generation, m.gen)
	cmp("ProbesInFlight", s.ProbesInFlight, m.probes)
	cmp("ConsecutiveSuccesses", s.ConsecutiveSuccesses, m.successes)
	if !m.rate {
		cmp("ConsecutiveFailures", s.ConsecutiveFailures, m.failures)
	} else if m.closed {
		cmp("WindowCalls", s.WindowCalls, m.windowCalls)
		cmp("WindowFailures", s.WindowFailures, m.windowFailures)
	}
	cmp("Failures", s.Failures, m.failuresTotal)
	cmp("Ignored", s.Ignored, m.ignoredTotal)
	cmp("Rejected", s.Rejected, m.rejected)
	cmp("RejectedHalfOpen", s.RejectedHalfOpen, m.rejectedHalfOpen)
	cmp("DryRun", s.DryRun, m.dryRun)
	cmp("DryRunRejected", s.DryRunRejected, m.dryRunRejected)
	if s.StaleOutcomes < m.staleSure || s.StaleOutcomes > m.staleSure+m.staleMaybe {
		diffs = append(diffs, fmt.Sprintf("StaleOutcomes = %d, model %d..%d", s.StaleOutcomes, m.staleSure, m.staleSure+m.staleMaybe))
	}
	for _, from := range breaker.States() {
		for _, to := range breaker.States() {
			cmp(fmt.Sprintf("TransitionCount(%v, %v)", from, to), s.TransitionCount(from, to), m.transitions[from][to])
		}
	}
	if m.gen > 0 {
		if d := diffTransition(s.LastTransition, m.last); d != "" {
			diffs = append(diffs, "LastTransition: "+d)
		}
	}
	if !s.OpenUntil.Equal(m.openUntil) { // zero unless OPEN
		diffs = append(diffs, fmt.Sprintf("OpenUntil = %v, model %v", s.OpenUntil, m.openUntil))
	}
	cmp("Snapshot.RetryAfter", s.RetryAfter, m.retryAfter)
	if len(diffs) > 0 {
		r.fail("snapshot disagrees:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// diffTransition compares the fields of an event that the docs pin down.
func diffTransition(got, want breaker.Transition) string {
	var d []string
	if got.Name != want.Name || got.From != want.From || got.To != want.To || got.Reason != want.Reason {
		d = append(d, fmt.Sprintf("%s %v→%v (%v), want %s %v→%v (%v)", got.Name, got.From, got.To, got.Reason, want.Name, want.From, want.To, want.Reason))
	}
	if got.Generation != want.Generation {
		d = append(d, fmt.Sprintf("Generation %d, want %d", got.Generation, want.Generation))
	}
	if !got.At.Equal(want.At) {
		d = append(d, fmt.Sprintf("At %v, want %v", got.At, want.At))
	}
	if want.To == breaker.Open && got.OpenFor != want.OpenFor {
		d = append(d, fmt.Sprintf("OpenFor %v, want %v", got.OpenFor, want.OpenFor))
	}
	switch want.Reason {
	case breaker.ReasonFailureThreshold:
		if got.Failures != want.Failures {
			d = append(d, fmt.Sprintf("Failures %d, want %d", got.Failures, want.Failures))
		}
	case breaker.ReasonFailureRate:
		if got.Failures != want.Failures || got.Calls != want.Calls {
			d = append(d, fmt.Sprintf("Failures/Calls %d/%d, want %d/%d", got.Failures, got.Calls, want.Failures, want.Calls))
		}
	case breaker.ReasonProbesSucceeded:
		if got.Successes != want.Successes {
			d = append(d, fmt.Sprintf("Successes %d, want %d", got.Successes, want.Successes))
		}
	}
	return strings.Join(d, "; ")
}

func fmtTransitions(ts []breaker.Transition) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("{%v→%v %v gen %d at %v}", t.From, t.To, t.Reason, t.Generation, t.At.Format("15:04:05.000000000"))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// ---------------------------------------------------------------------------
// Configurations and the test.

var modelConfigs = []struct {
	name string
	cfg  breaker.Config
}{
	{"default", breaker.Config{}},
	{"t10", breaker.Config{FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3, HalfOpenProbes: 1}},
	{"probes2", breaker.Config{FailureThreshold: 3, OpenTimeout: 10 * time.Second, HalfOpenSuccesses: 3, HalfOpenProbes: 2}},
	{"probes3-short-probe-timeout", breaker.Config{FailureThreshold: 4, OpenTimeout: 30 * time.Second,
		HalfOpenSuccesses: 2, HalfOpenProbes: 3, ProbeTimeout: 5 * time.Second}},
	{"backoff", breaker.Config{FailureThreshold: 3, OpenTimeout: 10 * time.Second, HalfOpenSuccesses: 2, HalfOpenProbes: 2,
		ProbeTimeout: 4 * time.Second, OpenBackoff: &breaker.Backoff{Multiplier: 2, Max: 80 * time.Second}}},
	{"backoff-defaults", breaker.Config{FailureThreshold: 2, OpenTimeout: 5 * time.Second, HalfOpenSuccesses: 1,
		OpenBackoff: &breaker.Backoff{}}},
	{"rate", breaker.Config{OpenTimeout: 20 * time.Second, HalfOpenProbes: 2,
		FailureRate: &breaker.FailureRate{Threshold: 0.5, MinCalls: 4, Window: 10 * time.Second, Bucket: time.Second}}},
	{"rate-slow-backoff", breaker.Config{OpenTimeout: 15 * time.Second, ProbeTimeout: 3 * time.Second, HalfOpenSuccesses: 3,
		HalfOpenProbes: 2, FailureRate: &breaker.FailureRate{Threshold: 0.6, MinCalls: 5, Window: 6 * time.Second,
			Bucket: 2 * time.Second, SlowCall: 1500 * time.Millisecond},
		OpenBackoff: &breaker.Backoff{Multiplier: 1.5, Max: 60 * time.Second}}},
}

const (
	modelSeedsPerConfig = 8
	modelStepsPerRun    = modelStepsNormal / modelRaceDivisor
	modelStepsNormal    = 16000
)

// runModelSeed runs one seeded sequence of steps and returns coverage
// counters (opens, half-opens, closes).
func runModelSeed(t testing.TB, name string, cfg breaker.Config, seed uint64, steps int) (opens, halfs, closes int) {
	r := newModelRun(t, name, strconv.FormatUint(seed, 10), cfg)
	src := randSource{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for range steps {
		r.exec(r.nextOp(src))
	}
	return r.m.stepOpens, r.m.stepHalfs, r.m.stepCloses
}

func TestModelRandomized(t *testing.T) {
	seeds, steps := modelSeedsPerConfig, modelStepsPerRun
	if testing.Short() {
		seeds, steps = 2, 2000
	}
	var fixed []uint64
	if s := os.Getenv("BREAKER_MODEL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BREAKER_MODEL_SEED: %v", err)
		}
		fixed = []uint64{v}
	}
	for ci, c := range modelConfigs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var opens, halfs, closes int
			list := fixed
			if list == nil {
				for i := range seeds {
					list = append(list, uint64(1000*ci+i+1))
				}
			}
			for _, seed := range list {
				o, h, c := runModelSeed(t, c.name, c.cfg, seed, steps)
				opens, halfs, closes = opens+o, halfs+h, closes+c
			}
			t.Logf("%d seeds × %d steps: %d opens, %d half-opens, %d closes", len(list), steps, opens, halfs, closes)
			// The sequences must actually exercise the state machine.
			if opens == 0 || halfs == 0 || closes == 0 {
				t.Errorf("poor coverage: %d opens, %d half-opens, %d closes", opens, halfs, closes)
			}
		})
	}
}
