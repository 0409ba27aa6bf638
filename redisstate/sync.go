package redisstate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"weak"

	"github.com/breakerbox/breakerbox/breaker"
)

// Attach implements breaker.Sync: the breaker joins the fleet under its
// name, and learns the fleet's state for it in the background.
func (f *Fleet) Attach(b *breaker.Breaker) {
	name := b.Name()
	key := f.opts.Prefix + "{" + name + "}"
	wp := weak.Make(b)
	for {
		v, _ := f.members.LoadOrStore(name, &member{name: name, keys: []string{key, key + ":r", key + ":l"}})
		m := v.(*member)
		m.mu.Lock()
		if m.dead { // swept meanwhile: make a new one
			m.mu.Unlock()
			f.members.CompareAndDelete(name, m)
			continue
		}
		// A breaker re-created under the same name (a reload, an eviction)
		// starts over: the fleet's current state applies to it.
		m.b.Store(&wp)
		m.epoch, m.sq = 0, 0
		m.knownEpoch.Store(-1)
		m.denyUntil.Store(0)
		m.mu.Unlock()
		if !f.degraded.Load() {
			f.enqueue(op{m: m, mode: "read"})
		}
		return
	}
}

func (f *Fleet) member(b *breaker.Breaker) *member {
	if v, ok := f.members.Load(b.Name()); ok {
		return v.(*member)
	}
	return nil
}

func (m *member) breaker() *breaker.Breaker {
	if p := m.b.Load(); p != nil {
		return p.Value()
	}
	return nil
}

// Report implements breaker.Sync. It never blocks: the outcome goes to a
// bounded queue, or is dropped and counted.
func (f *Fleet) Report(b *breaker.Breaker, r breaker.Report) {
	m := f.member(b)
	if m == nil || f.degraded.Load() {
		f.stats.dropped.Add(1)
		return
	}
	var ev string
	switch {
	case r.Probe != 0:
		o := "i"
		switch r.Outcome {
		case breaker.Success:
			o = "s"
		case breaker.Failure:
			o = "f"
		}
		ev = "p" + o + strconv.FormatUint(r.Probe, 10) + ":" + strconv.FormatInt(r.OpenFor.Milliseconds(), 10)
	case r.Outcome == breaker.Failure:
		ev = "f"
	case r.Outcome == breaker.Success:
		ev = "s"
	default:
		return
	}
	c := b.Config()
	f.enqueue(op{m: m, event: ev, known: m.knownEpoch.Load(),
		threshold: c.FailureThreshold, needed: c.HalfOpenSuccesses, openTimeout: c.OpenTimeout.Milliseconds()})
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

// AcquireProbe implements breaker.Sync: a HALF_OPEN probe needs a lease
// from the fleet, so the recovering service sees at most HalfOpenProbes
// probes from all replicas together. If Redis cannot answer within
// Options.Timeout, the local decision stands.
func (f *Fleet) AcquireProbe(b *breaker.Breaker, probe uint64) (bool, time.Duration) {
	m := f.member(b)
	if m == nil || f.degraded.Load() {
		return true, 0
	}
	if until := m.denyUntil.Load(); until > 0 {
		if d := time.Until(time.Unix(0, until)); d > 0 {
			return false, d
		}
	}
	c := b.Config()
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.Timeout)
	defer cancel()
	res, err := f.run(ctx, f.client, acquireScript, m.keys,
		f.opts.Replica, strconv.FormatUint(probe, 10), c.HalfOpenProbes, c.ProbeTimeout.Milliseconds())
	if err != nil {
		f.fault(err)
		return true, 0 // a Redis fault is never a call failure
	}
	rep, err := parseReply(res)
	if err != nil {
		f.fault(err)
		return true, 0
	}
	f.apply(m, rep, false, false)
	if rep.granted {
		m.denyUntil.Store(0)
		return true, 0
	}
	// Ask again no sooner than the lease could free up, and no later than
	// 100 ms from now: a probe that reports early frees its slot early.
	wait := min(rep.retry, 100*time.Millisecond)
	m.denyUntil.Store(time.Now().Add(wait).UnixNano())
	return false, max(rep.retry, time.Millisecond)
}

// Transition implements breaker.Sync: an operator's action on one replica
// applies to the fleet; so does an OPEN decided by a failure-rate window,
// which only the replica sees. Trips by consecutive failures are the
// fleet's to decide, from the reported outcomes.
func (f *Fleet) Transition(b *breaker.Breaker, t breaker.Transition) {
	m := f.member(b)
	if m == nil {
		return
	}
	switch t.Reason {
	case breaker.ReasonForcedOpen, breaker.ReasonForcedClosed, breaker.ReasonReset:
		// Outcomes queued after this action count under the epoch it makes.
		m.knownEpoch.Store(-1)
		p := &op{m: m, mode: "force", state: t.To.String(), reason: t.Reason.String(), manual: true}
		p.pending = p
		m.manual.Store(p)
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
		f.enqueue(op{m: m, mode: "join", state: "open", reason: t.Reason.String(), openMs: t.OpenFor.Milliseconds(), known: m.applied()})
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

// applied returns the highest epoch applied.
func (m *member) applied() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.epoch
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
}

func parseReply(v any) (reply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 7 {
		return reply{}, fmt.Errorf("redisstate: unexpected script reply %v", v)
	}
	var r reply
	g, _ := a[0].(int64)
	retry, _ := a[1].(int64)
	st, _ := a[2].(string)
	ep, _ := a[3].(string)
	rem, _ := a[4].(int64)
	streak, _ := a[5].(int64)
	sq, _ := a[6].(string)
	var err error
	if r.state, err = breaker.ParseState(st); err != nil {
		return reply{}, err
	}
	if r.epoch, err = strconv.ParseInt(ep, 10, 64); err != nil {
		return reply{}, fmt.Errorf("redisstate: bad epoch %q in reply", ep)
	}
	if r.sq, err = strconv.ParseInt(sq, 10, 64); err != nil {
		return reply{}, fmt.Errorf("redisstate: bad streak sequence %q in reply", sq)
	}
	r.granted, r.retry, r.openFor, r.streak = g == 1, time.Duration(retry)*time.Millisecond, time.Duration(rem)*time.Millisecond, streak == 1
	return r, nil
}

// parseMessage decodes a published transition.
func (f *Fleet) parseMessage(payload string) (name string, r reply, err error) {
	p := strings.SplitN(payload, " ", 7)
	if len(p) != 7 {
		return "", r, fmt.Errorf("redisstate: malformed message %q", payload)
	}
	if r.epoch, err = strconv.ParseInt(p[0], 10, 64); err != nil {
		return "", r, fmt.Errorf("redisstate: malformed epoch in %q", payload)
	}
	if r.state, err = breaker.ParseState(p[1]); err != nil {
		return "", r, err
	}
	ms, err := strconv.ParseInt(p[2], 10, 64)
	if err != nil {
		return "", r, fmt.Errorf("redisstate: malformed remaining time in %q", payload)
	}
	r.openFor, r.streak = time.Duration(ms)*time.Millisecond, p[3] == "1"
	if r.sq, err = strconv.ParseInt(p[4], 10, 64); err != nil {
		return "", r, fmt.Errorf("redisstate: malformed streak sequence in %q", payload)
	}
	key := p[6]
	pre := f.opts.Prefix + "{"
	if !strings.HasPrefix(key, pre) || !strings.HasSuffix(key, "}") {
		return "", r, fmt.Errorf("redisstate: message for foreign key %q", key)
	}
	return key[len(pre) : len(key)-1], r, nil
}

// apply brings the local breaker to the fleet's state if the state is newer
// than what the replica applied last (a higher epoch). Within an epoch, or
// from a fleet that lost its keys (epoch 0), only news of the fleet's failure
// streak applies, newest first: a local OPEN decided by this replica's own
// counts is not undone by a fleet that has not opened. An authoritative
// reply (to this replica's own sync) also tells the epoch to report under.
// wait false skips the apply if another is in progress (see member.mu).
func (f *Fleet) apply(m *member, r reply, authoritative, wait bool) {
	if wait {
		m.mu.Lock()
	} else if !m.mu.TryLock() {
		return
	}
	defer m.mu.Unlock()
	b := m.breaker()
	if b == nil || m.dead {
		return
	}
	if authoritative {
		defer func() { m.knownEpoch.Store(m.epoch) }()
	}
	if r.epoch > m.epoch {
		m.epoch, m.sq = r.epoch, max(m.sq, r.sq)
		m.knownEpoch.Store(r.epoch)
		m.denyUntil.Store(0)
		f.stats.applied.Add(1)
		b.ApplyFleet(breaker.FleetState{State: r.state, OpenFor: r.openFor, Streak: r.streak})
		return
	}
	if (r.epoch == m.epoch || r.epoch == 0) && r.sq > m.sq {
		m.sq = r.sq
		if r.state == breaker.Closed {
			b.SetFleetStreak(r.streak)
		}
	}
}
