package proxy

import (
	"bytes"
	"net"
	"net/textproto"
	"strings"
	"sync"
)

// hopConn closes a gap between http.Transport and ReverseProxy. A
// response's Connection header names the fields that are hop-by-hop (RFC
// 9110 section 7.6.1), and they must not be forwarded — but when the header
// also says "close", http.Transport deletes the whole Connection header
// before returning the response (net/http's shouldClose), so
// "Connection: close, X-Secret" would forward X-Secret.
//
// So each plain-HTTP upstream connection is read through a hopConn, which
// notes, line by line as the bytes go by, the names that a
// "Connection:" line with a "close" token nominates. Each request learns
// its connection from httptrace's GotConn, and a response that came with
// "close" (Response.Close: the last on its connection) loses the fields its
// connection's hopConn noted. A body line that looks like such a header
// only adds a name of that connection's last response: stricter than
// needed, never leakier. Per connection: no lock or record is shared
// between connections or upstreams.
//
// Over TLS the connection carries ciphertext, so this covers plain-HTTP
// upstreams; HTTP/2 (the usual protocol over TLS) has no Connection header.
type hopConn struct {
	net.Conn

	mu      sync.Mutex
	midLine bool     // the last read ended inside a line that is not a Connection line
	line    []byte   // the start of a Connection line that the last read cut
	inLine  bool     // line holds a line in progress
	names   []string // nominated by a "Connection: close, ..." line
}

const (
	connectionPrefix = "connection:"
	maxHopNames      = 256
)

func (c *hopConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.scan(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// scan goes through b line by line, keeping only Connection lines.
func (c *hopConn) scan(b []byte) {
	for len(b) > 0 {
		if c.midLine {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			b, c.midLine = b[i+1:], false
			continue
		}
		// At the start of a line, or inside a Connection line.
		chunk, end := b, false
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			chunk, b, end = b[:i], b[i+1:], true
		} else {
			b = nil
		}
		if !c.inLine {
			c.line, c.inLine = c.line[:0], true
		}
		// Copy only as much as decides whether it is a Connection line.
		if need := len(connectionPrefix) - len(c.line); need > 0 {
			take := min(need, len(chunk))
			c.line = append(c.line, chunk[:take]...)
			chunk = chunk[take:]
			if !foldPrefix(c.line) {
				c.inLine, c.midLine = false, !end
				continue
			}
		}
		c.line = append(c.line, chunk...)
		if end {
			c.inLine = false
			if len(c.line) > len(connectionPrefix) {
				c.record(string(c.line[len(connectionPrefix):]))
			}
		}
	}
}

// record notes the names of a Connection value that says "close".
func (c *hopConn) record(value string) {
	var names []string
	closing := false
	for tok := range strings.SplitSeq(value, ",") {
		tok = strings.TrimSpace(tok)
		switch {
		case strings.EqualFold(tok, "close"):
			closing = true
		case tok != "" && !strings.EqualFold(tok, "keep-alive"):
			names = append(names, textproto.CanonicalMIMEHeaderKey(tok))
		}
	}
	if closing { // otherwise the transport keeps the header, and the proxy removes the fields itself
		c.names = append(c.names, names[:min(len(names), maxHopNames-len(c.names))]...)
	}
}

// strip removes from h the fields this connection's responses nominated.
func (c *hopConn) strip(h map[string][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.names {
		delete(h, name)
	}
}

// foldPrefix reports whether b begins "connection:", in any case.
func foldPrefix(b []byte) bool {
	for i, ch := range b {
		if ch|0x20 != connectionPrefix[i] { // ':' has the 0x20 bit already
			return false
		}
	}
	return true
}
