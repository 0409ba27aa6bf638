package proxy_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
	for _, path := range []string{"/metrics", "/api/circuits"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			for b.Loop() {
				admin.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
