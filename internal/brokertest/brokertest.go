//go:build unix

// Package brokertest starts real message brokers for tests: a JetStream
// nats-server or a RabbitMQ node of the test's own, on free loopback ports,
// with their data in the test's temporary directory, stopped when the test
// ends.
//
// When a broker's binary is missing, the test is skipped with a note on how to
// install it, unless the environment variable CI is set (to anything but "",
// "false" or "0", so "true" and "1" both count): in CI a missing broker fails
// the test.
//
// Nothing is left running, and nothing is written outside the test's
// temporary directory: each broker, and the Erlang port mapper (epmd) a
// RabbitMQ node needs, runs in the foreground, in a process group of its own
// and in a working directory of the test's, and is killed when the test ends.
//
// StartNATS and StartRabbitMQ return a Server, which a test can Kill (kill -9)
// and Restart on the same address with the same data, to inject faults.
//
// A port chosen free can be taken by another process before the broker binds
// it: a broker that can bind a port of its own choosing does (nats-server);
// the others are started again on other ports when a start fails because a
// port was in use.
package brokertest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// find returns the first of paths that is an executable file, or looks name
// up in PATH.
func find(name string, paths ...string) string {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

// InCI reports whether the environment variable CI says the tests run in
// CI: set to anything but "", "false" or "0".
func InCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "false", "0":
		return false
	}
	return true
}

func missing(t testing.TB, what, install string) {
	t.Helper()
	if InCI() {
		t.Fatalf("brokertest: %s not found, and CI=%s: install it (%s)", what, os.Getenv("CI"), install)
	}
	t.Skipf("brokertest: %s not found; install it to run this test (%s)", what, install)
}

// process is a broker started by a test, in a process group of its own so
// that its children go with it.
type process struct {
	cmd      *exec.Cmd
	out      *lockedBuffer
	done     chan struct{}
	err      error
	stopOnce sync.Once
}

// start starts name in dir, with env added to the test's environment.
func start(t testing.TB, dir string, env []string, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &process{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("brokertest: starting %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// stop kills the broker's process group and waits for the broker, so that
// its data directory can be removed after it.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
		}
	})
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ready calls check until it succeeds, the process exits, or timeout.
func (p *process) ready(what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("brokertest: %s exited before it was ready (%v); output:\n%s", what, p.err, p.out.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("brokertest: %s not ready after %v: %v; output:\n%s", what, timeout, err, p.out.tail(4000))
}

// addrInUse reports whether err, a failed start, says a port was taken (by
// another process, between the choice of the port and the server's bind):
// the kernel's EADDRINUSE in any of its spellings, RabbitMQ's check of its
// distribution port, and an epmd that finds the port answering already.
func addrInUse(err error) bool { return inUseLine(err) != "" }

// inUseLine returns the line of err that says a port was taken, or "".
func inUseLine(err error) string {
	for _, line := range strings.Split(err.Error(), "\n") {
		s := strings.ToLower(line)
		for _, sign := range []string{"eaddrinuse", "address already in use", "address in use",
			"dist_port_already_used", "already in use", "there is already a epmd running"} {
			if strings.Contains(s, sign) {
				return strings.TrimSpace(line)
			}
		}
	}
	return ""
}

// pickPort chooses the ports of a start; tests of the retry path replace it
// to hand out a port that is taken.
var pickPort = FreePort

// attempts is how many times a server is started on fresh ports when a port
// it was given is taken by the time it binds.
const attempts = 5

// Server is a broker of the test's own. Its URL stays the same across Kill
// and Restart, as a broker restarted by its operator would.
type Server struct {
	t      testing.TB
	what   string
	url    string
	bin    string
	args   []string
	env    []string
	dir    string // the working directory: whatever the broker drops lands here
	ready  func(p *process) error
	mu     sync.Mutex
	proc   *process
	epmd   *process // RabbitMQ only: outlives the node's kills
	starts int
}

// URL is the broker's URL, e.g. "nats://127.0.0.1:41234" or
// "amqp://guest:guest@127.0.0.1:41235/".
func (s *Server) URL() string { return s.url }

// Kill kills the broker with SIGKILL (kill -9), with every process it
// started: no shutdown, connections reset, only what it had written to disk
// survives. It waits for the processes to be gone.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop()
		s.proc = nil
	}
}

// Restart kills the broker if it runs, starts it again on the same ports
// with the same data, and waits until it serves. If a port of it was taken
// meanwhile, it tries again for a few seconds, then fails the test.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for try := 0; try < attempts; try++ {
		if try > 0 {
			time.Sleep(time.Duration(try) * 200 * time.Millisecond) // the same ports: wait for them
		}
		if err = s.launch(); err == nil || !addrInUse(err) {
			break
		}
	}
	if err != nil {
		s.t.Fatalf("brokertest: restarting %s: %v", s.what, err)
	}
}

// launch starts the broker's process and waits until it serves; on failure
// the process is gone. s.mu is held.
func (s *Server) launch() error {
	s.starts++
	p := start(s.t, s.dir, s.env, s.bin, s.args...)
	if err := s.ready(p); err != nil {
		p.stop()
		return err
	}
	s.proc = p
	return nil
}

// RabbitMQCtl runs rabbitmqctl against the RabbitMQ node, as its operator
// would, and returns its output.
func (s *Server) RabbitMQCtl(args ...string) (string, error) {
	node := ""
	for _, e := range s.env {
		if v, ok := strings.CutPrefix(e, "RABBITMQ_NODENAME="); ok {
			node = v
		}
	}
	if node == "" {
		return "", errors.New("brokertest: RabbitMQCtl on a server that is not a RabbitMQ node")
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(s.bin), "rabbitmqctl"), append([]string{"-n", node}, args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Log returns the tail of the broker's log (RabbitMQ's log file, or the
// server's output), for a failing test to show.
func (s *Server) Log(n int) string {
	files, _ := filepath.Glob(filepath.Join(s.dir, "log", "*.log"))
	var b []byte
	for _, f := range files {
		if strings.HasSuffix(f, "_upgrade.log") {
			continue
		}
		data, _ := os.ReadFile(f)
		b = append(b, data...)
	}
	if len(b) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.proc != nil {
			return s.proc.out.tail(n)
		}
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// NATS starts a nats-server with JetStream on a free loopback port and
// returns its URL, e.g. "nats://127.0.0.1:41234".
func NATS(t testing.TB) string {
	t.Helper()
	return StartNATS(t).URL()
}

// StartNATS starts a nats-server with JetStream on a free loopback port,
// with its store in the test's temporary directory, and returns it. The
// server binds a port of its own choosing (-p -1), so no other process can
// take it first; a restart binds that same port again.
func StartNATS(t testing.TB) *Server {
	t.Helper()
	bin := find("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")
	if bin == "" {
		missing(t, "nats-server", "apt-get install nats-server, or go install github.com/nats-io/nats-server/v2@latest")
	}
	dir := t.TempDir()
	s := &Server{t: t, what: "nats-server", bin: bin, dir: dir}
	var addr string
	s.ready = func(p *process) error {
		return p.ready("nats-server", 20*time.Second, func() error {
			out := p.out.tail(1 << 16)
			if !strings.Contains(out, "Server is ready") {
				return errors.New("not ready yet")
			}
			if addr == "" { // the first start: learn the port it chose
				m := natsListening.FindStringSubmatch(out)
				if m == nil {
					return errors.New("no client port in its output yet")
				}
				addr = m[1]
			}
			return dialOK(addr)
		})
	}
	args := func(port string) []string {
		return []string{"-js", "-a", "127.0.0.1", "-p", port, "-sd", filepath.Join(dir, "jetstream")}
	}
	s.args = args("-1") // a port of its own choosing
	s.mu.Lock()
	err := s.launch()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	s.args = args(port) // restarts bind the same port
	s.url = "nats://" + addr
	t.Cleanup(s.Kill)
	return s
}

var natsListening = regexp.MustCompile(`Listening for client connections on (127\.0\.0\.1:\d+)`)

// RabbitMQ starts a RabbitMQ node of the test's own and returns its AMQP
// URL; see StartRabbitMQ.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	return StartRabbitMQ(t).URL()
}

// StartRabbitMQ starts a RabbitMQ node of the test's own (its own node name,
// ports, epmd, data, log and crash dump directories, no plugins) and returns
// it. The node takes a few seconds to boot. RabbitMQ cannot be told to bind
// a port of its own choosing (its distribution port is derived from the
// others), so if a port it was given is taken by the time it binds, it is
// started again on other ports, up to 5 times.
func StartRabbitMQ(t testing.TB) *Server {
	t.Helper()
	// Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the
	// rabbitmq user and drops the environment; the script behind it runs
	// the node as the current user.
	bin := find("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")
	if bin == "" {
		missing(t, "rabbitmq-server", "apt-get install rabbitmq-server")
	}
	epmd := findEPMD()
	if epmd == "" {
		missing(t, "epmd (the Erlang port mapper)", "apt-get install erlang-base")
	}
	var err error
	for try := 0; try < attempts; try++ {
		var s *Server
		if s, err = startRabbitMQ(t, bin, epmd); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
		if !addrInUse(err) {
			break
		}
		t.Logf("brokertest: a port was taken; starting RabbitMQ again on others: %s", inUseLine(err))
	}
	t.Fatal(err)
	return nil
}

// findEPMD finds the epmd of the Erlang that runs RabbitMQ.
func findEPMD() string {
	if p := find("epmd", "/usr/bin/epmd"); p != "" {
		return p
	}
	matches, _ := filepath.Glob("/usr/lib/erlang/erts-*/bin/epmd")
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	return ""
}

// startEPMD starts an epmd of the test's own on a free port, in the
// foreground, killed with the test. Left to itself, the node would start a
// shared one with -daemon, which escapes the process group and outlives the
// test. epmd cannot bind port 0; a taken port makes it exit, and it is
// started again on another.
func startEPMD(t testing.TB, bin string) (*process, int, error) {
	t.Helper()
	var err error
	for try := 0; try < attempts; try++ {
		port := pickPort(t)
		// Debug level 3 makes it say when it listens.
		p := start(t, t.TempDir(), nil, bin, "-d", "-d", "-d", "-port", strconv.Itoa(port), "-address", "127.0.0.1")
		if err = p.ready("epmd", 10*time.Second, func() error {
			if !strings.Contains(p.out.tail(1<<16), "entering the main select() loop") {
				return errors.New("not listening yet")
			}
			return nil
		}); err == nil {
			return p, port, nil
		}
		p.stop()
		if !addrInUse(err) {
			break
		}
	}
	return nil, 0, err
}

// startRabbitMQ starts an epmd and a node on fresh ports; on failure both
// are stopped.
func startRabbitMQ(t testing.TB, bin, epmdBin string) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	port, dist := pickPort(t), pickPort(t)
	pm, epmdPort, err := startEPMD(t, epmdBin)
	if err != nil {
		return nil, err
	}

	conf := filepath.Join(dir, "rabbitmq.conf")
	advanced := filepath.Join(dir, "advanced.config")
	plugins := filepath.Join(dir, "enabled_plugins")
	envConf := filepath.Join(dir, "rabbitmq-env.conf")
	for name, text := range map[string]string{
		conf: fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", port),
		// Not the machine's /etc/rabbitmq/advanced.config. A quorum queue's
		// at-least-once dead-lettering retries a hop its target did not
		// confirm (say, a broker restarting) only after this timeout, 180 s
		// by default: messages wait, none is lost, but a test would time
		// out. amqpgate's docs tell operators the same.
		advanced: "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 2000}]}].\n",
		plugins:  "[].\n", // none: the management plugin would want a fixed port
		envConf:  "",      // not the machine's /etc/rabbitmq/rabbitmq-env.conf
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			pm.stop()
			return nil, fmt.Errorf("brokertest: %w", err)
		}
	}
	node := fmt.Sprintf("bbtest-%d-%d@localhost", os.Getpid(), port)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{t: t, what: "rabbitmq-server " + node, bin: bin, dir: dir, epmd: pm,
		url: "amqp://guest:guest@" + addr + "/",
		env: []string{
			"HOME=" + dir, // the Erlang cookie goes here
			"RABBITMQ_NODENAME=" + node,
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
			"RABBITMQ_DIST_PORT=" + strconv.Itoa(dist),
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
			"RABBITMQ_CONFIG_FILE=" + conf,
			"RABBITMQ_ADVANCED_CONFIG_FILE=" + advanced,
			"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
			"RABBITMQ_CONF_ENV_FILE=" + envConf,
			"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
			// A node that fails to boot writes a crash dump, by default in
			// its working directory: keep it in the test's.
			"ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump"),
			"ERL_EPMD_ADDRESS=127.0.0.1",
			"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort),
		}}
	s.ready = func(p *process) error {
		// Ready once the node says it booted and its port speaks AMQP: a
		// port taken by another broker would answer too.
		return p.ready(s.what, 90*time.Second, func() error {
			if !strings.Contains(p.out.tail(1<<16), "completed with") {
				return errors.New("not booted yet")
			}
			return amqpOK(addr)
		})
	}
	s.mu.Lock()
	err = s.launch()
	s.mu.Unlock()
	if err != nil {
		pm.stop()
		return nil, err
	}
	return s, nil
}

func dialOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// amqpOK reports whether the broker at addr speaks AMQP yet: RabbitMQ
// accepts connections before it has booted, and answers the protocol
// header with its connection.start only once it serves.
func amqpOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		return fmt.Errorf("no AMQP answer yet: %w", err)
	}
	if buf[0] != 1 { // a method frame
		return fmt.Errorf("unexpected AMQP answer %q", buf)
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// Stop stops the broker cleanly (SIGTERM, as an orderly restart would) and
// waits until it is gone; past a minute it is killed. Restart starts it
// again.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.proc.done:
	case <-time.After(time.Minute):
		s.t.Logf("brokertest: %s did not stop within a minute of SIGTERM; killing it", s.what)
	}
	s.proc.stop()
	s.proc = nil
}

// Output returns the end of the broker's log, for a failing test to show.
func (s *Server) Output() string { return s.Log(16000) }
