package proxy

import (
	"bytes"
	"log"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// FastServer is the fasthttp engine's server for the proxy listener, with
// the listener's limits as net/http's server has them: the request head
// must arrive within ReadHeaderTimeout, the whole request within
// ReadTimeout, the answer within WriteTimeout, each plus extra(path) (a
// long service timeout; nil for none), and IdleTimeout between requests.
// Zero limits mean none. The caller caps the connections (ConnState).
func (s *Server) FastServer(lim config.ListenerLimits, extra func(path []byte) time.Duration, errLog *log.Logger) *fasthttp.Server {
	read, write := lim.ReadTimeout.Duration, lim.WriteTimeout.Duration
	fs := &fasthttp.Server{
		Handler:      s.FastHandler(),
		ReadTimeout:  lim.ReadHeaderTimeout.Duration,
		WriteTimeout: write,
		IdleTimeout:  lim.IdleTimeout.Duration,
		// Bodies stream both ways, as on net/http: no size limit, no
		// buffering, no form parsing.
		StreamRequestBody:            true,
		MaxRequestBodySize:           1 << 62,
		DisablePreParseMultipartForm: true,
		// The longest request head: fasthttp's default, 4 KiB, refuses
		// common cookie and token headers; net/http allows 1 MB. Each
		// connection holds this buffer, so 16 KiB (nginx allows 8 KiB per
		// line) keeps 4,096 connections within 64 MB.
		ReadBufferSize: 16 << 10,
		TCPKeepalive:   true, // as net/http's listener does
		// The proxy's answers carry the upstream's headers, or its own,
		// and no Server or default Content-Type besides, as on net/http.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
	}
	if errLog != nil {
		fs.Logger = errLog
	}
	if read > 0 || write > 0 || extra != nil {
		fs.HeaderReceived = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			var d time.Duration
			if extra != nil {
				p, _, _ := bytes.Cut(h.RequestURI(), []byte("?"))
				d = extra(p)
			}
			c := fasthttp.RequestConfig{WriteTimeout: write + d}
			if read > 0 {
				c.ReadTimeout = max(read-lim.ReadHeaderTimeout.Duration, time.Millisecond) + d
			}
			return c
		}
	}
	return fs
}
