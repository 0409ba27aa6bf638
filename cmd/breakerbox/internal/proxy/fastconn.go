package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// headConn gives fasthttp's client http.Transport's ResponseHeaderTimeout.
// fasthttp arms its ReadTimeout as a read deadline once the request is
// written, and keeps it for the whole response, body included: a long
// download or an event stream would be cut by its service's timeout. So
// the deadline is lifted as soon as the response head has gone by (the
// first CRLFCRLF after the deadline was set).
//
// fasthttp reads a connection's response from one goroutine at a time, and
// sets the deadline from that goroutine before reading: no lock is needed.
type headConn struct {
	net.Conn
	inHead  bool
	matched int // bytes of "\r\n\r\n" seen at the end of the last read
}

var headEnd = []byte("\r\n\r\n")

func (c *headConn) SetReadDeadline(t time.Time) error {
	c.inHead, c.matched = !t.IsZero(), 0
	return c.Conn.SetReadDeadline(t)
}

func (c *headConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.inHead && n > 0 && c.headDone(p[:n]) {
		c.inHead = false
		c.Conn.SetReadDeadline(time.Time{})
	}
	return n, err
}

// headDone reports whether b completes "\r\n\r\n", counting what the
// previous reads ended with. A read of four bytes or more is searched with
// bytes.Index (vectorized), then its last three bytes give what the next
// read may complete.
func (c *headConn) headDone(b []byte) bool {
	if len(b) < len(headEnd) {
		return c.headDoneBytes(b)
	}
	// The longest partial match is enough: "\r\n\r" needs "\n", and the
	// only shorter one it holds, "\r", needs "\n\r\n", which begins alike.
	if c.matched > 0 && bytes.HasPrefix(b, headEnd[c.matched:]) || bytes.Contains(b, headEnd) {
		return true
	}
	switch {
	case bytes.HasSuffix(b, headEnd[:3]):
		c.matched = 3
	case bytes.HasSuffix(b, headEnd[:2]):
		c.matched = 2
	case b[len(b)-1] == '\r':
		c.matched = 1
	default:
		c.matched = 0
	}
	return false
}

// headDoneBytes is headDone one byte at a time.
func (c *headConn) headDoneBytes(b []byte) bool {
	for _, ch := range b {
		switch {
		case ch == headEnd[c.matched]:
			c.matched++
			if c.matched == len(headEnd) {
				return true
			}
		case ch == '\r':
			c.matched = 1
		default:
			c.matched = 0
		}
	}
	return false
}

// handshake makes c a TLS client connection with conf, the handshake
// bounded by timeout (0: none), under headConn. fasthttp takes a
// connection with a Handshake method for one that is TLS already.
func handshake(c net.Conn, conf *tls.Config, timeout time.Duration) (net.Conn, error) {
	tc := tls.Client(c, conf)
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tlsHeadConn{&headConn{Conn: tc}, tc}, nil
}

// tlsHeadConn is a headConn over TLS, with the Handshake method by which
// fasthttp knows not to add TLS itself.
type tlsHeadConn struct {
	*headConn
	tls *tls.Conn
}

func (c tlsHeadConn) Handshake() error { return c.tls.Handshake() }

// handOver serves a protocol upgrade (WebSocket) on the net/http path, so
// it is answered exactly as there: the connection is taken from fasthttp
// with the request head fasthttp read, which a net/http server reads
// again from the front of the connection.
func (s *Server) handOver(ctx *fasthttp.RequestCtx) {
	// The head as fasthttp writes it, without a Content-Type the client
	// did not send.
	ctx.Request.Header.SetNoDefaultContentType(true)
	head := bytes.Clone(ctx.Request.Header.Header())
	body := handedBody(&ctx.Request)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		hc := &handedConn{Conn: c, r: io.MultiReader(bytes.NewReader(head), body, c), closed: make(chan struct{})}
		srv := &http.Server{Handler: s, ErrorLog: s.rp.ErrorLog}
		go srv.Serve(&oneConnListener{c: hc})
		<-hc.closed // fasthttp closes c when this returns
	})
}

// handedBody is the body of a request with a Content-Length as handOver
// passes it on after the head: fasthttp has read it, or its first 8 KiB,
// before the handler ran, and those bytes are no longer on the
// connection (without them the net/http server would wait for ever for a
// body that had arrived). The stream stays readable in the hijack handler.
// A chunked body is left on the connection: fasthttp reads no chunk
// before the handler asks for it.
func handedBody(req *fasthttp.Request) io.Reader {
	n := req.Header.ContentLength()
	switch {
	case n <= 0:
		return bytes.NewReader(nil)
	case req.BodyStream() != nil:
		return io.LimitReader(req.BodyStream(), int64(n))
	}
	return bytes.NewReader(bytes.Clone(req.Body()))
}

// handedConn is a connection fasthttp handed over, read from the request
// head it had already read.
type handedConn struct {
	net.Conn
	r      io.Reader
	once   sync.Once
	closed chan struct{}
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *handedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// oneConnListener accepts its one connection, then ends.
type oneConnListener struct {
	mu sync.Mutex
	c  net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.c
	l.c = nil
	if c == nil {
		return nil, io.EOF
	}
	return c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return dummyAddr{} }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "handed-over" }
