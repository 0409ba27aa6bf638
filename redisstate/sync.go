package redisstate

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"weak"

	"github.com/breakerbox/breakerbox/breaker"
)

// The hooks of breaker.Sync the fleet implements.
var _ interface {
	breaker.Sync
	breaker.OutcomeSync
	breaker.ProbeSync
	breaker.TransitionSync
	breaker.DecideSync
} = (*Fleet)(nil)

// Attach implements breaker.Sync: the breaker joins the fleet under its
// name, and learns the fleet's state for it in the background.
func (f *Fleet) Attach(l *breaker.FleetLink) {
	b := l.Breaker()
	name := b.Name()
	key := f.opts.Prefix + "{" + name + "}"
	wp := weak.Make(l) // the breaker holds its link: both live as long
	for {
		v, _ := f.members.LoadOrStore(name, &member{name: name, keys: []string{key, key + ":r", key + ":l", key + ":e"}})
		m := v.(*member)
		m.mu.Lock()
		if m.dead { // swept meanwhile: make a new one
			m.mu.Unlock()
			f.members.CompareAndDelete(name, m)
			continue
		}
		// A breaker re-created under the same name (a reload, an eviction)
		// starts over: the fleet's current state applies to it.
		m.linked.Store(&wp)
		cfg := b.Config()
		m.cfg.Store(&cfg)
		m.epoch.Store(0)
		m.sq, m.held = 0, false
		m.holds.Store(false)
		m.manualGen.Store(0)
		m.knownEpoch.Store(-1)
		m.denyUntil.Store(0)
		m.mu.Unlock()
		if !f.degraded.Load() {
			f.enqueue(op{m: m, mode: modeRead})
		}
		return
	}
}

func (f *Fleet) member(l *breaker.FleetLink) *member {
	if v, ok := f.members.Load(l.Breaker().Name()); ok {
		return v.(*member)
	}
	return nil
}

// link returns the breaker's link, nil once the breaker was collected.
func (m *member) link() *breaker.FleetLink {
	if p := m.linked.Load(); p != nil {
		return p.Value()
	}
	return nil
}

func (m *member) breaker() *breaker.Breaker {
	if l := m.link(); l != nil {
		return l.Breaker()
	}
	return nil
}

// Report implements breaker.OutcomeSync. It never blocks: the outcome goes
// to a bounded queue, or is dropped and counted.
func (f *Fleet) Report(l *breaker.FleetLink, r breaker.Report) {
	m := f.member(l)
	if m == nil || f.degraded.Load() {
		f.stats.dropped.Add(1)
		return
	}
	var ev event
	switch {
	case r.Probe != 0:
		ev = event{kind: evProbe, outcome: r.Outcome, probe: r.Probe, openFor: r.OpenFor}
		if r.Outcome == breaker.Failure {
			ev.detail = f.describe(m.name)
		}
	case r.Outcome == breaker.Failure:
		ev = event{kind: evFailure, detail: f.describe(m.name)}
	case r.Outcome == breaker.Success:
		ev = event{kind: evSuccess}
	default:
		return
	}
	f.enqueue(op{m: m, ev: ev, known: m.knownEpoch.Load()})
}

// describe is Options.Describe's description of a failure of breaker name,
// made safe for the scripts' arguments and the evidence list: printable,
// one line, at most maxDetail bytes.
func (f *Fleet) describe(name string) string {
	if f.opts.Describe == nil {
		return ""
	}
	d := f.opts.Describe(name)
	if len(d) > maxDetail {
		d = d[:maxDetail]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, d)
}

func (f *Fleet) enqueue(o op) bool {
	select {
	case f.queue <- o:
		f.stats.reported.Add(1)
		return true
	default:
		f.stats.dropped.Add(1)
		return false
	}
}

// AcquireProbe implements breaker.ProbeSync: a HALF_OPEN probe needs a
// lease from the fleet, so the recovering service sees at most
// HalfOpenProbes probes from all replicas together. If Redis cannot answer
// within Options.Timeout, the local decision stands.
//
// If ctx ends first, the probe is refused at once (the breaker returns
// ctx's error): the caller gave up, which is no fault of Redis. go-redis
// does not interrupt a read when a ctx is cancelled, only at a deadline, so
// a cancellable caller waits for the lease in another goroutine, bounded by
// Options.Timeout; a lease granted after its caller left is given back as
// an ignored probe, so it neither holds the fleet's slot until ProbeTimeout
// nor counts as a failed probe.
func (f *Fleet) AcquireProbe(ctx context.Context, l *breaker.FleetLink, probe uint64) (bool, time.Duration) {
	m := f.member(l)
	if m == nil || f.degraded.Load() {
		return true, 0
	}
	if until := m.denyUntil.Load(); until > 0 {
		if d := time.Until(time.Unix(0, until)); d > 0 {
			return false, d
		}
	}
	if ctx.Done() == nil { // cannot be cancelled: wait here
		r := f.acquire(m, probe)
		return r.ok, r.retry
	}
	w := &leaseWait{res: make(chan lease, 1)}
	go func() {
		r := f.acquire(m, probe)
		w.res <- r
		if !w.state.CompareAndSwap(waiting, delivered) && r.ok {
			f.Report(l, breaker.Report{Outcome: breaker.Ignored, Probe: probe})
		}
	}()
	select {
	case r := <-w.res:
		return r.ok, r.retry
	case <-ctx.Done():
		if w.state.CompareAndSwap(waiting, abandoned) {
			return false, 0
		}
		r := <-w.res // delivered meanwhile: the lease is the caller's
		return r.ok, r.retry
	}
}

// lease is the fleet's answer to AcquireProbe.
type lease struct {
	ok    bool
	retry time.Duration
}

// leaseWait hands a lease from the goroutine asking Redis to a caller that
// may have left: state says which of the two came first.
type leaseWait struct {
	res   chan lease
	state atomic.Int32 // waiting, then delivered or abandoned
}

const (
	waiting int32 = iota
	delivered
	abandoned
)

// acquire asks Redis for a probe's lease, within Options.Timeout.
func (f *Fleet) acquire(m *member, probe uint64) lease {
	c := m.cfg.Load()
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.Timeout)
	defer cancel()
	known, held := m.belief()
	res, err := acquireScript.Run(ctx, f.client, m.keys, f.opts.KeyTTL.Milliseconds(), f.channel,
		f.opts.Replica, strconv.FormatUint(probe, 10), c.HalfOpenProbes, c.ProbeTimeout.Milliseconds(), known, held).Result()
	if err != nil {
		f.scriptError(err)
		return lease{ok: true} // a Redis fault is never a call failure
	}
	rep, err := decodeReply(res)
	if err != nil {
		f.malformed("script reply", err)
		return lease{ok: true}
	}
	f.apply(m, rep, fromReply, nil)
	if rep.granted {
		m.denyUntil.Store(0)
		return lease{ok: true}
	}
	// Ask again no sooner than the lease could free up, and no later than
	// 100 ms from now: a probe that reports early frees its slot early.
	wait := min(rep.retry, 100*time.Millisecond)
	m.denyUntil.Store(time.Now().Add(wait).UnixNano())
	return lease{retry: max(rep.retry, time.Millisecond)}
}

// FleetDecides implements breaker.DecideSync: while Redis answers, the
// scripts make the transitions that fleet-wide counts decide, from the
// outcomes every replica reports, and this replica's breaker waits for them
// instead of moving on its own counts, whose last outcome may still be
// queued:
//   - HALF_OPEN to CLOSED, while the fleet leases the probes (its state is
//     not CLOSED): a replica that closed on its own count before its last
//     success reached Redis let ordinary calls through while the fleet still
//     probed, one more "probe" than HalfOpenSuccesses;
//   - CLOSED to OPEN, with a quorum of 1: the fleet's streak is the one that
//     counts, and the replica whose report reaches the threshold is the one
//     that decided (Transition.DecidedBy). With a larger quorum a replica
//     still opens its own circuit on its own counts (see Options.Quorum).
//
// A degraded replica decides alone, as it does everything else.
func (f *Fleet) FleetDecides(l *breaker.FleetLink, r breaker.Reason) bool {
	m := f.member(l)
	if m == nil || f.degraded.Load() {
		return false
	}
	switch r {
	case breaker.ReasonProbesSucceeded:
		return m.holds.Load()
	case breaker.ReasonFailureThreshold:
		return f.opts.Quorum <= 1 && !m.holds.Load()
	}
	return false
}

// Transition implements breaker.TransitionSync: an operator's action on one replica
// applies to the fleet; so does an OPEN decided by a failure-rate window,
// which only the replica sees. Trips by consecutive failures are the
// fleet's to decide, from the reported outcomes.
func (f *Fleet) Transition(l *breaker.FleetLink, t breaker.Transition) {
	m := f.member(l)
	if m == nil {
		return
	}
	switch t.Reason {
	case breaker.ReasonForcedOpen, breaker.ReasonForcedClosed, breaker.ReasonReset:
		// Outcomes queued after this action count under the epoch it makes.
		m.knownEpoch.Store(-1)
		// Sent at once, the action is the operator's intent now: it applies
		// (known -1). Kept for later because Redis is unreachable, it carries
		// the epoch the operator saw: a fleet that moved on since then wins.
		known := int64(-1)
		if f.degraded.Load() {
			known = m.applied()
		}
		p := &op{m: m, mode: modeForce, state: t.To, reason: t.Reason.String(), known: known}
		p.pending = p
		m.manual.Store(p)
		m.manualGen.Store(t.Generation) // after m.manual: apply always sees one of the two
		if f.degraded.Load() {
			f.log.Warn("manual action applied on this replica only until Redis answers again", "breaker", t.Name, "to", t.To.String())
			return
		}
		f.sendManual(m)
		return
	}
	if f.degraded.Load() {
		switch t.To {
		case breaker.Open:
			m.openedWhileDegraded.Store(true)
		case breaker.Closed:
			m.openedWhileDegraded.Store(false)
		}
		return
	}
	if t.Reason == breaker.ReasonFailureRate {
		f.enqueue(op{m: m, mode: modeJoin, state: breaker.Open, reason: t.Reason.String(), openMs: t.OpenFor.Milliseconds(), known: m.applied()})
	}
}

// sendManual queues the member's pending manual action, unless it is queued.
func (f *Fleet) sendManual(m *member) {
	if o := m.manual.Load(); o != nil && !m.manualQueued.Swap(true) {
		if !f.enqueue(*o) {
			m.manualQueued.Store(false) // the health loop tries again
		}
	}
}

func isManual(r breaker.Reason) bool {
	return r == breaker.ReasonForcedOpen || r == breaker.ReasonForcedClosed || r == breaker.ReasonReset
}

// applied returns the highest epoch applied.
func (m *member) applied() int64 { return m.epoch.Load() }

// belief is what the scripts need to tell a lost state (see scripts.go): the
// highest epoch applied, and 1 if the fleet was not CLOSED in it.
func (m *member) belief() (epoch int64, held int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held {
		return m.epoch.Load(), 1
	}
	return m.epoch.Load(), 0
}

// heldAt is belief's held for outcomes known under epoch known: 0 if the
// replica has applied a newer epoch since.
func (m *member) heldAt(known int64) int {
	if ep, held := m.belief(); ep == known {
		return held
	}
	return 0
}

// reply is a script's answer.
type reply struct {
	granted bool
	retry   time.Duration
	state   breaker.State
	epoch   int64
	openFor time.Duration
	streak  bool
	sq      int64
	reason  breaker.Reason // why the fleet made its last transition, if known
	// restored says this call found the fleet's state lost and restored it
	// (see scripts.go).
	restored bool
	by       string     // the replica whose call made the last transition, if known
	evidence []Evidence // with a transition to OPEN: what led to it, newest first
	// junk says what was wrong with the optional parts that were ignored
	// (counted in Stats.Malformed); the rest applies.
	junk []string
}

// source says where a fleet state comes from.
type source uint8

const (
	fromMessage source = iota // published on the channel
	fromReply                 // the reply to a report or a lease
	fromSync                  // the reply to this replica's own read or join
	fromAck                   // the reply acknowledging this replica's manual action
)

// apply brings the local breaker to the fleet's state if the state is newer
// than what the replica applied last (a higher epoch). Within an epoch, or
// from a fleet that lost its keys (epoch 0), only news of the fleet's failure
// streak applies, newest first: a local OPEN decided by this replica's own
// counts is not undone by a fleet that has not opened. While an operator's
// action is on its way to Redis, the breaker shows it and only the reply
// acknowledging it (ack, the action's op) applies; apply reports false if a
// newer action replaced ack meanwhile: that reply is old news.
//
// The decision is taken under m.mu; the breaker is moved outside it, by one
// goroutine at a time, always to the newest decision: FleetLink.Apply delivers
// listeners, which may call the breaker and, through it, the fleet.
func (f *Fleet) apply(m *member, r reply, src source, ack *op) bool {
	if r.junk != nil {
		f.malformed("parts of a fleet state", errors.New(strings.Join(r.junk, "; ")))
	}
	if r.restored {
		f.stats.losses.Add(1)
		f.log.Warn("fleet state LOST in Redis (keys evicted or deleted, or Redis restarted empty): restored from this replica's state",
			"breaker", m.name, "state", r.state.String(), "open_for", r.openFor, "epoch", r.epoch)
	}
	m.mu.Lock()
	// The acknowledgement is taken under m.mu, with the epoch it brings: a
	// message of an older epoch cannot slip in between and move the breaker.
	if ack != nil && !m.manual.CompareAndSwap(ack, nil) {
		m.mu.Unlock()
		return false
	}
	b := m.breaker()
	if b == nil || m.dead || ack == nil && m.manual.Load() != nil {
		m.mu.Unlock()
		return true
	}
	// An operator's action the breaker made but has not yet handed to
	// Transition is newer than anything Redis said before it: fleet news
	// waits for its acknowledgement, and an older action's acknowledgement
	// does not move the breaker back.
	last := b.Snapshot().LastTransition
	unseen := isManual(last.Reason) && last.Generation > m.manualGen.Load()
	if unseen && ack == nil {
		m.mu.Unlock()
		return true
	}
	next, ok := pendingApply{}, false
	switch {
	case r.epoch > m.epoch.Load():
		m.epoch.Store(r.epoch)
		m.held = r.state != breaker.Closed
		m.holds.Store(m.held)
		m.sq = r.sq // a new epoch orders its streaks afresh: a lagging clock may number them lower
		m.knownEpoch.Store(r.epoch)
		m.denyUntil.Store(0)
		f.stats.applied.Add(1)
		if unseen {
			m.hasPending = false // older than the unseen action, too
			break
		}
		next, ok = pendingApply{fs: breaker.FleetState{State: r.state, OpenFor: r.openFor, Streak: r.streak, Reason: r.reason, DecidedBy: r.by},
			state: true, opening: Opening{Epoch: r.epoch, State: r.state, Reason: r.reason, DecidedBy: r.by, Evidence: r.evidence}}, true
	case (r.epoch == m.epoch.Load() || r.epoch == 0) && r.sq > m.sq:
		m.sq = r.sq
		if r.state == breaker.Closed {
			next, ok = pendingApply{fs: breaker.FleetState{State: breaker.Closed, Streak: r.streak}}, true
		}
	case src == fromMessage && r.state != breaker.Closed && r.epoch < m.epoch.Load():
		// A transition numbered below what this replica applied: old news, or
		// Redis failed over to a primary whose clock is behind. A read lets
		// the script renumber the fleet's state above this epoch (catchUp in
		// scripts.go), and publish it for every replica that ignored it.
		select {
		case f.queue <- op{m: m, mode: modeRead, known: m.epoch.Load()}: // not an outcome: not counted
		default: // the queue is full: this replica's next call catches up
		}
	}
	if src == fromSync || src == fromAck {
		m.knownEpoch.Store(m.epoch.Load()) // outcomes from now on count under the fleet's current epoch
	}
	if !ok {
		m.mu.Unlock()
		return true
	}
	if m.hasPending && m.pending.state && !next.state {
		m.pending.fs.Streak = next.fs.Streak // keep the state change not yet applied
	} else {
		m.pending = next
	}
	m.hasPending = true
	if m.applying {
		m.mu.Unlock() // the goroutine applying will apply this too
		return true
	}
	m.applying = true
	defer func() {
		m.applying = false
		m.mu.Unlock()
	}()
	for m.hasPending {
		p := m.pending
		m.hasPending = false
		// A decision taken while this goroutine applied the previous one may
		// be for a breaker re-created since (Attach): move the current one.
		l := m.link()
		if l == nil {
			break
		}
		m.mu.Unlock()
		func() {
			defer m.mu.Lock() // also if a listener panics
			if p.state {
				// Before Apply, which delivers the transition: a listener
				// asks Opening for this one.
				m.opening.Store(&p.opening)
				if _, err := l.Apply(p.fs); err != nil {
					f.log.Warn("ignoring fleet state", "breaker", m.name, "err", err)
				}
			} else {
				l.SetStreak(p.fs.Streak)
			}
		}()
	}
	return true
}

// pendingApply is a decision of apply waiting to be applied to the breaker.
type pendingApply struct {
	fs      breaker.FleetState
	state   bool    // a new state; otherwise only the streak flag
	opening Opening // with a new state: for Fleet.Opening
}

// Opening is the fleet's last transition of a breaker as this replica
// applied it: who made it and, for a transition to OPEN by failures, the
// evidence (see Fleet.Opening).
type Opening struct {
	Epoch     int64
	State     breaker.State
	Reason    breaker.Reason // why the fleet moved, if known
	DecidedBy string         // the replica whose call made it, "" if not known (a replica of the previous version)
	// Evidence is, for a transition to OPEN on a failure streak or a failed
	// probe, the failures that led to it, newest first, each saying which
	// replica reported it (the last 10); empty otherwise.
	Evidence []Evidence
}

// Opening returns the fleet's last transition of the breaker name that this
// replica applied, and whether there was one. A listener of the breaker's
// transitions (Config.OnTransition) that sees a transition with
// ReasonFleet finds it here, as long as no newer one was applied meanwhile
// (its DecidedBy and State match the transition's).
func (f *Fleet) Opening(name string) (Opening, bool) {
	v, ok := f.members.Load(name)
	if !ok {
		return Opening{}, false
	}
	if o := v.(*member).opening.Load(); o != nil {
		return *o, true
	}
	return Opening{}, false
}
