package proxy_test

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// engines are the proxy listener's implementations; every test of the data
// path through a real listener runs on each (forEachEngine).
var engines = []string{config.EngineNetHTTP, config.EngineFastHTTP}

func forEachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { test(t, e) })
	}
}

// testProxy is the proxy listener of a test, on loopback.
type testProxy struct {
	URL   string
	Close func()
}

// startProxy serves srv's proxy on engine on a free loopback port until
// the test ends.
func startProxy(t *testing.T, srv *proxy.Server, engine string) *testProxy {
	t.Helper()
	return startProxyWith(t, srv, engine, config.ListenerLimits{})
}

// startProxyWith is startProxy with the listener's read and write timeouts
// of lim.
func startProxyWith(t *testing.T, srv *proxy.Server, engine string, lim config.ListenerLimits) *testProxy {
	t.Helper()
	if engine == config.EngineNetHTTP {
		ts := httptest.NewUnstartedServer(srv)
		ts.Config.ReadTimeout, ts.Config.WriteTimeout = lim.ReadTimeout.Duration, lim.WriteTimeout.Duration
		ts.Start()
		t.Cleanup(ts.Close)
		return &testProxy{URL: ts.URL, Close: ts.Close}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := srv.FastServer(lim, nil, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fs.Serve(l)
	}()
	stop := func() {
		// A hang guard: a connection left open would make Shutdown wait
		// for ever; say so instead.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := fs.ShutdownWithContext(ctx); err != nil {
			t.Errorf("the fasthttp listener did not shut down: %v", err)
			return
		}
		<-done
	}
	t.Cleanup(stop)
	return &testProxy{URL: "http://" + l.Addr().String(), Close: func() {}}
}
