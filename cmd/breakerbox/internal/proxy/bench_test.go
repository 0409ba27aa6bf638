package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

type pool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (pool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (pool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

// BenchmarkProxy compares a request through breakerbox's proxy handler with
// one through a plain httputil.ReverseProxy, to the same loopback upstream.
// breakerbox recycles copy buffers, so "plain-with-buffer-pool" is the
// like-for-like reference: the difference to it is what the breaker, routing,
// timeout and metrics cost per request.
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	target, _ := url.Parse(up.URL)
	plainTransport := http.DefaultTransport.(*http.Transport).Clone()
	plainTransport.MaxIdleConnsPerHost = 256
	plain := &httputil.ReverseProxy{Transport: plainTransport, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Path = pr.In.URL.Path[len("/svc"):]
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	pooled := *plain
	pooled.BufferPool = pool{}
	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL)))
	if err != nil {
		b.Fatal(err)
	}
	bb, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{{"plain", plain}, {"plain-with-buffer-pool", &pooled}, {"breakerbox", bb}} {
		b.Run(tt.name, func(b *testing.B) {
			srv := httptest.NewServer(tt.h)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv.URL + "/svc/v1/items")
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
