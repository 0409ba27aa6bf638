package main

import (
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/config"
	"github.com/breakerbox/breakerbox/proxy"
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
	var cache atomic.Pointer[longTimeouts]
	read, write := lim.ReadTimeout.Duration, lim.WriteTimeout.Duration
	// The server sets the read deadline before the request head and the
	// write deadline after it; a service timeout shorter than what is left
	// of both ends the exchange first.
	room := min(read-lim.ReadHeaderTimeout.Duration, write)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		if len(t.by) > 0 {
			name, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			if extra, ok := t.by[name]; ok {
				now := time.Now()
				rc := http.NewResponseController(w)
				rc.SetReadDeadline(now.Add(read + extra))
				rc.SetWriteDeadline(now.Add(write + extra))
			}
		}
		srv.ServeHTTP(w, r)
	})
}

// longTimeouts are the services of one config whose timeout needs longer
// deadlines.
type longTimeouts struct {
	cfg *config.Config
	by  map[string]time.Duration
}
