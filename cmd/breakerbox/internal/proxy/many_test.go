package proxy_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// manyCircuits is a server with n services and the admin handler.
func manyCircuits(tb testing.TB, n int) (*proxy.Server, http.Handler) {
	var y strings.Builder
	y.WriteString("services:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {name: svc%05d, upstream: 'http://127.0.0.1:1'}\n", i)
	}
	cfg, err := config.Parse("many.yaml", []byte(y.String()))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return srv, srv.Admin()
}

// BenchmarkManyCircuits measures, with 10,000 circuits, building the server
// and one /metrics scrape and one /api/circuits answer (before traffic).
// bench/proxy-load.sh measures the same on the real binary.
func BenchmarkManyCircuits(b *testing.B) {
	const n = 10000
	b.Run("New", func(b *testing.B) {
		for b.Loop() {
			manyCircuits(b, n)
		}
	})
	_, admin := manyCircuits(b, n)
	for _, path := range []string{"/metrics", "/api/circuits", "/api/circuits?view=summary"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) { benchGet(b, admin, path) })
	}
}

// benchGet measures GET path on admin: the process's CPU time per answer,
// the figure to read on a busy machine, where ns/op (wall time) counts the
// waits for a core too, and the answer's size.
func benchGet(b *testing.B, admin http.Handler, path string) {
	req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
	var w discardWriter
	b.ReportAllocs()
	runtime.GC() // the set-up's garbage is not this benchmark's
	cpu := cpuTime()
	for b.Loop() {
		w = discardWriter{h: http.Header{}}
		admin.ServeHTTP(&w, req)
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	if w.code != http.StatusOK {
		b.Fatalf("GET %s: %d", path, w.code)
	}
	b.ReportMetric(float64(w.n), "resp-bytes")
}

// BenchmarkCircuitsAfterTraffic is one /api/circuits answer with 10,000
// circuits after one request to each (each has its rolling stats window):
// the full listing, the summaries, and one page of the dashboard's paged
// view, sorted by health and by volume. It reports the process's CPU time
// per answer and the answer's size.
func BenchmarkCircuitsAfterTraffic(b *testing.B) {
	const n = 10000
	srv, admin := manyCircuits(b, n)
	for i := range n {
		// A refused connection (the upstream is 127.0.0.1:1) is recorded
		// in the stats like any answer.
		srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/svc%05d/x", i), nil))
	}
	for _, path := range []string{"/api/circuits", "/api/circuits?view=summary",
		"/api/circuits?view=page&sort=health&limit=48", "/api/circuits?view=page&sort=volume&limit=48"} {
		b.Run(strings.TrimPrefix(path, "/api/circuits"), func(b *testing.B) { benchGet(b, admin, path) })
	}
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardWriter is a ResponseWriter that counts the body and keeps nothing:
// a recorder's growing buffer would be most of what a benchmark measures.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}
