package httpbreaker_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/genesys"
	"github.com/breakerbox/breakerbox/httpbreaker"
)

// BenchmarkRoundTrip compares a GET through a bare http.Transport to a
// loopback server with the same GET through httpbreaker wrapping it. The
// difference is the breaker's overhead (target: < 1 µs, ≤ 2 allocations);
// the loopback round trip itself dominates both and is noisy, so
// BenchmarkOverhead measures the same difference against an in-memory
// transport.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	run := func(b *testing.B, rt http.RoundTripper) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("bare", func(b *testing.B) {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		run(b, tr)
	})
	b.Run("httpbreaker", func(b *testing.B) {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
		run(b, &httpbreaker.Transport{Registry: reg, Next: tr})
	})
}

// BenchmarkOverhead isolates what httpbreaker adds to a round trip: the
// wrapped transport answers from memory.
func BenchmarkOverhead(b *testing.B) {
	canned := &http.Response{StatusCode: 200, Body: http.NoBody}
	inMemory := roundTripFunc(func(*http.Request) (*http.Response, error) { return canned, nil })
	req, _ := http.NewRequest(http.MethodGet, "http://api.example.com/v1/things", nil)

	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, inMemory) })
	b.Run("httpbreaker", func(b *testing.B) {
		reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
		run(b, &httpbreaker.Transport{Registry: reg, Next: inMemory})
	})
	b.Run("httpbreaker/GenesysRegion", func(b *testing.B) {
		reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
		req, _ := http.NewRequest(http.MethodGet, "https://api.mypurecloud.ie/api/v2/users/me", nil)
		rt := &httpbreaker.Transport{Registry: reg, Next: inMemory, Key: genesys.Key}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("httpbreaker/open", func(b *testing.B) {
		reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
		rt := &httpbreaker.Transport{Registry: reg, Next: inMemory}
		br, err := reg.Get("api.example.com")
		if err != nil {
			b.Fatal(err)
		}
		br.ForceOpen()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err == nil {
				b.Fatal("not rejected")
			}
		}
	})
}
