package breaker_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

func TestRegistryAppliesProfilesOverDefault(t *testing.T) {
	profiles := map[string]breaker.Config{"genesys": t10}
	for k, v := range adr002 {
		profiles[k] = v
	}
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{Logger: discard, ProbeTimeout: 7 * time.Second},
		Profiles: profiles,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key                     string
		threshold, successes    int
		openTimeout, probeLimit time.Duration
	}{
		{"cloudflare", 5, 2, time.Minute, 7 * time.Second},
		{"google-admin", 3, 2, 30 * time.Second, 7 * time.Second},
		{"microsoft-graph", 3, 2, 30 * time.Second, 7 * time.Second},
		{"smtp", 10, 2, 2 * time.Minute, 7 * time.Second},
		{"genesys/eu-west-1", 10, 3, time.Minute, 7 * time.Second},
		{"unknown-service", 5, 2, time.Minute, 7 * time.Second},
	} {
		c := get(t, reg, tt.key).Config()
		if c.Name != tt.key || c.FailureThreshold != tt.threshold || c.HalfOpenSuccesses != tt.successes ||
			c.OpenTimeout != tt.openTimeout || c.ProbeTimeout != tt.probeLimit {
			t.Errorf("%s: %s %d/%v/%d probe %v, want %d/%v/%d probe %v", tt.key, c.Name, c.FailureThreshold, c.OpenTimeout,
				c.HalfOpenSuccesses, c.ProbeTimeout, tt.threshold, tt.openTimeout, tt.successes, tt.probeLimit)
		}
	}
	var names []string
	for _, b := range reg.All() {
		names = append(names, b.Name())
	}
	if got := strings.Join(names, ","); got != "cloudflare,genesys/eu-west-1,google-admin,microsoft-graph,smtp,unknown-service" {
		t.Errorf("All() = %s", got)
	}
}

func TestRegistryRejectsInvalidProfile(t *testing.T) {
	_, err := breaker.NewRegistry(breaker.RegistryConfig{Profiles: map[string]breaker.Config{"smtp": {OpenTimeout: -1}}})
	if err == nil || !strings.Contains(err.Error(), `Profiles["smtp"]: breaker: Config.OpenTimeout`) {
		t.Fatalf("err = %v", err)
	}
	_, err = breaker.NewRegistry(breaker.RegistryConfig{IdleTTL: -1})
	if err == nil || !strings.Contains(err.Error(), "IdleTTL") {
		t.Fatalf("err = %v", err)
	}
}

func TestRegistryConfigureHookErrorFromGet(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{Logger: discard},
		Configure: func(key string, c breaker.Config) breaker.Config {
			if key == "bad" {
				c.FailureThreshold = -1
			}
			c.Logger = c.Logger.With(slog.String("region", "r-"+key))
			return c
		},
	})
	if _, err := reg.Get("bad"); err == nil || !strings.Contains(err.Error(), `key "bad"`) {
		t.Fatalf("Get(bad) = %v", err)
	}
	if _, ok := reg.Lookup("bad"); ok {
		t.Fatal("an invalid breaker was stored")
	}
	if b, err := reg.Get("good"); err != nil || b.Name() != "good" {
		t.Fatalf("Get(good) = %v, %v", b, err)
	}
}

func TestRegistryEvictsIdleClosedBreakers(t *testing.T) {
	clk := breakertest.NewClock()
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Clock: clk, Logger: discard, FailureThreshold: 1}, IdleTTL: time.Minute})
	defer reg.Close()
	idle := get(t, reg, "idle")
	busy := get(t, reg, "busy")
	open := get(t, reg, "open")
	open.Do(context.Background(), func(context.Context) error { return errBoom })
	for range 3 {
		clk.Advance(time.Minute)
		get(t, reg, "busy")
	}
	if _, ok := reg.Lookup("idle"); ok {
		t.Fatal("idle breaker kept")
	}
	if b, _ := reg.Lookup("busy"); b != busy {
		t.Fatal("busy breaker evicted")
	}
	if _, ok := reg.Lookup("open"); !ok {
		t.Fatal("a breaker that is not CLOSED was evicted")
	}
	if get(t, reg, "idle") == idle {
		t.Fatal("evicted key returned the old breaker")
	}
	reg.Close()
	if n := clk.Pending(); n != 0 { // the sweep stopped; "open" is half-open by now
		t.Fatalf("%d timers pending after Close, want 0", n)
	}
}

func TestRegistryRemove(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discard}})
	b := get(t, reg, "x")
	if !reg.Remove("x") || reg.Remove("x") {
		t.Fatal("Remove should report true once")
	}
	if get(t, reg, "x") == b {
		t.Fatal("removed breaker returned")
	}
}
