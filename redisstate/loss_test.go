package redisstate_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Redis loses a circuit's state without a connection fault (keys deleted or
// evicted) or across a restart while the fleet holds it OPEN or HALF_OPEN.
// Each test drives every replica with calls to an upstream that is down and
// counts what reaches it: after the fleet re-forms, at most one probe in
// flight fleet-wide, no more probes than the fleet's reopens (each failed
// probe reopens the fleet once), nothing but probes, the loss logged and
// counted once.

// downstream is an upstream that is down: every call fails, after holding
// its slot for hold (so that concurrent probes would overlap), or, while
// hang is set, once release lets it go (a send frees one call, a close all).
type downstream struct {
	hold     time.Duration
	hang     atomic.Bool
	release  chan struct{}
	phase    atomic.Int64 // calls are counted per phase (see mark)
	calls    atomic.Int64 // total, all phases
	counted  atomic.Int64 // started in the current phase
	inFlight atomic.Int64 // of the current phase
	maxIn    atomic.Int64 // of the current phase
}

func newDownstream() *downstream {
	return &downstream{hold: 20 * time.Millisecond, release: make(chan struct{})}
}

func (d *downstream) call(context.Context) error {
	d.calls.Add(1)
	if d.hang.Load() {
		<-d.release
		return errUpstream
	}
	phase := d.phase.Load()
	d.counted.Add(1)
	n := d.inFlight.Add(1)
	for m := d.maxIn.Load(); n > m && !d.maxIn.CompareAndSwap(m, n); m = d.maxIn.Load() {
	}
	time.Sleep(d.hold)
	if d.phase.Load() == phase {
		d.inFlight.Add(-1)
	}
	return errUpstream
}

// mark starts a new phase: counts start from 0, calls begun earlier are not
// counted in it.
func (d *downstream) mark() {
	d.phase.Add(1)
	d.counted.Store(0)
	d.inFlight.Store(0)
	d.maxIn.Store(0)
}

// drive makes every replica call the upstream every millisecond until
// stopped, as traffic does during an outage. Rejections are the point;
// anything else but the upstream's own error fails the test.
func drive(t *testing.T, f fleet, d *downstream) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Value
	for _, r := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
				select {
				case <-done:
					return
				default:
				}
				err := r.b().Do(context.Background(), d.call)
				if err != nil && !errors.Is(err, breaker.ErrOpen) && !errors.Is(err, errUpstream) {
					bad.Store(err)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		if err, _ := bad.Load().(error); err != nil {
			t.Fatalf("a call failed with %v: Redis's loss must never fail a call", err)
		}
	}
}

// fleetOpens counts the fleet's OPEN transitions published from now on.
func fleetOpens(t *testing.T, srv *redistest.Server) *atomic.Int64 {
	ps := srv.Client().Subscribe(context.Background(), "breakerbox:events")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(context.Background()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for msg := range ps.Channel() {
			if f := strings.Fields(msg.Payload); len(f) > 1 && f[1] == "open" {
				n.Add(1)
			}
		}
	}()
	return &n
}

func (f fleet) losses() (n uint64) {
	for _, r := range f {
		n += r.f.Stats().StateLosses
	}
	return n
}

// reforms waits until one replica found the loss (at lostAt) and restored
// the fleet's state, lets the fleet run through several cycles of probe and
// reopen (counted, not timed: a loaded machine only makes it slower), then
// stops the traffic.
func (f fleet) reforms(t *testing.T, what string, lostAt time.Time, opens *atomic.Int64, stop func()) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool { return f.losses() > 0 }, "a replica finds the loss and restores the fleet's state: "+what)
	t.Logf("re-formed %v after %s", time.Since(lostAt).Round(time.Millisecond), what)
	eventually(t, 30*time.Second, func() bool { return opens.Load() >= 6 }, "the re-formed fleet reopens 6 times")
	stop()
}

// checkAfterLoss asserts what the tests promise: the upstream saw no more than
// one probe at a time and no more probes than the fleet reopened (one spare
// for the last probe, whose reopen may not be published yet), nothing but
// probes (each replica logs a probe when, and only when, it lets one
// through), no replica closed, and each of the losses logged and counted
// once.
func checkAfterLoss(t *testing.T, f fleet, d *downstream, opens *atomic.Int64, losses int) {
	t.Helper()
	defer func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
	}()
	probes, reopens := d.counted.Load(), opens.Load()
	t.Logf("after re-forming: %d probes reached the upstream, at most %d at once; the fleet reopened %d times", probes, d.maxIn.Load(), reopens)
	if m := d.maxIn.Load(); m > 1 {
		t.Errorf("%d probes in flight at once fleet-wide after re-forming, want ≤ 1 (HalfOpenProbes)", m)
	}
	if probes > reopens+1 {
		t.Errorf("%d probes for %d fleet reopens: replicas probe on their own", probes, reopens)
	}
	logged := 0
	lost := 0
	for _, r := range f {
		logged += strings.Count(r.blogs.String(), "letting a probe through")
		lost += strings.Count(r.logs.String(), "fleet state LOST")
		for _, tr := range r.transitions() {
			if tr.To == breaker.Closed {
				t.Errorf("%s closed (%v) while the upstream was down: calls other than probes reached it", r.name, tr.Reason)
			}
		}
	}
	if calls := d.calls.Load(); int64(logged) != calls {
		t.Errorf("replicas logged %d probes let through, the upstream saw %d calls: want one line per probe sent", logged, calls)
	}
	if lost != losses || f.losses() != uint64(losses) {
		t.Errorf("%d losses were logged %d times and counted %d times (Stats.StateLosses), want once each", losses, lost, f.losses())
	}
}

// lossConfig is T10's profile with a short open timeout: many cycles in a
// second.
func lossConfig() breaker.Config {
	return breaker.Config{FailureThreshold: 10, OpenTimeout: 150 * time.Millisecond, HalfOpenSuccesses: 3, HalfOpenProbes: 1,
		ProbeTimeout: 5 * time.Second}
}

// openFleet starts Redis and 3 replicas with lossConfig, and opens the fleet.
func openFleet(t *testing.T, opts redisstate.Options) (*redistest.Server, fleet) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, lossConfig(), opts)
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	return srv, f
}

// lossOptions: a Timeout that a loaded machine does not reach (a Redis
// round trip over it is a fault: the replica decides alone for a while,
// which is not the case under test), a quick rejoin after a restart.
func lossOptions() redisstate.Options {
	return redisstate.Options{Timeout: time.Second, MaxBackoff: 200 * time.Millisecond}
}

func fleetHash() string { return "breakerbox:{" + key + "}" }

func TestTheFleetReformsAfterItsKeysAreDeletedWhileOpen(t *testing.T) {
	// No health check during the test: the first replica to ask for a probe
	// lease finds the loss (the eviction test lets the health check race it).
	opts := lossOptions()
	opts.HealthInterval = time.Hour
	srv, f := openFleet(t, opts)
	d := newDownstream()
	opens := fleetOpens(t, srv)
	h := fleetHash()
	if err := srv.Client().Del(context.Background(), h, h+":r", h+":l").Err(); err != nil {
		t.Fatal(err)
	}
	lostAt := time.Now()
	stop := drive(t, f, d)
	f.reforms(t, "a DEL while OPEN", lostAt, opens, stop)
	checkAfterLoss(t, f, d, opens, 1)
}

func TestTheFleetReformsAfterRedisRestartsEmptyWhileEveryReplicaProbes(t *testing.T) {
	srv, f := openFleet(t, lossOptions())
	srv.Kill()
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return r.f.Stats().Degraded }, r.name+" notices Redis is gone")
	}
	// Alone, every replica half-opens and lets its own probe through: they
	// hang in the upstream.
	d := newDownstream()
	d.hang.Store(true)
	stop := drive(t, f, d)
	eventually(t, 5*time.Second, func() bool { return d.calls.Load() == int64(len(f)) }, "every replica's probe hangs")
	srv.Restart()
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return !r.f.Stats().Degraded }, r.name+" rejoins the empty Redis")
	}
	opens := fleetOpens(t, srv)
	// The probes fail; from here on the fleet must act as one again.
	d.mark()
	d.hang.Store(false)
	lostAt := time.Now()
	close(d.release)
	f.reforms(t, "a restart while HALF_OPEN, once the hanging probes failed", lostAt, opens, stop)
	checkAfterLoss(t, f, d, opens, 1)
}

func TestTheFleetReformsAfterRedisEvictsItsKeysUnderMaxmemory(t *testing.T) {
	srv, f := openFleet(t, lossOptions())
	d := newDownstream()
	opens := fleetOpens(t, srv)

	// A Redis shared with a cache: a small maxmemory, least recently used
	// keys evicted first. Filling it evicts the fleet's keys, the oldest.
	// Redis says which keys it evicts: a replica may restore the fleet's
	// hash before the filling stops, and Redis evict it again, a second loss.
	ctx := context.Background()
	c := srv.Client()
	if err := c.ConfigSet(ctx, "notify-keyspace-events", "Ee").Err(); err != nil {
		t.Fatal(err)
	}
	ev := c.Subscribe(ctx, "__keyevent@0__:evicted")
	defer ev.Close()
	if _, err := ev.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	var evictions atomic.Int64
	go func() {
		for msg := range ev.Channel() {
			if msg.Payload == fleetHash() {
				evictions.Add(1)
			}
		}
	}()
	used := infoField(t, c.Info(ctx, "memory").Val(), "used_memory")
	for k, v := range map[string]string{"maxmemory-policy": "allkeys-lru", "maxmemory": strconv.FormatInt(used+1<<20, 10)} {
		if err := c.ConfigSet(ctx, k, v).Err(); err != nil {
			t.Fatalf("CONFIG SET %s %s: %v", k, v, err)
		}
	}
	value := strings.Repeat("x", 4096)
	for i := 0; evictions.Load() == 0; i++ {
		if i == 100 {
			t.Fatal("100 × 64 values of 4 KiB did not evict the fleet's hash")
		}
		pipe := c.Pipeline()
		for j := range 64 {
			pipe.Set(ctx, "cache:"+strconv.Itoa(i*64+j), value, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lostAt := time.Now()
	// Stop evicting, so the restored state stays.
	if err := c.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	stop := drive(t, f, d)
	f.reforms(t, "an eviction under maxmemory", lostAt, opens, stop)
	t.Logf("Redis evicted %d keys", infoField(t, c.Info(ctx, "stats").Val(), "evicted_keys"))
	n := evictions.Load()
	if n > 1 {
		t.Logf("Redis evicted the fleet's hash %d times: a replica restored it before the filling stopped", n)
	}
	checkAfterLoss(t, f, d, opens, int(n))
}

// infoField reads an integer field of an INFO section.
func infoField(t *testing.T, info, name string) int64 {
	t.Helper()
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s: %q", name, v)
			}
			return n
		}
	}
	t.Fatalf("INFO has no %s", name)
	return 0
}

func TestAForcedOpenFleetWhoseKeysAreDeletedIsRestoredForReplicasThatJoinLater(t *testing.T) {
	srv := redistest.Start(t)
	opts := redisstate.Options{HealthInterval: 50 * time.Millisecond}
	f := newFleet(t, srv, 3, t10(time.Minute), opts)
	f[0].b().ForceOpen()
	f.wantState(t, breaker.ForcedOpen, "an operator forces the fleet open")
	h := fleetHash()
	if err := srv.Client().Del(context.Background(), h, h+":r", h+":l").Err(); err != nil {
		t.Fatal(err)
	}
	// No call reaches Redis in FORCED_OPEN: the health check finds the loss.
	eventually(t, 10*time.Second, func() bool { return f.losses() > 0 }, "a replica finds the loss and restores FORCED_OPEN")
	late := newReplica(t, srv, "replica-4", t10(time.Minute), opts)
	eventually(t, 5*time.Second, func() bool { return late.b().State() == breaker.ForcedOpen }, "a replica that joins later is forced open too")
	time.Sleep(200 * time.Millisecond) // several health checks: none may count the loss again
	lost := 0
	for _, r := range append(f, late) {
		lost += strings.Count(r.logs.String(), "fleet state LOST")
	}
	if n := append(f, late).losses(); lost != 1 || n != 1 {
		t.Fatalf("the loss was logged %d times and counted %d times, want once each", lost, n)
	}
}

func TestAProbeLeaseEvictedAloneLetsNoSecondProbeThrough(t *testing.T) {
	srv, f := openFleet(t, lossOptions())
	opens := fleetOpens(t, srv)
	d := newDownstream()
	d.hang.Store(true)
	stop := drive(t, f, d)
	defer stop()
	defer close(d.release)
	eventually(t, 5*time.Second, func() bool { return d.calls.Load() == 1 }, "one replica's probe hangs, holding the fleet's lease")
	// allkeys-lru may evict the lease hash and keep the breaker's hash.
	if err := srv.Client().Del(context.Background(), fleetHash()+":l").Err(); err != nil {
		t.Fatal(err)
	}
	before := srv.CommandCalls()["evalsha"]
	eventually(t, 10*time.Second, func() bool { return srv.CommandCalls()["evalsha"]-before >= 20 }, "the other replicas ask for a lease 20 times")
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("%d probes reached the upstream after the lease hash was evicted, want the one in flight", n)
	}
	d.hang.Store(false)
	d.release <- struct{}{} // the probe fails: it still reopens the fleet, though its lease is gone
	eventually(t, 5*time.Second, func() bool { return opens.Load() >= 1 }, "the failed probe reopens the fleet")
}
