package redisstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// A replica that starts while the fleet holds a circuit OPEN knows it once
// Joined returns, before its first call: a consumer waiting on Joined never
// sends a message to the region that is down.
func TestJoinedWaitsForTheFleetsState(t *testing.T) {
	srv := redistest.Start(t)
	cfg := breaker.Config{FailureThreshold: 3, OpenTimeout: time.Hour}
	a := newReplica(t, srv, "a", cfg, redisstate.Options{})
	a.fail(3)
	eventually(t, 5*time.Second, func() bool { return a.b().State() == breaker.Open }, "a opens")

	for i := range 5 { // a few new replicas: the join races their first call every time
		f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "new-" + string(rune('0'+i)), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{FailureThreshold: 3, OpenTimeout: time.Hour, Sync: f, Logger: quiet}})
		b := reg.MustGet(key)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := f.Joined(ctx); err != nil {
			t.Fatalf("Joined: %v", err)
		}
		cancel()
		if s := b.State(); s != breaker.Open {
			t.Fatalf("replica %d: %v once Joined returned, want OPEN (the fleet's)", i, s)
		}
		f.Close()
	}
}
