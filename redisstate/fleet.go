package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/breaker"
)

// Options configure a Fleet. Zero values mean the defaults.
type Options struct {
	// URL is the Redis to share state on, e.g. redis://127.0.0.1:6379/0
	// (rediss:// for TLS, user:password@ for auth). Ignored if Client is set.
	URL string
	// Client, if set, is used instead of URL and not closed by Close. Give it
	// ContextTimeoutEnabled and MaxRetries 0 so a slow Redis fails fast.
	Client redis.UniversalClient
	// Prefix starts every key and the channel name. "" means "breakerbox:".
	// Replicas sharing breakers must use the same prefix.
	Prefix string
	// Replica names this process in the fleet. "" means hostname-pid-random.
	Replica string
	// Quorum is the number of distinct replicas whose failures must be in a
	// streak before the fleet opens, so one replica with a bad network path
	// cannot open the circuit for everyone (it still opens its own). 0 means 1.
	Quorum int
	// QueueSize bounds the outcomes waiting to be sent. When it is full,
	// outcomes are dropped and counted, never waited for. 0 means 4096.
	QueueSize int
	// Timeout bounds each Redis round trip a call may wait for: the lease of
	// a HALF_OPEN probe. 0 means 100 ms. Background work uses 10 × Timeout.
	Timeout time.Duration
	// HealthInterval is how often a healthy replica pings Redis. 0 means 1 s.
	HealthInterval time.Duration
	// MaxBackoff caps the wait between reconnection attempts. 0 means 2 s.
	MaxBackoff time.Duration
	// KeyTTL is how long a breaker's keys live after their last write.
	// 0 means 24 h.
	KeyTTL time.Duration
	// Logger receives the fleet's own records (degraded, rejoined). nil means
	// slog.Default().
	Logger *slog.Logger
}

// Fleet shares breakers across the replicas connected to one Redis. It is a
// breaker.Sync: set it as Config.Sync of the breakers to share (for a
// registry, in RegistryConfig.Default) and each breaker joins the fleet under
// its name. Close it when done.
type Fleet struct {
	opts    Options
	client  redis.UniversalClient
	owned   bool
	channel string
	log     *slog.Logger

	members sync.Map // breaker name → *member
	queue   chan op

	pubsub        *redis.PubSub
	degraded      atomic.Bool
	degradedSince atomic.Int64 // unix nanos
	wake          chan struct{}
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup

	lastFault atomic.Pointer[error]
	stats     struct {
		reported, dropped, batches, applied, resyncs, degradations, faults atomic.Uint64
	}
}

// member is one shared breaker.
type member struct {
	name                string
	keys                []string
	b                   atomic.Pointer[weak.Pointer[breaker.Breaker]]
	mu                  sync.Mutex // orders applies: epoch check and ApplyFleet
	epoch               int64      // highest epoch applied; guarded by mu
	knownEpoch          atomic.Int64
	denyUntil           atomic.Int64 // unix nanos: the fleet's slots are taken until then
	openedWhileDegraded atomic.Bool
}

// op is one queued outcome or state change.
type op struct {
	m     *member
	event string // report event; "" for a sync
	known int64  // epoch the replica knew when the outcome happened
	// sync
	mode, state, reason string
	openMs              int64
	// report parameters
	threshold, needed int
	openTimeout       int64
}

// New connects a Fleet. A malformed URL or invalid option is an error.
// An unreachable Redis is not: the fleet starts degraded (every breaker
// decides locally) and joins when Redis answers; use Ping to require it.
func New(opts Options) (*Fleet, error) {
	if err := opts.resolve(); err != nil {
		return nil, err
	}
	f := &Fleet{opts: opts, client: opts.Client, channel: opts.Prefix + "events",
		log:   opts.Logger.With("component", "redisstate", "replica", opts.Replica),
		queue: make(chan op, opts.QueueSize), wake: make(chan struct{}, 1)}
	if f.client == nil {
		ro, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("redisstate: URL %q: %v (want redis://[user:password@]host:port[/db], or rediss:// for TLS)", opts.URL, err)
		}
		ro.ContextTimeoutEnabled = true
		ro.MaxRetries = -1 // a failed command is a fault to handle, not to repeat
		ro.DialTimeout = 2 * opts.Timeout
		ro.ReadTimeout = 10 * opts.Timeout
		ro.WriteTimeout = 10 * opts.Timeout
		ro.PoolTimeout = opts.Timeout
		f.client, f.owned = redis.NewClient(ro), true
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// Until the first subscription confirms the link, decide locally.
	f.degraded.Store(true)
	f.degradedSince.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(f.ctx, 10*opts.Timeout)
	if err := f.Ping(ctx); err != nil {
		f.stats.degradations.Add(1)
		f.log.Error("fleet state DEGRADED at start: breakers decide locally until Redis answers", "err", err)
	}
	cancel()
	f.pubsub = f.client.Subscribe(f.ctx) // subscribeLoop subscribes
	f.wg.Add(3)
	go f.flushLoop()
	go f.subscribeLoop()
	go f.healthLoop()
	return f, nil
}

func (o *Options) resolve() error {
	switch {
	case o.Client == nil && o.URL == "":
		return errors.New("redisstate: Options.URL is empty: set it to redis://host:port/db, or set Options.Client")
	case o.Quorum < 0:
		return fmt.Errorf("redisstate: Options.Quorum = %d: must be ≥ 0 (0 means 1)", o.Quorum)
	case o.QueueSize < 0:
		return fmt.Errorf("redisstate: Options.QueueSize = %d: must be ≥ 0 (0 means 4096)", o.QueueSize)
	case o.Timeout < 0 || o.HealthInterval < 0 || o.MaxBackoff < 0 || o.KeyTTL < 0:
		return errors.New("redisstate: Options.Timeout, HealthInterval, MaxBackoff and KeyTTL must be ≥ 0 (0 means the default)")
	case strings.ContainsAny(o.Replica, " \n"):
		return fmt.Errorf("redisstate: Options.Replica = %q: must not contain spaces", o.Replica)
	}
	if o.Prefix == "" {
		o.Prefix = "breakerbox:"
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		var r [3]byte
		rand.Read(r[:])
		o.Replica = strings.ReplaceAll(fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:])), " ", "_")
	}
	if o.Quorum == 0 {
		o.Quorum = 1
	}
	if o.QueueSize == 0 {
		o.QueueSize = 4096
	}
	if o.Timeout == 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.KeyTTL == 0 {
		o.KeyTTL = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Ping checks that Redis answers. check-config uses it to make an
// unreachable Redis an error.
func (f *Fleet) Ping(ctx context.Context) error {
	if err := f.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstate: Redis does not answer: %w", err)
	}
	return nil
}

// Replica returns this process's name in the fleet.
func (f *Fleet) Replica() string { return f.opts.Replica }

// Close stops the fleet's goroutines and, if the fleet made its client,
// closes it. Breakers keep working locally.
func (f *Fleet) Close() error {
	f.cancel()
	f.pubsub.Close() // unblocks Receive
	f.wg.Wait()
	if f.owned {
		return f.client.Close()
	}
	return nil
}

// Stats are the fleet's counters, for metrics.
type Stats struct {
	Replica  string
	Degraded bool
	// DegradedFor is how long the replica has been deciding alone.
	DegradedFor time.Duration
	Members     int
	Queued      int    // outcomes waiting to be sent
	Reported    uint64 // outcomes queued for Redis
	Dropped     uint64 // outcomes dropped: queue full, or Redis unreachable
	Batches     uint64 // script round trips that carried outcomes
	Applied     uint64 // fleet states applied to local breakers
	Resyncs     uint64 // full resynchronisations (joins and reconnects)
	Faults      uint64 // Redis errors seen
	// Degradations counts the times the replica lost Redis.
	Degradations uint64
}

// Stats returns the fleet's counters.
func (f *Fleet) Stats() Stats {
	s := Stats{Replica: f.opts.Replica, Degraded: f.degraded.Load(),
		Reported: f.stats.reported.Load(), Dropped: f.stats.dropped.Load(), Batches: f.stats.batches.Load(),
		Applied: f.stats.applied.Load(), Resyncs: f.stats.resyncs.Load(), Faults: f.stats.faults.Load(),
		Degradations: f.stats.degradations.Load()}
	if s.Degraded {
		s.DegradedFor = time.Since(time.Unix(0, f.degradedSince.Load()))
	}
	s.Queued = len(f.queue)
	f.members.Range(func(any, any) bool { s.Members++; return true })
	return s
}

// Attach implements breaker.Sync: the breaker joins the fleet under its
// name, and learns the fleet's state for it in the background.
func (f *Fleet) Attach(b *breaker.Breaker) {
	name := b.Name()
	key := f.opts.Prefix + "{" + name + "}"
	m := &member{name: name, keys: []string{key, key + ":r", key + ":l"}}
	if v, loaded := f.members.LoadOrStore(name, m); loaded {
		m = v.(*member) // a breaker re-created under the same name replaces the old one
	}
	wp := weak.Make(b)
	m.b.Store(&wp)
	if !f.degraded.Load() {
		f.enqueue(op{m: m, mode: "read"})
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

func (f *Fleet) enqueue(o op) {
	select {
	case f.queue <- o:
		f.stats.reported.Add(1)
	default:
		f.stats.dropped.Add(1)
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
	f.apply(m, rep)
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
	if f.degraded.Load() {
		switch t.To {
		case breaker.Open:
			m.openedWhileDegraded.Store(true)
		case breaker.Closed:
			m.openedWhileDegraded.Store(false)
		}
		if t.Reason == breaker.ReasonForcedOpen || t.Reason == breaker.ReasonForcedClosed || t.Reason == breaker.ReasonReset {
			f.log.Warn("manual action applied on this replica only: Redis is unreachable", "breaker", t.Name, "to", t.To.String())
		}
		return
	}
	switch t.Reason {
	case breaker.ReasonForcedOpen, breaker.ReasonForcedClosed, breaker.ReasonReset:
		// Outcomes queued after this action count under the epoch it makes.
		m.knownEpoch.Store(-1)
		f.enqueue(op{m: m, mode: "force", state: t.To.String(), reason: t.Reason.String()})
	case breaker.ReasonFailureRate:
		f.enqueue(op{m: m, mode: "join", state: "open", reason: t.Reason.String(), openMs: t.OpenFor.Milliseconds(), known: m.knownEpoch.Load()})
	}
}

// reply is a script's answer.
type reply struct {
	granted bool
	retry   time.Duration
	state   breaker.State
	epoch   int64
	openFor time.Duration
	streak  bool
}

func parseReply(v any) (reply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return reply{}, fmt.Errorf("redisstate: unexpected script reply %v", v)
	}
	var r reply
	g, _ := a[0].(int64)
	retry, _ := a[1].(int64)
	st, _ := a[2].(string)
	ep, _ := a[3].(string)
	rem, _ := a[4].(int64)
	streak, _ := a[5].(int64)
	var err error
	if r.state, err = breaker.ParseState(st); err != nil {
		return reply{}, err
	}
	if r.epoch, err = strconv.ParseInt(ep, 10, 64); err != nil {
		return reply{}, fmt.Errorf("redisstate: bad epoch %q in reply", ep)
	}
	r.granted, r.retry, r.openFor, r.streak = g == 1, time.Duration(retry)*time.Millisecond, time.Duration(rem)*time.Millisecond, streak == 1
	return r, nil
}

// parseMessage decodes a published transition.
func (f *Fleet) parseMessage(payload string) (name string, r reply, err error) {
	p := strings.SplitN(payload, " ", 6)
	if len(p) != 6 {
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
	key := p[5]
	pre := f.opts.Prefix + "{"
	if !strings.HasPrefix(key, pre) || !strings.HasSuffix(key, "}") {
		return "", r, fmt.Errorf("redisstate: message for foreign key %q", key)
	}
	return key[len(pre) : len(key)-1], r, nil
}

// apply brings the local breaker to the fleet's state if the state is newer
// than what the replica applied last. A reply of the same epoch only updates
// the fleet's failure streak: a local OPEN decided by this replica's own
// counts is not undone by a fleet that has not opened.
func (f *Fleet) apply(m *member, r reply) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.breaker()
	if r.epoch < m.epoch || b == nil {
		return
	}
	if r.epoch == m.epoch {
		if r.state == breaker.Closed && b.State() == breaker.Closed {
			b.SetFleetStreak(r.streak)
		}
		return
	}
	m.epoch = r.epoch
	m.knownEpoch.Store(r.epoch)
	m.denyUntil.Store(0)
	f.stats.applied.Add(1)
	b.ApplyFleet(breaker.FleetState{State: r.state, OpenFor: r.openFor, Streak: r.streak})
}

// run runs a script by hash, loading it if Redis lost it (a restart).
func (f *Fleet) run(ctx context.Context, c redis.Scripter, s *redis.Script, keys []string, args ...any) (any, error) {
	argv := append([]any{f.opts.KeyTTL.Milliseconds(), f.channel}, args...)
	return s.Run(ctx, c, keys, argv...).Result()
}

// fault notes a Redis error: the replica decides locally until Redis
// answers again.
func (f *Fleet) fault(err error) {
	if f.ctx.Err() != nil {
		return
	}
	f.stats.faults.Add(1)
	f.lastFault.Store(&err)
	f.setDegraded(err, true)
}

func (f *Fleet) setDegraded(err error, loud bool) {
	if f.degraded.Swap(true) {
		return
	}
	f.degradedSince.Store(time.Now().UnixNano())
	if loud {
		f.stats.degradations.Add(1)
		f.log.Error("fleet state DEGRADED: Redis unreachable, breakers decide locally until it returns", "err", err)
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

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
			continue
		}
		f.flush(batch)
	}
}

// call is one script call of a batch.
type call struct {
	m   *member
	cmd *redis.Cmd
}

func (f *Fleet) flush(batch []op) {
	ctx, cancel := context.WithTimeout(f.ctx, 10*f.opts.Timeout)
	defer cancel()
	pipe := f.client.Pipeline()
	calls := make([]call, 0, len(batch))
	for i := 0; i < len(batch); {
		o := batch[i]
		if o.event == "" {
			cmd := syncScript.EvalSha(ctx, pipe, o.m.keys, f.opts.KeyTTL.Milliseconds(), f.channel, o.mode, o.state, o.openMs, o.reason, o.known)
			calls = append(calls, call{o.m, cmd})
			i++
			continue
		}
		// Consecutive outcomes of one breaker known under one epoch go in one call.
		args := []any{f.opts.KeyTTL.Milliseconds(), f.channel, f.opts.Replica, o.known, o.threshold, o.openTimeout, o.needed, f.opts.Quorum}
		j, run := i, 0
		for ; j < len(batch) && batch[j].m == o.m && batch[j].event != "" && batch[j].known == o.known; j++ {
			if batch[j].event == "f" { // a run of failures is one argument
				run++
				continue
			}
			if run > 0 {
				args, run = append(args, "f"+strconv.Itoa(run)), 0
			}
			args = append(args, batch[j].event)
		}
		if run > 0 {
			args = append(args, "f"+strconv.Itoa(run))
		}
		calls = append(calls, call{o.m, reportScript.EvalSha(ctx, pipe, o.m.keys, args...)})
		f.stats.batches.Add(1)
		i = j
	}
	_, err := pipe.Exec(ctx)
	if err != nil && isNoScript(err) {
		// Redis restarted and lost the scripts: load them and send again.
		if err = f.loadScripts(ctx); err == nil {
			pipe = f.client.Pipeline()
			for i, c := range calls {
				args := c.cmd.Args()
				calls[i].cmd = pipe.EvalSha(ctx, args[1].(string), c.m.keys, args[3+len(c.m.keys):]...)
			}
			_, err = pipe.Exec(ctx)
		}
	}
	if err != nil {
		f.fault(err)
		return
	}
	for _, c := range calls {
		if rep, err := parseReply(c.cmd.Val()); err == nil {
			f.apply(c.m, rep)
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
// (re)subscription means messages may have been missed: resynchronise.
func (f *Fleet) subscribeLoop() {
	defer f.wg.Done()
	ps := f.pubsub
	if err := ps.Subscribe(f.ctx, f.channel); err != nil {
		f.fault(err)
	}
	backoff := f.opts.Timeout
	for {
		msg, err := ps.Receive(f.ctx)
		if f.ctx.Err() != nil {
			return
		}
		if err != nil {
			f.fault(err)
			if !f.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, f.opts.MaxBackoff)
			continue
		}
		backoff = f.opts.Timeout
		switch msg := msg.(type) {
		case *redis.Subscription:
			if msg.Kind == "subscribe" {
				f.rejoin() // missed messages while unsubscribed; or the first join
			}
		case *redis.Message:
			name, rep, err := f.parseMessage(msg.Payload)
			if err != nil {
				f.log.Warn("ignoring fleet message", "err", err)
				continue
			}
			if v, ok := f.members.Load(name); ok {
				f.apply(v.(*member), rep)
			}
		}
	}
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
		}
		f.sweep()
	}
}

// rejoin resynchronises every shared breaker with the fleet: the fleet's
// state wins if it has one; a replica that opened on its own while Redis was
// away publishes its OPEN if the fleet has none (unless a quorum is needed).
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
		o := op{m: m, mode: "read"}
		// A local OPEN goes to the fleet if the fleet has none: one the
		// replica decided while alone (unless a quorum is required), or the
		// fleet's own, which Redis lost in a restart.
		snap := b.Snapshot()
		fromFleet := snap.LastTransition.Reason == breaker.ReasonFleet
		if snap.State == breaker.Open && (fromFleet || m.openedWhileDegraded.Load() && f.opts.Quorum <= 1) {
			o = op{m: m, mode: "join", state: "open", reason: "rejoin", openMs: max(snap.RetryAfter.Milliseconds(), 1)}
		}
		m.mu.Lock()
		o.known = m.epoch
		m.mu.Unlock()
		cmd := syncScript.EvalSha(ctx, pipe, m.keys, f.opts.KeyTTL.Milliseconds(), f.channel, o.mode, o.state, o.openMs, o.reason, o.known)
		calls = append(calls, call{m, cmd})
		return true
	})
	if len(calls) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			f.fault(err)
			return
		}
	}
	for _, c := range calls {
		c.m.openedWhileDegraded.Store(false)
		if rep, err := parseReply(c.cmd.Val()); err == nil {
			f.apply(c.m, rep)
		}
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
		if v.(*member).breaker() == nil {
			f.members.Delete(k)
		}
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

var _ breaker.Sync = (*Fleet)(nil)
