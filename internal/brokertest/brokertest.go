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
// Nothing is left running: each broker, and the Erlang port mapper (epmd) a
// RabbitMQ node needs, is started in the foreground in a process group of its
// own and killed when the test ends.
package brokertest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// addrInUse reports whether err, a failed start, says a port was taken
// (by another process, between FreePort and the broker's bind).
func addrInUse(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "eaddrinuse") || strings.Contains(s, "address already in use") || strings.Contains(s, "address in use")
}

// NATS starts a nats-server with JetStream on a free loopback port and
// returns its URL, e.g. "nats://127.0.0.1:41234".
func NATS(t testing.TB) string {
	t.Helper()
	bin := find("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")
	if bin == "" {
		missing(t, "nats-server", "apt-get install nats-server, or go install github.com/nats-io/nats-server/v2@latest")
	}
	var err error
	for try := 0; try < 2; try++ {
		port := FreePort(t)
		p := start(t, nil, bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", t.TempDir())
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// Ready once it says so and answers: a port taken by another
		// process would answer too.
		if err = p.ready("nats-server", 20*time.Second, func() error {
			if !strings.Contains(p.out.tail(1<<16), "Server is ready") {
				return errors.New("not ready yet")
			}
			return dialOK(addr)
		}); err == nil {
			return "nats://" + addr
		}
		p.stop()
		if !addrInUse(err) {
			break
		}
		t.Logf("brokertest: port %d was taken; starting nats-server again on another: %v", port, err)
	}
	t.Fatal(err)
	return ""
}

// RabbitMQ starts a RabbitMQ node of the test's own (its own node name,
// ports, epmd, data and log directories, no plugins) and returns its AMQP
// URL, e.g. "amqp://guest:guest@127.0.0.1:41235/". The node takes a few
// seconds to boot. If a port it was given is taken by the time it binds, it
// is started once more on other ports.
func RabbitMQ(t testing.TB) string {
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
	for try := 0; try < 2; try++ {
		var url string
		if url, err = startRabbitMQ(t, bin, epmd); err == nil {
			return url
		}
		if !addrInUse(err) {
			break
		}
		t.Logf("brokertest: a port was taken; starting RabbitMQ again on others: %v", err)
	}
	t.Fatal(err)
	return ""
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

// startRabbitMQ starts an epmd and a node on fresh ports; on failure the
// test's cleanup stops whatever started.
func startRabbitMQ(t testing.TB, bin, epmdBin string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	port, dist, epmdPort := FreePort(t), FreePort(t), FreePort(t)

	// An epmd of our own, in the foreground, killed with the test. Left to
	// itself, the node would start a shared one with -daemon, which
	// escapes the process group and outlives the test.
	pm := start(t, nil, epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1")
	epmdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(epmdPort))
	if err := pm.ready("epmd", 10*time.Second, func() error { return dialOK(epmdAddr) }); err != nil {
		return "", err
	}

	conf := filepath.Join(dir, "rabbitmq.conf")
	advanced := filepath.Join(dir, "advanced.config")
	plugins := filepath.Join(dir, "enabled_plugins")
	envConf := filepath.Join(dir, "rabbitmq-env.conf")
	for name, text := range map[string]string{
		conf:     fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", port),
		advanced: "[].\n", // not the machine's /etc/rabbitmq/advanced.config
		plugins:  "[].\n", // none: the management plugin would want a fixed port
		envConf:  "",      // not the machine's /etc/rabbitmq/rabbitmq-env.conf
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			return "", fmt.Errorf("brokertest: %w", err)
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
		"RABBITMQ_ADVANCED_CONFIG_FILE=" + advanced,
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
		"RABBITMQ_CONF_ENV_FILE=" + envConf,
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort),
	}
	p := start(t, env, bin)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.ready("rabbitmq-server "+node, 90*time.Second, func() error { return amqpOK(addr) }); err != nil {
		p.stop()
		pm.stop()
		return "", err
	}
	return "amqp://guest:guest@" + addr + "/", nil
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
