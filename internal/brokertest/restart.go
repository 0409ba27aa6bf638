//go:build unix

package brokertest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a broker a test can kill (SIGKILL, as a crash) and start again
// on the same ports with the same data directory, so that its durable
// streams, queues and messages survive and clients reconnect to the same
// URL, as they would to a production broker that restarts.
type Server struct {
	url   string
	t     testing.TB
	proc  *process
	ready func(p *process) error
}

// URL is the broker's URL, e.g. "nats://127.0.0.1:41234" or
// "amqp://guest:guest@127.0.0.1:41235/".
func (s *Server) URL() string { return s.url }

// Kill kills the broker with SIGKILL and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	s.proc.stop()
}

// Stop stops the broker cleanly (SIGTERM, as an orderly restart would) and
// waits until it is gone; past a minute it is killed.
func (s *Server) Stop() {
	s.t.Helper()
	_ = syscall.Kill(-s.proc.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.proc.done:
	case <-time.After(time.Minute):
		s.t.Logf("brokertest: the broker did not stop within a minute of SIGTERM; killing it")
		s.proc.stop()
	}
}

// Restart starts the broker again, after Kill or Stop, with the same
// command line, environment, ports and data directory, and waits until it
// serves.
func (s *Server) Restart() {
	s.t.Helper()
	old := s.proc.cmd
	p := start(s.t, old.Env, old.Path, old.Args[1:]...)
	// The ports were ours a moment ago; a process that took one since
	// fails the test, as it would the restart of a production broker.
	if err := s.ready(p); err != nil {
		s.t.Fatal(err)
	}
	s.proc = p
}

// StartNATS starts a nats-server with JetStream, as NATS does, on a free
// loopback port with its store in the test's temporary directory, and
// returns it to be killed and restarted. Streams with file storage (the
// default) survive a restart.
func StartNATS(t testing.TB) *Server {
	t.Helper()
	bin := find("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")
	if bin == "" {
		missing(t, "nats-server", "apt-get install nats-server, or go install github.com/nats-io/nats-server/v2@latest")
	}
	store := t.TempDir()
	var err error
	for try := 0; try < 2; try++ {
		port := FreePort(t)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s := &Server{url: "nats://" + addr, t: t, ready: func(p *process) error {
			// Ready once it says so and answers: a port taken by another
			// process would answer too.
			return p.ready("nats-server", 20*time.Second, func() error {
				if !strings.Contains(p.out.tail(1<<16), "Server is ready") {
					return errors.New("not ready yet")
				}
				return dialOK(addr)
			})
		}}
		s.proc = start(t, nil, bin, "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-sd", store)
		if err = s.ready(s.proc); err == nil {
			return s
		}
		s.proc.stop()
		if !addrInUse(err) {
			break
		}
		t.Logf("brokertest: port %d was taken; starting nats-server again on another: %v", port, err)
	}
	t.Fatal(err)
	return nil
}

// StartRabbitMQ starts a RabbitMQ node of the test's own, as RabbitMQ does,
// and returns it to be killed and restarted: Kill kills the node, not its
// port mapper (epmd), and Restart boots the node again on its ports with
// its data, so durable queues and their persistent messages survive.
//
// A quorum queue declared shortly before Kill can be forgotten: RabbitMQ
// 3.10 keeps its quorum queues' registry in a file it saves every few
// minutes, and after a kill -9 the restarted node knows the queue but never
// starts it (no leader; publishes to it are never confirmed, "leader not
// known" in its log). Stop and Restart the node once after declaring the
// queues, before a test kills it.
func StartRabbitMQ(t testing.TB) *Server {
	t.Helper()
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
		var s *Server
		if s, err = startRabbitNode(t, bin, epmd); err == nil {
			return s
		}
		if !addrInUse(err) {
			break
		}
		t.Logf("brokertest: a port was taken; starting RabbitMQ again on others: %v", err)
	}
	t.Fatal(err)
	return nil
}

// startRabbitNode is startRabbitMQ, keeping the node's process to restart.
func startRabbitNode(t testing.TB, bin, epmdBin string) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	port, dist, epmdPort := FreePort(t), FreePort(t), FreePort(t)
	pm := start(t, nil, epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1")
	epmdAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(epmdPort))
	if err := pm.ready("epmd", 10*time.Second, func() error { return dialOK(epmdAddr) }); err != nil {
		return nil, err
	}
	env, err := rabbitEnv(dir, port, dist, epmdPort)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{url: "amqp://guest:guest@" + addr + "/", t: t, ready: func(p *process) error {
		return p.ready("rabbitmq-server on "+addr, 90*time.Second, func() error { return amqpOK(addr) })
	}}
	s.proc = start(t, env, bin)
	if err := s.ready(s.proc); err != nil {
		s.proc.stop()
		pm.stop()
		return nil, err
	}
	return s, nil
}

// rabbitEnv writes a node's configuration files into dir and returns the
// environment that points the node at them and at its ports. Kept apart
// from startRabbitMQ's so as not to change that file; the two can fold.
func rabbitEnv(dir string, port, dist, epmdPort int) ([]string, error) {
	conf := filepath.Join(dir, "rabbitmq.conf")
	advanced := filepath.Join(dir, "advanced.config")
	plugins := filepath.Join(dir, "enabled_plugins")
	envConf := filepath.Join(dir, "rabbitmq-env.conf")
	for name, text := range map[string]string{
		conf:     fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nloopback_users = none\n", port),
		advanced: "[].\n",
		plugins:  "[].\n",
		envConf:  "",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("brokertest: %w", err)
		}
	}
	return []string{
		"HOME=" + dir,
		"RABBITMQ_NODENAME=" + fmt.Sprintf("bbtest-%d-%d@localhost", os.Getpid(), port),
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
	}, nil
}

// Output returns the end of what the broker wrote since it last started.
func (s *Server) Output() string { return s.proc.out.tail(16000) }
