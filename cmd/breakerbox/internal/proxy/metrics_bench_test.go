//go:build unix

package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkMetricsScrape is one /metrics scrape of the sidecar with 10,000
// circuits: before any traffic, and with 1,000 of them having forwarded a
// request and rejected one (their proxy series exist). It reports the
// number of series, the size of the answer and the process's CPU time per
// scrape (garbage collection included).
func BenchmarkMetricsScrape(b *testing.B) {
	for _, active := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("circuits=10000/active=%d", active), func(b *testing.B) {
			srv, admin := manyCircuits(b, 10000)
			for i := range active {
				// A refused connection (the upstream is 127.0.0.1:1) and a
				// rejection make the same series as any answer.
				name := fmt.Sprintf("svc%05d", i)
				w := httptest.NewRecorder()
				srv.ServeHTTP(w, httptest.NewRequest("GET", "/"+name+"/x", nil)) // 502: refused
				srv.Registry().MustGet(name).ForceOpen()
				srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/"+name+"/x", nil)) // 503
			}
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Host = "127.0.0.1:7071"
			w := httptest.NewRecorder()
			admin.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("/metrics: %d %s", w.Code, w.Body)
			}
			series := 0
			for _, l := range strings.Split(w.Body.String(), "\n") {
				if l != "" && l[0] != '#' {
					series++
				}
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				admin.ServeHTTP(&discardWriter{h: http.Header{}}, req)
			}
			// CPU, not wall time: on a busy machine the wall time of a
			// scrape says more about the neighbours than about the scrape.
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(series), "series")
			b.ReportMetric(float64(w.Body.Len())/1e6, "MB")
		})
	}
}
