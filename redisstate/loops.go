package redisstate

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/breaker"
)

// flushLoop sends queued outcomes in batches: whatever is queued when the
// previous batch returns goes in the next, one script call per breaker, all
// in one pipeline.
func (f *Fleet) flushLoop() {
	defer f.wg.Done()
	batch := make([]op, 0, 1024)
	for {
		select {
		case <-f.ctx.Done():
			return
		case o := <-f.queue:
			batch = append(batch[:0], o)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case o := <-f.queue:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		if f.degraded.Load() {
			f.stats.dropped.Add(uint64(len(batch)))
			f.unqueueManual(batch)
			continue
		}
		if hook := f.beforeFlush.Load(); hook != nil {
			(*hook)()
		}
		f.flush(batch)
	}
}

// call is one script call of a batch.
type call struct {
	op  op // the first op of the call
	cmd *redis.Cmd
}

func (f *Fleet) flush(batch []op) {
	ctx, cancel := context.WithTimeout(f.ctx, 10*f.opts.Timeout)
	defer cancel()
	pipe := f.client.Pipeline()
	calls := make([]call, 0, len(batch))
	events := make([]event, 0, len(batch))
	for i := 0; i < len(batch); {
		o := batch[i]
		if o.ev.kind == evNone {
			calls = append(calls, call{o, f.syncCall(ctx, pipe, o)})
			i++
			continue
		}
		// Consecutive outcomes of one breaker known under one epoch go in one call.
		c := o.m.cfg.Load()
		args := []any{f.opts.KeyTTL.Milliseconds(), f.channel, f.opts.Replica, o.known,
			c.FailureThreshold, c.OpenTimeout.Milliseconds(), c.HalfOpenSuccesses, f.opts.Quorum, o.m.heldAt(o.known)}
		j := i
		for events = events[:0]; j < len(batch) && batch[j].m == o.m && batch[j].ev.kind != evNone && batch[j].known == o.known; j++ {
			events = append(events, batch[j].ev)
		}
		calls = append(calls, call{o, reportScript.EvalSha(ctx, pipe, o.m.keys, appendEvents(args, events)...)})
		f.stats.batches.Add(1)
		i = j
	}
	_, err := pipe.Exec(ctx)
	if err != nil && isNoScript(err) {
		// Redis restarted and lost the scripts: load them and send again the
		// calls that failed for it, and only those (the others ran).
		if err = f.loadScripts(ctx); err == nil {
			pipe = f.client.Pipeline()
			for i, c := range calls {
				if isNoScript(c.cmd.Err()) {
					args := c.cmd.Args() // evalsha sha numkeys keys... argv...
					calls[i].cmd = pipe.EvalSha(ctx, args[1].(string), c.op.m.keys, args[3+len(c.op.m.keys):]...)
				}
			}
			_, err = pipe.Exec(ctx)
		}
	}
	if err != nil && !onlyScriptsFailed(calls) {
		f.unqueueManual(batch)
		f.fault(err)
		return
	}
	for _, c := range calls {
		src := fromReply
		if c.op.ev.kind == evNone {
			src = fromSync
		}
		f.settle(c, src)
	}
}

// syncCall queues the sync script for o on pipe.
func (f *Fleet) syncCall(ctx context.Context, pipe redis.Pipeliner, o op) *redis.Cmd {
	to := ""
	if o.mode != modeRead {
		to = o.state.String()
	}
	return syncScript.EvalSha(ctx, pipe, o.m.keys, f.opts.KeyTTL.Milliseconds(), f.channel, o.mode.String(), to, o.openMs, o.reason,
		o.known, o.m.heldAt(o.known), o.m.applied(), f.opts.Replica)
}

// settle applies the reply of one call. The reply to a manual action
// acknowledges it, unless a newer action replaced it meanwhile: that one is
// sent now, and this reply is old news.
func (f *Fleet) settle(c call, src source) {
	m := c.op.m
	var rep reply
	err := c.cmd.Err()
	if err != nil {
		f.malformed("script error", err) // a fault is handled for the whole batch
	} else if rep, err = decodeReply(c.cmd.Val()); err != nil {
		f.malformed("script reply", err)
	}
	if c.op.pending == nil {
		if err == nil {
			f.apply(m, rep, src, nil)
		}
		return
	}
	m.manualQueued.Store(false)
	if err != nil {
		return // not applied: sent again by the health loop or on rejoin
	}
	if !f.apply(m, rep, fromAck, c.op.pending) {
		f.sendManual(m)
	}
}

// unqueueManual marks the manual actions of a batch that did not reach
// Redis as pending again.
func (f *Fleet) unqueueManual(batch []op) {
	for _, o := range batch {
		if o.pending != nil {
			o.m.manualQueued.Store(false)
		}
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

func (f *Fleet) loadScripts(ctx context.Context) error {
	// One by one: go-redis does not send SCRIPT LOAD from a pipeline.
	for _, s := range allScripts {
		if err := s.Load(ctx, f.client).Err(); err != nil {
			return err
		}
	}
	return nil
}

// subscribeLoop applies the fleet's transitions as they are published. A
// (re)subscription means messages may have been missed: resynchronise. A
// subscription silent for a HealthInterval is pinged; one that does not
// answer the ping either is dead (a lost NAT entry, a failover behind a
// virtual IP) and is replaced.
func (f *Fleet) subscribeLoop() {
	defer f.wg.Done()
	ps := f.subscribe()
	backoff, pinged := f.opts.Timeout, false
	for {
		msg, err := ps.ReceiveTimeout(f.ctx, f.opts.HealthInterval)
		if f.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = ps.Ping(f.ctx) == nil
				if pinged {
					continue
				}
			}
			if pinged {
				err = errors.New("the pub/sub connection stopped answering")
			}
			f.fault(err)
			ps, pinged = f.subscribe(), false
			if !f.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, f.opts.MaxBackoff)
			continue
		}
		backoff, pinged = f.opts.Timeout, false
		switch msg := msg.(type) {
		case *redis.Subscription:
			if msg.Kind == "subscribe" && msg.Count == len(channels(f.channel)) {
				f.rejoin() // missed messages while unsubscribed; or the first join
			}
		case *redis.Message:
			name, rep, err := decodeMessage(f.opts.Prefix, msg.Payload)
			if err != nil {
				f.malformed("fleet message on "+msg.Channel, err)
				continue
			}
			if v, ok := f.members.Load(name); ok {
				f.apply(v.(*member), rep, fromMessage, nil)
			}
		}
	}
}

// subscribe replaces the fleet's subscription with a new one.
func (f *Fleet) subscribe() *redis.PubSub {
	f.psMu.Lock()
	defer f.psMu.Unlock()
	if f.pubsub != nil {
		f.pubsub.Close()
	}
	f.pubsub = f.client.Subscribe(f.ctx)
	if err := f.pubsub.Subscribe(f.ctx, channels(f.channel)...); err != nil {
		f.fault(err)
	}
	return f.pubsub
}

// healthLoop pings Redis: every HealthInterval while healthy, with backoff
// while degraded, rejoining the fleet when Redis answers again.
func (f *Fleet) healthLoop() {
	defer f.wg.Done()
	backoff := f.opts.Timeout
	for {
		wait := f.opts.HealthInterval
		if f.degraded.Load() {
			wait = backoff
			backoff = min(2*backoff, f.opts.MaxBackoff)
		} else {
			backoff = f.opts.Timeout
		}
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
			if !f.sleep(f.opts.Timeout) { // a fault just happened: give Redis a moment
				return
			}
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(f.ctx, 10*f.opts.Timeout)
		err := f.client.Ping(ctx).Err()
		cancel()
		switch {
		case err != nil:
			f.fault(err)
		case f.degraded.Load():
			f.rejoin()
		default:
			f.members.Range(func(_, v any) bool {
				m := v.(*member)
				f.sendManual(m)
				f.checkHeld(m)
				return true
			})
		}
		f.sweep()
	}
}

// checkHeld asks Redis, for a breaker that holds a state of the fleet other
// than CLOSED, whether Redis still has it, and restores it if not. Calls
// find a loss only in HALF_OPEN, when they ask for a probe lease: without
// this check, a fleet whose keys were evicted while forced open would stay
// split until an operator acts, and replicas that join while the fleet is
// OPEN would see a CLOSED circuit until its open timeout ends.
func (f *Fleet) checkHeld(m *member) {
	b := m.breaker()
	if b == nil || m.manual.Load() != nil {
		return
	}
	known, held := m.belief()
	st := b.State()
	if held == 0 || st == breaker.Closed {
		return
	}
	o := op{m: m, mode: modeRestore, state: st, known: known}
	if st == breaker.Open {
		o.openMs = max(b.Snapshot().RetryAfter.Milliseconds(), 1)
	}
	select {
	case f.queue <- o: // not an outcome: not counted in Stats.Reported
	default: // the queue is full: the next health check asks again
	}
}

// rejoin resynchronises every shared breaker with the fleet. An operator's
// action not yet acknowledged is applied. Otherwise the fleet's state wins if
// it has one; a state the replica holds without the fleet is published if
// the fleet has none: an OPEN it decided while alone (unless a quorum is
// required), or the fleet's own OPEN, FORCED_OPEN or DISABLED, which Redis
// lost in a restart or an eviction.
func (f *Fleet) rejoin() {
	ctx, cancel := context.WithTimeout(f.ctx, 10*f.opts.Timeout)
	defer cancel()
	if err := f.loadScripts(ctx); err != nil {
		f.fault(err)
		return
	}
	var calls []call
	pipe := f.client.Pipeline()
	f.members.Range(func(_, v any) bool {
		m := v.(*member)
		b := m.breaker()
		if b == nil {
			return true
		}
		o := op{m: m, mode: modeRead, known: m.applied()}
		snap := b.Snapshot()
		fromFleet := snap.LastTransition.Reason == breaker.ReasonFleet || m.heldAt(o.known) == 1
		switch p := m.manual.Load(); {
		case p != nil:
			o = *p
			m.manualQueued.Store(true)
		case snap.State == breaker.Open && (fromFleet || m.openedWhileDegraded.Load() && f.opts.Quorum <= 1):
			o.mode, o.state, o.reason, o.openMs = modeJoin, breaker.Open, "rejoin", max(snap.RetryAfter.Milliseconds(), 1)
		case (snap.State == breaker.ForcedOpen || snap.State == breaker.Disabled) && fromFleet:
			o.mode, o.state, o.reason = modeJoin, snap.State, "rejoin"
		}
		calls = append(calls, call{o, f.syncCall(ctx, pipe, o)})
		return true
	})
	if len(calls) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !onlyScriptsFailed(calls) {
			for _, c := range calls {
				if c.op.pending != nil {
					c.op.m.manualQueued.Store(false)
				}
			}
			f.fault(err)
			return
		}
	}
	for _, c := range calls {
		c.op.m.openedWhileDegraded.Store(false)
		f.settle(c, fromSync)
	}
	f.stats.resyncs.Add(1)
	if f.degraded.Swap(false) {
		since := time.Unix(0, f.degradedSince.Load())
		if f.stats.degradations.Load() > 0 {
			f.log.Info("fleet state REJOINED: Redis answers again", "degraded_for", time.Since(since).Round(time.Millisecond), "breakers", len(calls))
		}
	}
}

// sweep forgets breakers that were garbage collected (evicted from their
// registry).
func (f *Fleet) sweep() {
	f.members.Range(func(k, v any) bool {
		m := v.(*member)
		m.mu.Lock()
		if m.breaker() == nil {
			m.dead = true
			f.members.CompareAndDelete(k, m)
		}
		m.mu.Unlock()
		return true
	})
}

func (f *Fleet) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
