package mailproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/mailbreaker"
)

// smtpCmd is what an SMTP reply answers: the relay keeps a queue of them,
// one per command in flight (PIPELINING sends several before any reply).
type smtpCmd uint8

const (
	smtpGreeting smtpCmd = iota
	smtpOther
	smtpData        // DATA: 354 asks for the body
	smtpDataEnd     // the body's closing "."
	smtpAuth        // AUTH, and each SASL response: 334 asks for more
	smtpStartTLS    // the client's own STARTTLS: after 220 the relay stops reading
	smtpUnsolicited // a reply with no command in flight
)

type smtpSession struct {
	*session
	queue []smtpCmd // under s.mu
	body  bool      // the client's next lines are a message body (after 354); under s.mu
	sasl  bool      // the client's next line is a SASL response (after 334); under s.mu
	tls   chan bool // the provider's answer to the client's STARTTLS
}

func (st *smtpSession) expectGreeting() { st.queue = append(st.queue, smtpGreeting) }

// upgrade reads the provider's greeting, then secures the connection with
// EHLO and STARTTLS (RFC 3207) before the client's session begins. It
// returns the greeting for the client, which then sends its own EHLO, now
// answered over TLS.
func (st *smtpSession) upgrade() ([]byte, bool) {
	s := st.session
	fail := func(o breaker.Outcome, reason string) ([]byte, bool) {
		s.observe(o, "starttls: "+reason)
		s.tellClient(s.client, "provider unreachable")
		return nil, false
	}
	_ = s.server.SetDeadline(time.Now().Add(s.l.replyTimeout()))
	br := bufio.NewReaderSize(s.server, 4096)
	greeting, code, text, err := readSMTPReply(br)
	if err != nil {
		return fail(breaker.Failure, "greeting: "+err.Error())
	}
	if o := mailbreaker.ClassifySMTPGreeting(code, text); o != breaker.Success {
		s.observe(o, "greeting "+smtpCodes(code, text))
		_, _ = s.client.Write(greeting) // the provider's own words
		return nil, false
	}
	s.greeted()
	ask := func(cmd string) (raw []byte, ok bool) {
		if _, err := s.server.Write([]byte(cmd)); err != nil {
			return nil, false
		}
		raw, code, text, err = readSMTPReply(br)
		return raw, err == nil
	}
	caps, ok := ask("EHLO localhost\r\n")
	if !ok || code != 250 {
		return fail(worse(mailbreaker.ClassifySMTP(code, text)), fmt.Sprintf("EHLO: %s%v", smtpCodes(code, text), errOrEmpty(err)))
	}
	if !hasCapability(caps, "STARTTLS") {
		return fail(breaker.Failure, "the provider does not offer STARTTLS")
	}
	if _, ok := ask("STARTTLS\r\n"); !ok || code != 220 {
		return fail(worse(mailbreaker.ClassifySMTP(code, text)), fmt.Sprintf("STARTTLS: %s%v", smtpCodes(code, text), errOrEmpty(err)))
	}
	if br.Buffered() > 0 {
		return fail(breaker.Failure, "the provider spoke before the TLS handshake")
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.l.dialTimeout())
	defer cancel()
	tc, err := handshake(ctx, s.server, s.l.tls)
	if err != nil {
		return fail(breaker.Failure, err.Error())
	}
	_ = tc.SetDeadline(time.Time{})
	s.server = tc
	return greeting, true
}

// worse turns a reply that lets the relay go no further into a failure,
// unless it is throttling.
func worse(o breaker.Outcome) breaker.Outcome {
	if o == breaker.Ignored {
		return o
	}
	return breaker.Failure
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

// readSMTPReply reads one reply, multi-line or not, and returns its bytes,
// its code and the text of its last line.
func readSMTPReply(br *bufio.Reader) (raw []byte, code int, text string, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				err = errors.New("reply line too long")
			}
			return nil, 0, "", err
		}
		raw = append(raw, line...)
		c, final := smtpReplyCode(line)
		if final {
			return raw, c, string(bytes.TrimRight(line[min(4, len(line)):], "\r\n")), nil
		}
	}
}

func hasCapability(reply []byte, name string) bool {
	for line := range bytes.Lines(reply) {
		if len(line) > 4 && bytes.EqualFold(bytes.TrimRight(line[4:], " \r\n"), []byte(name)) {
			return true
		}
	}
	return false
}

// smtpReplyCode parses "250-..." / "250 ..." / "250\r\n": the code (0 when
// the line is not an SMTP reply) and whether it is a reply's last line.
func smtpReplyCode(line []byte) (code int, final bool) {
	if len(line) < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, true
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	return code, len(line) == 3 || line[3] != '-'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// smtpCodes renders a reply's code and enhanced code ("421 4.3.2") for
// logs: never the text, which may name recipients.
func smtpCodes(code int, text string) string {
	s := strconv.Itoa(code)
	if enh, _, _ := strings.Cut(text, " "); len(enh) >= 5 && len(enh) <= 11 && isDigit(enh[0]) && enh[1] == '.' {
		s += " " + enh
	}
	return s
}

// down reads the provider's replies, classifies each final line against
// the command it answers, and forwards them.
func (st *smtpSession) down(r *lineReader) error {
	defer close(st.tls) // an up side waiting for a STARTTLS answer must not wait forever
	s := st.session
	for {
		if err := r.next(); err != nil {
			return err
		}
		code, final := smtpReplyCode(r.head)
		if !final {
			if err := r.forward(); err != nil {
				return err
			}
			continue
		}
		s.mu.Lock()
		cmd := smtpUnsolicited
		if len(st.queue) > 0 {
			cmd, st.queue = st.queue[0], st.queue[1:]
			s.owed--
		}
		switch {
		case code == 421, code == 221: // 221: the answer to QUIT
			s.closing = true
		case cmd == smtpData && code == 354:
			st.body, s.waiting = true, true
		case cmd == smtpAuth && code == 334:
			st.sasl, s.waiting = true, true
		}
		s.mu.Unlock()
		text := ""
		if len(r.head) > 4 {
			text = string(bytes.TrimRight(r.head[4:], "\r\n"))
		}
		var o breaker.Outcome
		switch cmd {
		case smtpUnsolicited:
			// A reply to nothing: the provider ending a session the
			// client left idle ("421 4.4.2 timeout exceeded"). The
			// next session's greeting tells whether it is down.
		case smtpGreeting:
			o = mailbreaker.ClassifySMTPGreeting(code, text)
			if o == breaker.Success {
				s.greeted()
			}
		default:
			o = mailbreaker.ClassifySMTP(code, text)
		}
		if o != breaker.Success {
			what := "reply "
			if cmd == smtpGreeting {
				what = "greeting "
			}
			s.observe(o, what+smtpCodes(code, text))
		}
		if err := r.forward(); err != nil {
			return err
		}
		if cmd == smtpStartTLS {
			if tunnel, err := r.startTLS(func() bool { st.tls <- code == 220; return code == 220 }); tunnel {
				return err
			}
		}
	}
}

// up reads the client's commands, notes what each will be answered by, and
// forwards them; message bodies, SASL responses and BDAT chunks pass
// through without being read as commands.
func (st *smtpSession) up(r *lineReader) error {
	s := st.session
	for {
		if err := r.next(); err != nil {
			return err
		}
		cmd, chunk := smtpOther, int64(-1)
		s.mu.Lock()
		switch {
		case st.body:
			if r.n <= 3 && r.head[0] == '.' && (r.n == 2 || r.head[1] == '\r') { // ".\r\n" or ".\n"
				st.body, s.waiting = false, false
				st.push(smtpDataEnd)
			}
		case st.sasl:
			st.sasl, s.waiting = false, false
			st.push(smtpAuth)
		default:
			verb, arg := words(r.head)
			switch {
			case verbIs(verb, "DATA"):
				cmd = smtpData
			case verbIs(verb, "AUTH"):
				cmd = smtpAuth
			case verbIs(verb, "STARTTLS"):
				cmd = smtpStartTLS
			case verbIs(verb, "BDAT"): // RFC 3030: the chunk's size, then its bytes
				if n, err := strconv.ParseInt(string(arg), 10, 64); err == nil && n >= 0 {
					chunk = n
				}
			}
			st.push(cmd)
		}
		s.mu.Unlock()
		if err := r.forward(); err != nil {
			return err
		}
		if chunk > 0 {
			if err := r.copyN(chunk); err != nil {
				return err
			}
		}
		if cmd == smtpStartTLS {
			if tunnel, err := r.startTLS(func() bool { return <-st.tls }); tunnel {
				return err
			}
		}
	}
}

// push queues what the provider's next reply answers and arms the reply
// deadline. It requires s.mu.
func (st *smtpSession) push(cmd smtpCmd) {
	st.queue = append(st.queue, cmd)
	st.owed++
	st.replyDeadline()
}

// words returns the first two space-separated words of a line.
func words(line []byte) (first, second []byte) {
	line = bytes.TrimRight(line, "\r\n")
	first, rest, _ := bytes.Cut(line, []byte(" "))
	second, _, _ = bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
	return first, second
}

func verbIs(verb []byte, name string) bool { return bytes.EqualFold(verb, []byte(name)) }
