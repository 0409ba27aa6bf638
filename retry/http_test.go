package retry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/retry"
)

// script is an upstream that answers each request with the next status of
// its list (the last one repeats) and records the request bodies.
type script struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header // sent with every non-2xx response
	bodies   []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	n := len(s.bodies)
	s.bodies = append(s.bodies, string(body))
	code := s.statuses[min(n, len(s.statuses)-1)]
	s.mu.Unlock()
	if code >= 300 {
		for k, v := range s.header {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(code)
	io.WriteString(w, "attempt "+strconv.Itoa(n+1))
}

func (s *script) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// closeTracker wraps a transport and counts response bodies opened and closed.
type closeTracker struct {
	next           http.RoundTripper
	opened, closed atomic.Int32
	trips          atomic.Int32
}

func (c *closeTracker) RoundTrip(r *http.Request) (*http.Response, error) {
	c.trips.Add(1)
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		c.opened.Add(1)
		resp.Body = &trackedBody{ReadCloser: resp.Body, closed: &c.closed}
	}
	return resp, err
}

type trackedBody struct {
	io.ReadCloser
	once   sync.Once
	closed *atomic.Int32
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { b.closed.Add(1) })
	return b.ReadCloser.Close()
}

func newUpstream(t *testing.T, s *script) (*httptest.Server, *closeTracker) {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return srv, &closeTracker{next: tr}
}

func TestTransport(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []int
		header     http.Header
		method     string
		body       func() io.Reader // nil: no body
		noGetBody  bool
		mark       bool
		policy     retry.Policy
		wantStatus int
		wantTrips  int
		wantWaits  []time.Duration
	}{
		{name: "ServerErrorsAreRetriedUntilSuccess", statuses: []int{503, 502, 200}, wantStatus: 200, wantTrips: 3},
		{name: "LastServerErrorIsReturnedWhenAttemptsRunOut", statuses: []int{500}, wantStatus: 500, wantTrips: 3},
		{name: "ClientErrorIsNotRetried", statuses: []int{404}, wantStatus: 404, wantTrips: 1},
		{name: "NotImplementedIsNotRetried", statuses: []int{501}, wantStatus: 501, wantTrips: 1},
		{name: "RetryAfterSecondsOn429IsHonoured", statuses: []int{429, 200},
			header: http.Header{"Retry-After": {"2"}}, wantStatus: 200, wantTrips: 2, wantWaits: []time.Duration{2 * time.Second}},
		{name: "RetryAfterDateOn503IsHonoured", statuses: []int{503, 200},
			header:     http.Header{"Retry-After": {breakertest.Epoch.Add(7 * time.Second).Format(http.TimeFormat)}},
			wantStatus: 200, wantTrips: 2, wantWaits: []time.Duration{7 * time.Second}},
		{name: "RetryAfterBeyondMaxBackoffReturnsTheResponse", statuses: []int{429, 200},
			header: http.Header{"Retry-After": {"3600"}}, policy: retry.Policy{MaxBackoff: time.Minute},
			wantStatus: 429, wantTrips: 1},
		{name: "PostIsNotRetried", statuses: []int{503, 200}, method: http.MethodPost,
			body: func() io.Reader { return strings.NewReader("payload") }, wantStatus: 503, wantTrips: 1},
		{name: "PostMarkedIdempotentIsRetriedWithItsBodyRewound", statuses: []int{503, 503, 200}, method: http.MethodPost,
			body: func() io.Reader { return strings.NewReader("payload") }, mark: true, wantStatus: 200, wantTrips: 3},
		{name: "PutWithoutGetBodyIsNotRetried", statuses: []int{503, 200}, method: http.MethodPut,
			body: func() io.Reader { return strings.NewReader("payload") }, noGetBody: true, wantStatus: 503, wantTrips: 1},
		{name: "PutWithBodyIsRetriedWithItsBodyRewound", statuses: []int{502, 200}, method: http.MethodPut,
			body: func() io.Reader { return strings.NewReader("payload") }, wantStatus: 200, wantTrips: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &script{statuses: tt.statuses, header: tt.header}
			srv, tracker := newUpstream(t, up)
			s := newSleeper()
			rt := &retry.Transport{Next: tracker, Policy: s.policy(tt.policy)}

			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if tt.body != nil {
				body = tt.body()
			}
			ctx := context.Background()
			if tt.mark {
				ctx = retry.MarkIdempotent(ctx)
			}
			req, err := http.NewRequestWithContext(ctx, method, srv.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.noGetBody {
				req.GetBody = nil
			}
			resp, err := (&http.Client{Transport: rt}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()

			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if want := "attempt " + strconv.Itoa(tt.wantTrips); string(got) != want {
				t.Errorf("body = %q, want %q (the last attempt's, unread by the transport)", got, want)
			}
			if n := int(tracker.trips.Load()); n != tt.wantTrips {
				t.Errorf("round trips = %d, want %d", n, tt.wantTrips)
			}
			if o, c := tracker.opened.Load(), tracker.closed.Load(); o != c {
				t.Errorf("response bodies: %d opened, %d closed; want all closed", o, c)
			}
			if tt.body != nil {
				for i, b := range up.requests() {
					if b != "payload" {
						t.Errorf("attempt %d sent body %q, want %q", i+1, b, "payload")
					}
				}
			}
			if tt.wantWaits != nil && !equalDurations(s.Waits(), tt.wantWaits) {
				t.Errorf("waits = %v, want %v", s.Waits(), tt.wantWaits)
			}
		})
	}
}

func TestTransportIdempotencyKeyHeaderMakesPostRetryable(t *testing.T) {
	up := &script{statuses: []int{503, 200}}
	srv, tracker := newUpstream(t, up)
	s := newSleeper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("payload"))
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err := (&retry.Transport{Next: tracker, Policy: s.policy(retry.Policy{})}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || tracker.trips.Load() != 2 {
		t.Fatalf("status %d after %d trips, want 200 after 2", resp.StatusCode, tracker.trips.Load())
	}
}

func TestTransportConnectionRefusedIsRetriedThenReturned(t *testing.T) {
	addr := closedPort(t)
	s := newSleeper()
	tracker := &closeTracker{next: &http.Transport{}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	_, err := (&retry.Transport{Next: tracker, Policy: s.policy(retry.Policy{})}).RoundTrip(req)
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("err = %v, want a *net.OpError (connection refused)", err)
	}
	if n := tracker.trips.Load(); n != 3 {
		t.Fatalf("round trips = %d, want 3", n)
	}
}

func TestTransportAttemptTimeoutRetriesAHungAttempt(t *testing.T) {
	var n atomic.Int32
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s := newSleeper()
	client := &http.Client{Transport: &retry.Transport{Policy: s.policy(retry.Policy{AttemptTimeout: 50 * time.Millisecond})}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body) // readable: the last attempt's context lives until Close
	resp.Body.Close()
	if err != nil || string(body) != "ok" || n.Load() != 2 {
		t.Fatalf("body %q, err %v, after %d requests; want ok after 2", body, err, n.Load())
	}
}

func TestTransportCallerCancellationStopsRetries(t *testing.T) {
	up := &script{statuses: []int{503}}
	srv, tracker := newUpstream(t, up)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{MaxAttempts: 10, Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := (&retry.Transport{Next: tracker, Policy: p}).RoundTrip(req)
	if resp != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip = %v, %v; want nil, an error wrapping context.Canceled", resp, err)
	}
	if n := tracker.trips.Load(); n != 1 {
		t.Fatalf("round trips = %d, want 1", n)
	}
	if o, c := tracker.opened.Load(), tracker.closed.Load(); o != c {
		t.Fatalf("response bodies: %d opened, %d closed; want all closed", o, c)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := breakertest.Epoch
	tests := []struct {
		name, value string
		want        time.Duration
		ok          bool
	}{
		{"Seconds", "120", 2 * time.Minute, true},
		{"SecondsWithSpaces", " 5 ", 5 * time.Second, true},
		{"Zero", "0", 0, true},
		{"HTTPDate", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"DateInThePastIsZero", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"HugeSecondsSaturate", "99999999999999999999999", time.Duration(1<<63 - 1), true},
		{"Empty", "", 0, false},
		{"Negative", "-5", 0, false},
		{"Garbage", "soon", 0, false},
		{"Fraction", "1.5", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := retry.ParseRetryAfter(tt.value, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestIdempotent(t *testing.T) {
	tests := []struct {
		method string
		header string
		mark   bool
		want   bool
	}{
		{method: "GET", want: true}, {method: "HEAD", want: true}, {method: "OPTIONS", want: true},
		{method: "TRACE", want: true}, {method: "PUT", want: true}, {method: "DELETE", want: true},
		{method: "POST", want: false}, {method: "PATCH", want: false},
		{method: "POST", header: "Idempotency-Key", want: true},
		{method: "PATCH", header: "X-Idempotency-Key", want: true},
		{method: "POST", mark: true, want: true},
	}
	for _, tt := range tests {
		ctx := context.Background()
		if tt.mark {
			ctx = retry.MarkIdempotent(ctx)
		}
		req, _ := http.NewRequestWithContext(ctx, tt.method, "http://example.invalid/", nil)
		if tt.header != "" {
			req.Header.Set(tt.header, "k")
		}
		if got := retry.Idempotent(req); got != tt.want {
			t.Errorf("Idempotent(%s, header %q, marked %v) = %v, want %v", tt.method, tt.header, tt.mark, got, tt.want)
		}
	}
}

// closedPort returns a loopback address nothing listens on: a port that was
// just bound and released, so connecting to it is refused.
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
