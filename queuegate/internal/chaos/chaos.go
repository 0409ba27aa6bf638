//go:build unix

// Package chaos is the chaos test shared by the broker adapters: thousands of
// messages across three regions, one region's API down for longer than the
// open timeout, and the checks that nothing was lost, duplicated,
// dead-lettered or spun on because of it.
package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/retry"
)

// Broker is what the chaos test needs of an adapter under test.
type Broker struct {
	// Name is the broker's name in the CHAOS line, e.g. "nats".
	Name string
	// InFlight is the most messages one region's consumer holds at once
	// (handlers running plus messages fetched or prefetched).
	InFlight int
	// Publish puts messages with the ids on region's queue.
	Publish func(ctx context.Context, region string, ids []string) error
	// Consume starts region's consumer, gated by gate, calling handle with
	// each message's id, until ctx is done.
	Consume func(ctx context.Context, region string, gate *queuegate.Gate, handle func(ctx context.Context, id string) error, o Options) Consumer
	// DeadLettered returns the number of messages on the dead-letter path,
	// of all regions.
	DeadLettered func(ctx context.Context) (int, error)
}

// Options tune one consumer; zero fields mean the adapter's defaults.
type Options struct {
	DrainTimeout time.Duration
}

// Consumer is a consumer started by Broker.Consume.
type Consumer struct {
	// Wait waits for the consumer to stop and returns its error.
	Wait func() error
	// Fetches counts what the consumer asked the broker for: pull
	// requests (JetStream) or subscriptions (RabbitMQ basic.consume).
	Fetches func() uint64
	// Deliveries counts the messages the broker delivered, redeliveries
	// included.
	Deliveries func() uint64
}

// Scenario sizes the chaos.
const (
	PerRegion   = 1700 // × 3 regions = 5,100 messages
	OpenTimeout = 200 * time.Millisecond
	Outage      = time.Second
	QuietExtra  = 30 // messages of the quiet phase, while the consumer is paused
	apiLatency  = 2 * time.Millisecond
	attempts    = 2 // retry inside the breaker
)

// Regions are the three regions; Down is the one whose API fails.
var (
	Regions = []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	Down    = "eu-west-1"
)

// api is a fake Genesys-style API, one path per region, that counts what it
// receives.
type api struct {
	reg  *breaker.Registry
	down atomic.Bool

	mu          sync.Mutex
	successes   map[string]int // id → successful deliveries
	byRegion    map[string]int // successes per region
	probeNow    int            // requests for Down in flight that arrived while HALF_OPEN
	probeMax    int
	probeTotal  int
	whileOpen   int // requests for Down that arrived while its circuit was OPEN
	failedTotal int
	now, peak   map[string]int // requests in flight per region, and the most at once
	// Successes of the other regions while Down was down and its circuit
	// not closed: they kept flowing while it waited.
	whileDown map[string]int
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	region := strings.TrimPrefix(r.URL.Path, "/regions/")
	region = strings.TrimSuffix(region, "/messages")
	id := r.Header.Get("Idempotency-Key")
	probe := false
	a.mu.Lock()
	a.now[region]++
	a.peak[region] = max(a.peak[region], a.now[region])
	a.mu.Unlock()
	if region == Down {
		state := circuit(a.reg, Down).State()
		a.mu.Lock()
		switch state {
		case breaker.Open, breaker.ForcedOpen:
			// Only a call let through before the circuit opened can
			// arrive now (its request, or its retry, was on the way).
			a.whileOpen++
		case breaker.HalfOpen:
			probe = true
			a.probeNow++
			a.probeTotal++
			a.probeMax = max(a.probeMax, a.probeNow)
		}
		a.mu.Unlock()
	}
	time.Sleep(apiLatency)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.now[region]--
	if probe {
		a.probeNow--
	}
	if region == Down && a.down.Load() {
		a.failedTotal++
		http.Error(w, "region unavailable", http.StatusServiceUnavailable)
		return
	}
	a.successes[id]++
	a.byRegion[region]++
	if b, ok := a.reg.Lookup("genesys/" + Down); region != Down && a.down.Load() && ok && b.State() != breaker.Closed {
		a.whileDown[region]++
	}
	w.WriteHeader(http.StatusAccepted)
}

func (a *api) whileDownCounts() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.whileDown)
}

func (a *api) count(region string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byRegion[region]
}

// sender sits between the retry layer and the network, inside the breaker:
// it sees each request as it is sent, and records the state of the down
// region's circuit at that moment (not when the request arrives, which can
// be later).
type sender struct {
	reg  *breaker.Registry
	next http.RoundTripper

	mu sync.Mutex
	// Requests for Down sent while its circuit was OPEN, by the calls that
	// began (entered the handler) in that same open period: the gate must
	// make this 0.
	newWhileOpen int
	// Requests for Down sent while OPEN by calls that began before it
	// opened (in flight, or their retries): the breaker allows these.
	inFlightWhileOpen int
	// Requests for Down sent while HALF_OPEN: probes.
	probeNow, probeMax, probeTotal int
}

func (s *sender) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Region") != Down {
		return s.next.RoundTrip(r)
	}
	snap := circuit(s.reg, Down).Snapshot()
	began, _ := strconv.ParseUint(r.Header.Get("X-Began-Gen"), 10, 64)
	probe := false
	s.mu.Lock()
	switch snap.State {
	case breaker.Open, breaker.ForcedOpen:
		if snap.Generation == began {
			s.newWhileOpen++
		} else {
			s.inFlightWhileOpen++
		}
	case breaker.HalfOpen:
		probe = true
		s.probeNow++
		s.probeTotal++
		s.probeMax = max(s.probeMax, s.probeNow)
	}
	s.mu.Unlock()
	resp, err := s.next.RoundTrip(r)
	if probe {
		s.mu.Lock()
		s.probeNow--
		s.mu.Unlock()
	}
	return resp, err
}

// Run runs the chaos test against b.
func Run(t *testing.T, b Broker) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{Logger: quiet},
		// T10's profile, with the open timeout scaled down for the test.
		Profiles: map[string]breaker.Config{"genesys": {FailureThreshold: 10, OpenTimeout: OpenTimeout, HalfOpenSuccesses: 3, HalfOpenProbes: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &api{reg: reg, successes: map[string]int{}, byRegion: map[string]int{}, now: map[string]int{}, peak: map[string]int{}, whileDown: map[string]int{}}
	srv := httptest.NewServer(a)
	defer srv.Close()

	snd := &sender{reg: reg, next: &http.Transport{MaxIdleConnsPerHost: 64}}
	client := &http.Client{Transport: &httpbreaker.Transport{
		Registry: reg,
		Key:      func(r *http.Request) string { return "genesys/" + r.Header.Get("X-Region") },
		Retry:    &retry.Policy{MaxAttempts: attempts, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		Next:     snd,
	}}
	var callsMu sync.Mutex
	calls := map[string]int{} // handler calls per id: the broker's deliveries that reached a handler
	handle := func(region string) func(ctx context.Context, id string) error {
		return func(ctx context.Context, id string) error {
			callsMu.Lock()
			calls[id]++
			callsMu.Unlock()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/regions/"+region+"/messages", strings.NewReader(id))
			if err != nil {
				return err
			}
			req.Header.Set("X-Region", region)
			req.Header.Set("X-Began-Gen", strconv.FormatUint(circuit(reg, region).Snapshot().Generation, 10))
			req.Header.Set("Idempotency-Key", id) // lets the retry layer resend the POST
			resp, err := client.Do(req)
			if err != nil {
				return err // a rejection by the open circuit among them
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode < 300:
				return nil
			case resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
				return queuegate.MarkDeadLetter(fmt.Errorf("%s: %s", id, resp.Status))
			}
			return fmt.Errorf("%s: %s", id, resp.Status)
		}
	}

	// Publish everything first, then consume.
	ids := map[string][]string{}
	total := 0
	for _, r := range Regions {
		for i := range PerRegion {
			ids[r] = append(ids[r], fmt.Sprintf("%s-%05d", r, i))
		}
		if err := b.Publish(ctx, r, ids[r]); err != nil {
			t.Fatalf("publish %s: %v", r, err)
		}
		total += PerRegion
	}

	gates := map[string]*queuegate.Gate{}
	consumers := map[string]Consumer{}
	consumeCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	for _, r := range Regions {
		g, err := queuegate.New(queuegate.Config{
			Registry: reg, Key: "genesys/" + r, Logger: quiet,
			Jitter: 50 * time.Millisecond, RetryDelay: 100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		gates[r] = g
		consumers[r] = b.Consume(consumeCtx, r, g, handle(r), Options{})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	counts := func() map[string]int {
		a.mu.Lock()
		defer a.mu.Unlock()
		return maps.Clone(a.byRegion)
	}

	waitFor("the down region to make progress", func() bool { return a.count(Down) >= 300 })
	before, start := counts(), time.Now()

	// The outage: the region's API fails for longer than the open
	// timeout, then recovers. It lasts at least Outage, and until each
	// other region has delivered flowing messages (or all it had left) while
	// the down region's circuit was not closed: a region held up behind the
	// down one would deliver at most what it had in hand, and the outage
	// would outlast the test's deadline. Counted, so a slow machine only
	// makes the outage longer.
	a.down.Store(true)
	waitFor("the circuit to open", func() bool { return gates[Down].Stats().Pauses > 0 })
	atOpen := counts()
	flowing := 4 * b.InFlight
	want := map[string]int{}
	for _, r := range Regions {
		if r != Down {
			want[r] = min(flowing, PerRegion-atOpen[r])
		}
	}
	time.Sleep(Outage - time.Since(start))
	waitFor(fmt.Sprintf("the other regions to deliver %v messages while %s was down: blocked by it?", want, Down), func() bool {
		got := a.whileDownCounts()
		for r, n := range want {
			if got[r] < n {
				return false
			}
		}
		return true
	})
	during := map[string]int{}
	after := counts()
	for _, r := range Regions {
		during[r] = after[r] - before[r]
	}
	a.down.Store(false)
	outage := time.Since(start)
	outageStats := gates[Down].Stats()
	waitFor("every message to be delivered", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.successes) >= total
	})

	// The quiet phase: the region goes down again while the others are
	// idle; the paused consumer must cost next to nothing, and ask the
	// broker for nothing but its probes.
	pausesBefore := gates[Down].Stats().Pauses
	a.down.Store(true)
	var extra []string
	for i := range QuietExtra {
		extra = append(extra, fmt.Sprintf("%s-quiet-%02d", Down, i))
	}
	if err := b.Publish(ctx, Down, extra); err != nil {
		t.Fatal(err)
	}
	total += QuietExtra
	waitFor("the circuit to open again", func() bool {
		s := gates[Down].Stats()
		return s.Pauses > pausesBefore && s.InFlight == 0
	})
	time.Sleep(50 * time.Millisecond) // let the deferred messages settle
	fetches0, probes0 := consumers[Down].Fetches(), gates[Down].Stats().Probes
	// The CPU time is logged, not asserted: a busy machine's noise.
	cpu0, wall0 := cpuTime(t), time.Now()
	time.Sleep(600 * time.Millisecond)
	cpu, wall := cpuTime(t)-cpu0, time.Since(wall0)
	quietFetches, quietProbes := consumers[Down].Fetches()-fetches0, gates[Down].Stats().Probes-probes0
	a.down.Store(false)
	waitFor("the quiet-phase messages to be delivered", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.successes) >= total
	})
	// Anything delivered twice would show up now.
	time.Sleep(100 * time.Millisecond)
	stopConsumers()
	var deliveries uint64
	for _, r := range Regions {
		if err := consumers[r].Wait(); err != nil {
			t.Errorf("consumer %s: %v", r, err)
		}
		deliveries += consumers[r].Deliveries()
	}

	// The checks.
	a.mu.Lock()
	defer a.mu.Unlock()
	snd.mu.Lock()
	defer snd.mu.Unlock()
	callsMu.Lock()
	defer callsMu.Unlock()
	lost, duplicates := 0, 0
	for _, r := range Regions {
		for _, id := range ids[r] {
			if a.successes[id] == 0 {
				lost++
			}
		}
	}
	for _, id := range extra {
		if a.successes[id] == 0 {
			lost++
		}
	}
	for _, n := range a.successes {
		duplicates += n - 1
	}
	maxCalls := 0
	for _, n := range calls {
		maxCalls = max(maxCalls, n)
	}
	dead, err := b.DeadLettered(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s := gates[Down].Stats()
	redeliveries := outageStats.Deferred + outageStats.Retried
	// Each pause gives back at most what the consumer holds, and each
	// failed probe is one deferred message.
	bound := uint64(3*b.InFlight) + 2*outageStats.Pauses
	// Counted by the broker's side: every delivery past a message's first,
	// over both outages.
	brokerRedeliveries := int64(deliveries) - int64(total)
	brokerBound := int64(2*3*b.InFlight) + 2*int64(s.Pauses)
	cpuShare := float64(cpu) / float64(wall)
	var others, peaks []string
	for _, r := range Regions {
		peaks = append(peaks, fmt.Sprintf("%s:%d", r, a.peak[r]))
		if r != Down {
			others = append(others, fmt.Sprintf("%s:%d(%d while its circuit was not closed)", r, during[r], a.whileDown[r]))
		}
	}
	t.Logf("CHAOS broker=%s messages=%d regions=%d outage=%v open_timeout=%v redeliveries=%d (deferred=%d of which outage_failures=%d, retried=%d, in_flight=%d, pauses=%d, bound=%d) broker_redeliveries=%d (deliveries=%d, bound=%d) max_handler_calls_per_message=%d duplicates=%d lost=%d dead_lettered=%d max_concurrent_probes=%d probes=%d new_requests_sent_while_open=%d in_flight_requests_sent_while_open=%d arrived_while_open=%d other_regions_during_outage=[%s] max_concurrent_requests=[%s] quiet_window: fetches=%d probes=%d cpu=%.1f%% of one core over %v",
		b.Name, total, len(Regions), outage.Round(time.Millisecond), OpenTimeout, redeliveries, outageStats.Deferred, outageStats.OutageFailures, outageStats.Retried,
		b.InFlight, outageStats.Pauses, bound, brokerRedeliveries, deliveries, brokerBound, maxCalls, duplicates, lost, dead,
		snd.probeMax, snd.probeTotal, snd.newWhileOpen, snd.inFlightWhileOpen, a.whileOpen,
		strings.Join(others, " "), strings.Join(peaks, " "),
		quietFetches, quietProbes, 100*cpuShare, wall.Round(time.Millisecond))

	if lost != 0 {
		t.Errorf("%d messages never delivered", lost)
	}
	// Both brokers deliver at least once; a success is delivered twice only
	// if its ack is lost (a dropped connection, a crash between the call and
	// the ack), which this test does not cause. So any duplicate is a bug.
	if duplicates != 0 {
		t.Errorf("%d duplicate deliveries of successful messages", duplicates)
	}
	if dead != 0 || s.DeadLettered != 0 {
		t.Errorf("%d messages dead-lettered (gate says %d), want 0: the outage is no fault of the messages", dead, s.DeadLettered)
	}
	if snd.probeMax > 1 {
		t.Errorf("%d requests at once were sent to the region while its circuit was half-open, want at most 1 (the probe slot)", snd.probeMax)
	}
	// While OPEN nothing new is let through: a request sent while the
	// circuit is open can only belong to a call that began before it
	// opened (its request, or its retry).
	if snd.newWhileOpen != 0 {
		t.Errorf("%d requests were sent to the region while its circuit was open, by calls that began after it opened; want 0", snd.newWhileOpen)
	}
	if limit := b.InFlight * attempts; snd.inFlightWhileOpen > limit {
		t.Errorf("%d requests of calls in flight as the circuit opened were sent while it was open, want at most %d", snd.inFlightWhileOpen, limit)
	}
	if outageStats.Pauses == 0 {
		t.Error("the gate never paused during the outage")
	}
	if redeliveries > bound {
		t.Errorf("%d redeliveries during the outage, want at most %d: a hot loop?", redeliveries, bound)
	}
	if brokerRedeliveries > brokerBound {
		t.Errorf("the broker redelivered %d times in all, want at most %d: a hot loop?", brokerRedeliveries, brokerBound)
	}
	// Paused, the consumer asks the broker for nothing but its probes
	// (plus the one request that may be open as the window starts).
	if quietFetches > quietProbes+1 {
		t.Errorf("%d fetches/subscriptions in the quiet window with %d probes, want at most %d", quietFetches, quietProbes, quietProbes+1)
	}
	if slices.ContainsFunc(Regions, func(r string) bool { return gates[r].Stats().InFlight != 0 }) {
		t.Error("a gate still has permits out after the consumers stopped")
	}
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// circuit is the breaker of a region. The scenario's registry has no
// Configure hook, so Get cannot fail.
func circuit(reg *breaker.Registry, region string) *breaker.Breaker {
	b, err := reg.Get("genesys/" + region)
	if err != nil {
		panic(err)
	}
	return b
}
