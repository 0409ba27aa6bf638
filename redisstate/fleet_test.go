package redisstate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
	"github.com/breakerbox/breakerbox/redisstate"
)

var errUpstream = errors.New("upstream: 503")

const key = "genesys/eu-west-1"

// replica is one process of the fleet: its own Redis connections, its own
// registry of breakers.
type replica struct {
	t    *testing.T
	name string
	f    *redisstate.Fleet
	reg  *breaker.Registry
	logs *syncbuf.Buffer // the fleet's records
	// blogs has the breakers' records (transitions, probes let through).
	blogs *syncbuf.Buffer

	mu     sync.Mutex
	events []breaker.Transition
}

func newReplica(t *testing.T, srv *redistest.Server, name string, cfg breaker.Config, opts redisstate.Options) *replica {
	t.Helper()
	r := &replica{t: t, name: name, logs: &syncbuf.Buffer{}, blogs: &syncbuf.Buffer{}}
	if opts.Redis == nil && opts.Client == nil {
		opts.URL = srv.URL()
	}
	opts.Replica = name
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	}
	f, err := redisstate.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("redisstate.New: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	r.f = f
	cfg.Sync = f
	cfg.Logger = slog.New(slog.NewTextHandler(r.blogs, nil))
	cfg.OnTransition = func(tr breaker.Transition) {
		r.mu.Lock()
		r.events = append(r.events, tr)
		r.mu.Unlock()
	}
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: cfg})
	if err != nil {
		t.Fatal(err)
	}
	r.reg = reg
	eventually(t, 5*time.Second, func() bool { return !f.Stats().Degraded }, name+" joins the fleet")
	return r
}

// b is the replica's breaker (the registry has no Configure hook: Get
// cannot fail).
func (r *replica) b() *breaker.Breaker {
	b, _ := r.reg.Get(key)
	return b
}

func (r *replica) fail(n int) {
	r.t.Helper()
	for range n {
		err := r.b().Do(context.Background(), func(context.Context) error { return errUpstream })
		if !errors.Is(err, errUpstream) {
			r.t.Fatalf("%s: failing call returned %v, want it to run", r.name, err)
		}
	}
}

func (r *replica) succeed(n int) {
	r.t.Helper()
	for range n {
		if err := r.b().Do(context.Background(), func(context.Context) error { return nil }); err != nil {
			r.t.Fatalf("%s: succeeding call returned %v", r.name, err)
		}
	}
}

func (r *replica) transitions() []breaker.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]breaker.Transition(nil), r.events...)
}

type fleet []*replica

func newFleet(t *testing.T, srv *redistest.Server, n int, cfg breaker.Config, opts redisstate.Options) fleet {
	var f fleet
	for i := range n {
		f = append(f, newReplica(t, srv, fmt.Sprintf("replica-%d", i+1), cfg, opts))
	}
	for _, r := range f {
		r.b() // every replica knows the breaker before traffic starts
	}
	return f
}

func (f fleet) wantState(t *testing.T, want breaker.State, why string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
	}()
	eventually(t, 5*time.Second, func() bool {
		for _, r := range f {
			if r.b().State() != want {
				return false
			}
		}
		return true
	}, fmt.Sprintf("every replica %v: %s", want, why))
}

// eventually polls cond every 2 ms until it holds or the timeout ends: the
// fleet converges asynchronously, in milliseconds on loopback.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// T10's profile, with a short open timeout so tests wait milliseconds.
func t10(openTimeout time.Duration) breaker.Config {
	return breaker.Config{FailureThreshold: 10, OpenTimeout: openTimeout, HalfOpenSuccesses: 3, HalfOpenProbes: 1,
		ProbeTimeout: 5 * time.Second}
}

func TestFailuresSpreadAcrossReplicasOpenTheCircuitEverywhere(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{})
	// 4 + 3 + 3 = 10 failures: no replica reaches 10 on its own.
	f[0].fail(4)
	f[1].fail(3)
	f[2].fail(3)
	f.wantState(t, breaker.Open, "10 failures spread over 3 replicas open the fleet")
	for _, r := range f {
		eventually(t, time.Second, func() bool { return len(r.transitions()) > 0 }, r.name+" delivers its event")
		ev := r.transitions()
		if len(ev) != 1 || ev[0].Reason != breaker.ReasonFleet || ev[0].FleetReason != breaker.ReasonFailureThreshold {
			t.Fatalf("%s: transitions %+v, want one OPEN marked as coming from the fleet, for failure_threshold", r.name, ev)
		}
		if d := r.b().Snapshot().RetryAfter; d < 50*time.Second || d > time.Minute {
			t.Fatalf("%s: RetryAfter = %v, want about the 60 s open timeout from Redis's clock", r.name, d)
		}
	}
}

func TestConcurrentFailuresOnAllReplicasAreNeverLost(t *testing.T) {
	srv := redistest.Start(t)
	const threshold = 600
	f := newFleet(t, srv, 3, breaker.Config{FailureThreshold: threshold, OpenTimeout: time.Minute}, redisstate.Options{})
	// 8 goroutines per replica, 24 failures each: 576 failures in all, all
	// at once. Every one must be counted: 24 more open the fleet.
	var wg sync.WaitGroup
	for _, r := range f {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 24 {
					r.b().Do(context.Background(), func(context.Context) error { return errUpstream })
				}
			}()
		}
	}
	wg.Wait()
	hash := "breakerbox:{" + key + "}"
	eventually(t, 5*time.Second, func() bool {
		n, _ := srv.Client().HGet(context.Background(), hash, "fl").Int()
		return n == 576
	}, "Redis counts all 576 concurrent failures")
	f.wantState(t, breaker.Closed, "576 < 600 failures")
	f[1].fail(24)
	f.wantState(t, breaker.Open, "the 600th failure opens the fleet")
	for _, r := range f {
		if s := r.f.Stats(); s.Dropped != 0 {
			t.Fatalf("%s dropped %d outcomes", r.name, s.Dropped)
		}
	}
}

func TestASuccessOnAnyReplicaEndsTheFleetsStreak(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{})
	f[0].fail(6)
	eventually(t, 5*time.Second, func() bool { return f[2].b().Snapshot().FleetStreak && streak(srv) == 6 },
		"the fleet counts 6 failures and replica-3 knows of the streak")
	// replica-3 has seen no failure, yet its next success ends the fleet's streak.
	f[2].succeed(1)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 0 }, "a success on another replica resets the fleet's count")
	f[1].fail(6)
	time.Sleep(50 * time.Millisecond) // give a wrong OPEN the time to arrive
	f.wantState(t, breaker.Closed, "6 + 6 failures separated by a success are not 10 consecutive")
}

func streak(srv *redistest.Server) int {
	n, _ := srv.Client().HGet(context.Background(), "breakerbox:{"+key+"}", "fl").Int()
	return n
}

func TestOneProbeFleetWideAndThreeSuccessesCloseEverywhere(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(300*time.Millisecond), redisstate.Options{})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")

	// The upstream recovered. Every replica hammers it with 4 goroutines;
	// the upstream counts the calls in flight at once.
	var inFlight, maxInFlight, probes atomic.Int64
	closedAnywhere := func() bool {
		for _, r := range f {
			if r.b().State() == breaker.Closed {
				return true
			}
		}
		return false
	}
	upstream := func(context.Context) error {
		if closedAnywhere() {
			return nil // recovered: calls flow again, no longer probes
		}
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		probes.Add(1)
		time.Sleep(20 * time.Millisecond) // hold the slot long enough for others to try
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var rejected atomic.Int64
	for _, r := range f {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if r.b().State() == breaker.Closed {
						return
					}
					if err := r.b().Do(context.Background(), upstream); errors.Is(err, breaker.ErrOpen) {
						rejected.Add(1)
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
	}
	f.wantState(t, breaker.Closed, "3 successful probes close the fleet")
	close(stop)
	wg.Wait()
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d probes reached the upstream at once, want 1 fleet-wide", m)
	}
	if p := probes.Load(); p < 3 || p > 5 {
		t.Fatalf("%d probes before closing, want 3 (at most a couple more racing the close)", p)
	}
	t.Logf("half-open: %d probes reached the upstream, %d calls rejected", probes.Load(), rejected.Load())
}

func TestAFailedProbeReopensTheFleet(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(200*time.Millisecond), redisstate.Options{})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	// Both: on a loaded machine replica-1's timer may fire after replica-2's
	// probe already reopened the fleet, and then it never was HALF_OPEN.
	f.wantState(t, breaker.HalfOpen, "half-open after the open timeout")
	f[1].fail(1) // the probe fails
	eventually(t, 5*time.Second, func() bool {
		last := f[0].b().Snapshot().LastTransition
		return last.To == breaker.Open && last.From == breaker.HalfOpen
	}, "replica-1 reopens because replica-2's probe failed")
}

func TestQuorumKeepsOneReplicaFromOpeningTheFleet(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{Quorum: 2})
	f[0].fail(10) // a bad network path on replica-1 only
	if got := f[0].b().State(); got != breaker.Open {
		t.Fatalf("replica-1 = %v, want OPEN on its own counts", got)
	}
	time.Sleep(50 * time.Millisecond) // give a wrong fleet OPEN the time to arrive
	if got := f[1].b().State(); got != breaker.Closed {
		t.Fatalf("replica-2 = %v: one replica opened the fleet despite a quorum of 2", got)
	}
	// Let the streak stand, and a second replica confirm it.
	f[1].fail(1)
	f.wantState(t, breaker.Open, "failures from 2 distinct replicas")
}

func TestManualControlAppliesToTheWholeFleet(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{})
	f[0].b().ForceOpen()
	f.wantState(t, breaker.ForcedOpen, "forced open on replica-1")
	f[1].b().ForceClosed()
	f.wantState(t, breaker.Disabled, "forced closed on replica-2")
	f[2].b().Reset()
	f.wantState(t, breaker.Closed, "reset on replica-3")
}

func TestHealthyCallsMakeNoRedisCommands(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{HealthInterval: time.Hour})
	f[0].fail(2)
	// Every replica hears of the streak before it ends (on a loaded machine
	// the news may come late, and set a flag after the success that clears it).
	eventually(t, 5*time.Second, func() bool { return f[1].b().Snapshot().FleetStreak && f[2].b().Snapshot().FleetStreak },
		"the other replicas hear of the streak")
	f[0].succeed(1) // ends the streak
	for _, r := range f {
		r.succeed(1) // clears the streak flag: every replica back on the fast path
	}
	eventually(t, 5*time.Second, func() bool {
		for _, r := range f {
			if r.b().Snapshot().FleetStreak {
				return false
			}
		}
		return streak(srv) == 0 && srv.CommandCalls()["evalsha"] > 0
	}, "the streak ends everywhere")
	time.Sleep(50 * time.Millisecond) // the last reports' round trips
	before := srv.CommandCalls()
	for _, r := range f {
		r.succeed(10000)
	}
	time.Sleep(50 * time.Millisecond)
	after := srv.CommandCalls()
	total := int64(0)
	for cmd, n := range after {
		// PINGs are the health loop's, on a timer whatever the calls (the
		// first comes Options.Timeout after New), not the calls'.
		if cmd != "info" && cmd != "ping" {
			total += n - before[cmd]
		}
	}
	if total != 0 {
		t.Fatalf("30,000 healthy calls made %d Redis commands (before %v, after %v), want 0", total, before, after)
	}
}

func TestFailuresCostAtMostOneScriptCallEach(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 1, breaker.Config{FailureThreshold: 1000, OpenTimeout: time.Minute}, redisstate.Options{HealthInterval: time.Hour})
	before := srv.CommandCalls()
	f[0].fail(500)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 500 }, "500 failures counted")
	after := srv.CommandCalls()
	evals := after["evalsha"] - before["evalsha"]
	if evals < 1 || evals > 500 {
		t.Fatalf("500 failures made %d script calls, want between 1 and 500", evals)
	}
	t.Logf("500 failures: %d script calls (batched), %.2f per failure", evals, float64(evals)/500)
}

func TestRedisKilledMidTrafficFailsNoCallAndReplicasRejoinEmptyRedis(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{Timeout: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})

	// Healthy traffic on every replica, across the kill.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	var slowest atomic.Int64
	for _, r := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				err := r.b().Do(context.Background(), func(context.Context) error { return nil })
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	srv.Kill()
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return r.f.Stats().Degraded }, r.name+" notices Redis is gone")
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed because Redis died", failed.Load(), calls.Load())
	}
	t.Logf("%d calls across the kill, none failed; slowest %v", calls.Load(), time.Duration(slowest.Load()))
	if !strings.Contains(f[0].logs.String(), "DEGRADED") {
		t.Fatalf("no log says the replica is degraded:\n%s", f[0].logs)
	}

	// Alone, replica-1 trips on its own counts.
	f[0].fail(10)
	if got := f[0].b().State(); got != breaker.Open {
		t.Fatalf("degraded replica-1 = %v, want OPEN on local counts", got)
	}
	// Redis comes back empty: replica-1 publishes its OPEN, the others adopt it.
	srv.Restart()
	f.wantState(t, breaker.Open, "replicas rejoin an empty Redis and converge on replica-1's OPEN")
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return !r.f.Stats().Degraded }, r.name+" rejoins")
	}
	if !strings.Contains(f[1].logs.String(), "REJOINED") {
		t.Fatalf("no log says the replica rejoined:\n%s", f[1].logs)
	}
}

func TestPausedRedisBlocksNoCaller(t *testing.T) {
	srv := redistest.Start(t)
	opts := redisstate.Options{Timeout: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	f := newFleet(t, srv, 2, t10(100*time.Millisecond), opts)
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	srv.Pause()
	t.Cleanup(srv.Resume)
	// Calls in every state: rejected while OPEN, probes in HALF_OPEN (which
	// would ask Redis for a lease), successes once closed. None may wait on
	// the paused Redis for longer than Options.Timeout.
	var slowest time.Duration
	deadline := time.Now().Add(2 * time.Second)
	for _, r := range f {
		for time.Now().Before(deadline) && r.b().State() != breaker.Closed {
			start := time.Now()
			r.b().Do(context.Background(), func(context.Context) error { return nil })
			slowest = max(slowest, time.Since(start))
			time.Sleep(time.Millisecond)
		}
	}
	f.wantState(t, breaker.Closed, "replicas recover locally while Redis is paused")
	if slowest > time.Second {
		t.Fatalf("a call waited %v on a paused Redis", slowest)
	}
	t.Logf("slowest call while Redis was paused: %v (bounded by Options.Timeout %v)", slowest, opts.Timeout)
	srv.Resume()
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return !r.f.Stats().Degraded }, r.name+" rejoins after SIGCONT")
	}
}

func TestBadOptionsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		opts redisstate.Options
		want string
	}{
		{redisstate.Options{}, "no Redis: set Options.URL"},
		{redisstate.Options{URL: "http://localhost:6379"}, `URL "http://localhost:6379"`},
		{redisstate.Options{URL: "redis://127.0.0.1:6379/x"}, "redis://[user:password@]host:port[/db]"},
		{redisstate.Options{URL: "redis://127.0.0.1:1", Quorum: -1}, "Options.Quorum = -1"},
		{redisstate.Options{URL: "redis://127.0.0.1:1", Replica: "a b"}, "Options.Replica"},
	} {
		_, err := redisstate.New(context.Background(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}

func TestUnreachableRedisStartsDegradedNotBroken(t *testing.T) {
	logs := &syncbuf.Buffer{}
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://127.0.0.1:1/0", Timeout: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("New with an unreachable Redis: %v, want a degraded fleet", err)
	}
	defer f.Close()
	if err := f.Ping(context.Background()); err == nil {
		t.Fatal("Ping of an unreachable Redis succeeded")
	}
	if !f.Stats().Degraded || !strings.Contains(logs.String(), "DEGRADED at start") {
		t.Fatalf("want a degraded fleet and a loud log, got %+v\n%s", f.Stats(), logs)
	}
	b, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 2, Sync: f})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		b.Do(context.Background(), func(context.Context) error { return errUpstream })
	}
	if b.State() != breaker.Open {
		t.Fatalf("breaker = %v, want OPEN on local counts", b.State())
	}
}

func dumpLogs(t *testing.T, f fleet) {
	for _, r := range f {
		t.Logf("%s stats %+v logs:\n%s", r.name, r.f.Stats(), r.logs)
	}
}

func TestEvictedKeysNeverFailCallsAndTheFleetOpensAgainAfterwards(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(200*time.Millisecond), redisstate.Options{})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	// Redis evicts the breaker's keys (maxmemory, or an operator's DEL).
	hash := "breakerbox:{" + key + "}"
	if err := srv.Client().Del(context.Background(), hash, hash+":r", hash+":l").Err(); err != nil {
		t.Fatal(err)
	}
	// The upstream is back: probes succeed and the fleet, re-formed by the
	// first replica to ask for a probe lease, closes.
	eventually(t, 5*time.Second, func() bool {
		for _, r := range f {
			if r.b().State() == breaker.HalfOpen {
				err := r.b().Do(context.Background(), func(context.Context) error { return nil })
				if err != nil && !errors.Is(err, breaker.ErrOpen) {
					t.Fatalf("%s: a probe failed with %v", r.name, err)
				}
			}
		}
		for _, r := range f {
			if r.b().State() != breaker.Closed {
				return false
			}
		}
		return true
	}, "every replica recovers without the fleet's keys")
	for _, r := range f {
		if s := r.f.Stats(); s.Degraded {
			t.Fatalf("%s degraded by an eviction: %+v", r.name, s)
		}
	}
	// The re-formed fleet closed with a new epoch, which a replica that
	// closed on its own probes may learn only from its next report's reply:
	// failures reported under an older epoch are not counted. So fail on
	// replica-2 and replica-3 until replica-1, which sees none, opens: only
	// the fleet can open it, and 9 failures each open neither on its own.
	for i := 0; f[0].b().State() != breaker.Open; i++ {
		if i == 9 {
			t.Fatalf("18 failures after the eviction did not open the fleet (Redis counts %d)", streak(srv))
		}
		for _, r := range f[1:] { // rejected once the fleet's OPEN reached it first
			r.b().Do(context.Background(), func(context.Context) error { return errUpstream })
		}
		time.Sleep(20 * time.Millisecond) // the reports and their replies: more rounds if not enough
	}
	f.wantState(t, breaker.Open, "failures after the eviction open the fleet again everywhere")
}

func TestCloseWithAPausedRedisDoesNotHangOrLeak(t *testing.T) {
	srv := redistest.Start(t)
	before := runtime.NumGoroutine()
	f := newReplica(t, srv, "replica-1", t10(time.Minute), redisstate.Options{Timeout: 20 * time.Millisecond})
	f.fail(3) // outcomes in flight
	srv.Pause()
	defer srv.Resume()
	f.fail(3)
	closeWithin(t, f.f, 5*time.Second)
	eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before }, "the fleet's goroutines end after Close")
}

// closeWithin closes f and fails the test if Close takes longer than d: a
// fleet goroutine deadlocked, or waiting on Redis without a deadline.
func closeWithin(t *testing.T, f *redisstate.Fleet, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Close() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("Close still running after %v", d)
	}
}
