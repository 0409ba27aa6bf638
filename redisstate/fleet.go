package redisstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
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
	// Redis, if set instead of URL, chooses go-redis's client as
	// redis.NewUniversalClient does: a Sentinel-backed client for MasterName
	// and the sentinels' Addrs, a Redis Cluster client for two or more seed
	// Addrs (or one with IsClusterMode), else one server; TLSConfig for TLS,
	// Username and Password for an ACL user. The fleet copies it, sets the
	// fail-fast fields (ContextTimeoutEnabled, no retries, timeouts from
	// Timeout), makes the client and closes it in Close.
	Redis *redis.UniversalOptions
	// Client, if set, is used instead of URL and not closed by Close. Give it
	// ContextTimeoutEnabled and MaxRetries -1 so a slow Redis fails fast.
	Client redis.UniversalClient
	// Prefix starts every key and channel name. "" means "breakerbox:".
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
	// Describe, if set, describes this replica's failure of breaker name
	// being reported to the fleet, in a few words (the sidecar: "503/12ms",
	// "timeout/5000ms"). The fleet keeps the last 10 failures of a streak
	// with the replica that reported each (Evidence) and hands them with the
	// transition to OPEN they led to (Fleet.Opening). It is called with the
	// breaker's lock held, once per failure reported, so it must be quick
	// and must not call the breaker; at most 100 bytes are kept, control
	// characters become '?'.
	Describe func(breaker string) string
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

	psMu          sync.Mutex
	pubsub        *redis.PubSub // replaced by subscribeLoop; guarded by psMu
	degraded      atomic.Bool
	degradedSince atomic.Int64 // unix nanos
	wake          chan struct{}
	ctx           context.Context
	cancel        context.CancelFunc
	wg            sync.WaitGroup

	stats struct {
		reported, dropped, batches, applied, resyncs, degradations, faults, losses, malformed atomic.Uint64
	}
	malformedAt       atomic.Int64  // unix nanos of the last malformed log line
	malformedUnlogged atomic.Uint64 // malformed not logged since

	// beforeFlush, if set, runs before each batch is sent: tests hold the
	// flush loop with it to leave outcomes queued (export_test.go).
	beforeFlush atomic.Pointer[func()]
}

// member is one shared breaker.
type member struct {
	name   string
	keys   []string
	linked atomic.Pointer[weak.Pointer[breaker.FleetLink]] // the breaker's link, weak: a collected breaker is swept
	cfg    atomic.Pointer[breaker.Config]                  // the breaker's, for the scripts' thresholds
	// mu guards the fleet's decisions for this breaker (see apply); it is
	// never held while the breaker runs listeners.
	mu         sync.Mutex
	epoch      atomic.Int64            // highest epoch applied; written under mu, read anywhere
	sq         int64                   // highest streak sequence applied; guarded by mu
	held       bool                    // the fleet was not CLOSED in epoch; guarded by mu
	holds      atomic.Bool             // held, for FleetDecides, which runs under the breaker's lock (m.mu is taken before it)
	opening    atomic.Pointer[Opening] // the last fleet transition applied (Fleet.Opening)
	dead       bool                    // swept: its breaker was collected; guarded by mu
	pending    pendingApply            // the newest decision not yet applied; guarded by mu
	hasPending bool                    // guarded by mu
	applying   bool                    // a goroutine is applying decisions; guarded by mu
	// knownEpoch is the epoch outcomes are reported under; -1 means "the
	// fleet's current one", for a new breaker and after a manual action,
	// until Redis's reply says which it is.
	knownEpoch          atomic.Int64
	denyUntil           atomic.Int64 // unix nanos: the fleet's slots are taken until then
	openedWhileDegraded atomic.Bool
	// manual is an operator's action not yet acknowledged by Redis: retried
	// until it is, and applied on rejoin.
	manual       atomic.Pointer[op]
	manualQueued atomic.Bool
	// manualGen is the breaker's generation after the newest manual action
	// Transition has seen. The breaker makes the transition before it calls
	// Transition: a newer manual LastTransition is an action on its way.
	manualGen atomic.Uint64
}

// op is one queued outcome or state change.
type op struct {
	m     *member
	ev    event // an outcome to report; evNone for a sync
	known int64 // epoch the replica knew when the outcome happened
	// sync
	mode    syncMode
	state   breaker.State
	reason  string // the transition's reason, or "rejoin"
	openMs  int64
	pending *op // an operator's action: m.manual's value when queued
}

// New connects a Fleet. A malformed URL or invalid option is an error.
// An unreachable Redis is not: the fleet starts degraded (every breaker
// decides locally) and joins when Redis answers; use Ping to require it.
// New waits for Redis's first answer no longer than ctx allows (and
// 10 × Options.Timeout); ctx does not bound the fleet's life: Close does.
func New(ctx context.Context, opts Options) (*Fleet, error) {
	if err := opts.resolve(); err != nil {
		return nil, err
	}
	f := &Fleet{opts: opts, client: opts.Client, channel: opts.Prefix + "events",
		log:   opts.Logger.With("component", "redisstate", "replica", opts.Replica),
		queue: make(chan op, opts.QueueSize), wake: make(chan struct{}, 1)}
	if f.client == nil {
		c, err := opts.newClient()
		if err != nil {
			return nil, err
		}
		f.client, f.owned = c, true
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// Until the first subscription confirms the link, decide locally.
	f.degraded.Store(true)
	f.degradedSince.Store(time.Now().UnixNano())
	pctx, cancel := context.WithTimeout(ctx, 10*opts.Timeout)
	if err := f.Ping(pctx); err != nil {
		f.stats.degradations.Add(1)
		f.log.Error("fleet state DEGRADED at start: breakers decide locally until Redis answers", "err", err)
	}
	cancel()
	f.wg.Add(3)
	go f.flushLoop()
	go f.subscribeLoop()
	go f.healthLoop()
	return f, nil
}

func (o *Options) resolve() error {
	if err := o.checkClient(); err != nil {
		return err
	}
	switch {
	case o.Quorum < 0:
		return fmt.Errorf("redisstate: Options.Quorum = %d: must be ≥ 0 (0 means 1)", o.Quorum)
	case o.QueueSize < 0:
		return fmt.Errorf("redisstate: Options.QueueSize = %d: must be ≥ 0 (0 means 4096)", o.QueueSize)
	case o.Timeout < 0 || o.HealthInterval < 0 || o.MaxBackoff < 0 || o.KeyTTL < 0:
		return errors.New("redisstate: Options.Timeout, HealthInterval, MaxBackoff and KeyTTL must be ≥ 0 (0 means the default)")
	case o.Replica != "" && checkReplica(o.Replica) != nil:
		return fmt.Errorf("redisstate: Options.Replica = %q: must be one printable word (no spaces) of at most 200 bytes", o.Replica)
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
	f.psMu.Lock()
	if f.pubsub != nil {
		f.pubsub.Close() // unblocks Receive
	}
	f.psMu.Unlock()
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
	// Malformed counts the messages and script replies read from Redis that
	// were ignored because they could not be decoded: a newer replica's wire
	// version, a broken or hostile Redis or publisher. The log says what was
	// wrong, at most once per 10 s.
	Malformed uint64
	// StateLosses counts the times this replica found that Redis had lost a
	// breaker's state the fleet held OPEN, HALF_OPEN, FORCED_OPEN or DISABLED
	// (keys evicted or deleted, Redis restarted empty) and restored it. One
	// replica counts each loss: summed over the fleet, one per loss.
	StateLosses uint64
}

// Stats returns the fleet's counters.
func (f *Fleet) Stats() Stats {
	s := Stats{Replica: f.opts.Replica, Degraded: f.degraded.Load(),
		Reported: f.stats.reported.Load(), Dropped: f.stats.dropped.Load(), Batches: f.stats.batches.Load(),
		Applied: f.stats.applied.Load(), Resyncs: f.stats.resyncs.Load(), Faults: f.stats.faults.Load(),
		Degradations: f.stats.degradations.Load(), StateLosses: f.stats.losses.Load(), Malformed: f.stats.malformed.Load()}
	if s.Degraded {
		s.DegradedFor = time.Since(time.Unix(0, f.degradedSince.Load()))
	}
	s.Queued = len(f.queue)
	f.members.Range(func(any, any) bool { s.Members++; return true })
	return s
}

// fault notes a Redis error: the replica decides locally until Redis
// answers again.
func (f *Fleet) fault(err error) {
	if f.ctx.Err() != nil {
		return
	}
	f.stats.faults.Add(1)
	if f.degraded.Swap(true) {
		return
	}
	f.degradedSince.Store(time.Now().UnixNano())
	f.stats.degradations.Add(1)
	f.log.Error("fleet state DEGRADED: Redis unreachable, breakers decide locally until it returns", "err", err)
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// redact hides a password in a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
