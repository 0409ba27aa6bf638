package redisstate_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

func TestAListenerMayCallTheBreakerWhenTheFleetMovesIt(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv, "replica-1", t10(50*time.Millisecond), redisstate.Options{})
	a.fail(10)
	eventually(t, 5*time.Second, func() bool { return a.b().State() == breaker.HalfOpen }, "the fleet half-opens")

	// replica-2 joins now; its breaker learns HALF_OPEN from the fleet and
	// its listener makes a call right away (a probe, which asks for a lease).
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "replica-2", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return !f.Stats().Degraded }, "replica-2 joins")
	var bp atomic.Pointer[breaker.Breaker] // set once New returns; the fleet may move the breaker before
	var listenerCalls atomic.Int32
	b, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 10, OpenTimeout: 50 * time.Millisecond, Sync: f, Logger: quiet,
		OnTransition: func(tr breaker.Transition) {
			if tr.To != breaker.HalfOpen {
				return
			}
			for deadline := time.Now().Add(5 * time.Second); bp.Load() == nil && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			bp.Load().Do(context.Background(), func(context.Context) error { return nil })
			listenerCalls.Add(1)
		}})
	if err != nil {
		t.Fatal(err)
	}
	bp.Store(b)
	eventually(t, 5*time.Second, func() bool { return listenerCalls.Load() > 0 }, "the listener's call returns")
	closeWithin(t, f, 5*time.Second)
}

func TestARecreatedBreakerTakesTheFleetsOpenState(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(time.Minute), redisstate.Options{})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	f[1].reg.Remove(key) // a reload with new settings re-creates the breaker
	eventually(t, 5*time.Second, func() bool { return f[1].b().State() == breaker.Open }, "the re-created breaker learns the fleet is OPEN")
}

// The fleet's OPEN reaches a breaker that is re-created while the old one's
// listener still runs for that same OPEN: the decision applied meanwhile goes
// to the new breaker, not the old one.
func TestARecreatedBreakerTakesTheFleetsOpenStateWhileTheOldOnesListenerRuns(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv, "replica-1", t10(time.Minute), redisstate.Options{})
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "replica-2", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	eventually(t, 5*time.Second, func() bool { return !f.Stats().Degraded }, "replica-2 joins")
	release := make(chan struct{})
	var released sync.Once
	unblock := func() { released.Do(func() { close(release) }) }
	defer unblock() // before Close, which waits for the listener's goroutine
	var once sync.Once
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{FailureThreshold: 10, OpenTimeout: time.Minute,
		Sync: f, Logger: quiet, OnTransition: func(tr breaker.Transition) {
			if tr.To == breaker.Open {
				once.Do(func() { <-release }) // the old breaker's listener: slow
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	// Both breakers' reads of the (still CLOSED) fleet are answered before it
	// opens: the OPEN then reaches the old breaker by message, and its slow
	// listener holds the subscription's goroutine, not the one sending reads.
	a.b()
	old := reg.MustGet(key)
	eventually(t, 5*time.Second, func() bool { return srv.CommandCalls()["evalsha"] >= 2 }, "both reads reach Redis")
	a.fail(10)
	eventually(t, 5*time.Second, func() bool { return old.State() == breaker.Open }, "the old breaker takes the fleet's OPEN")
	reg.Remove(key) // a reload re-creates the breaker while the listener runs
	fresh := reg.MustGet(key)
	eventually(t, 5*time.Second, func() bool { return f.Stats().Applied == 2 }, "the new breaker's read of the fleet's state is answered")
	unblock()
	eventually(t, 5*time.Second, func() bool { return fresh.State() == breaker.Open }, "the re-created breaker learns the fleet is OPEN")
}

func TestAStreakEndsAcrossReplicasAfterRedisLostTheKeys(t *testing.T) {
	srv := redistest.Start(t)
	cfg := breaker.Config{FailureThreshold: 5, OpenTimeout: time.Minute}
	f := newFleet(t, srv, 2, cfg, redisstate.Options{})
	f[0].fail(5)
	f.wantState(t, breaker.Open, "5 failures")
	f[0].b().Reset()
	f.wantState(t, breaker.Closed, "reset")
	hash := "breakerbox:{" + key + "}"
	srv.Client().Del(context.Background(), hash, hash+":r", hash+":l")

	f[0].fail(1)
	eventually(t, 5*time.Second, func() bool { return f[1].b().Snapshot().FleetStreak }, "replica-2 hears of the new streak")
	f[1].succeed(1) // ends it
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 0 }, "the fleet's streak ends")
	f[0].fail(4)
	time.Sleep(50 * time.Millisecond) // give a wrong OPEN the time to arrive
	if got := f[1].b().State(); got != breaker.Closed {
		t.Fatalf("replica-2 = %v: 1 + 4 failures separated by a success opened the fleet", got)
	}
}

func TestResetOfAClosedBreakerResetsTheFleetsStreak(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(time.Minute), redisstate.Options{})
	f[0].fail(6)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 6 }, "6 failures counted")
	f[1].b().Reset()
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 0 }, "an operator's reset on replica-2 clears the fleet's count")
}

func TestAManualActionWhileRedisIsDownIsPublishedOnRejoin(t *testing.T) {
	srv := redistest.Start(t)
	opts := redisstate.Options{Timeout: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	f := newFleet(t, srv, 2, t10(time.Minute), opts)
	srv.Kill()
	eventually(t, 5*time.Second, func() bool { return f[0].f.Stats().Degraded }, "replica-1 notices")
	f[0].b().ForceOpen()
	srv.Restart()
	f.wantState(t, breaker.ForcedOpen, "the operator's action reaches the fleet once Redis is back")
}

// blackhole forwards TCP connections to a server until frozen: then the
// subscription connections it holds (those that sent SUBSCRIBE) stay open and
// carry nothing, as behind a lost NAT entry; other and new connections work.
type blackhole struct {
	l      net.Listener
	frozen atomic.Bool
	cut    atomic.Bool // every connection closed, new ones refused
	mu     sync.Mutex
	conns  []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackhole{l: l}
	t.Cleanup(func() {
		l.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if h.cut.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			h.mu.Lock()
			h.conns = append(h.conns, c, up)
			h.mu.Unlock()
			frozenAtStart := h.frozen.Load()
			var sub atomic.Bool
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if src == c && strings.Contains(strings.ToLower(string(buf[:n])), "subscribe") {
						sub.Store(true)
					}
					if sub.Load() && h.frozen.Load() && !frozenAtStart {
						continue // swallow: the connection is dead but not closed
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return h
}

func TestASilentSubscriptionIsNoticedAndReplaced(t *testing.T) {
	srv := redistest.Start(t)
	hole := newBlackhole(t, srv.Addr())
	a := newReplica(t, srv, "replica-1", t10(time.Minute), redisstate.Options{})
	fb, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://" + hole.l.Addr().String() + "/0", Replica: "replica-2",
		HealthInterval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	eventually(t, 5*time.Second, func() bool { return !fb.Stats().Degraded }, "replica-2 joins")
	b, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 10, OpenTimeout: time.Minute, Sync: fb, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	// One round trip of the fleet while the link is sound.
	a.fail(10)
	eventually(t, 5*time.Second, func() bool { return b.State() == breaker.Open }, "replica-2 learns the first OPEN")
	a.b().Reset()
	eventually(t, 5*time.Second, func() bool { return b.State() == breaker.Closed }, "replica-2 learns the reset")
	hole.frozen.Store(true) // replica-2's subscription goes silent; commands still work
	a.fail(10)
	// Without a read deadline on the subscription, replica-2 would wait on the
	// dead connection for as long as TCP keepalive allows (tens of minutes).
	eventually(t, 10*time.Second, func() bool { return b.State() == breaker.Open }, "replica-2 replaces its dead subscription and learns the OPEN")
}

// setCut cuts every connection through the hole (and refuses new ones), or
// lets them through again.
func (h *blackhole) setCut(on bool) {
	h.cut.Store(on)
	if on {
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.conns = nil
		h.mu.Unlock()
	}
}

func TestAListenerMayActOnTheBreakerDuringAFleetTransition(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv, "replica-1", t10(time.Minute), redisstate.Options{})
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "replica-2", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return !f.Stats().Degraded }, "replica-2 joins")
	var bp atomic.Pointer[breaker.Breaker]
	b, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 10, OpenTimeout: time.Minute, Sync: f, Logger: quiet,
		OnTransition: func(tr breaker.Transition) {
			if tr.Reason == breaker.ReasonFleet && tr.To == breaker.Open && bp.Load() != nil {
				bp.Load().ForceOpen() // an operator's automation: pin it open
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	bp.Store(b)
	a.fail(10)
	eventually(t, 5*time.Second, func() bool { return a.b().State() == breaker.ForcedOpen && b.State() == breaker.ForcedOpen },
		"the listener's ForceOpen reaches the fleet")
	closeWithin(t, f, 5*time.Second)
}

func TestAStaleManualActionDoesNotUndoANewerFleetOpen(t *testing.T) {
	srv := redistest.Start(t)
	hole := newBlackhole(t, srv.Addr())
	opts := redisstate.Options{Timeout: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, HealthInterval: 50 * time.Millisecond}
	a := newReplica(t, srv, "replica-2", t10(time.Minute), opts)
	opts.URL, opts.Replica, opts.Logger = "redis://"+hole.l.Addr().String()+"/0", "replica-1", quiet
	fc, err := redisstate.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	eventually(t, 5*time.Second, func() bool { return !fc.Stats().Degraded }, "replica-1 joins")
	cut, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 10, OpenTimeout: time.Minute, Sync: fc, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a.b()

	hole.setCut(true)
	eventually(t, 5*time.Second, func() bool { return fc.Stats().Degraded }, "replica-1 is cut off")
	cut.Reset() // an operator clears replica-1's streak while it is cut off
	a.fail(10)  // meanwhile the fleet opens
	eventually(t, 5*time.Second, func() bool { return a.b().State() == breaker.Open }, "the fleet opens")
	hole.setCut(false)
	eventually(t, 5*time.Second, func() bool { return !fc.Stats().Degraded && cut.State() == breaker.Open },
		"replica-1 rejoins and takes the newer OPEN")
	time.Sleep(50 * time.Millisecond)
	if got := a.b().State(); got != breaker.Open {
		t.Fatalf("replica-2 = %v: replica-1's stale reset undid the fleet's newer OPEN", got)
	}
}

func TestQuickSuccessiveManualActionsEndInTheLastOne(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(time.Minute), redisstate.Options{})
	f[0].b().ForceOpen()
	f[0].b().Reset()
	f.wantState(t, breaker.Closed, "ForceOpen then Reset: the fleet ends CLOSED")
	time.Sleep(100 * time.Millisecond) // a late fleet message must not flip it back
	f.wantState(t, breaker.Closed, "still CLOSED")
	ev := f[0].transitions()
	if last := ev[len(ev)-1]; last.To != breaker.Closed || last.Reason != breaker.ReasonReset {
		t.Fatalf("replica-1's last transition = %+v, want the operator's reset (no flip-flop from older fleet news)", last)
	}
}

// A manual action's acknowledgement that arrives after the next action was
// taken locally (here: the Reset's delivery is held until Redis has applied
// the ForceOpen and its reply has had time to settle) must not move the
// breaker back to the older action: the race behind the rare failures of
// TestQuickSuccessiveManualActionsEndInTheLastOne, made certain.
func TestALateAcknowledgementDoesNotUndoTheNextManualAction(t *testing.T) {
	srv := redistest.Start(t)
	other := newReplica(t, srv, "replica-2", t10(time.Minute), redisstate.Options{})
	b, events := resetHeldUntil(t, srv, 10, 1, func() {
		eventually(t, 5*time.Second, func() bool {
			return srv.Client().HGet(context.Background(), "breakerbox:{"+key+"}", "st").Val() == "forced_open"
		}, "Redis applies the ForceOpen")
		time.Sleep(50 * time.Millisecond) // its reply reaches replica-1 and is settled
	})
	other.b()
	b.ForceOpen()
	b.Reset()
	eventually(t, 5*time.Second, func() bool { return other.b().State() == breaker.Closed && b.State() == breaker.Closed },
		"ForceOpen then Reset: the fleet ends CLOSED")
	time.Sleep(100 * time.Millisecond) // a late acknowledgement or message must not flip it back
	if ev := events(); b.State() != breaker.Closed || len(ev) != 2 || ev[1].Reason != breaker.ReasonReset {
		t.Fatalf("replica-1 is %v after transitions %+v, want CLOSED after exactly the operator's ForceOpen and Reset", b.State(), ev)
	}
}

// Fleet news that reaches a replica between an operator's action and the
// moment the breaker hands it to the fleet (here: the Reset's delivery is
// held until the fleet's OPEN has had time to arrive) is older than the
// action: it must not move the breaker. replica-1 requires a quorum of 2, so
// it opens its own circuit on its own failures (with a quorum of 1 it waits
// for the fleet's decision: Fleet.FleetDecides); replica-2's failures then
// complete the fleet's streak while the Reset is held.
func TestFleetNewsOlderThanAManualActionDoesNotMoveTheBreaker(t *testing.T) {
	srv := redistest.Start(t)
	other := newReplica(t, srv, "replica-2", t10(time.Minute), redisstate.Options{})
	b, events := resetHeldUntil(t, srv, 5, 2, func() {
		other.fail(5) // 5 + 5 of 2 replicas: the fleet opens
		eventually(t, 5*time.Second, func() bool { return other.b().State() == breaker.Open }, "the fleet's OPEN is published")
		time.Sleep(50 * time.Millisecond) // and reaches replica-1
	})
	other.b()
	for range 5 { // opens replica-1 at once on its own counts
		b.Do(context.Background(), func(context.Context) error { return errUpstream })
	}
	if b.State() != breaker.Open {
		t.Fatalf("replica-1 is %v after 5 failures, want OPEN on its own counts (quorum 2)", b.State())
	}
	b.Reset()
	eventually(t, 5*time.Second, func() bool { return other.b().State() == breaker.Closed && b.State() == breaker.Closed },
		"the operator's reset closes the fleet")
	time.Sleep(100 * time.Millisecond) // a late message must not flip it
	if ev := events(); len(ev) != 2 || ev[0].Reason != breaker.ReasonFailureThreshold || ev[1].Reason != breaker.ReasonReset || b.State() != breaker.Closed {
		t.Fatalf("replica-1 is %v after transitions %+v, want OPEN on its own failures, then the operator's reset, and nothing else", b.State(), ev)
	}
}

// resetHeldUntil makes replica-1 of a fleet on srv (with the given quorum)
// with a breaker (the given FailureThreshold) whose delivery of a Reset waits for wait, before
// the breaker hands the action to the fleet; events returns its transitions.
func resetHeldUntil(t *testing.T, srv *redistest.Server, threshold, quorum int, wait func()) (b *breaker.Breaker, events func() []breaker.Transition) {
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "replica-1", Quorum: quorum, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	eventually(t, 5*time.Second, func() bool { return !f.Stats().Degraded }, "replica-1 joins")
	hold := func(r slog.Record) {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "reason" && a.Value.String() == "reset" {
				wait()
			}
			return true
		})
	}
	var mu sync.Mutex
	var ev []breaker.Transition
	b, err = breaker.New(breaker.Config{Name: key, FailureThreshold: threshold, OpenTimeout: time.Minute, Sync: f,
		Logger: slog.New(holdHandler{slog.DiscardHandler, hold}),
		OnTransition: func(tr breaker.Transition) {
			mu.Lock()
			ev = append(ev, tr)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	return b, func() []breaker.Transition {
		mu.Lock()
		defer mu.Unlock()
		return append([]breaker.Transition(nil), ev...)
	}
}

// holdHandler calls hold for each record before handling it: a test holds a
// breaker's delivery of a transition at a chosen point.
type holdHandler struct {
	slog.Handler
	hold func(slog.Record)
}

func (h holdHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h holdHandler) Handle(ctx context.Context, r slog.Record) error {
	h.hold(r)
	return h.Handler.Handle(ctx, r)
}

func TestNoPasswordInURLErrors(t *testing.T) {
	_, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://user:s3cret@host:badport/0"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v: want an error without the password", err)
	}
}
