package breakerprom_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
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
		Default: breaker.Config{FailureThreshold: 2, OpenTimeout: time.Minute, Clock: clock, Logger: discardLogger},
		Profiles: map[string]breaker.Config{"cloudflare": {CountSuccesses: true},
			"rated": {FailureRate: &breaker.FailureRate{Threshold: 0.5}}}, // not created here
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
# HELP breakerbox_circuit_consecutive_failures Consecutive failures in CLOSED so far (consecutive-failure policy); the circuit opens at breakerbox_circuit_failure_threshold.
# TYPE breakerbox_circuit_consecutive_failures gauge
breakerbox_circuit_consecutive_failures{circuit="cloudflare"} 1
breakerbox_circuit_consecutive_failures{circuit="genesys/eu-west-1"} 0
breakerbox_circuit_consecutive_failures{circuit="namecheap"} 0
breakerbox_circuit_consecutive_failures{circuit="smtp"} 0
# HELP breakerbox_circuit_failure_threshold Setting: the consecutive failures that open the circuit (consecutive-failure policy).
# TYPE breakerbox_circuit_failure_threshold gauge
breakerbox_circuit_failure_threshold{circuit="cloudflare"} 2
breakerbox_circuit_failure_threshold{circuit="genesys/eu-west-1"} 2
breakerbox_circuit_failure_threshold{circuit="namecheap"} 2
breakerbox_circuit_failure_threshold{circuit="smtp"} 2
# HELP breakerbox_circuit_open_timeout_seconds Setting: how long the circuit stays open before a probe (before any backoff).
# TYPE breakerbox_circuit_open_timeout_seconds gauge
breakerbox_circuit_open_timeout_seconds{circuit="cloudflare"} 60
breakerbox_circuit_open_timeout_seconds{circuit="genesys/eu-west-1"} 60
breakerbox_circuit_open_timeout_seconds{circuit="namecheap"} 60
breakerbox_circuit_open_timeout_seconds{circuit="smtp"} 60
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
// exposition, as Handler serves it (client_golang's encoder for the
// gatherer, WriteText for the Collector). promtool comes with Debian's
// prometheus package; CI must have it.
func TestPromtoolChecksTheExposition(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH in CI: install it (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH; install it (apt-get install prometheus) to run this check")
	}
	reg := fleet(t)
	reg.MustGet("rated").Do(context.Background(), func(context.Context) error { return errBoom })
	durations := breakerprom.NewDurations(nil)
	durations.Observe("cloudflare", breaker.Success, 30*time.Millisecond)
	gathered := prometheus.NewPedanticRegistry()
	gathered.MustRegister(durations)
	w := httptest.NewRecorder()
	breakerprom.Handler(gathered, breakerprom.NewCollector(reg)).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	text := w.Body
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = text
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

// TestSettingsAndStreakShowHowNearTheThreshold: a consecutive-failure
// circuit exports its streak and threshold, a failure-rate circuit its rate
// and rate threshold, and neither exports the other policy's series.
func TestSettingsAndStreakShowHowNearTheThreshold(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{FailureThreshold: 5, OpenTimeout: 30 * time.Second, Logger: discardLogger},
		Profiles: map[string]breaker.Config{
			"rated": {FailureRate: &breaker.FailureRate{Threshold: 0.5, MinCalls: 10}},
		},
	})
	ctx := context.Background()
	fail := func(context.Context) error { return errBoom }
	ok := func(context.Context) error { return nil }
	streaky := get(t, reg, "streaky")
	for range 4 {
		streaky.Do(ctx, fail)
	}
	rated := get(t, reg, "rated")
	rated.Do(ctx, fail)
	for range 3 {
		rated.Do(ctx, ok)
	}
	want := `
# HELP breakerbox_circuit_consecutive_failures Consecutive failures in CLOSED so far (consecutive-failure policy); the circuit opens at breakerbox_circuit_failure_threshold.
# TYPE breakerbox_circuit_consecutive_failures gauge
breakerbox_circuit_consecutive_failures{circuit="streaky"} 4
# HELP breakerbox_circuit_failure_rate Share of failed calls in the sliding window, 0 to 1 (failure-rate policy; 0 while the window is empty).
# TYPE breakerbox_circuit_failure_rate gauge
breakerbox_circuit_failure_rate{circuit="rated"} 0.25
# HELP breakerbox_circuit_failure_rate_threshold Setting: the failure share in the window that opens the circuit (failure-rate policy).
# TYPE breakerbox_circuit_failure_rate_threshold gauge
breakerbox_circuit_failure_rate_threshold{circuit="rated"} 0.5
# HELP breakerbox_circuit_failure_threshold Setting: the consecutive failures that open the circuit (consecutive-failure policy).
# TYPE breakerbox_circuit_failure_threshold gauge
breakerbox_circuit_failure_threshold{circuit="streaky"} 5
# HELP breakerbox_circuit_open_timeout_seconds Setting: how long the circuit stays open before a probe (before any backoff).
# TYPE breakerbox_circuit_open_timeout_seconds gauge
breakerbox_circuit_open_timeout_seconds{circuit="rated"} 30
breakerbox_circuit_open_timeout_seconds{circuit="streaky"} 30
`
	if err := testutil.CollectAndCompare(breakerprom.NewCollector(reg), strings.NewReader(want),
		"breakerbox_circuit_consecutive_failures", "breakerbox_circuit_failure_rate", "breakerbox_circuit_failure_rate_threshold",
		"breakerbox_circuit_failure_threshold", "breakerbox_circuit_open_timeout_seconds"); err != nil {
		t.Fatal(err)
	}
}

// TestWriteTextIsWhatCollectGives: the direct writer and the Collector give
// the same lines (in the text format, ignoring order), for every state and
// for a name that needs escaping.
func TestWriteTextIsWhatCollectGives(t *testing.T) {
	reg := fleet(t)
	get(t, reg, "odd \"name\"\\with\nbreaks")
	c := breakerprom.NewCollector(reg)
	var direct bytes.Buffer
	if err := c.WriteText(&direct); err != nil {
		t.Fatal(err)
	}
	promReg := prometheus.NewPedanticRegistry()
	promReg.MustRegister(c)
	gathered := gatherText(t, promReg)
	if a, b := sortedLines(direct.String()), sortedLines(gathered); a != b {
		t.Fatalf("WriteText:\n%s\nCollect:\n%s", a, b)
	}
}

// TestHandlerServesTheGathererThenTheCollector: one answer with the
// gatherer's families and the Collector's, each once.
func TestHandlerServesTheGathererThenTheCollector(t *testing.T) {
	other := prometheus.NewRegistry()
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "app_up", Help: "1 while the app runs."})
	up.Set(1)
	other.MustRegister(up)
	h := breakerprom.Handler(other, breakerprom.NewCollector(fleet(t)))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	for _, want := range []string{"app_up 1\n", `breakerbox_circuit_state{circuit="smtp",state="forced_open"} 1` + "\n"} {
		if strings.Count(body, want) != 1 {
			t.Errorf("want %q once in:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "# TYPE breakerbox_circuit_state "); n != 1 {
		t.Errorf("%d TYPE lines for breakerbox_circuit_state, want 1", n)
	}
}

func gatherText(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
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
	return text.String()
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestDurationsTimeCallsByOutcome(t *testing.T) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{FailureThreshold: 2, Logger: discardLogger}})
	b := get(t, reg, "svc")
	d := breakerprom.NewDurations(nil)
	ctx := context.Background()
	d.Do(ctx, b, func(context.Context) error { return nil })
	d.Do(ctx, b, func(context.Context) error { return context.Canceled })
	d.Do(ctx, b, func(context.Context) error { return errBoom })
	d.Do(ctx, b, func(context.Context) error { return errBoom }) // opens
	if err := d.Do(ctx, b, func(context.Context) error { return nil }); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err = %v, want a rejection", err)
	}
	for outcome, want := range map[string]uint64{"success": 1, "ignored": 1, "failure": 2} {
		if n := histogramCount(t, d, "svc", outcome); n != want {
			t.Errorf("outcome %s: %d observations, want %d (rejections are not timed)", outcome, n, want)
		}
	}
	if problems, err := testutil.CollectAndLint(d); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
	d.Forget("svc")
	if n := testutil.CollectAndCount(d); n != 0 {
		t.Errorf("after Forget: %d series", n)
	}
}

func histogramCount(t *testing.T, c prometheus.Collector, circuit, outcome string) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["circuit"] == circuit && labels["outcome"] == outcome {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}
