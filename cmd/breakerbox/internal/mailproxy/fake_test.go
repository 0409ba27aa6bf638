package mailproxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Actions a fakeServer can take instead of a reply.
const (
	actDrop  = "DROP"  // close the connection
	actReset = "RESET" // close it with a TCP reset
	actHang  = "HANG"  // say nothing until the test ends
)

// fakeServer is a scriptable SMTP or IMAP server for what a real one cannot
// be made to do on demand: a 421 or BYE greeting, a reply that never comes,
// a connection dropped mid-command, throttling. It records every byte it
// receives and sends.
type fakeServer struct {
	proto    Protocol
	ln       net.Listener
	greeting string
	replies  map[string]string // by upper-case verb ("." for the end of DATA); "{tag}" is the IMAP tag
	fetch    []byte            // the message FETCH returns
	record   bool
	accepts  atomic.Int64
	received atomic.Int64 // bytes

	mu        sync.Mutex
	in, out   bytes.Buffer
	quit      chan struct{}
	sessions  sync.WaitGroup
	closeOnce sync.Once
}

func newFakeServer(t testing.TB, proto Protocol, tlsConfig *tls.Config, setup ...func(*fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	f := &fakeServer{proto: proto, ln: ln, replies: map[string]string{}, record: true, quit: make(chan struct{})}
	if proto == SMTP {
		f.greeting = "220 fake.test ESMTP\r\n"
	} else {
		f.greeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LITERAL+] fake ready\r\n"
	}
	for _, fn := range setup {
		fn(f)
	}
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) close() {
	f.closeOnce.Do(func() {
		close(f.quit)
		_ = f.ln.Close()
	})
	f.sessions.Wait()
}

func (f *fakeServer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepts.Add(1)
		f.sessions.Add(1)
		go func() {
			defer f.sessions.Done()
			defer c.Close()
			go func() { <-f.quit; _ = c.Close() }()
			s := &fakeSession{f: f, c: c, r: bufio.NewReaderSize(recorder{f, c}, 64<<10)}
			if f.proto == SMTP {
				s.smtp()
			} else {
				s.imap()
			}
		}()
	}
}

// recorder counts (and, if f.record, keeps) what the server reads.
type recorder struct {
	f *fakeServer
	c net.Conn
}

func (r recorder) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.f.received.Add(int64(n))
	if r.f.record && n > 0 {
		r.f.mu.Lock()
		r.f.in.Write(p[:n])
		r.f.mu.Unlock()
	}
	return n, err
}

func (f *fakeServer) sent() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.out.Bytes())
}
func (f *fakeServer) receivedAll() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.in.Bytes())
}

type fakeSession struct {
	f *fakeServer
	c net.Conn
	r *bufio.Reader
}

// say writes msg, or acts on it; false means the session is over. A msg
// ending in actDrop after a NUL is written, then the connection dropped.
func (s *fakeSession) say(msg, tag string) bool {
	if part, ok := strings.CutSuffix(msg, "\x00"+actDrop); ok {
		s.say(part, tag)
		return false
	}
	switch msg {
	case actDrop:
		return false
	case actReset:
		if tc, ok := s.c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		return false
	case actHang:
		<-s.f.quit
		return false
	}
	msg = strings.ReplaceAll(msg, "{tag}", tag)
	if s.f.record {
		s.f.mu.Lock()
		s.f.out.WriteString(msg)
		s.f.mu.Unlock()
	}
	_, err := io.WriteString(s.c, msg)
	return err == nil
}

func (s *fakeSession) reply(verb, fallback, tag string) bool {
	if r, ok := s.f.replies[verb]; ok {
		return s.say(r, tag)
	}
	return s.say(fallback, tag)
}

// setGreeting changes the greeting of the sessions to come.
func (f *fakeServer) setGreeting(g string) { f.mu.Lock(); f.greeting = g; f.mu.Unlock() }

func (f *fakeServer) greet() string { f.mu.Lock(); defer f.mu.Unlock(); return f.greeting }

func (s *fakeSession) smtp() {
	g := s.f.greet()
	if !s.say(g, "") || !strings.HasPrefix(g, "220") { // a server that refuses service says so and hangs up
		return
	}
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, arg := words(line)
		v := strings.ToUpper(string(verb))
		switch v {
		case "EHLO":
			if !s.reply(v, "250-fake.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN\r\n", "") {
				return
			}
		case "AUTH":
			if !s.reply(v, "235 2.7.0 Authentication successful\r\n", "") {
				return
			}
		case "DATA":
			if !s.reply(v, "354 End data with <CR><LF>.<CR><LF>\r\n", "") {
				return
			}
			for {
				l, err := s.r.ReadSlice('\n')
				if err == bufio.ErrBufferFull {
					continue
				}
				if err != nil {
					return
				}
				if string(l) == ".\r\n" {
					break
				}
			}
			if !s.reply(".", "250 2.0.0 Ok: queued\r\n", "") {
				return
			}
		case "BDAT":
			n, _ := strconv.ParseInt(string(arg), 10, 64)
			if _, err := io.CopyN(io.Discard, s.r, n); err != nil {
				return
			}
			if !s.reply(v, "250 2.0.0 chunk received\r\n", "") {
				return
			}
		case "QUIT":
			s.reply(v, "221 2.0.0 Bye\r\n", "")
			return
		default:
			if !s.reply(v, "250 2.0.0 Ok\r\n", "") {
				return
			}
		}
	}
}

func (s *fakeSession) imap() {
	g := s.f.greet()
	if !s.say(g, "") || !strings.HasPrefix(g, "* OK") {
		return
	}
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return
		}
		tagB, verbB := words(line)
		tag, v := string(tagB), strings.ToUpper(string(verbB))
		for { // the command's literals, and the lines after them
			n, ok := literal(tailOf(line))
			if !ok {
				break
			}
			if !bytes.HasSuffix(bytes.TrimRight(line, "\r\n"), []byte("+}")) && !s.say("+ go ahead\r\n", "") {
				return
			}
			if _, err := io.CopyN(io.Discard, s.r, n); err != nil {
				return
			}
			if line, err = s.r.ReadSlice('\n'); err != nil {
				return
			}
		}
		switch v {
		case "LOGOUT":
			s.reply(v, "* BYE Logging out\r\n{tag} OK Logout completed\r\n", tag)
			return
		case "AUTHENTICATE": // one SASL round: "+ ", the client's response, the verdict
			if !s.say("+ \r\n", tag) {
				return
			}
			if _, err := s.r.ReadSlice('\n'); err != nil {
				return
			}
			if !s.reply(v, "{tag} OK [CAPABILITY IMAP4rev1] Logged in\r\n", tag) {
				return
			}
		case "IDLE":
			if !s.reply(v, "+ idling\r\n", tag) {
				return
			}
			if _, err := s.r.ReadSlice('\n'); err != nil { // DONE
				return
			}
			if !s.say(tag+" OK Idle completed\r\n", tag) {
				return
			}
		case "FETCH":
			if r, ok := s.f.replies[v]; ok {
				if !s.say(r, tag) {
					return
				}
				continue
			}
			if !s.say("* 1 FETCH (BODY[] {"+strconv.Itoa(len(s.f.fetch))+"}\r\n", tag) || !s.say(string(s.f.fetch), tag) ||
				!s.say(")\r\n"+tag+" OK Fetch completed\r\n", tag) {
				return
			}
		default:
			if !s.reply(v, "{tag} OK done\r\n", tag) {
				return
			}
		}
	}
}

func tailOf(line []byte) []byte { return line[len(line)-min(len(line), tailMax):] }
