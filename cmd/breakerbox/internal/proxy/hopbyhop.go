package proxy

import (
	"bytes"
	"net"
	"net/textproto"
	"strings"
	"sync"
)

// hopNames works around a gap between http.Transport and ReverseProxy. A
// response's Connection header names the fields that are hop-by-hop (RFC
// 9110 section 7.6.1), and ReverseProxy removes those fields — but when the
// header also says "close", http.Transport deletes the whole Connection
// header before returning the response (net/http's shouldClose), so
// "Connection: close, X-Secret" would forward X-Secret.
//
// So the upstream connections are read through scanConn, which spots such a
// header as it goes by and records the names it nominates; a response that
// came with "close" (Response.Close) then loses every field of a recorded
// name. The record is shared by all upstreams, so a name one upstream
// nominated is hop-by-hop in every closing response: stricter than needed,
// never leakier. Bounded: past maxHopNames names, new ones are not
// recorded (and logged by nobody: a well-behaved upstream nominates none).
//
// Over TLS the scan sees ciphertext, so this covers plain-HTTP upstreams;
// HTTP/2 (the usual protocol over TLS) has no Connection header at all.
type hopNames struct {
	mu    sync.Mutex
	names map[string]struct{}
}

const maxHopNames = 256

// strip removes from h the fields of every recorded name.
func (n *hopNames) strip(h map[string][]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.names {
		delete(h, name)
	}
}

// scan records the names that a "Connection:" line with a "close" token in
// p nominates. A body may contain such a line too: that only adds a name.
func (n *hopNames) scan(p []byte) {
	for _, pat := range [...]string{"onnection:", "ONNECTION:"} {
		for rest := p; ; {
			i := bytes.Index(rest, []byte(pat))
			if i < 0 {
				break
			}
			line := rest[i+len(pat):]
			isHeader := i >= 2 && rest[i-2] == '\n' && (rest[i-1]|0x20) == 'c'
			rest = line
			if !isHeader {
				continue
			}
			if end := bytes.IndexByte(line, '\n'); end >= 0 {
				line = line[:end]
			}
			n.record(string(line))
		}
	}
}

func (n *hopNames) record(value string) {
	var names []string
	closing := false
	for _, tok := range strings.Split(value, ",") {
		tok = strings.TrimSpace(tok)
		switch {
		case strings.EqualFold(tok, "close"):
			closing = true
		case tok != "" && !strings.EqualFold(tok, "keep-alive"):
			names = append(names, textproto.CanonicalMIMEHeaderKey(tok))
		}
	}
	if !closing || len(names) == 0 {
		return // ReverseProxy sees this Connection header and handles it
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.names == nil {
		n.names = map[string]struct{}{}
	}
	for _, name := range names {
		if len(n.names) < maxHopNames {
			n.names[name] = struct{}{}
		}
	}
}

// scanConn is an upstream connection whose reads go through hopNames.scan.
type scanConn struct {
	net.Conn
	hop *hopNames
}

func (c *scanConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.hop.scan(p[:n])
	}
	return n, err
}
