package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// forward sends an ordinary request upstream and copies the answer back:
// what httputil.ReverseProxy (Go 1.26) does for such a request — the same
// hop-by-hop, X-Forwarded-*, Te, User-Agent, 1xx, trailer, flushing and
// abort rules — with one trace context and one request copy where it makes
// two of each plus a ProxyRequest, the response's header slices moved
// rather than copied one by one, and no media-type parsing per response
// (BenchmarkProxy: 140 allocations per request end to end, 150 through
// ReverseProxy). A request that asks to switch protocols,
// or whose query ReverseProxy would re-encode, goes through ReverseProxy
// itself (see plain), so the rare cases keep the library's code.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, x *exchange) {
	out := r.WithContext(httptrace.WithClientTrace(x, &x.trace))
	u := *r.URL
	u.Path, u.RawPath = x.path, x.rawPath
	out.URL = &u
	switch {
	case x.body.rc != nil:
		out.Body = &x.body
	case r.ContentLength == 0:
		out.Body = nil // for http.Transport's retries
	}
	out.Close = false
	out.Header = forwardHeader(r.Header)
	if httpguts.HeaderValuesContainsToken(r.Header["Te"], "trailers") {
		out.Header["Te"] = teTrailers
	}
	pr := httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(x.route.target) // joins the base path (escaped, if either is), rewrites Host
	x.setForwarded(out.Header, r)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = emptyValue // not Go's default
	}

	res, err := upstream{s}.RoundTrip(out)
	x.mu.Lock()
	x.roundTripDone = true
	x.mu.Unlock()
	if err != nil {
		s.proxyError(w, out, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols { // not asked for: ReverseProxy's refusal
		res.Body.Close()
		s.proxyError(w, out, fmt.Errorf("backend tried to switch protocol %q when %q was requested", upgradeType(res.Header), ""))
		return
	}
	removeHopByHop(res.Header)
	h := w.Header()
	for k, v := range res.Header { // the response is ours: move, not copy
		h[k] = v
	}
	announced := len(res.Trailer)
	if announced > 0 { // http.Transport moves the Trailer header to Response.Trailer
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := s.copyBody(w, res); err != nil {
		res.Body.Close()
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler) // the answer is half sent: cut it, as ReverseProxy does
		}
		return
	}
	res.Body.Close() // now, to fill res.Trailer
	if len(res.Trailer) > 0 {
		http.NewResponseController(w).Flush() // chunked, so the trailers can follow
	}
	for k, vv := range res.Trailer {
		if len(res.Trailer) != announced {
			k = http.TrailerPrefix + k
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

var teTrailers, emptyValue, closeValue = []string{"trailers"}, []string{""}, []string{"close"}

// closeIfFramingHidden closes the client's connection after a request
// whose framing net/http's server may have hidden from the handler: it
// reads a request that has both Transfer-Encoding: chunked and
// Content-Length as chunked and drops Content-Length, and it drops
// Transfer-Encoding from an HTTP/1.0 request and reads no body — keeping
// the connection in both cases, so the bytes a peer framing by the other
// header takes for this request's body are read as a request of their own
// (smuggled to the upstream). RFC 9112 sections 6.1 and 6.3 require
// closing after such requests; as the handler cannot tell them from
// plain ones, every chunked request and every HTTP/1.0 keep-alive request
// closes its connection (the fasthttp engine can tell, and closes only
// those).
func closeIfFramingHidden(w http.ResponseWriter, r *http.Request) {
	if len(r.TransferEncoding) > 0 || !r.ProtoAtLeast(1, 1) && !r.Close {
		w.Header()["Connection"] = closeValue
	}
}

// plain reports whether ReverseProxy would forward r as forward does: no
// protocol switch, and a query it would not re-encode.
func plain(r *http.Request) bool {
	return upgradeType(r.Header) == "" && plainQuery(r.URL.RawQuery)
}

func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// plainQuery is the test by which ReverseProxy leaves a query as is (its
// cleanQueryParams): no ';', every '%' followed by two hex digits, at most
// 1000 parameters.
func plainQuery(q string) bool {
	if strings.Count(q, "&") >= 1000 {
		return false
	}
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hopHeaders are removed in both directions, besides the fields a
// Connection header names (RFC 9110 section 7.6.1; the rest are
// ReverseProxy's list, kept for older peers).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// forwardHeader is the client's header without its hop-by-hop fields and
// the forwarding fields the proxy sets itself. The value slices are
// shared: nobody writes into them (see route).
func forwardHeader(in http.Header) http.Header {
	h := make(http.Header, len(in)+4)
	for k, v := range in {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		h[k] = v
	}
	removeNominated(h, in["Connection"])
	return h
}

// removeHopByHop removes the hop-by-hop fields of h.
func removeHopByHop(h http.Header) {
	removeNominated(h, h["Connection"])
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func removeNominated(h http.Header, connection []string) {
	for _, f := range connection {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
}

// copyBody copies the response body to the client through a pooled
// buffer, flushing after every write for a stream (unknown length, or
// text/event-stream), as ReverseProxy does with FlushInterval 0.
func (s *Server) copyBody(w http.ResponseWriter, res *http.Response) error {
	buf := buffers.Get().(*[32 << 10]byte)
	defer buffers.Put(buf)
	var flush func() error
	if res.ContentLength == -1 || isEventStream(res.Header["Content-Type"]) {
		flush = http.NewResponseController(w).Flush
	}
	for {
		n, rerr := res.Body.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush != nil {
				if err := flush(); err != nil && err != http.ErrNotSupported {
					return err
				}
			}
		}
		switch {
		case rerr == io.EOF:
			return nil
		case rerr != nil:
			if x := exchangeOf(res.Request); x.Context.Err() == nil {
				s.log.Warn("upstream body read error", slog.String("circuit", x.route.circuit), slog.String("error", rerr.Error()))
			}
			return rerr
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream,
// without mime.ParseMediaType's allocations.
func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v, _, _ := strings.Cut(ct[0], ";")
	return strings.EqualFold(textproto.TrimString(v), "text/event-stream")
}

// setForwarded sets the X-Forwarded-* fields, as ProxyRequest.SetXForwarded
// with the values' slices reused.
func (x *exchange) setForwarded(h http.Header, in *http.Request) {
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = x.route.forwardedFor.get(ip)
	}
	h["X-Forwarded-Host"] = x.route.forwardedHost.get(in.Host)
	if in.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	h["X-Forwarded-Prefix"] = x.route.prefixHeader
}
