package mailproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/mailbreaker"
)

type imapVerb uint8

const (
	imapOther        imapVerb = iota
	imapAuthenticate          // the client's next lines are SASL responses, not commands
	imapIdle                  // the client's next line is DONE
	imapLogout
	imapStartTLS
)

// imapTag is a command in flight, known by its tag.
type imapTag struct {
	tag  string
	verb imapVerb
}

type imapSession struct {
	*session
	tags      []imapTag // under s.mu
	continued imapTag   // the AUTHENTICATE or IDLE in flight, if any; under s.mu
	loggedOut bool      // the client sent LOGOUT: a BYE is expected; under s.mu
	greeting  bool      // the provider's greeting is due; under s.mu
	// inResponse (down only) and inCommand (up only): the previous line
	// ended with a literal, so this line continues it and is not a status
	// line or a command of its own.
	inResponse, inCommand bool
	tls                   chan bool
}

func (st *imapSession) expectGreeting() { st.greeting = true }

// upgrade reads the provider's greeting and secures the connection with
// STARTTLS (RFC 9051 §6.2.1) before the client's session begins. The
// greeting goes to the client without its CAPABILITY code: those were the
// capabilities before TLS, so the client asks again.
func (st *imapSession) upgrade() ([]byte, bool) {
	s := st.session
	fail := func(reason string) ([]byte, bool) {
		s.observe(breaker.Failure, "starttls: "+reason)
		s.tellClient(s.client, "provider unreachable")
		return nil, false
	}
	_ = s.server.SetDeadline(time.Now().Add(s.l.replyTimeout()))
	br := bufio.NewReaderSize(s.server, 4096)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fail("greeting: " + err.Error())
	}
	greeting := append([]byte(nil), line...)
	if o := mailbreaker.ClassifyIMAPGreeting(string(greeting)); o != breaker.Success {
		s.observe(o, "greeting "+imapCodes(greeting))
		_, _ = s.client.Write(greeting)
		return nil, false
	}
	s.greeted()
	if _, err := s.server.Write([]byte("bb0 STARTTLS\r\n")); err != nil {
		return fail(err.Error())
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errors.New("response line too long")
			}
			return fail(err.Error())
		}
		if !bytes.HasPrefix(line, []byte("bb0 ")) {
			continue // untagged data before the answer
		}
		if status, _ := imapStatus(line); string(status) != "OK" {
			return fail("STARTTLS refused: " + imapCodes(line))
		}
		break
	}
	if br.Buffered() > 0 {
		return fail("the provider spoke before the TLS handshake")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.l.dialTimeout())
	defer cancel()
	tc, err := handshake(ctx, s.server, s.l.tls)
	if err != nil {
		return fail(err.Error())
	}
	_ = tc.SetDeadline(time.Time{})
	s.server = tc
	return stripCapability(greeting), true
}

// stripCapability turns "* OK [CAPABILITY ...] text" into "* OK text".
func stripCapability(greeting []byte) []byte {
	const code = "* OK [CAPABILITY "
	if len(greeting) < len(code) || !bytes.EqualFold(greeting[:len(code)], []byte(code)) {
		return greeting
	}
	end := bytes.IndexByte(greeting, ']')
	if end < 0 {
		return greeting
	}
	rest := bytes.TrimLeft(greeting[end+1:], " ")
	return append([]byte("* OK "), rest...)
}

// imapStatus returns the status word (OK, NO, BAD, BYE, PREAUTH; upper
// case, or what stands there) and the response code's atom of a status line.
func imapStatus(line []byte) (status, code []byte) {
	line = bytes.TrimRight(line, "\r\n")
	_, rest, _ := bytes.Cut(line, []byte(" ")) // the tag, or "*"
	status, rest, _ = bytes.Cut(rest, []byte(" "))
	status = bytes.ToUpper(status)
	if bytes.HasPrefix(rest, []byte("[")) {
		code = rest[1:]
		if i := bytes.IndexAny(code, " ]"); i >= 0 {
			code = code[:i]
		}
	}
	return status, code
}

// imapCodes renders a status line's status and code ("NO [UNAVAILABLE]")
// for logs: never the text.
func imapCodes(line []byte) string {
	status, code := imapStatus(line)
	if len(code) == 0 {
		return string(status)
	}
	return string(status) + " [" + string(bytes.ToUpper(code)) + "]"
}

// down reads the provider's responses, classifies status lines, and
// forwards everything; literal data ({n}: message bodies) passes through
// without being read as responses.
func (st *imapSession) down(r *lineReader) error {
	defer close(st.tls) // an up side waiting for a STARTTLS answer must not wait forever
	for {
		if err := r.next(); err != nil {
			return err
		}
		var tlsAnswer, tlsOK bool
		if !st.inResponse {
			tlsAnswer, tlsOK = st.response(r.head)
		}
		n, lit := literal(r.tailBytes())
		st.inResponse = lit
		if err := r.forward(); err != nil {
			return err
		}
		if lit {
			if err := r.copyN(n); err != nil {
				return err
			}
		}
		if tlsAnswer {
			if tunnel, err := r.startTLS(func() bool { st.tls <- tlsOK; return tlsOK }); tunnel {
				return err
			}
		}
	}
}

// response notes and classifies one response line of the provider. It
// reports whether the line answers the client's STARTTLS, and how.
func (st *imapSession) response(line []byte) (tlsAnswer, tlsOK bool) {
	s := st.session
	var o breaker.Outcome
	what, idling := "", false
	s.mu.Lock()
	switch {
	case line[0] == '+': // the provider asks the client for more
		s.waiting = true
		idling = st.continued.verb == imapIdle
	case st.greeting:
		st.greeting = false
		s.owed--
		what = "greeting "
		o = mailbreaker.ClassifyIMAPGreeting(string(line))
	case line[0] == '*':
		status, code := imapStatus(line)
		switch string(status) {
		case "BYE":
			// The answer to LOGOUT, or an idle session (IDLE included)
			// timed out: not an outage. A BYE in the middle of a
			// command, or one that says the service is unavailable, is.
			idle := s.owed == 0 || (st.continued.verb == imapIdle && s.waiting)
			if !st.loggedOut && (!idle || bytes.EqualFold(code, []byte("UNAVAILABLE"))) {
				o = breaker.Failure
			}
			s.closing = true
		case "NO", "BAD":
			o = mailbreaker.ClassifyIMAP(string(line))
		}
	default: // tagged: the end of a command
		tag, _ := words(line)
		s.waiting = false
		for i, t := range st.tags {
			if t.tag != string(tag) {
				continue
			}
			st.tags = append(st.tags[:i], st.tags[i+1:]...)
			s.owed--
			if st.continued.tag == t.tag {
				st.continued = imapTag{}
			}
			if t.verb == imapStartTLS {
				status, _ := imapStatus(line)
				tlsAnswer, tlsOK = true, string(status) == "OK"
			}
			break
		}
		o = mailbreaker.ClassifyIMAP(string(line))
	}
	s.mu.Unlock()
	switch {
	case idling:
		s.reportSoFar()
	case what != "" && o == breaker.Success:
		s.greeted()
	case o != breaker.Success:
		s.observe(o, what+imapCodes(line))
	}
	return tlsAnswer, tlsOK
}

// up reads the client's commands, notes their tags, and forwards them;
// literal data (APPEND's message), SASL responses and IDLE's DONE pass
// through without being read as commands.
func (st *imapSession) up(r *lineReader) error {
	s := st.session
	for {
		if err := r.next(); err != nil {
			return err
		}
		n, lit := literal(r.tailBytes())
		verb := imapOther
		s.mu.Lock()
		s.waiting = false // the client spoke
		switch {
		case st.inCommand: // the rest of a command after its literal
		case st.continued.verb == imapIdle:
			st.continued = imapTag{} // DONE: the client may send commands again
		case st.continued.verb == imapAuthenticate: // a SASL response
		default:
			tag, name := words(r.head)
			switch {
			case verbIs(name, "AUTHENTICATE"):
				verb = imapAuthenticate
			case verbIs(name, "IDLE"):
				verb = imapIdle
			case verbIs(name, "LOGOUT"):
				verb = imapLogout
				st.loggedOut = true
			case verbIs(name, "STARTTLS"):
				verb = imapStartTLS
			}
			t := imapTag{tag: string(tag), verb: verb}
			if verb == imapAuthenticate || verb == imapIdle {
				st.continued = t
			}
			st.tags = append(st.tags, t)
			s.owed++
		}
		s.replyDeadline()
		s.mu.Unlock()
		st.inCommand = lit
		if err := r.forward(); err != nil {
			return err
		}
		if lit {
			if err := r.copyN(n); err != nil {
				return err
			}
		}
		if verb == imapStartTLS {
			if tunnel, err := r.startTLS(func() bool { return <-st.tls }); tunnel {
				return err
			}
		}
	}
}
