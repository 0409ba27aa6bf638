// Package brokertest starts real message brokers for tests: a JetStream
// nats-server or a RabbitMQ node of the test's own, on free loopback ports,
// with their data in the test's temporary directory, stopped when the test
// ends.
//
// When a broker's binary is missing, the test is skipped with a note on how to
// install it, unless the environment variable CI is "true": in CI a missing
// broker fails the test.
package brokertest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

func missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("brokertest: %s not found, and CI=true: install it (%s)", what, install)
	}
	t.Skipf("brokertest: %s not found; install it to run this test (%s)", what, install)
}

// process is a broker started by a test, in a process group of its own so
// that its children go with it.
type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

func start(t testing.TB, env []string, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
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
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady calls ready until it succeeds, the process exits, or timeout.
func (p *process) waitReady(t testing.TB, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("brokertest: %s exited before it was ready (%v); output:\n%s", what, p.err, p.out.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("brokertest: %s not ready after %v: %v; output:\n%s", what, timeout, err, p.out.tail(4000))
}

// NATS starts a nats-server with JetStream on a free loopback port and
// returns its URL, e.g. "nats://127.0.0.1:41234".
func NATS(t testing.TB) string {
	t.Helper()
	bin := find("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")
	if bin == "" {
		missing(t, "nats-server", "apt-get install nats-server, or go install github.com/nats-io/nats-server/v2@latest")
	}
	port := FreePort(t)
	dir := t.TempDir()
	p := start(t, nil, bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", dir)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.waitReady(t, "nats-server", 20*time.Second, func() error { return dialOK(addr) })
	return "nats://" + addr
}

// RabbitMQ starts a RabbitMQ node of the test's own (its own node name,
// ports, data and log directories, no plugins) and returns its AMQP URL,
// e.g. "amqp://guest:guest@127.0.0.1:41235/". The node takes a few seconds to
// boot.
func RabbitMQ(t testing.TB) string {
	t.Helper()
	// Debian's /usr/sbin/rabbitmq-server is a wrapper that switches to the
	// rabbitmq user and drops the environment; the script behind it runs
	// the node as the current user.
	bin := find("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")
	if bin == "" {
		missing(t, "rabbitmq-server", "apt-get install rabbitmq-server")
	}
	dir := t.TempDir()
	port, dist := FreePort(t), FreePort(t)
	conf := filepath.Join(dir, "rabbitmq.conf")
	plugins := filepath.Join(dir, "enabled_plugins")
	envConf := filepath.Join(dir, "rabbitmq-env.conf")
	for name, text := range map[string]string{
		conf:    fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", port),
		plugins: "[].\n", // none: the management plugin would want a fixed port
		envConf: "",      // not the machine's /etc/rabbitmq/rabbitmq-env.conf
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatalf("brokertest: %v", err)
		}
	}
	node := fmt.Sprintf("bbtest-%d-%d@localhost", os.Getpid(), port)
	env := []string{
		"HOME=" + dir, // the Erlang cookie goes here
		"RABBITMQ_NODENAME=" + node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + conf,
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
		"RABBITMQ_CONF_ENV_FILE=" + envConf,
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	}
	p := start(t, env, bin)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	p.waitReady(t, "rabbitmq-server "+node, 90*time.Second, func() error { return amqpOK(addr) })
	return "amqp://guest:guest@" + addr + "/"
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
