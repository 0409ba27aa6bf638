package breakerprom_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/breakerprom"
)

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

var errBoom = errors.New("boom")

// fleet builds a registry whose breakers are in every interesting state:
//
//	cloudflare         CLOSED, counts successes: 3 successes, 1 failure, 1 ignored
//	genesys/eu-west-1  OPEN for 45 more seconds, 1 call rejected
//	namecheap          HALF_OPEN with its probe slot taken, 1 call rejected for it
//	smtp               FORCED_OPEN
func fleet(t testing.TB) *breaker.Registry {
	t.Helper()
	clock := breakertest.NewClock()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{FailureThreshold: 2, OpenTimeout: time.Minute, Clock: clock, Logger: discardLogger},
		Profiles: map[string]breaker.Config{"cloudflare": {CountSuccesses: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	fail := func(context.Context) error { return errBoom }
	ok := func(context.Context) error { return nil }

	cf := get(t, reg, "cloudflare")
	for range 3 {
		cf.Do(ctx, ok)
	}
	cf.Do(ctx, fail)
	cf.Do(ctx, func(context.Context) error { return context.Canceled })

	nc := get(t, reg, "namecheap")
	nc.Do(ctx, fail)
	nc.Do(ctx, fail)
	clock.Advance(time.Minute) // namecheap: HALF_OPEN
	if _, err := nc.Allow(); err != nil {
		t.Fatalf("namecheap probe: %v", err)
	}
	if _, err := nc.Allow(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("namecheap second probe: err = %v, want a rejection", err)
	}

	g := get(t, reg, "genesys/eu-west-1")
	g.Do(ctx, fail)
	g.Do(ctx, fail)
	if err := g.Do(ctx, ok); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("genesys: err = %v, want a rejection", err)
	}
	clock.Advance(15 * time.Second)

	get(t, reg, "smtp").ForceOpen()
	return reg
}

const wantExposition = `# HELP breakerbox_calls_total Calls let through by the circuit breaker, by outcome (success only when the breaker counts successes).
# TYPE breakerbox_calls_total counter
breakerbox_calls_total{circuit="cloudflare",outcome="failure"} 1
breakerbox_calls_total{circuit="cloudflare",outcome="ignored"} 1
breakerbox_calls_total{circuit="cloudflare",outcome="success"} 3
breakerbox_calls_total{circuit="genesys/eu-west-1",outcome="failure"} 2
breakerbox_calls_total{circuit="genesys/eu-west-1",outcome="ignored"} 0
breakerbox_calls_total{circuit="namecheap",outcome="failure"} 2
breakerbox_calls_total{circuit="namecheap",outcome="ignored"} 0
breakerbox_calls_total{circuit="smtp",outcome="failure"} 0
breakerbox_calls_total{circuit="smtp",outcome="ignored"} 0
# HELP breakerbox_circuit_state Current state of the circuit breaker: 1 for the state it is in, 0 for the others.
# TYPE breakerbox_circuit_state gauge
breakerbox_circuit_state{circuit="cloudflare",state="closed"} 1
breakerbox_circuit_state{circuit="cloudflare",state="disabled"} 0
breakerbox_circuit_state{circuit="cloudflare",state="forced_open"} 0
breakerbox_circuit_state{circuit="cloudflare",state="half_open"} 0
breakerbox_circuit_state{circuit="cloudflare",state="open"} 0
breakerbox_circuit_state{circuit="genesys/eu-west-1",state="closed"} 0
breakerbox_circuit_state{circuit="genesys/eu-west-1",state="disabled"} 0
breakerbox_circuit_state{circuit="genesys/eu-west-1",state="forced_open"} 0
breakerbox_circuit_state{circuit="genesys/eu-west-1",state="half_open"} 0
breakerbox_circuit_state{circuit="genesys/eu-west-1",state="open"} 1
breakerbox_circuit_state{circuit="namecheap",state="closed"} 0
breakerbox_circuit_state{circuit="namecheap",state="disabled"} 0
breakerbox_circuit_state{circuit="namecheap",state="forced_open"} 0
breakerbox_circuit_state{circuit="namecheap",state="half_open"} 1
breakerbox_circuit_state{circuit="namecheap",state="open"} 0
breakerbox_circuit_state{circuit="smtp",state="closed"} 0
breakerbox_circuit_state{circuit="smtp",state="disabled"} 0
breakerbox_circuit_state{circuit="smtp",state="forced_open"} 1
breakerbox_circuit_state{circuit="smtp",state="half_open"} 0
breakerbox_circuit_state{circuit="smtp",state="open"} 0
# HELP breakerbox_open_until_seconds Seconds until the circuit breaker allows a probe: the rest of the open timeout, or while every half-open probe slot is taken the time until one frees; else 0.
# TYPE breakerbox_open_until_seconds gauge
breakerbox_open_until_seconds{circuit="cloudflare"} 0
breakerbox_open_until_seconds{circuit="genesys/eu-west-1"} 45
breakerbox_open_until_seconds{circuit="namecheap"} 45
breakerbox_open_until_seconds{circuit="smtp"} 0
# HELP breakerbox_rejected_total Calls rejected by the circuit breaker without running, by reason.
# TYPE breakerbox_rejected_total counter
breakerbox_rejected_total{circuit="cloudflare",reason="half_open_full"} 0
breakerbox_rejected_total{circuit="cloudflare",reason="open"} 0
breakerbox_rejected_total{circuit="genesys/eu-west-1",reason="half_open_full"} 0
breakerbox_rejected_total{circuit="genesys/eu-west-1",reason="open"} 1
breakerbox_rejected_total{circuit="namecheap",reason="half_open_full"} 1
breakerbox_rejected_total{circuit="namecheap",reason="open"} 0
breakerbox_rejected_total{circuit="smtp",reason="half_open_full"} 0
breakerbox_rejected_total{circuit="smtp",reason="open"} 0
# HELP breakerbox_transitions_total State transitions of the circuit breaker.
# TYPE breakerbox_transitions_total counter
breakerbox_transitions_total{circuit="cloudflare",from="closed",to="open"} 0
breakerbox_transitions_total{circuit="cloudflare",from="half_open",to="closed"} 0
breakerbox_transitions_total{circuit="cloudflare",from="half_open",to="open"} 0
breakerbox_transitions_total{circuit="cloudflare",from="open",to="half_open"} 0
breakerbox_transitions_total{circuit="genesys/eu-west-1",from="closed",to="open"} 1
breakerbox_transitions_total{circuit="genesys/eu-west-1",from="half_open",to="closed"} 0
breakerbox_transitions_total{circuit="genesys/eu-west-1",from="half_open",to="open"} 0
breakerbox_transitions_total{circuit="genesys/eu-west-1",from="open",to="half_open"} 0
breakerbox_transitions_total{circuit="namecheap",from="closed",to="open"} 1
breakerbox_transitions_total{circuit="namecheap",from="half_open",to="closed"} 0
breakerbox_transitions_total{circuit="namecheap",from="half_open",to="open"} 0
breakerbox_transitions_total{circuit="namecheap",from="open",to="half_open"} 1
breakerbox_transitions_total{circuit="smtp",from="closed",to="forced_open"} 1
breakerbox_transitions_total{circuit="smtp",from="closed",to="open"} 0
breakerbox_transitions_total{circuit="smtp",from="half_open",to="closed"} 0
breakerbox_transitions_total{circuit="smtp",from="half_open",to="open"} 0
breakerbox_transitions_total{circuit="smtp",from="open",to="half_open"} 0
`

// get is Registry.Get for registries with no Configure hook, where it
// cannot fail.
func get(t testing.TB, reg *breaker.Registry, key string) *breaker.Breaker {
	t.Helper()
	b, err := reg.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCollectorExposesEveryStateAndCounter(t *testing.T) {
	c := breakerprom.NewCollector(fleet(t))
	if err := testutil.CollectAndCompare(c, strings.NewReader(wantExposition)); err != nil {
		t.Fatal(err)
	}
}

func TestCollectorPassesThePedanticRegistryAndLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(breakerprom.NewCollector(fleet(t))); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectorFollowsTheRegistry(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
	c := breakerprom.NewCollector(reg)
	if n := testutil.CollectAndCount(c, "breakerbox_circuit_state"); n != 0 {
		t.Fatalf("empty registry: %d state series, want 0", n)
	}
	get(t, reg, "a")
	get(t, reg, "b")
	if n := testutil.CollectAndCount(c, "breakerbox_circuit_state"); n != 10 {
		t.Fatalf("two breakers created after the collector: %d state series, want 10", n)
	}
	reg.Remove("a")
	if n := testutil.CollectAndCount(c, "breakerbox_circuit_state"); n != 5 {
		t.Fatalf("after removing one: %d state series, want 5", n)
	}
}

func TestSuccessesAreExportedOnlyWhenCounted(t *testing.T) {
	tests := []struct {
		name           string
		countSuccesses bool
		wantSeries     int
	}{
		{"CountedSuccessesAreExported", true, 3},
		{"UncountedSuccessesAreOmitted", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{CountSuccesses: tt.countSuccesses, Logger: discardLogger}})
			get(t, reg, "svc").Do(context.Background(), func(context.Context) error { return nil })
			if n := testutil.CollectAndCount(breakerprom.NewCollector(reg), "breakerbox_calls_total"); n != tt.wantSeries {
				t.Fatalf("calls_total series = %d, want %d", n, tt.wantSeries)
			}
		})
	}
}

// TestPromtoolChecksTheExposition runs Prometheus's own linter on the
// exposition. promtool comes with Debian's prometheus package; CI must have
// it.
func TestPromtoolChecksTheExposition(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH in CI: install it (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH; install it (apt-get install prometheus) to run this check")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(breakerprom.NewCollector(fleet(t)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = &text
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestCollectWhileCallsRunIsRaceFree(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{
		FailureThreshold: 3, OpenTimeout: time.Millisecond, CountSuccesses: true, Logger: discardLogger,
	}})
	promReg := prometheus.NewPedanticRegistry()
	promReg.MustRegister(breakerprom.NewCollector(reg))

	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			b, _ := reg.Get("svc-" + string(rune('a'+w%2))) // no Configure hook: cannot fail
			for i := range 500 {
				b.Do(context.Background(), func(context.Context) error {
					if i%4 == 0 {
						return errBoom
					}
					return nil
				})
			}
		}()
	}
	for range 50 {
		if _, err := promReg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		<-done
	}
	if _, err := promReg.Gather(); err != nil {
		t.Fatal(err)
	}
}
