// Package mailproxy relays SMTP and IMAP sessions to a mail provider through
// a circuit breaker. A mail client (nodemailer, imapflow, net/smtp, go-imap)
// speaks plain SMTP or IMAP to a loopback Listener; the Listener connects to
// the provider with TLS (implicit, or STARTTLS), verifies its certificate,
// and copies the session both ways, reading the server's replies as they
// pass so that the breaker counts provider outages and nothing else.
//
// One session is one call of the breaker (a breaker.Allow ticket). Its
// outcome is the worst infrastructure outcome seen in it, as classified by
// package mailbreaker: a dropped connection, a 421 or a 4.3.x reply, a BYE
// in the middle of a command fails the session; a rejected recipient or a
// wrong password does not; throttling (4.7.x) is ignored. A failure is reported as soon as it is
// seen; any other outcome when the session ends.
//
// While the circuit is open, an SMTP client gets the reply
// "421 4.3.0 <circuit> circuit open, retry in N s" and an IMAP client the
// response "* BYE [UNAVAILABLE] <circuit> circuit open, retry in N s" at
// connect, the connection closes, and nothing reaches the provider.
//
// A session holds its ticket (in HALF_OPEN, a probe slot) until it ends, so
// the breaker's ProbeTimeout should exceed a normal session. The exception
// is IMAP IDLE, which may last for hours: when the provider accepts IDLE, the
// session reports its outcome so far, and a failure seen later (a drop, a
// BYE [UNAVAILABLE]) is reported as a call of its own.
//
// Credentials and message content pass through untouched and are never
// logged: the relay looks only at the start of the server's reply lines and
// at the client's command verbs, and streams everything else (a 10 MB
// attachment costs the relay a few buffers, not 10 MB).
package mailproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Protocol is the mail protocol a Listener relays.
type Protocol string

const (
	SMTP Protocol = "smtp" // RFC 5321, with AUTH (RFC 4954), PIPELINING and CHUNKING
	IMAP Protocol = "imap" // RFC 9051 and RFC 3501, literals and IDLE included
)

// TLSMode is how a Listener secures its connection to the provider.
type TLSMode string

const (
	// ImplicitTLS starts TLS at connect (SMTP submission on 465, IMAPS on 993).
	ImplicitTLS TLSMode = "implicit"
	// StartTLS upgrades a plain connection with STARTTLS before the client's
	// session begins (SMTP submission on 587, IMAP on 143).
	StartTLS TLSMode = "starttls"
	// Plaintext uses no TLS at all. Only for a provider on a trusted network
	// or a test: credentials cross the wire in clear.
	Plaintext TLSMode = "plaintext"
)

// Defaults of the Listener's zero fields.
const (
	DefaultDialTimeout  = 10 * time.Second
	DefaultReplyTimeout = 2 * time.Minute
)

// ErrListenerClosed is returned by Serve after Close or Shutdown.
var ErrListenerClosed = errors.New("mailproxy: listener closed")

// Listener relays the sessions of one mail circuit. Set its fields, then
// call Serve; the fields must not change after that.
type Listener struct {
	// Name is the circuit's name, shown to clients when it is open.
	Name string
	// Protocol is SMTP or IMAP.
	Protocol Protocol
	// Upstream is the provider's host:port, e.g. "smtp.gmail.com:465".
	Upstream string
	// TLSMode is how to secure the connection to the provider. "" means by
	// port: implicit TLS on 465 and 993, STARTTLS on 25, 587 and 143; other
	// ports must say. Plaintext is used only when set explicitly.
	TLSMode TLSMode
	// RootCAs verifies the provider's certificate. nil means the system
	// roots.
	RootCAs *x509.CertPool
	// ServerName is the name the provider's certificate must carry. ""
	// means Upstream's host.
	ServerName string
	// Breaker is the circuit. Required.
	Breaker *breaker.Breaker
	// Logger receives one record per failed session (circuit, reason: reply
	// codes, never content) and one DEBUG record per session. nil means
	// slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds connecting to the provider, TLS handshake
	// included. 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// ReplyTimeout bounds how long the provider may stay silent while it
	// owes a reply (the greeting, or the reply to a command); a provider
	// that does not answer in time fails the session. An IMAP IDLE, or a
	// client taking its time, does not count. 0 means DefaultReplyTimeout.
	ReplyTimeout time.Duration

	mu        sync.Mutex
	tls       *tls.Config
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	sessions  sync.WaitGroup
	closed    bool
	// ctx is the sessions' context, cancelled when Close (or a Shutdown
	// past its deadline) ends them: a session waiting for a fleet's probe
	// lease, or dialling, stops waiting.
	ctx    context.Context
	cancel context.CancelFunc
}

// Validate checks the Listener's fields and fills in its defaults' meaning;
// Serve calls it. Errors name the field and the fix.
func (l *Listener) Validate() error {
	_, err := l.resolve()
	return err
}

type resolved struct {
	mode TLSMode
	tls  *tls.Config
}

func (l *Listener) resolve() (resolved, error) {
	field := func(name, msg string, args ...any) error {
		return fmt.Errorf("mailproxy: %s: %s: %s", l.Name, name, fmt.Sprintf(msg, args...))
	}
	if l.Name == "" {
		return resolved{}, errors.New("mailproxy: Name: empty; every mail circuit needs a name")
	}
	if l.Protocol != SMTP && l.Protocol != IMAP {
		return resolved{}, field("Protocol", "%q is not a mail protocol; use %q or %q", l.Protocol, SMTP, IMAP)
	}
	if l.Breaker == nil {
		return resolved{}, field("Breaker", "nil; set the circuit's breaker")
	}
	host, port, err := net.SplitHostPort(l.Upstream)
	if err != nil || host == "" {
		return resolved{}, field("Upstream", "%q is not host:port (e.g. smtp.gmail.com:465)", l.Upstream)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return resolved{}, field("Upstream", "port %q is not a TCP port", port)
	}
	mode := l.TLSMode
	if mode == "" {
		switch port {
		case "465", "993":
			mode = ImplicitTLS
		case "25", "587", "143":
			mode = StartTLS
		default:
			return resolved{}, field("TLSMode", "empty, and port %s says nothing; set %q or %q (or %q for a plaintext provider)", port, ImplicitTLS, StartTLS, Plaintext)
		}
	}
	if mode != ImplicitTLS && mode != StartTLS && mode != Plaintext {
		return resolved{}, field("TLSMode", "%q is not a TLS mode; use %q, %q or %q", mode, ImplicitTLS, StartTLS, Plaintext)
	}
	if l.DialTimeout < 0 || l.ReplyTimeout < 0 {
		return resolved{}, field("DialTimeout/ReplyTimeout", "negative; use 0 for the default or a positive duration")
	}
	name := l.ServerName
	if name == "" {
		name = host
	}
	return resolved{mode: mode, tls: &tls.Config{ServerName: name, RootCAs: l.RootCAs, MinVersion: tls.VersionTLS12}}, nil
}

// Serve accepts mail clients on ln and relays each session, until ln fails
// or the Listener is closed. It returns ErrListenerClosed after Close or
// Shutdown. ln should be a loopback listener: clients speak plain SMTP or
// IMAP to it.
func (l *Listener) Serve(ln net.Listener) error {
	r, err := l.resolve()
	if err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = ln.Close()
		return ErrListenerClosed
	}
	if l.tls == nil { // sessions of an earlier Serve read it unlocked
		l.tls = r.tls
	}
	if l.listeners == nil {
		l.listeners, l.conns = map[net.Listener]struct{}{}, map[net.Conn]struct{}{}
		l.ctx, l.cancel = context.WithCancel(context.Background())
	}
	l.listeners[ln] = struct{}{}
	ctx := l.ctx
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.listeners, ln)
		l.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.isClosed() {
				return ErrListenerClosed
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() { // e.g. out of file descriptors
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !l.track(c) {
			_ = c.Close()
			return ErrListenerClosed
		}
		go func() {
			defer l.untrack(c)
			l.session(ctx, c, r.mode)
		}()
	}
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.sessions.Add(1)
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.sessions.Done()
}

// Close stops accepting and ends every session at once (each still reports
// its outcome so far). Serve returns ErrListenerClosed.
func (l *Listener) Close() error {
	l.stop(true)
	l.sessions.Wait()
	return nil
}

// Shutdown stops accepting and waits for the sessions in progress to end on
// their own, until ctx is done; then it ends them as Close does.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.stop(false)
	done := make(chan struct{})
	go func() {
		l.sessions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		l.stop(true)
		<-done
		return ctx.Err()
	}
}

func (l *Listener) stop(conns bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for ln := range l.listeners {
		_ = ln.Close()
	}
	if conns {
		if l.cancel != nil {
			l.cancel()
		}
		for c := range l.conns {
			_ = c.Close() // the session closes its upstream side when its client side ends
		}
	}
}

func (l *Listener) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

func (l *Listener) dialTimeout() time.Duration {
	if l.DialTimeout > 0 {
		return l.DialTimeout
	}
	return DefaultDialTimeout
}

func (l *Listener) replyTimeout() time.Duration {
	if l.ReplyTimeout > 0 {
		return l.ReplyTimeout
	}
	return DefaultReplyTimeout
}
