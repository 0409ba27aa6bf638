package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/breaker"
)

// The fasthttp engine (listen_engine: fasthttp) is the proxy listener's
// second implementation of the data path ServeHTTP implements on net/http:
// the same routing, breaker, prebuilt rejection, hop-by-hop and
// X-Forwarded-* rules, Breakerbox-* renaming, per-service timeouts,
// classification, metrics and rolling stats, on github.com/valyala/fasthttp
// on both sides. It exists for CPU: fasthttp reuses its request and
// response objects and buffers across requests where net/http allocates
// ~140 times per proxied request (bench/RESULTS.md, "Proxy engines").
//
// What it does differently, because fasthttp cannot do it the same way:
//   - A protocol upgrade (WebSocket) is handed, connection and all, to the
//     net/http path (handOver), so it is answered exactly as there.
//   - Upstreams speak HTTP/1.1 only: an https:// upstream gets TLS, never
//     HTTP/2 (net/http negotiates HTTP/2). 1xx answers other than
//     100 Continue are not passed on.
//   - A forward proxy from the environment (HTTPS_PROXY, HTTP_PROXY) is
//     not used; the config refuses a service it would apply to.
//   - A client that leaves does not cancel its upstream request: fasthttp
//     does not watch the client's connection while the handler runs. The
//     request ends with its service's timeout at the latest.
//   - An event stream is flushed per chunk the upstream sends when its
//     length is unknown (chunked), as nginx does; one with a
//     Content-Length is copied without flushes.
//   - fasthttp reads up to 8 KiB of a request body before the handler
//     runs, and answers a stall within them 408 itself: such a request
//     never reaches the breaker (on net/http it is counted as ignored).
//   - A request head over 16 KiB is answered 431 (FastServer; net/http
//     allows 1 MB). A head whose lines all end in a bare LF waits for a
//     CRLFCRLF until the head timeout, then is answered 400 (net/http
//     takes bare LFs as line ends).
//   - A chunked request keeps its connection unless it also had
//     Content-Length (net/http cannot tell, and closes after every
//     chunked request and every HTTP/1.0 keep-alive one:
//     closeIfFramingHidden).
//     fasthttp refuses repeated Content-Length fields even when equal,
//     Transfer-Encoding in HTTP/1.0, and trailers that may not be trailers
//     (Host…), where net/http accepts them; it skips an empty line before
//     the request-line, where net/http refuses it.
//   - Header fields are written in fasthttp's order (Content-Type and
//     Content-Length first) and Date is the proxy's, not the upstream's.
func (s *Server) FastHandler() fasthttp.RequestHandler { return s.serveFast }

func (s *Server) serveFast(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	var x *exchange
	// fasthttp does not recover a handler's panic: the process would die.
	// net/http's server logs it and closes the connection; so does this.
	defer func() {
		if p := recover(); p != nil {
			s.recoverFast(ctx, x, p)
		}
	}()
	req := &ctx.Request
	fields, refused := scanHead(ctx)
	if refused {
		return
	}
	if fields&fieldUpgrade != 0 && isUpgrade(&req.Header) {
		s.handOver(ctx)
		return
	}
	t := s.table.Load()
	u, err := fastURL(req.URI().PathOriginal())
	var rt *route
	var path, rawPath string
	var svc *service
	if err == nil {
		rt, path, rawPath, svc, err = t.resolve(&u)
	}
	switch {
	case err != nil:
		writeJSON(&fastWriter{ctx: ctx}, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	case rt == nil:
		s.notFound(&fastWriter{ctx: ctx}, u.Path, t, svc)
		return
	}
	b, err := s.registry.Get(rt.circuit)
	if err != nil { // unreachable: the config was validated
		s.log.Error("no breaker for circuit", slog.String("circuit", rt.circuit), slog.String("error", err.Error()))
		writeJSON(&fastWriter{ctx: ctx}, http.StatusInternalServerError, map[string]any{"error": "breakerbox has no breaker for this circuit (see its log)", "circuit": rt.circuit})
		return
	}
	ticket, err := b.AllowContext(ctx)
	if err != nil {
		rejectFast(ctx, rt, err)
		rt.stats.rejected(start)
		rt.metrics.observeRejection(time.Since(start))
		return
	}
	// The exchange's context never ends: fasthttp does not tell when a
	// client leaves, and its RequestCtx ends on shutdown, which must not
	// pass for the client's cancellation (that is not counted).
	x = &exchange{Context: context.Background(), route: rt, ticket: ticket, path: path, rawPath: rawPath, start: start}
	s.forwardFast(ctx, x, fields)
}

// recoverFast ends a request whose handler panicked with p, as net/http's
// server and upstream.RoundTrip do: logged with its stack, the connection
// closed after a 500, and a round trip that never returned counted as a
// failure.
func (s *Server) recoverFast(ctx *fasthttp.RequestCtx, x *exchange, p any) {
	s.log.Error("panic serving a proxy request", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	ctx.Response.Reset()
	ctx.SetStatusCode(http.StatusInternalServerError)
	ctx.SetConnectionClose()
	if x != nil && !x.reported {
		x.reported = true
		x.ticket.Report(breaker.Failure)
		x.status = http.StatusInternalServerError
		x.route.metrics.observe(x.status, time.Since(x.start))
	}
}

// fastURL is the decoded and raw path of a request, as net/http's parser
// sets them, for resolve.
func fastURL(raw []byte) (url.URL, error) {
	if bytes.IndexByte(raw, '%') < 0 {
		return url.URL{Path: string(raw)}, nil
	}
	p, err := url.PathUnescape(string(raw))
	if err != nil {
		return url.URL{}, err
	}
	return url.URL{Path: p, RawPath: string(raw)}, nil
}

// isUpgrade reports whether a request that has an Upgrade field asks to
// switch protocols (its Connection field names "upgrade").
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if len(h.Peek("Upgrade")) == 0 {
		return false
	}
	for _, v := range h.PeekAll("Connection") {
		if hasToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v has tok, in any case.
func hasToken(v []byte, tok string) bool {
	for f := range bytes.SplitSeq(v, []byte(",")) {
		if strings.EqualFold(string(bytes.TrimSpace(f)), tok) { // the conversion does not allocate
			return true
		}
	}
	return false
}

// rejectFast writes the route's prebuilt open answer: the same status,
// headers and body as reject.
func rejectFast(ctx *fasthttp.RequestCtx, rt *route, err error) {
	rj := rejectionFor(rt, err)
	res := &ctx.Response
	res.SetStatusCode(http.StatusServiceUnavailable)
	res.Header.SetContentType(jsonContentType[0])
	// The names are canonical already: SetCanonical skips normalizing them.
	res.Header.SetCanonical(retryAfterKey, rj.retryAfterBytes)
	res.Header.SetCanonical(circuitKey, rt.circuitBytes)
	res.Header.SetCanonical(stateKey, stateOpen)
	res.SetBodyRaw(rj.body)
}

var (
	retryAfterKey, circuitKey, stateKey = []byte("Retry-After"), []byte("Breakerbox-Circuit"), []byte("Breakerbox-State")
	stateOpen                           = []byte("open")

	teKey, trailersValue                    = []byte("Te"), []byte("trailers")
	xForwardedForKey, xForwardedHostKey     = []byte("X-Forwarded-For"), []byte("X-Forwarded-Host")
	xForwardedProtoKey, xForwardedPrefixKey = []byte("X-Forwarded-Proto"), []byte("X-Forwarded-Prefix")
	protoHTTPBytes, protoHTTPSBytes         = []byte("http"), []byte("https")
)

// headFields says which of the fields the proxy acts on a head has, so
// that it deletes or reads only those: fasthttp's Del and Peek copy and
// normalize the name they are given and search the whole header, which
// for the eight hop-by-hop names twice per request was ~10 % of the
// engine's instructions per request.
type headFields uint16

const (
	fieldConnection headFields = 1 << iota
	fieldProxyConnection
	fieldKeepAlive
	fieldProxyAuthenticate
	fieldProxyAuthorization
	fieldTe
	fieldTransferEncoding
	fieldUpgrade
	fieldForwarded
	fieldBreakerbox // a name beginning "Breakerbox-" (answers only)

	allFields headFields = 1<<iota - 1
)

// fastHopHeaders are hopHeaders but Trailer, which fasthttp keeps with the
// trailers it forwards, each with its bit.
var fastHopHeaders = []struct {
	name string
	bit  headFields
}{
	{"Connection", fieldConnection}, {"Proxy-Connection", fieldProxyConnection}, {"Keep-Alive", fieldKeepAlive},
	{"Proxy-Authenticate", fieldProxyAuthenticate}, {"Proxy-Authorization", fieldProxyAuthorization},
	{"Te", fieldTe}, {"Transfer-Encoding", fieldTransferEncoding}, {"Upgrade", fieldUpgrade},
}

// fieldOf is the bit of the field name, in any case; 0 for the others. It
// runs for every field of every request and answer: the length decides
// which name to compare with.
func fieldOf(name []byte) headFields {
	var want string
	var bit headFields
	switch len(name) {
	case len("Te"):
		want, bit = "Te", fieldTe
	case len("Upgrade"):
		want, bit = "Upgrade", fieldUpgrade
	case len("Forwarded"):
		want, bit = "Forwarded", fieldForwarded
	case len("Connection"): // and Keep-Alive
		want, bit = "Connection", fieldConnection
		if name[0]|0x20 == 'k' {
			want, bit = "Keep-Alive", fieldKeepAlive
		}
	case len("Proxy-Connection"):
		want, bit = "Proxy-Connection", fieldProxyConnection
	case len("Transfer-Encoding"):
		want, bit = "Transfer-Encoding", fieldTransferEncoding
	case len("Proxy-Authenticate"):
		want, bit = "Proxy-Authenticate", fieldProxyAuthenticate
	case len("Proxy-Authorization"):
		want, bit = "Proxy-Authorization", fieldProxyAuthorization
	}
	if want != "" && strings.EqualFold(string(name), want) {
		return bit
	}
	const prefix = "Breakerbox-"
	if len(name) > len(prefix) && name[0]|0x20 == 'b' && strings.EqualFold(string(name[:len(prefix)]), prefix) {
		return fieldBreakerbox
	}
	return 0
}

// delHop deletes from h the hop-by-hop fields that fields says it has.
func delHop(h interface{ Del(string) }, fields headFields) {
	for _, f := range fastHopHeaders {
		if fields&f.bit != 0 {
			h.Del(f.name)
		}
	}
}

// forwardFast sends the client's request upstream, rewritten in place
// (fasthttp owns and recycles it), and answers with the upstream's
// response, its body streamed.
func (s *Server) forwardFast(ctx *fasthttp.RequestCtx, x *exchange, fields headFields) {
	req, rt := &ctx.Request, x.route
	h := &req.Header
	clientClose := h.ConnectionClose()
	teTrailers := false
	if fields&fieldTe != 0 {
		for _, v := range h.PeekAll("Te") {
			teTrailers = teTrailers || hasToken(v, "trailers")
		}
	}
	if fields&fieldConnection != 0 {
		for _, v := range h.PeekAll("Connection") {
			for f := range bytes.SplitSeq(v, []byte(",")) {
				if f = bytes.TrimSpace(f); len(f) > 0 && nominable(f) {
					h.DelBytes(f)
				}
			}
		}
	}
	delHop(h, fields)
	h.ResetConnectionClose()
	// A body without Content-Type goes on without one, as the client sent
	// it (fasthttp's client would add application/octet-stream).
	h.SetNoDefaultContentType(true)
	if teTrailers {
		h.SetCanonical(teKey, trailersValue)
	}
	if fields&fieldForwarded != 0 {
		h.Del("Forwarded")
	}
	// The names are canonical already: SetCanonical skips normalizing them.
	var ipBuf [64]byte
	if ip, ok := remoteIP(ctx, ipBuf[:0]); ok {
		h.SetCanonical(xForwardedForKey, ip)
	} else {
		h.Del("X-Forwarded-For")
	}
	h.SetCanonical(xForwardedHostKey, h.Host())
	if ctx.IsTLS() {
		h.SetCanonical(xForwardedProtoKey, protoHTTPSBytes)
	} else {
		h.SetCanonical(xForwardedProtoKey, protoHTTPBytes)
	}
	h.SetCanonical(xForwardedPrefixKey, rt.prefixBytes)

	// The request line: the route's base path joined with the rest as the
	// client encoded it (as ProxyRequest.SetURL joins them), and the query
	// as sent, or re-encoded as ReverseProxy would when it is not plain.
	var uriBuf [512]byte
	uri := append(uriBuf[:0], rt.target.Scheme...)
	uri = append(uri, "://"...)
	uri = append(uri, rt.target.Host...)
	rest := x.rawPath
	if rest == "" {
		rest = x.path
	}
	uri = appendJoined(uri, rt.basePath(), rest)
	if q := req.URI().QueryString(); len(q) > 0 {
		uri = append(uri, '?')
		if plainQuery(string(q)) {
			uri = append(uri, q...)
		} else {
			v, _ := url.ParseQuery(string(q))
			uri = append(uri, v.Encode()...)
		}
	}
	req.SetRequestURIBytes(uri)
	h.SetHost(rt.target.Host)
	if bs := req.BodyStream(); bs != nil && h.ContentLength() != 0 {
		x.body.rc = io.NopCloser(bs)
		req.SetBodyStream(&x.body, h.ContentLength())
	}

	res := fasthttp.AcquireResponse()
	// An answer without Content-Type passes on without one (CopyTo below
	// carries this over to the client's answer).
	res.Header.SetNoDefaultContentType(true)
	err := s.fastClient(rt).Do(req, res)
	s.reportFast(x, res, err)
	if err != nil {
		fasthttp.ReleaseResponse(res)
		s.answerFault(&fastWriter{ctx: ctx}, x, err)
		x.finish(x.start)
		s.closeIf(ctx, clientClose)
		return
	}
	if res.StatusCode() == http.StatusSwitchingProtocols { // not asked for: ReverseProxy's refusal
		fasthttp.ReleaseResponse(res)
		x.fault = faultUpstream
		s.answerFault(&fastWriter{ctx: ctx}, x, errSwitchNotAsked)
		x.finish(x.start)
		s.closeIf(ctx, clientClose)
		return
	}
	out := &ctx.Response
	res.Header.CopyTo(&out.Header)
	var resFields headFields
	for k := range res.Header.All() {
		resFields |= fieldOf(k)
	}
	if resFields&fieldConnection != 0 {
		for _, v := range res.Header.PeekAll("Connection") {
			for f := range bytes.SplitSeq(v, []byte(",")) {
				if f = bytes.TrimSpace(f); len(f) > 0 {
					out.Header.DelBytes(f)
				}
			}
		}
	}
	delHop(&out.Header, resFields)
	// The upstream closing its connection is no reason to close the
	// client's.
	out.Header.ResetConnectionClose()
	if resFields&fieldBreakerbox != 0 {
		renameFastBreakerboxHeaders(&out.Header)
	}
	s.closeIf(ctx, clientClose)
	if bs := res.BodyStream(); bs != nil {
		if n := res.Header.ContentLength(); n >= 0 && n <= smallBody {
			rest := readSmallBody(out, bs, n)
			if rest == nil {
				res.CloseBodyStream()
				fasthttp.ReleaseResponse(res)
				x.finish(x.start)
				return
			}
			bs = rest // what came, then the error: streamed, as any body
		}
		out.SetBodyStream(&upstreamBody{out: &out.Header, s: s, x: x, res: res, r: bs}, res.Header.ContentLength())
		return // finish runs when the server has written the body
	}
	out.SetBody(res.Body())
	fasthttp.ReleaseResponse(res)
	x.finish(x.start)
}

// smallBody is the longest response body with a Content-Length that is
// read whole before it is answered, instead of streamed: streaming costs
// ~5,000 instructions per answer (a third of the engine's own), and a body
// this short sits in the server's 4 KiB write buffer until its end
// anyway, so the client sees no difference.
const smallBody = 4 << 10

// readSmallBody reads the n bytes of an upstream body, and its end, into
// out's body. On an error it returns a reader of what was read followed
// by the error, to be streamed as any body.
func readSmallBody(out *fasthttp.Response, bs io.Reader, n int) io.Reader {
	buf := smallBodies.Get().(*[smallBody + 1]byte)
	defer smallBodies.Put(buf)
	// One byte more than n: the read past the body's end tells fasthttp it
	// was read whole, so the connection goes back to the pool.
	m, err := io.ReadFull(bs, buf[:n+1])
	if m == n && (err == io.EOF || err == io.ErrUnexpectedEOF) {
		out.SetBody(buf[:n])
		return nil
	}
	if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF { // m > n cannot be: fasthttp stops at n
		err = io.ErrUnexpectedEOF
	}
	return io.MultiReader(bytes.NewReader(bytes.Clone(buf[:m])), failedReader{err})
}

var smallBodies = sync.Pool{New: func() any { return new([smallBody + 1]byte) }}

// failedReader is a body that fails with err.
type failedReader struct{ err error }

func (r failedReader) Read([]byte) (int, error) { return 0, r.err }

// scanHead answers, and closes the connection of, a request
// whose head fasthttp accepts but net/http refuses, because a peer could
// frame or read it otherwise:
//   - Transfer-Encoding other than chunked: fasthttp takes "identity" for
//     no coding, reads no body, and would read the bytes that follow as
//     the next request; RFC 9112 section 6.3 asks for an error and a
//     closed connection (net/http answers 501).
//   - a field name with a space inside ("X A"): not a token, so not HTTP
//     (RFC 9110 section 5.1); fasthttp keeps it and would forward it.
//
// In the same pass it notes which of the fields the proxy acts on the head
// has. It reads the head as received, without allocating.
func scanHead(ctx *fasthttp.RequestCtx) (fields headFields, refused bool) {
	h := &ctx.Request.Header
	chunked := h.ContentLength() == -1
	raw := h.RawHeaders()
	if len(raw) == 0 { // not read from a connection: assume every field
		return allFields, false
	}
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' { // a folded value's continuation
			continue
		}
		name := line[:max(bytes.IndexByte(line, ':'), 0)]
		if bytes.IndexByte(name, ' ') >= 0 {
			refuseHead(ctx, http.StatusBadRequest, fmt.Sprintf("the header field name %q has a space in it: send field names as tokens (RFC 9110 section 5.1)", name))
			return 0, true
		}
		f := fieldOf(name)
		if f == fieldTransferEncoding && !chunked {
			refuseHead(ctx, http.StatusNotImplemented, "Transfer-Encoding: only chunked is supported; send the body chunked or with Content-Length alone")
			return 0, true
		}
		fields |= f
	}
	return fields, false
}

func refuseHead(ctx *fasthttp.RequestCtx, code int, msg string) {
	writeJSON(&fastWriter{ctx: ctx}, code, map[string]any{"error": msg})
	ctx.SetConnectionClose()
}

// nominable reports whether a field the client's Connection header names
// may be dropped as hop-by-hop. Not Content-Length and Host: fasthttp
// keeps them in the request's own state, so dropping them drops the
// body's length (the round trip then fails, counted against the upstream)
// or the Host X-Forwarded-Host is set from. net/http never has them in
// its header map, so there they are not dropped either.
func nominable(name []byte) bool {
	return !strings.EqualFold(string(name), "Content-Length") && !strings.EqualFold(string(name), "Host")
}

func (s *Server) closeIf(ctx *fasthttp.RequestCtx, clientClose bool) {
	if clientClose {
		ctx.SetConnectionClose()
	}
}

// reportFast records the round trip in the circuit's stats and reports it
// to the breaker, as upstream.RoundTrip does on net/http.
func (s *Server) reportFast(x *exchange, res *fasthttp.Response, err error) {
	x.reported = true
	now := time.Now()
	if err != nil {
		x.fault = x.classify(err)
		x.route.stats.forwarded(now, 1000+int(x.fault), x.fault > faultLocal, now.Sub(x.start))
		if x.fault <= faultLocal {
			x.ticket.Report(breaker.Ignored)
		} else {
			x.ticket.Report(breaker.Failure)
		}
		return
	}
	x.status = res.StatusCode()
	outcome := breaker.Success
	switch {
	case x.status == http.StatusTooManyRequests:
		outcome = breaker.Ignored
	case x.status >= 500:
		outcome = breaker.Failure
	}
	x.route.stats.forwarded(now, x.status, outcome == breaker.Failure, now.Sub(x.start))
	x.ticket.Report(outcome)
	if x.status >= 500 {
		s.upstreamFaults.fault(x.route, "upstream answered 5xx", slog.Int("status", x.status))
	}
}

var errSwitchNotAsked = &fastError{`backend tried to switch protocol when none was requested`}

type fastError struct{ msg string }

func (e *fastError) Error() string { return e.msg }

// renameFastBreakerboxHeaders is renameBreakerboxHeaders on a fasthttp
// header; it allocates only when there is one to rename.
func renameFastBreakerboxHeaders(h *fasthttp.ResponseHeader) {
	var found []string
	for k := range h.All() {
		if len(k) > len("Breakerbox-") && strings.EqualFold(string(k[:len("Breakerbox-")]), "Breakerbox-") {
			found = append(found, string(k))
		}
	}
	for _, k := range found {
		for _, v := range h.PeekAll(k) {
			h.Add("Upstream-"+k, string(v))
		}
		h.Del(k)
	}
}

// remoteIP appends the client's IP address to b, as net.SplitHostPort
// would give it from RemoteAddr.
func remoteIP(ctx *fasthttp.RequestCtx, b []byte) ([]byte, bool) {
	switch a := ctx.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return b, false
		}
		if a.Zone != "" {
			ip = ip.WithZone(a.Zone)
		}
		return ip.Unmap().AppendTo(b), true
	default:
		host, _, err := net.SplitHostPort(a.String())
		return append(b, host...), err == nil
	}
}

// appendJoined appends base and rest joined by one slash, as
// httputil's singleJoiningSlash.
func appendJoined(b []byte, base, rest string) []byte {
	aslash, bslash := strings.HasSuffix(base, "/"), strings.HasPrefix(rest, "/")
	b = append(b, base...)
	switch {
	case aslash && bslash:
		return append(b, rest[1:]...)
	case !aslash && !bslash:
		b = append(b, '/')
	}
	return append(b, rest...)
}

// upstreamBody streams the upstream's response body to the client; the
// server closes it once written (or the client gone), which ends the
// exchange.
type upstreamBody struct {
	out *fasthttp.ResponseHeader // the client's
	s   *Server
	x   *exchange
	res *fasthttp.Response
	r   io.Reader
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		copyTrailers(b.out, &b.res.Header)
	case err != nil:
		b.s.log.Warn("upstream body read error", slog.String("circuit", b.x.route.circuit), slog.String("error", err.Error()))
	}
	return n, err
}

// copyTrailers passes the trailers the upstream sent after the body (read
// by the time its body ends) to the client's answer, whose body the server
// is still writing: it writes the trailers after the last chunk.
func copyTrailers(out, in *fasthttp.ResponseHeader) {
	th := in.TrailerHeader()
	if len(th) <= len("\r\n") { // none
		return
	}
	for line := range bytes.SplitSeq(th, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out.AddTrailerBytes(k)
		out.AddBytesV(string(k), bytes.TrimSpace(v))
	}
}

// CloseWithError is how fasthttp closes a body stream (it has no Close,
// which fasthttp would call as well).
func (b *upstreamBody) CloseWithError(error) error {
	b.res.CloseBodyStream()
	fasthttp.ReleaseResponse(b.res)
	b.x.finish(b.x.start)
	return nil
}

// fastWriter is an http.ResponseWriter over a fasthttp response, for the
// rare answers (errors, 404s) written by the code both engines share.
type fastWriter struct {
	ctx *fasthttp.RequestCtx
	h   http.Header
}

func (w *fastWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}

func (w *fastWriter) WriteHeader(code int) {
	res := &w.ctx.Response
	res.Header.ResetConnectionClose()
	for k, vv := range w.h {
		res.Header.Del(k)
		for _, v := range vv {
			res.Header.Add(k, v)
		}
	}
	res.SetStatusCode(code)
	res.ResetBody()
}

func (w *fastWriter) Write(p []byte) (int, error) { return w.ctx.Response.BodyWriter().Write(p) }

// fastClient is the route's upstream client, one per upstream host and
// timeout, kept across reloads with its connections.
func (s *Server) fastClient(rt *route) *fasthttp.HostClient {
	if c := rt.fast.Load(); c != nil {
		return c
	}
	key := rt.target.Scheme + "://" + rt.target.Host + " " + strconv.FormatInt(int64(rt.timeout), 10)
	s.transportsMu.Lock()
	defer s.transportsMu.Unlock()
	c := s.fastClients[key]
	if c == nil {
		var conf *tls.Config
		if t, ok := s.base.(*http.Transport); ok {
			conf = t.TLSClientConfig
		}
		c = newFastClient(rt.target, rt.timeout, conf)
		s.fastClients[key] = c
	}
	rt.fast.Store(c)
	return c
}

// newFastClient is the client of one upstream whose service's timeout is
// timeout. For an https:// upstream it makes the TLS connections itself,
// with conf (the base transport's TLSClientConfig; nil for the defaults)
// and the handshake bounded by timeout, as http.Transport's
// TLSHandshakeTimeout: headConn must read the response head in clear, so
// it goes above TLS, where fasthttp would put it below.
func newFastClient(target *url.URL, timeout time.Duration, conf *tls.Config) *fasthttp.HostClient {
	addr := target.Host
	isTLS := target.Scheme == "https"
	if target.Port() == "" {
		port := "80"
		if isTLS {
			port = "443"
		}
		addr = net.JoinHostPort(target.Hostname(), port)
	}
	if isTLS {
		conf = conf.Clone()
		if conf == nil {
			conf = &tls.Config{}
		}
		if conf.ServerName == "" {
			conf.ServerName = target.Hostname()
		}
		conf.NextProtos = []string{"http/1.1"} // this client speaks nothing else
	}
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return &fasthttp.HostClient{
		Addr:  addr,
		IsTLS: isTLS,
		Dial: func(addr string) (net.Conn, error) {
			c, err := dialer.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			if !isTLS {
				return &headConn{Conn: c}, nil
			}
			return handshake(c, conf, timeout)
		},
		// ReadTimeout is armed after the request is written; headConn
		// lifts it once the response head is in: it bounds the wait for the
		// answer, as http.Transport's ResponseHeaderTimeout, not the
		// upload (the listener's read timeout bounds that) or the body.
		ReadTimeout:                   timeout,
		MaxConns:                      1 << 16,
		MaxIdleConnDuration:           90 * time.Second,
		StreamResponseBody:            true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		MaxIdemponentCallAttempts:     2,
		// Retry only on a kept-alive connection the upstream had closed,
		// as http.Transport does; never after a timeout.
		RetryIfErr: func(req *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, req.BodyStream() == nil && (err == fasthttp.ErrConnectionClosed || err == io.EOF)
		},
	}
}

// basePath is the route's base path as it goes on the request line.
func (r *route) basePath() string {
	if r.target.RawPath == "" && r.target.Path == "" {
		return ""
	}
	return r.target.EscapedPath()
}
