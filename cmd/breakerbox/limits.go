package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

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
