package redisstate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Highly available Redis: Sentinel and Cluster failovers mid-traffic, TLS,
// ACL users, and a promoted primary whose clock is behind the epochs the
// fleet applied (epochs come from Redis's TIME) or that lost the keys.

// aheadOfClock makes every replica apply epochs an hour ahead of Redis's
// clock, as if the primary they were applied on ran an hour ahead of the one
// that will replace it: the hash's epoch is set ahead, and an operator's
// ForceOpen and Reset make two transitions above it.
func aheadOfClock(t *testing.T, admin redis.UniversalClient, f fleet) int64 {
	t.Helper()
	ahead := time.Now().Add(time.Hour).UnixMilli()
	if err := admin.HSet(context.Background(), fleetHash(), "ep", ahead).Err(); err != nil {
		t.Fatal(err)
	}
	f[0].b().ForceOpen()
	f.wantState(t, breaker.ForcedOpen, "forced open")
	f[0].b().Reset()
	f.wantState(t, breaker.Closed, "reset")
	ep, err := admin.HGet(context.Background(), fleetHash(), "ep").Int64()
	if err != nil || ep <= ahead {
		t.Fatalf("epoch %d (%v), want above %d", ep, err, ahead)
	}
	return ep
}

// failUntilOpen makes replica r's calls fail until every replica is OPEN:
// while a replica rejoins, its reports may be dropped, so the count of
// failures it takes is not the point; that the fleet opens is.
func failUntilOpen(t *testing.T, f fleet, r *replica, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a deadlock guard
	for {
		open := true
		for _, x := range f {
			open = open && x.b().State() == breaker.Open
		}
		if open {
			return
		}
		if time.Now().After(deadline) {
			dumpLogs(t, f)
			t.Fatalf("the fleet did not open: %s", why)
		}
		err := r.b().Do(context.Background(), func(context.Context) error { return errUpstream })
		if err != nil && !errors.Is(err, errUpstream) && !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("%s: %v", r.name, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestTransitionsAfterKeysLostOnAPrimaryWhoseClockIsBehind(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{})
	aheadOfClock(t, srv.Client(), f)
	// Keys lost with no connection fault (no replica rejoins): the next
	// transition, numbered by Redis's clock alone, would be an hour older
	// than what every replica applied, and ignored by all.
	if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	f[1].fail(10)
	f.wantState(t, breaker.Open, "10 failures after the keys were lost")
	f[2].b().Reset()
	f.wantState(t, breaker.Closed, "reset after the keys were lost")
}

func TestAReplicaNewToTheFleetCannotOpenItBehindTheOthersBacks(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 3, t10(time.Minute), redisstate.Options{})
	aheadOfClock(t, srv.Client(), f)
	if err := srv.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// A replica started after the loss knows no epoch: its failures open the
	// fleet at an epoch below the others'. They ask Redis, which renumbers
	// the OPEN above their epoch and publishes it.
	late := newReplica(t, srv, "replica-late", t10(time.Minute), redisstate.Options{})
	late.fail(10)
	append(f, late).wantState(t, breaker.Open, "the late replica's 10 failures")
}

// haConfig is T10's profile with a short open timeout: many probe cycles
// in a second.
func haConfig() breaker.Config { return lossConfig() }

// haOptions: a Timeout a loaded machine does not reach (see lossOptions),
// a quick rejoin.
func haOptions(u *redis.UniversalOptions) redisstate.Options {
	return redisstate.Options{Redis: u, Timeout: time.Second, MaxBackoff: 200 * time.Millisecond}
}

// failover runs the scenario of a highly available Redis failing over:
// the replicas' epochs are an hour ahead of Redis's clock; kill fails Redis
// over mid-traffic (the upstream is healthy: no call may fail); flush then
// empties the promoted primary. After it the fleet must still open on one
// replica's failures, send at most HalfOpenProbes probes at a time
// fleet-wide, and close everywhere when the upstream recovers.
func failover(t *testing.T, admin redis.UniversalClient, f fleet, kill, flush func()) {
	t.Helper()
	defer func() {
		if t.Failed() {
			dumpLogs(t, f)
		}
	}()
	aheadOfClock(t, admin, f)

	var calls, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, r := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				calls.Add(1)
				if err := r.b().Do(context.Background(), func(context.Context) error { return nil }); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	eventually(t, 10*time.Second, func() bool { return calls.Load() > 100 }, "traffic flows")
	kill()
	for _, r := range f {
		eventually(t, 30*time.Second, func() bool { return !r.f.Stats().Degraded }, r.name+" is joined after the failover")
	}
	before := calls.Load()
	eventually(t, 10*time.Second, func() bool { return calls.Load() > before+100 }, "traffic flows after the failover")
	close(done)
	wg.Wait()
	t.Logf("%d calls during the failover, %d failed", calls.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed during the failover (first: %v): want 0", n, calls.Load(), firstErr.Load())
	}

	flush()
	failUntilOpen(t, f, f[1], "failures after the failover to a primary with no keys and an older clock")

	// Probes: the upstream is down; every replica calls it every millisecond.
	// A replica that meets a fault (a cluster client may try the dead node
	// until it reloads the cluster's layout) decides alone for a while, as
	// designed: the promise holds once the fleet has re-formed, so it is
	// checked over phases in which no replica met a fault.
	opens := countOpens(t, admin)
	d := newDownstream()
	stop := drive(t, f, d)
	for phase := 1; ; phase++ {
		for _, r := range f {
			eventually(t, 30*time.Second, func() bool { return !r.f.Stats().Degraded }, r.name+" is joined")
		}
		faults, o := f.faults(), opens.Load()
		d.mark()
		eventually(t, 30*time.Second, func() bool { return opens.Load() >= o+4 }, "the fleet probes and reopens 4 times")
		if f.faults() != faults {
			if phase == 10 {
				t.Fatal("Redis faults kept the fleet apart for 10 phases")
			}
			t.Logf("phase %d: a replica met a Redis fault; again", phase)
			continue
		}
		probes, reopens := d.counted.Load(), opens.Load()-o
		t.Logf("%d probes reached the upstream, at most %d at once; the fleet reopened %d times", probes, d.maxIn.Load(), reopens)
		if m := d.maxIn.Load(); m > int64(haConfig().HalfOpenProbes) {
			t.Errorf("%d probes in flight at once fleet-wide, want ≤ %d (HalfOpenProbes)", m, haConfig().HalfOpenProbes)
		}
		if probes > reopens+1 {
			t.Errorf("%d probes for %d fleet reopens: replicas probe on their own", probes, reopens)
		}
		break
	}
	stop()
	// The upstream recovers: probes succeed, the fleet closes everywhere.
	eventually(t, 30*time.Second, func() bool {
		for _, r := range f {
			r.b().Do(context.Background(), func(context.Context) error { return nil })
		}
		for _, r := range f {
			if r.b().State() != breaker.Closed {
				return false
			}
		}
		return true
	}, "the fleet closes on every replica once probes succeed")
}

func (f fleet) faults() (n uint64) {
	for _, r := range f {
		n += r.f.Stats().Faults
	}
	return n
}

// countOpens counts the fleet's OPEN transitions published from now on.
func countOpens(t *testing.T, admin redis.UniversalClient) *atomic.Int64 {
	t.Helper()
	ps := admin.Subscribe(context.Background(), "breakerbox:events")
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

func TestSentinelFailoverMidTraffic(t *testing.T) {
	s := redistest.StartSentinel(t, 1, 3)
	u := &redis.UniversalOptions{MasterName: s.Master, Addrs: s.Addrs()}
	admin := redis.NewUniversalClient(u)
	t.Cleanup(func() { admin.Close() })
	f := newFleet(t, nil, 3, haConfig(), haOptions(u))
	var primary *redistest.Server
	failover(t, admin, f, func() {
		old := s.Primary()
		old.Kill()
		primary = s.WaitFailover(old)
	}, func() {
		if err := primary.Client().FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClusterFailoverMidTraffic(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	u := &redis.UniversalOptions{Addrs: c.Addrs()}
	admin := redis.NewClusterClient(u.Cluster())
	t.Cleanup(func() { admin.Close() })
	// Every key a breaker uses, and so every script, is in one slot.
	h := fleetHash()
	var slots []int64
	for _, k := range []string{h, h + ":r", h + ":l"} {
		slots = append(slots, admin.ClusterKeySlot(context.Background(), k).Val())
	}
	if slots[0] != slots[1] || slots[0] != slots[2] {
		t.Fatalf("the breaker's keys are in slots %v: want one", slots)
	}
	f := newFleet(t, nil, 3, haConfig(), haOptions(u))
	failover(t, admin, f, func() {
		// The primary of the breaker's slot: its replica is promoted.
		old := c.PrimaryOf(h)
		old.Kill()
		c.WaitOK(old)
	}, func() {
		eventually(t, 10*time.Second, func() bool {
			return admin.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
				return m.FlushAll(ctx).Err()
			}) == nil
		}, "every primary flushed")
	})
}

func TestTLSWithAClientCertificate(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	srv := redistest.StartTLS(t, files)
	u := &redis.UniversalOptions{Addrs: []string{srv.Addr()}, TLSConfig: files.ClientConfig(t)}
	f := newFleet(t, nil, 2, t10(time.Minute), redisstate.Options{Redis: u})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures over TLS")
}

func TestACLUser(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	// The fleet's user may touch its own keys and channel, and run no
	// dangerous command.
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "fleet", "on", ">s3cret", "~breakerbox:*", "&breakerbox:*",
		"+@all", "-@dangerous").Err(); err != nil {
		t.Fatal(err)
	}
	u := &redis.UniversalOptions{Addrs: []string{srv.Addr()}, Username: "fleet", Password: "s3cret"}
	f := newFleet(t, nil, 2, t10(time.Minute), redisstate.Options{Redis: u})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures as an ACL user")

	// A wrong password: not an error at New (Redis may be down too), a fleet
	// that decides locally and says why.
	bad := *u
	bad.Password = "wrong"
	fl, err := redisstate.New(context.Background(), redisstate.Options{Redis: &bad, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if !fl.Stats().Degraded {
		t.Fatal("a fleet with a wrong password is not degraded")
	}
	err = fl.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("Ping = %v, want Redis's WRONGPASS", err)
	}
	b, _ := breaker.New(breaker.Config{Name: key, FailureThreshold: 2, Sync: fl, Logger: quiet})
	for range 2 {
		if err := b.Do(ctx, func(context.Context) error { return errUpstream }); !errors.Is(err, errUpstream) {
			t.Fatalf("call = %v", err)
		}
	}
	if b.State() != breaker.Open {
		t.Fatalf("%v: the breaker decides locally without Redis, want OPEN after 2 failures", b.State())
	}
}

func TestBadRedisOptionsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		opts redisstate.Options
		want string
	}{
		{redisstate.Options{Redis: &redis.UniversalOptions{}}, "Options.Redis.Addrs is empty"},
		{redisstate.Options{URL: "redis://127.0.0.1:1", Redis: &redis.UniversalOptions{Addrs: []string{"a:1"}}}, "both Options.URL and Options.Redis"},
		{redisstate.Options{URL: "redis://127.0.0.1:1", Prefix: "bb{x}:"}, "Options.Prefix"},
	} {
		_, err := redisstate.New(context.Background(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.opts, err, tc.want)
		}
	}
}
