package mailproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// session is one client connection and its provider connection: one call
// of the breaker.
type session struct {
	l      *Listener
	ctx    context.Context // the Listener's: ends when Close ends the session
	client net.Conn
	server net.Conn
	ticket breaker.Ticket
	start  time.Time

	mu       sync.Mutex
	worst    breaker.Outcome
	reason   string // why worst is what it is: reply codes and network errors, never content
	reported bool
	ended    bool // one direction has ended: the other's end means nothing more
	// owed counts the replies the provider owes (the greeting, commands in
	// flight); waiting is set while the provider has asked the client for
	// more (354, 334, "+") and owes nothing until the client speaks. The
	// session is mid-command while either is set; a reply is due while
	// owed > 0 and not waiting.
	owed    int
	waiting bool
	// closing is set once the provider announced that it closes the
	// connection (SMTP 421, IMAP BYE): its hanging up after that is no
	// drop, whatever the client sent meanwhile.
	closing bool
}

// rank orders outcomes from best to worst: a throttled session is no
// evidence of health, a failed one is evidence of an outage.
func rank(o breaker.Outcome) int {
	switch o {
	case breaker.Success:
		return 0
	case breaker.Ignored:
		return 1
	}
	return 2
}

func (l *Listener) session(ctx context.Context, c net.Conn, mode TLSMode) {
	defer c.Close()
	t, err := l.Breaker.AllowContext(ctx)
	if err != nil {
		l.reject(c, err)
		return
	}
	s := &session{l: l, ctx: ctx, client: c, ticket: t, start: time.Now(), worst: breaker.Ignored, reason: reasonNoGreeting}
	defer s.finish()
	dialCtx, cancel := context.WithTimeout(ctx, l.dialTimeout())
	defer cancel()
	if s.server, err = l.dial(dialCtx, mode == ImplicitTLS); err != nil {
		if ctx.Err() != nil { // Close ended the session: no word on the provider
			s.observe(breaker.Ignored, "listener closed")
			return
		}
		s.refuse(err)
		return
	}
	defer s.server.Close()
	if l.Protocol == SMTP {
		s.run(&smtpSession{session: s, tls: make(chan bool, 1)}, mode == StartTLS)
	} else {
		s.run(&imapSession{session: s, tls: make(chan bool, 1)}, mode == StartTLS)
	}
}

// protocol is what SMTP and IMAP each bring to a session.
type protocol interface {
	// upgrade reads the provider's greeting and secures the connection
	// with STARTTLS; it returns the greeting for the client, or false when
	// the session cannot go on (it has told the client why).
	upgrade() (greeting []byte, ok bool)
	// expectGreeting notes that the greeting is the provider's first word
	// through the relay (implicit TLS or plaintext).
	expectGreeting()
	up(*lineReader) error   // client to provider
	down(*lineReader) error // provider to client
}

func (s *session) run(p protocol, startTLS bool) {
	if startTLS {
		greeting, ok := p.upgrade()
		if !ok {
			return
		}
		if _, err := s.client.Write(greeting); err != nil {
			return
		}
	} else {
		p.expectGreeting()
		s.owed = 1
	}
	up, down := newLineReader(s.client, s.server), newLineReader(s.server, s.client)
	s.relay(up, down, p)
}

// reject answers a client while the circuit is open, without a byte to the
// provider.
func (l *Listener) reject(c net.Conn, err error) {
	secs := 0
	if d, ok := breaker.RetryAfter(err); ok {
		secs = int(math.Ceil(d.Seconds()))
	}
	var msg string
	if l.Protocol == SMTP {
		msg = fmt.Sprintf("421 4.3.0 %s circuit open, retry in %d s\r\n", l.Name, secs)
	} else {
		msg = fmt.Sprintf("* BYE [UNAVAILABLE] %s circuit open, retry in %d s\r\n", l.Name, secs)
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(msg))
}

func (l *Listener) dial(ctx context.Context, implicitTLS bool) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", l.Upstream)
	if err != nil || !implicitTLS {
		return c, err
	}
	return handshake(ctx, c, l.tls)
}

func handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// refuse fails the session because the provider could not be reached, and
// tells the client in its protocol.
func (s *session) refuse(err error) {
	s.observe(breaker.Failure, "connect: "+err.Error())
	s.tellClient(s.client, "provider unreachable")
}

// tellClient sends the client the relay's own last word before it closes:
// a 421 or a BYE, as the provider would.
func (s *session) tellClient(w io.Writer, why string) {
	var msg string
	if s.l.Protocol == SMTP {
		msg = fmt.Sprintf("421 4.4.2 %s %s\r\n", s.l.Name, why)
	} else {
		msg = fmt.Sprintf("* BYE [UNAVAILABLE] %s %s\r\n", s.l.Name, why)
	}
	_ = s.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = w.Write([]byte(msg))
}

// observe records one outcome seen in the session. A failure is reported at
// once: nothing later can make the session better, and the breaker should
// not wait for the client to hang up to learn of an outage.
func (s *session) observe(o breaker.Outcome, reason string) {
	s.mu.Lock()
	if rank(o) <= rank(s.worst) && s.reason != reasonNoGreeting {
		s.mu.Unlock()
		return
	}
	s.worst, s.reason = o, reason
	fail, late := o == breaker.Failure, s.reported
	s.reported = s.reported || fail
	s.mu.Unlock()
	if !fail {
		return
	}
	if late { // the session reported early (reportSoFar): this failure is a call of its own
		if t, err := s.l.Breaker.AllowContext(s.ctx); err == nil {
			t.Report(breaker.Failure)
		}
	} else {
		s.ticket.Report(breaker.Failure)
	}
	s.l.logger().Warn("mail session failed", "circuit", s.l.Name, "protocol", string(s.l.Protocol), "reason", reason)
}

// reportSoFar reports the session's outcome so far, unless it has been
// reported, and returns it. The session calls it when it ends, and an IMAP
// session also when it settles into IDLE, which may last for hours: it must
// not hold its ticket (a half-open probe slot) that long. A failure seen
// afterwards is reported on a ticket of its own (see observe).
func (s *session) reportSoFar() (breaker.Outcome, string) {
	s.mu.Lock()
	report := !s.reported
	s.reported = true
	o, reason := s.worst, s.reason
	s.mu.Unlock()
	if report {
		s.ticket.Report(o)
	}
	return o, reason
}

func (s *session) finish() {
	o, reason := s.reportSoFar()
	s.l.logger().Debug("mail session", "circuit", s.l.Name, "protocol", string(s.l.Protocol),
		"outcome", o.String(), "reason", reason, "duration", time.Since(s.start).Round(time.Millisecond))
}

// replyDeadline arms the provider's read deadline while a reply is due and
// clears it otherwise. It requires s.mu.
func (s *session) replyDeadline() {
	if s.owed > 0 && !s.waiting {
		_ = s.server.SetReadDeadline(time.Now().Add(s.l.replyTimeout()))
	} else {
		_ = s.server.SetReadDeadline(time.Time{})
	}
}

// relay runs the client-to-provider direction (up) in this goroutine and
// the provider-to-client one (down) in another, until either ends; then it
// closes both connections and classifies how the session ended.
func (s *session) relay(up, down *lineReader, p protocol) {
	down.beforeBlock = func() {
		s.mu.Lock()
		s.replyDeadline()
		s.mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.downEnded(down, p.down(down))
	}()
	s.upEnded(p.up(up))
	<-done
}

// upEnded: the client hung up (or the relay could not write to the provider).
func (s *session) upEnded(err error) {
	var we writeError
	s.mu.Lock()
	dropped := !s.ended && errors.As(err, &we) && !s.closing
	s.ended = true
	s.mu.Unlock()
	if dropped {
		s.observe(breaker.Failure, "provider closed the session mid-command: "+we.err.Error())
	}
	_ = s.server.Close()
	_ = s.client.Close()
}

// downEnded: the provider hung up or went silent (or the client is gone).
func (s *session) downEnded(down *lineReader, err error) {
	var we writeError
	toClient := errors.As(err, &we)
	s.mu.Lock()
	first := !s.ended
	s.ended = true
	midCommand, replyDue := (s.owed > 0 || s.waiting) && !s.closing, s.owed > 0 && !s.waiting
	announced := s.closing
	s.mu.Unlock()
	if first && !toClient && err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && replyDue:
			s.observe(breaker.Failure, fmt.Sprintf("no reply in %v", s.l.replyTimeout()))
			s.tellClient(down.dst, fmt.Sprintf("no reply from the provider in %v", s.l.replyTimeout()))
			_ = down.dst.Flush()
		case midCommand:
			s.observe(breaker.Failure, "provider closed the session mid-command: "+err.Error())
		case !announced:
			// Between commands, but without the 421 or BYE a provider sends
			// before it closes a session on purpose (an idle timeout, a
			// shutdown): it went away.
			s.observe(breaker.Failure, "provider closed the session without a 421 or BYE: "+err.Error())
		}
	}
	_ = s.client.Close()
	_ = s.server.Close()
}

// reasonNoGreeting is a session's outcome until the provider greets: a
// session the client ends before that proves nothing either way.
const reasonNoGreeting = "ended before the provider's greeting"

// greeted records a successful greeting: from now on the session counts as
// a success unless something worse is seen.
func (s *session) greeted() {
	s.mu.Lock()
	if s.reason == reasonNoGreeting {
		s.worst, s.reason = breaker.Success, ""
	}
	s.mu.Unlock()
}
