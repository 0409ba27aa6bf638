package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// oldRejection is the open answer as breakerbox wrote it before the
// rejection moved ahead of ReverseProxy (proxyError and writeJSON at
// 087cf25), the reference the prebuilt answer must match byte for byte.
func oldRejection(circuit, state string, retryAfter time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secs := int(math.Ceil(retryAfter.Seconds()))
		secs = max(secs, 1)
		h := w.Header()
		h.Set("Retry-After", strconv.Itoa(secs))
		h.Set("Breakerbox-Circuit", circuit)
		h.Set("Breakerbox-State", "open")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"error": "circuit open", "circuit": circuit, "state": state, "retry_after_seconds": secs})
	}
}

// wire returns the raw answer to a GET of path, without its Date line.
func wire(t *testing.T, base, path string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", path)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var out []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "Date: ") {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}

func TestRejectionIsByteForByteTheFormerAnswer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		us, eu := newUpstream(t), newUpstream(t)
		f := newFixtureOn(t, engine, genesysConfig(us.URL, eu.URL))
		const path = "/genesys/eu-west-1/api/v2/x"
		eu.status.Store(500)
		for range 10 {
			f.status(path)
		}
		for _, advance := range []time.Duration{0, 20 * time.Second, 19*time.Second + 500*time.Millisecond} {
			f.clk.Advance(advance)
			left := f.srv.Registry().MustGet("genesys/eu-west-1").Snapshot().RetryAfter
			ref := httptest.NewServer(oldRejection("genesys/eu-west-1", "open", left))
			want := wire(t, ref.URL, path)
			ref.Close()
			if engine == config.EngineFastHTTP {
				// fasthttp writes Content-Type and Content-Length before the
				// other fields; their order has no meaning (RFC 9110 section 5.3).
				want = fieldsSorted(want)
			}
			for range 3 { // the first builds the answer, the next reuse it
				got := wire(t, f.proxy.URL, path)
				if engine == config.EngineFastHTTP {
					got = fieldsSorted(got)
				}
				if got != want {
					t.Fatalf("after %v:\n%s\nwant the former answer:\n%s", advance, got, want)
				}
			}
		}
	})
}

// fieldsSorted is a wire answer with its header fields sorted: the status
// line, the fields, the body.
func fieldsSorted(answer string) string {
	lines := strings.Split(answer, "\n")
	end := slices.Index(lines, "")
	if end < 0 {
		end = len(lines)
	}
	slices.Sort(lines[1:end])
	return strings.Join(lines, "\n")
}

// discard is a ResponseWriter that keeps nothing but its header map.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func TestRejectionAllocations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		f.srv.Registry().MustGet("svc").ForceOpen()
		if engine == config.EngineFastHTTP {
			var ctx fasthttp.RequestCtx
			h := f.srv.FastHandler()
			allocs := testing.AllocsPerRun(200, func() {
				ctx.Response.Reset()
				ctx.Request.SetRequestURI("/svc/v1/items")
				h(&ctx)
			})
			if string(ctx.Response.Header.Peek("Breakerbox-State")) != "open" || ctx.Response.StatusCode() != 503 {
				t.Fatalf("not a rejection: %s", ctx.Response.Header.String())
			}
			if allocs > 2 { // the path as a string, and the breaker's refusal
				t.Fatalf("%v allocations per rejection, want ≤ 2", allocs)
			}
			return
		}
		req := httptest.NewRequest("GET", "/svc/v1/items", nil)
		w := &discard{h: http.Header{}}
		f.srv.ServeHTTP(w, req) // builds the answer
		allocs := testing.AllocsPerRun(200, func() {
			clear(w.h)
			f.srv.ServeHTTP(w, req)
		})
		if w.h.Get("Breakerbox-State") != "open" {
			t.Fatalf("not a rejection: %v", w.h)
		}
		if allocs > 12 {
			t.Fatalf("%v allocations per rejection, want ≤ 12", allocs)
		}
		t.Logf("%v allocations per rejection in the handler", allocs)
	})
}

func TestDryRunOpenCircuitStillForwards(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 1}]", up.URL))
		up.status.Store(500)
		f.status("/svc/x")
		b := f.srv.Registry().MustGet("svc")
		if b.State().String() != "open" {
			t.Fatalf("state %v", b.State())
		}
		b.SetDryRun(true)
		up.status.Store(200)
		before := up.hits.Load()
		if code := f.status("/svc/x"); code != 200 || up.hits.Load() != before+1 {
			t.Fatalf("dry run: %d, upstream hits %d → %d; want the call forwarded", code, before, up.hits.Load())
		}
		if s := b.Snapshot(); s.DryRunRejected != 1 || s.Rejected != 0 || s.State.String() != "open" {
			t.Fatalf("dry run counts: %+v", s)
		}
	})
}

// TestStateChangesRacingRequests flips a circuit open and closed while
// requests run: every answer is either the upstream's or a whole rejection,
// and the counts agree (each forwarded request reached the upstream once,
// each rejection was counted once).
func TestStateChangesRacingRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		b := f.srv.Registry().MustGet("svc")
		stop := make(chan struct{})
		var flips sync.WaitGroup
		flips.Add(1)
		go func() {
			defer flips.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i%2 == 0 {
					b.ForceOpen()
				} else {
					b.Reset()
				}
				time.Sleep(100 * time.Microsecond) // let requests see both states; counts are asserted, not timing
			}
		}()
		var mu sync.Mutex
		var forwarded, rejected int
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					resp, err := client.Get(f.proxy.URL + "/svc/x")
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					switch {
					case resp.StatusCode == 200 && strings.HasPrefix(string(body), "path=/x "):
						forwarded++
					case resp.StatusCode == 503 && resp.Header.Get("Breakerbox-State") == "open" &&
						resp.Header.Get("Retry-After") != "" && strings.Contains(string(body), `"error": "circuit open"`):
						rejected++
					default:
						t.Errorf("neither forwarded nor rejected: %d %v %s", resp.StatusCode, resp.Header, body)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(stop)
		flips.Wait()
		if forwarded+rejected != 400 || int(up.hits.Load()) != forwarded || int(b.Snapshot().Rejected) != rejected {
			t.Fatalf("forwarded %d (upstream hits %d), rejected %d (breaker counted %d)",
				forwarded, up.hits.Load(), rejected, b.Snapshot().Rejected)
		}
		t.Logf("forwarded %d, rejected %d", forwarded, rejected)
	})
}

// TestDryRunForwardsBodyAndCountsOutcome: in dry run an open circuit
// forwards a request with its body, through the same path as a closed one,
// and the upstream's failure is counted while the rejection is only noted.
func TestDryRunForwardsBodyAndCountsOutcome(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		var got atomic.Value
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got.Store(string(b))
			w.WriteHeader(500)
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 1}]", up.URL))
		b := f.srv.Registry().MustGet("svc")
		b.ForceOpen()
		b.SetDryRun(true)
		before := b.Snapshot()
		resp, err := http.Post(f.proxy.URL+"/svc/x", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		after := b.Snapshot()
		if resp.StatusCode != 500 || got.Load() != "payload" {
			t.Fatalf("dry run: %d, upstream read %q; want the upstream's 500 after reading the body", resp.StatusCode, got.Load())
		}
		if after.DryRunRejected != before.DryRunRejected+1 || after.Rejected != before.Rejected || after.State != before.State {
			t.Fatalf("dry run counts: before %+v, after %+v", before, after)
		}
	})
}
