package httpbreaker_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/genesys"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/retry"
)

// upstream is a loopback HTTP server that answers with a fixed status and
// counts the requests that reached it.
type upstream struct {
	*httptest.Server
	status atomic.Int32
	hits   atomic.Int32
}

func newUpstream(t *testing.T, status int) *upstream {
	t.Helper()
	u := &upstream{}
	u.status.Store(int32(status))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(int(u.status.Load()))
		io.WriteString(w, "body")
	}))
	t.Cleanup(u.Close)
	return u
}

// newRegistry returns a registry on a manual clock whose breakers count
// successes, with the given failure threshold.
func newRegistry(t *testing.T, clock *breakertest.Clock, threshold int) *breaker.Registry {
	t.Helper()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{
		FailureThreshold: threshold, OpenTimeout: time.Minute, CountSuccesses: true,
		Clock: clock, Logger: discardLogger,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// newTransport returns a fresh http.Transport closed with the test, so
// connections do not leak between tests.
func newTransport(t *testing.T) *http.Transport {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// get makes one GET and reads and closes the body.
func get(client *http.Client, ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

type counts struct{ successes, failures, ignored uint64 }

func countsOf(s breaker.Snapshot) counts { return counts{s.Successes, s.Failures, s.Ignored} }

func TestDefaultClassificationOfResponses(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   counts
	}{
		{"OKIsSuccess", 200, counts{successes: 1}},
		{"RedirectIsSuccess", 304, counts{successes: 1}},
		{"BadRequestIsSuccess", 400, counts{successes: 1}},
		{"NotFoundIsSuccess", 404, counts{successes: 1}},
		{"TooManyRequestsIsIgnored", 429, counts{ignored: 1}},
		{"InternalServerErrorIsFailure", 500, counts{failures: 1}},
		{"BadGatewayIsFailure", 502, counts{failures: 1}},
		{"ServiceUnavailableIsFailure", 503, counts{failures: 1}},
		{"GatewayTimeoutIsFailure", 504, counts{failures: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.status)
			reg := newRegistry(t, breakertest.NewClock(), 5)
			client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t)}}
			code, err := get(client, context.Background(), up.URL)
			if err != nil || code != tt.status {
				t.Fatalf("GET = %d, %v; want %d", code, err, tt.status)
			}
			b, ok := reg.Lookup(up.Listener.Addr().String())
			if !ok {
				t.Fatalf("no breaker for key %q; have %v", up.Listener.Addr(), reg.All())
			}
			if got := countsOf(b.Snapshot()); got != tt.want {
				t.Fatalf("counts = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDefaultClassificationOfTransportErrors(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)

	reset := newResetServer(t)
	tlsSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure is expected
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	timeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}

	tests := []struct {
		name   string
		url    string
		client func(rt http.RoundTripper) *http.Client
		ctx    func() (context.Context, context.CancelFunc)
		inner  func(t *testing.T) http.RoundTripper // nil: a plain http.Transport
		is     func(error) bool                     // the error is of the kind the case is about
		want   counts
	}{
		{name: "ConnectionRefusedIsFailure", url: "http://" + closedPort(t) + "/",
			is: func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }, want: counts{failures: 1}},
		{name: "ConnectionResetIsFailure", url: reset,
			is: func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, want: counts{failures: 1}},
		{name: "ClientTimeoutIsFailure", url: hang.URL,
			client: func(rt http.RoundTripper) *http.Client {
				return &http.Client{Transport: rt, Timeout: 50 * time.Millisecond}
			},
			is: timeout, want: counts{failures: 1}},
		{name: "ContextDeadlineIsFailure", url: hang.URL,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 50*time.Millisecond)
			},
			is: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }, want: counts{failures: 1}},
		{name: "TransportResponseHeaderTimeoutIsFailure", url: hang.URL,
			inner: func(t *testing.T) http.RoundTripper {
				tr := newTransport(t)
				tr.ResponseHeaderTimeout = 50 * time.Millisecond
				return tr
			},
			is: timeout, want: counts{failures: 1}},
		{name: "CallerCancellationIsIgnored", url: hang.URL,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			},
			is: func(err error) bool { return errors.Is(err, context.Canceled) }, want: counts{ignored: 1}},
		{name: "TLSHandshakeFailureIsFailure", url: tlsSrv.URL, // its certificate is not trusted
			is: func(err error) bool { var ce *tls.CertificateVerificationError; return errors.As(err, &ce) }, want: counts{failures: 1}},
		{name: "DNSFailureIsFailure", url: "http://breakerbox-test.invalid/", inner: dnsFailingTransport,
			is: func(err error) bool { var de *net.DNSError; return errors.As(err, &de) }, want: counts{failures: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t, breakertest.NewClock(), 5)
			var inner http.RoundTripper = newTransport(t)
			if tt.inner != nil {
				inner = tt.inner(t)
			}
			rt := &httpbreaker.Transport{Registry: reg, Next: inner}
			client := &http.Client{Transport: rt}
			if tt.client != nil {
				client = tt.client(rt)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			_, err := get(client, ctx, tt.url)
			if err == nil {
				t.Fatal("GET succeeded, want an error")
			}
			if !tt.is(err) {
				t.Fatalf("err = %v (%T), not the kind of error this case is about", err, errors.Unwrap(err))
			}
			all := reg.All()
			if len(all) != 1 {
				t.Fatalf("breakers = %d, want 1", len(all))
			}
			if got := countsOf(all[0].Snapshot()); got != tt.want {
				t.Fatalf("counts = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOpenBreakerRejectsWithoutNetworkIO(t *testing.T) {
	up := newUpstream(t, 503)
	clock := breakertest.NewClock()
	reg := newRegistry(t, clock, 3)
	var trips atomic.Int32 // round trips that reached the real transport
	inner := newTransport(t)
	counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		trips.Add(1)
		return inner.RoundTrip(r)
	})
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: counting}}
	for range 3 {
		if code, err := get(client, context.Background(), up.URL); code != 503 || err != nil {
			t.Fatalf("GET = %d, %v; want 503", code, err)
		}
	}
	clock.Advance(15 * time.Second)

	body := &closeRecorder{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest(http.MethodPost, up.URL, body)
	resp, err := client.Do(req)
	if resp != nil || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Do = %v, %v; want a rejection satisfying errors.Is(err, breaker.ErrOpen)", resp, err)
	}
	if d, ok := breaker.RetryAfter(err); !ok || d != 45*time.Second {
		t.Fatalf("RetryAfter = %v, %v; want 45s, true", d, ok)
	}
	if n, m := up.hits.Load(), trips.Load(); n != 3 || m != 3 {
		t.Fatalf("upstream saw %d requests and the transport %d round trips, want 3 each: a rejection must not reach them", n, m)
	}
	if !body.closed.Load() {
		t.Fatal("the rejected request's body was not closed")
	}
}

func TestBreakersAreKeyedPerHost(t *testing.T) {
	down, fine := newUpstream(t, 500), newUpstream(t, 200)
	reg := newRegistry(t, breakertest.NewClock(), 2)
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t)}}
	for range 2 {
		get(client, context.Background(), down.URL)
	}
	if _, err := get(client, context.Background(), down.URL); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("failing host: err = %v, want ErrOpen", err)
	}
	if code, err := get(client, context.Background(), fine.URL); code != 200 || err != nil {
		t.Fatalf("healthy host: GET = %d, %v; want 200 — its breaker is another one", code, err)
	}
}

func TestGenesysRegionKeysRequestsByRegion(t *testing.T) {
	up := newUpstream(t, 200)
	// Every host dials the loopback upstream: the test never leaves the machine.
	dialer := &net.Dialer{}
	inner := newTransport(t)
	inner.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, up.Listener.Addr().String())
	}
	reg := newRegistry(t, breakertest.NewClock(), 5)
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: inner, Key: genesys.Key}}
	for _, u := range []string{"http://api.mypurecloud.ie/api/v2/x", "http://api.mypurecloud.ie:80/y", "http://api.usw2.pure.cloud/z", "http://example.com/"} {
		if code, err := get(client, context.Background(), u); code != 200 || err != nil {
			t.Fatalf("GET %s = %d, %v", u, code, err)
		}
	}
	var names []string
	for _, b := range reg.All() {
		names = append(names, b.Name())
	}
	if got, want := strings.Join(names, " "), "example.com genesys/eu-west-1 genesys/us-west-2"; got != want {
		t.Fatalf("breakers = %q, want %q", got, want)
	}
}

func TestProbeIsReportedOnHeadersEvenIfTheBodyIsNeverRead(t *testing.T) {
	up := newUpstream(t, 500)
	clock := breakertest.NewClock()
	reg := newRegistry(t, clock, 1)
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t)}}
	get(client, context.Background(), up.URL) // opens the breaker
	clock.Advance(time.Minute)                // HALF_OPEN: one probe at a time
	b := reg.All()[0]
	if s := b.State(); s != breaker.HalfOpen {
		t.Fatalf("state = %v, want half_open", s)
	}

	up.status.Store(200)
	var unread []*http.Response
	defer func() {
		for _, r := range unread {
			r.Body.Close()
		}
	}()
	for i := range 2 { // HalfOpenSuccesses is 2: each probe must free its slot for the next
		resp, err := client.Get(up.URL)
		if err != nil {
			t.Fatalf("probe %d: %v", i+1, err)
		}
		unread = append(unread, resp) // never read
	}
	if s := b.Snapshot(); s.State != breaker.Closed || s.ProbesInFlight != 0 {
		t.Fatalf("state = %v with %d probes in flight, want closed with none", s.State, s.ProbesInFlight)
	}
}

func TestStreamingResponseIsReturnedBeforeTheBodyEnds(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}))
	defer srv.Close()
	reg := newRegistry(t, breakertest.NewClock(), 5)
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t)}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n') // arrives while the server is still writing
	if line != "first\n" || err != nil {
		close(release)
		t.Fatalf("first line = %q, %v", line, err)
	}
	close(release)
	if line, _ := r.ReadString('\n'); line != "second\n" {
		t.Fatalf("second line = %q", line)
	}
}

func TestPanickingTransportCountsAsFailureAndPanics(t *testing.T) {
	reg := newRegistry(t, breakertest.NewClock(), 5)
	rt := &httpbreaker.Transport{
		Registry: reg,
		Next: roundTripFunc(func(*http.Request) (*http.Response, error) {
			panic("transport bug")
		}),
	}
	req, _ := http.NewRequest(http.MethodGet, "http://upstream.test/", nil)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
		}()
		rt.RoundTrip(req)
	}()
	if got := countsOf(reg.All()[0].Snapshot()); got != (counts{failures: 1}) {
		t.Fatalf("counts = %+v, want one failure", got)
	}
}

func TestClassifyOverridesTheDefault(t *testing.T) {
	up := newUpstream(t, 404)
	reg := newRegistry(t, breakertest.NewClock(), 5)
	notFoundFails := func(req *http.Request, resp *http.Response, err error) breaker.Outcome {
		if resp != nil && resp.StatusCode == 404 {
			return breaker.Failure
		}
		return httpbreaker.DefaultClassifier(req, resp, err)
	}
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t), Classify: notFoundFails}}
	get(client, context.Background(), up.URL)
	if got := countsOf(reg.All()[0].Snapshot()); got != (counts{failures: 1}) {
		t.Fatalf("counts = %+v, want one failure", got)
	}
}

func TestRetryRunsInsideTheBreaker(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%3 != 0 { // two 503s, then a 200
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	reg := newRegistry(t, breakertest.NewClock(), 2)
	policy := retry.Policy{MaxAttempts: 3, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t), Retry: &policy}}

	if code, err := get(client, context.Background(), srv.URL); code != 200 || err != nil {
		t.Fatalf("GET = %d, %v; want 200 after retries", code, err)
	}
	b := reg.All()[0]
	if got := countsOf(b.Snapshot()); got != (counts{successes: 1}) || n.Load() != 3 {
		t.Fatalf("counts = %+v after %d requests; want one success after 3: the breaker sees the retried call once", got, n.Load())
	}

	b.ForceOpen()
	if _, err := get(client, context.Background(), srv.URL); !errors.Is(err, breaker.ErrOpen) || n.Load() != 3 {
		t.Fatalf("open breaker: err = %v after %d requests; want ErrOpen and no attempt", err, n.Load())
	}
}

func TestNilRegistryGetsDefaultBreakers(t *testing.T) {
	up := newUpstream(t, 200)
	rt := &httpbreaker.Transport{Next: newTransport(t)}
	if code, err := get(&http.Client{Transport: rt}, context.Background(), up.URL); code != 200 || err != nil {
		t.Fatalf("GET = %d, %v", code, err)
	}
	if got := rt.Breakers().All()[0].Config().FailureThreshold; got != breaker.DefaultFailureThreshold {
		t.Fatalf("FailureThreshold = %d, want the default", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

// closedPort returns a loopback address nothing listens on, so connecting to
// it is refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// newResetServer returns the URL of a loopback server that resets every
// connection: it takes the request, then closes the socket with SO_LINGER 0,
// so the client reads a TCP RST instead of a response.
func newResetServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// dnsFailingTransport resolves names through a DNS "server" on a closed
// loopback port, so every lookup fails for real inside the resolver,
// without any packet leaving the machine.
func dnsFailingTransport(t *testing.T) http.RoundTripper {
	dead := closedPort(t)
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", dead)
	}}
	dialer := &net.Dialer{Resolver: resolver, Timeout: 2 * time.Second}
	tr := newTransport(t)
	tr.DialContext = dialer.DialContext
	return tr
}

func TestConcurrentRequestsNeverLeakAProbeSlot(t *testing.T) {
	up := newUpstream(t, 500)
	clock := breakertest.NewClock()
	reg := newRegistry(t, clock, 3)
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: reg, Next: newTransport(t)}}

	const workers, perWorker = 8, 40
	var answered, rejected atomic.Int32
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range perWorker {
				if w == 0 && i%10 == 5 {
					clock.Advance(time.Minute) // let probes through now and then
					if i == 25 {
						up.status.Store(200) // the upstream recovers
					}
				}
				_, err := get(client, context.Background(), up.URL)
				switch {
				case err == nil:
					answered.Add(1)
				case errors.Is(err, breaker.ErrOpen):
					rejected.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	if got := answered.Load() + rejected.Load(); got != workers*perWorker {
		t.Fatalf("%d requests accounted for, want %d", got, workers*perWorker)
	}
	s := reg.All()[0].Snapshot()
	if s.ProbesInFlight != 0 {
		t.Fatalf("%d probe slots still held after every request returned", s.ProbesInFlight)
	}
	if int(up.hits.Load()) != int(answered.Load()) {
		t.Fatalf("upstream saw %d requests, %d were answered: rejections must not reach it", up.hits.Load(), answered.Load())
	}
}

// The zero Transport is ready to use, as http.Transport is: breakers per host
// with ADR-002's defaults (5 failures open), T10's classification.
func TestZeroTransportBreaksPerHostWithTheDefaults(t *testing.T) {
	up := newUpstream(t, http.StatusServiceUnavailable)
	var rt httpbreaker.Transport
	client := &http.Client{Transport: &rt}
	for i := range 5 {
		if code, err := get(client, context.Background(), up.URL); err != nil || code != 503 {
			t.Fatalf("request %d = %d, %v; want 503 from the upstream", i+1, code, err)
		}
	}
	if _, err := get(client, context.Background(), up.URL); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("6th request: err = %v, want breaker.ErrOpen after 5 failures", err)
	}
	if n := up.hits.Load(); n != 5 {
		t.Fatalf("the upstream saw %d requests, want 5: the rejection must not reach it", n)
	}
	reg := rt.Breakers()
	if reg == nil || reg != rt.Breakers() {
		t.Fatal("Breakers must return the transport's one registry")
	}
	host := strings.TrimPrefix(up.URL, "http://")
	if b, ok := reg.Lookup(host); !ok || b.State() != breaker.Open {
		t.Fatalf("breaker %q: found=%v, want it OPEN", host, ok)
	}
}

// Keys come from request URLs, so the transport's own registry must not keep
// a breaker for every host ever called: healthy, unused ones are evicted.
func TestZeroTransportEvictsIdleHealthyBreakers(t *testing.T) {
	up := newUpstream(t, http.StatusOK)
	var rt httpbreaker.Transport
	client := &http.Client{Transport: &rt}
	if _, err := get(client, context.Background(), up.URL); err != nil {
		t.Fatal(err)
	}
	reg := rt.Breakers()
	reg.EvictIdle() // marks: the breaker was looked up since the last sweep
	if n := reg.EvictIdle(); n != 1 {
		t.Fatalf("second sweep evicted %d breakers, want the 1 idle healthy one", n)
	}
	if len(reg.All()) != 0 {
		t.Fatalf("%d breakers left, want 0", len(reg.All()))
	}
}
