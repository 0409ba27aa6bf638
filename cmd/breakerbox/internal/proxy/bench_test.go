package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

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
// reference; "plain-with-buffer-pool-tuned" also has breakerbox's transport
// settings and timeout, so the difference to it is what the breaker,
// routing and metrics cost per request. Allocations count both ends (client
// and upstream run in the benchmark's process too).
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
	// The pooled proxy with breakerbox's transport settings and its
	// 30 s response-header timeout: what breakerbox costs beyond the
	// transport it chose.
	tuned := pooled
	tunedTransport := plainTransport.Clone()
	tunedTransport.MaxIdleConns, tunedTransport.DisableCompression = 0, true
	tunedTransport.ResponseHeaderTimeout = 30 * time.Second
	tuned.Transport = tunedTransport
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
	}{{"plain", plain}, {"plain-with-buffer-pool", &pooled}, {"plain-with-buffer-pool-tuned", &tuned}, {"breakerbox", bb}} {
		b.Run(tt.name, func(b *testing.B) { getParallel(b, tt.h) })
	}
	// The same breakerbox on the fasthttp engine, between the same net/http
	// client and upstream: the difference to "breakerbox" is the engine's.
	b.Run("breakerbox-fasthttp", func(b *testing.B) { getParallelURL(b, serveFast(b, bb)) })
}

// serveFast serves srv's proxy on the fasthttp engine on loopback until the
// benchmark ends, and returns its URL.
func serveFast(b *testing.B, srv *proxy.Server) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs := srv.FastServer(config.ListenerLimits{}, nil, nil)
	go fs.Serve(l)
	b.Cleanup(func() { fs.Shutdown() })
	return "http://" + l.Addr().String()
}

// BenchmarkReject is a request to an open circuit, end to end over
// loopback (client, server, handler), and in the handler alone, on each
// engine.
func BenchmarkReject(b *testing.B) {
	cfg, err := config.Parse("bench.yaml", []byte("services: [{name: svc, upstream: 'http://127.0.0.1:1'}]"))
	if err != nil {
		b.Fatal(err)
	}
	bb, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	bb.Registry().MustGet("svc").ForceOpen()
	b.Run("loopback", func(b *testing.B) { getParallel(b, bb) })
	b.Run("loopback-fasthttp", func(b *testing.B) { getParallelURL(b, serveFast(b, bb)) })
	b.Run("handler", func(b *testing.B) {
		req := httptest.NewRequest("GET", "/svc/v1/items", nil)
		w := &headerOnly{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			bb.ServeHTTP(w, req)
		}
	})
	b.Run("handler-fasthttp", func(b *testing.B) {
		h := bb.FastHandler()
		var ctx fasthttp.RequestCtx
		b.ReportAllocs()
		for b.Loop() {
			ctx.Request.SetRequestURI("/svc/v1/items") // parsed again by the handler, as a request is
			h(&ctx)
			ctx.Response.Reset()
		}
	})
}

type headerOnly struct{ h http.Header }

func (w *headerOnly) Header() http.Header         { return w.h }
func (w *headerOnly) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerOnly) WriteHeader(int)             {}

// getParallel serves h on loopback and GETs /svc/v1/items from it in
// parallel, reading each answer whole.
func getParallel(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	getParallelURL(b, srv.URL)
}

// getParallelURL GETs base+"/svc/v1/items" in parallel, reading each answer
// whole.
func getParallelURL(b *testing.B, base string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(base + "/svc/v1/items")
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
