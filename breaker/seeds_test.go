package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// The seed documents' acceptance lines, one named test each.

// t10 is T10's Genesys profile: 10 consecutive failures, 60 s, 3 successes,
// one probe at a time.
var t10 = breaker.Config{FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3, HalfOpenProbes: 1}

// statusError stands for an HTTP status returned by the Genesys API.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("HTTP %d", int(e)) }

// t10Classify is T10's failure counting: only 5xx, timeouts and connection
// errors count; 4xx are message-level (success for the breaker); 429 is left
// to the backoff layer (ignored).
func t10Classify(err error) breaker.Outcome {
	var se statusError
	if errors.As(err, &se) {
		switch {
		case se == 429:
			return breaker.Ignored
		case se >= 500:
			return breaker.Failure
		default:
			return breaker.Success
		}
	}
	return breaker.DefaultClassifier(err)
}

func newT10(t *testing.T, region string) *harness {
	cfg := t10
	cfg.Name = "genesys/" + region
	cfg.Classify = t10Classify
	return newHarness(t, cfg)
}

func TestT10_TenConsecutive5xxOpen(t *testing.T) {
	h := newT10(t, "eu-west-1")
	for i := range 9 {
		h.do(statusError(503))
		if h.b.State() != breaker.Closed {
			t.Fatalf("opened after %d failures, want 10", i+1)
		}
	}
	h.do(statusError(500))
	h.wantState(breaker.Open)
}

func TestT10_WhileOpenNoCallsReachService(t *testing.T) {
	h := newT10(t, "eu-west-1")
	for range 10 {
		h.do(statusError(502))
	}
	ran := h.calls
	for range 1000 {
		h.clk.Advance(50 * time.Millisecond)
		h.wantRejected(h.do(nil))
	}
	if h.calls != ran {
		t.Fatalf("%d calls reached the service while OPEN, want 0", h.calls-ran)
	}
}

func TestT10_After60sHalfOpen(t *testing.T) {
	h := newT10(t, "us-east-1")
	for range 10 {
		h.do(statusError(500))
	}
	h.clk.Advance(59 * time.Second)
	h.wantState(breaker.Open)
	h.clk.Advance(time.Second)
	h.wantState(breaker.HalfOpen)
}

func TestT10_OneProbeAtATime(t *testing.T) {
	h := newT10(t, "us-east-1")
	for range 10 {
		h.do(statusError(500))
	}
	h.clk.Advance(time.Minute)
	probe, err := h.b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		h.wantRejected(h.do(nil))
	}
	probe.Done(nil)
	if _, err := h.b.Allow(); err != nil {
		t.Fatalf("next probe after the first returned: %v", err)
	}
}

func TestT10_ThreeConsecutiveSuccessesClose(t *testing.T) {
	h := newT10(t, "us-east-1")
	for range 10 {
		h.do(statusError(500))
	}
	h.clk.Advance(time.Minute)
	h.succeed(2)
	h.wantState(breaker.HalfOpen)
	h.succeed(1)
	h.wantState(breaker.Closed)
}

func TestT10_OneFailureInHalfOpenReopens(t *testing.T) {
	h := newT10(t, "us-east-1")
	for range 10 {
		h.do(statusError(500))
	}
	h.clk.Advance(time.Minute)
	h.succeed(2)
	h.do(statusError(504))
	h.wantState(breaker.Open)
	h.clk.Advance(time.Minute)
	h.succeed(2) // the count of successes starts again
	h.wantState(breaker.HalfOpen)
}

func TestT10_Only5xxTimeoutsAndConnectionErrorsCount(t *testing.T) {
	tests := []struct {
		err   error
		opens bool
	}{
		{statusError(500), true},
		{statusError(503), true},
		{context.DeadlineExceeded, true},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{statusError(400), false},
		{statusError(404), false},
		{statusError(429), false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			h := newT10(t, "eu-west-1")
			for range 10 {
				h.do(tt.err)
			}
			if got := h.b.State() == breaker.Open; got != tt.opens {
				t.Errorf("10 × %v: open = %v, want %v", tt.err, got, tt.opens)
			}
		})
	}
}

func TestT10_4xxBreaksThe5xxStreak(t *testing.T) {
	h := newT10(t, "eu-west-1")
	for range 9 {
		h.do(statusError(500))
	}
	h.do(statusError(404)) // the service answered
	h.do(statusError(500))
	h.wantState(breaker.Closed)
}

func TestT10_EachRegionHasOwnBreaker(t *testing.T) {
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{Logger: discard},
		Profiles: map[string]breaker.Config{"genesys": t10},
	})
	if err != nil {
		t.Fatal(err)
	}
	us, eu := get(t, reg, "genesys/us-east-1"), get(t, reg, "genesys/eu-west-1")
	if us == eu {
		t.Fatal("two regions share one breaker")
	}
	if get(t, reg, "genesys/us-east-1") != us {
		t.Fatal("one region got two breakers: tenants of a region must share one")
	}
	for range 10 {
		us.Do(context.Background(), func(context.Context) error { return errBoom })
	}
	if us.State() != breaker.Open || eu.State() != breaker.Closed {
		t.Fatalf("us-east-1 %v, eu-west-1 %v; want open, closed", us.State(), eu.State())
	}
}

func TestT10_TransitionLoggedWithRegionAndReason(t *testing.T) {
	h := newT10(t, "eu-west-1")
	for range 10 {
		h.do(statusError(500))
	}
	h.clk.Advance(time.Minute)
	h.succeed(3)
	logs := h.log.String()
	for _, want := range []string{
		`"level":"ERROR","msg":"Circuit breaker OPEN for genesys/eu-west-1 after 10 consecutive failures","breaker":"genesys/eu-west-1","from":"closed","to":"open","reason":"failure_threshold","failures":10`,
		`"level":"WARN","msg":"Circuit breaker HALF_OPEN for genesys/eu-west-1: probes allowed","breaker":"genesys/eu-west-1","from":"open","to":"half_open","reason":"open_timeout"`,
		`"level":"INFO","msg":"Circuit breaker HALF_OPEN for genesys/eu-west-1: letting a probe through","breaker":"genesys/eu-west-1","probe":1`,
		`"level":"INFO","msg":"Circuit breaker CLOSED for genesys/eu-west-1 — recovered after 3 successful probes","breaker":"genesys/eu-west-1","from":"half_open","to":"closed","reason":"probes_succeeded"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks\n%s\ngot:\n%s", want, logs)
		}
	}
}

// ADR-002.

func TestADR002_DefaultsAreFiveSixtySecondsTwo(t *testing.T) {
	h := newHarness(t, breaker.Config{})
	c := h.b.Config()
	if c.FailureThreshold != 5 || c.OpenTimeout != time.Minute || c.HalfOpenSuccesses != 2 || c.HalfOpenProbes != 1 {
		t.Fatalf("defaults = %d/%v/%d/%d, want 5/1m/2/1", c.FailureThreshold, c.OpenTimeout, c.HalfOpenSuccesses, c.HalfOpenProbes)
	}
	h.fail(4)
	h.wantState(breaker.Closed)
	h.fail(1)
	h.wantState(breaker.Open)
	h.clk.Advance(time.Minute)
	h.succeed(1)
	h.wantState(breaker.HalfOpen)
	h.succeed(1)
	h.wantState(breaker.Closed)
}

// adr002 is ADR-002's table of services.
var adr002 = map[string]breaker.Config{
	"cloudflare":      {FailureThreshold: 5, OpenTimeout: 60 * time.Second},
	"namecheap":       {FailureThreshold: 5, OpenTimeout: 60 * time.Second},
	"google-admin":    {FailureThreshold: 3, OpenTimeout: 30 * time.Second},
	"microsoft-graph": {FailureThreshold: 3, OpenTimeout: 30 * time.Second},
	"smtp":            {FailureThreshold: 10, OpenTimeout: 120 * time.Second},
}

func TestADR002_ServiceTable(t *testing.T) {
	for name, p := range adr002 {
		t.Run(name, func(t *testing.T) {
			cfg := p
			cfg.Name = name
			h := newHarness(t, cfg)
			h.fail(p.FailureThreshold - 1)
			h.wantState(breaker.Closed)
			h.fail(1)
			h.wantState(breaker.Open)
			h.clk.Advance(p.OpenTimeout - time.Millisecond)
			h.wantState(breaker.Open)
			h.clk.Advance(time.Millisecond)
			h.wantState(breaker.HalfOpen)
			h.succeed(2) // the default: 2 half-open successes
			h.wantState(breaker.Closed)
		})
	}
}

func TestADR002_FailFastWithOpenError(t *testing.T) {
	h := newHarness(t, breaker.Config{Name: "cloudflare"})
	h.open()
	err := h.do(nil)
	oe := h.wantRejected(err)
	if oe.Name != "cloudflare" || !strings.Contains(err.Error(), "circuit open") {
		t.Fatalf("error %q, want it to name cloudflare and say circuit open", err)
	}
}

func TestADR002_StatesAreMonitored(t *testing.T) {
	h := newHarness(t, breaker.Config{Name: "namecheap"})
	h.open()
	h.clk.Advance(time.Minute)
	h.succeed(2)
	var path []string
	for _, tr := range h.transitions() {
		path = append(path, tr.From.String()+"→"+tr.To.String())
	}
	if got := strings.Join(path, " "); got != "closed→open open→half_open half_open→closed" {
		t.Fatalf("events: %s", got)
	}
	s := h.b.Snapshot()
	if s.TransitionCount(breaker.Closed, breaker.Open) != 1 || s.TransitionCount(breaker.HalfOpen, breaker.Closed) != 1 {
		t.Fatalf("snapshot transition counts: closed→open %d, half_open→closed %d", s.TransitionCount(breaker.Closed, breaker.Open), s.TransitionCount(breaker.HalfOpen, breaker.Closed))
	}
}
