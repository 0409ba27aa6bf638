package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// limitedServer is an http.Server for h with the listener's limits: its
// timeouts, and l wrapped in a connection cap.
func limitedServer(h http.Handler, l net.Listener, lim config.ListenerLimits, errLog *log.Logger) (*http.Server, net.Listener) {
	cl := newConnLimiter(l, lim.MaxConnections)
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout.Duration,
		ReadTimeout:       lim.ReadTimeout.Duration,
		WriteTimeout:      lim.WriteTimeout.Duration,
		IdleTimeout:       lim.IdleTimeout.Duration,
		ConnState:         cl.connState,
		ErrorLog:          errLog,
	}, cl
}

// proxyDeadlines gives a request to a service whose timeout may outlast the
// listener's read or write deadline that timeout on top, so the listener
// never cuts what the service's timeout allows (a long download, a stream).
// With the default limits and timeouts no service needs it, and a request
// costs one map lookup.
func proxyDeadlines(srv *proxy.Server, lim config.ListenerLimits) http.Handler {
	read, write := lim.ReadTimeout.Duration, lim.WriteTimeout.Duration
	extra := longTimeoutOf(srv, lim)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := extra(r.URL.Path); d > 0 {
			now := time.Now()
			rc := http.NewResponseController(w)
			rc.SetReadDeadline(now.Add(read + d))
			rc.SetWriteDeadline(now.Add(write + d))
		}
		srv.ServeHTTP(w, r)
	})
}

// longTimeoutOf returns the function that gives a request path's service
// timeout when it may outlast the listener's deadlines, else 0.
func longTimeoutOf(srv *proxy.Server, lim config.ListenerLimits) func(path string) time.Duration {
	load := longTimeoutsOf(srv, lim)
	return func(path string) time.Duration {
		t := load()
		if len(t.by) == 0 {
			return 0
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		return t.by[name]
	}
}

// longTimeoutsOf returns the function that gives the services of the
// config in force whose timeout needs longer deadlines.
func longTimeoutsOf(srv *proxy.Server, lim config.ListenerLimits) func() *longTimeouts {
	var cache atomic.Pointer[longTimeouts]
	// The server sets the read deadline before the request head and the
	// write deadline after it; a service timeout shorter than what is left
	// of both ends the exchange first.
	room := min(lim.ReadTimeout.Duration-lim.ReadHeaderTimeout.Duration, lim.WriteTimeout.Duration)
	return func() *longTimeouts {
		cfg := srv.Config()
		t := cache.Load()
		if t == nil || t.cfg != cfg { // rebuilt once per reload
			t = &longTimeouts{cfg: cfg, by: map[string]time.Duration{}}
			for _, s := range cfg.Services {
				if s.Timeout.Duration >= room {
					t.by[s.Name] = s.Timeout.Duration
				}
			}
			cache.Store(t)
		}
		return t
	}
}

// proxyListener is the proxy's server on either engine.
type proxyListener interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// limitedProxy is the proxy's server on the config's engine, with the
// listener's limits.
func limitedProxy(srv *proxy.Server, l net.Listener, lim config.ListenerLimits, errLog *log.Logger) (proxyListener, net.Listener) {
	if srv.Config().ListenEngine != config.EngineFastHTTP {
		return limitedServer(proxyDeadlines(srv, lim), l, lim, errLog)
	}
	return limitedFastServer(srv, l, lim, errLog)
}

// fastServer is a fasthttp.Server as a proxyListener.
type fastServer struct{ *fasthttp.Server }

func (s fastServer) Shutdown(ctx context.Context) error { return s.ShutdownWithContext(ctx) }

// Close stops accepting and closes idle connections; a request still
// running keeps its connection until it ends (fasthttp cannot cut it).
func (s fastServer) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.ShutdownWithContext(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// limitedFastServer is the fasthttp engine's server (proxy.FastServer)
// with the listener's limits and its connection cap.
func limitedFastServer(srv *proxy.Server, l net.Listener, lim config.ListenerLimits, errLog *log.Logger) (proxyListener, net.Listener) {
	cl := newConnLimiter(l, lim.MaxConnections)
	load := longTimeoutsOf(srv, lim)
	fs := srv.FastServer(lim, func(path []byte) time.Duration {
		t := load()
		if len(t.by) == 0 {
			return 0
		}
		name, _, _ := bytes.Cut(bytes.TrimPrefix(path, []byte("/")), []byte("/"))
		return t.by[string(name)] // the conversion does not allocate
	}, errLog)
	fs.ConnState = func(c net.Conn, st fasthttp.ConnState) { cl.connState(c, httpConnState[st]) }
	return fastServer{fs}, cl
}

var httpConnState = map[fasthttp.ConnState]http.ConnState{
	fasthttp.StateNew: http.StateNew, fasthttp.StateActive: http.StateActive, fasthttp.StateIdle: http.StateIdle,
	fasthttp.StateHijacked: http.StateHijacked, fasthttp.StateClosed: http.StateClosed,
}

// longTimeouts are the services of one config whose timeout needs longer
// deadlines.
type longTimeouts struct {
	cfg *config.Config
	by  map[string]time.Duration
}

// fdWarning says, if the connection caps can exceed the process's
// file-descriptor limit, that they do: the caps then no longer keep the
// admin listener reachable under a flood. A proxied connection can hold two
// descriptors (the client's and the upstream's).
func fdWarning(lim config.Limits) string {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return ""
	}
	const spare = 64 // config, logs, Redis, listeners
	need := uint64(2*lim.Proxy.MaxConnections+lim.Admin.MaxConnections) + spare
	if need <= rl.Cur {
		return ""
	}
	return fmt.Sprintf("limits: the connection caps (proxy %d, admin %d) need up to %d file descriptors, the process may open %d: "+
		"lower limits.proxy.max_connections or raise the limit (ulimit -n)", lim.Proxy.MaxConnections, lim.Admin.MaxConnections, need, rl.Cur)
}
