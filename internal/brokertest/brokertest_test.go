//go:build unix

package brokertest

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// takenFirst makes pickPort hand out a port that a listener of the test
// holds, once, at the call numbered taken (from 0), and free ports
// otherwise. It returns the taken port.
func takenFirst(t *testing.T, taken int) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	var mu sync.Mutex
	calls := 0
	pickPort = func(t testing.TB) int {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls-1 == taken {
			return port
		}
		return FreePort(t)
	}
	t.Cleanup(func() { pickPort = FreePort })
	return port
}

func TestAddrInUseRecognisesEveryServer(t *testing.T) {
	for _, msg := range []string{
		"listen tcp 127.0.0.1:4222: bind: address already in use",                                                // nats-server
		"Failed to start Ranch listener ... {listen_error,...,eaddrinuse}",                                       // RabbitMQ's AMQP port
		"ERROR: could not bind to distribution port 32921, it is in use by another node: dist_port_already_used", // RabbitMQ
		"epmd: there is already a epmd running at port 4369 on ipaddr 127.0.0.1",                                 // epmd
		"Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use",              // redis
	} {
		if !addrInUse(errString(msg)) {
			t.Errorf("addrInUse(%q) = false, want true", msg)
		}
	}
	if addrInUse(errString("brokertest: rabbitmq-server exited before it was ready (exit status 1)")) {
		t.Error("addrInUse took any failure for a taken port")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// An epmd given a port that another process holds exits; it is started
// again on another port.
func TestEPMDStartsAgainOnAnotherPortWhenItsPortIsTaken(t *testing.T) {
	bin := findEPMD()
	if bin == "" {
		missing(t, "epmd", "apt-get install erlang-base")
	}
	taken := takenFirst(t, 0)
	p, port, err := startEPMD(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	if port == taken {
		t.Fatalf("epmd reported the taken port %d", port)
	}
	if err := dialOK(net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
}

// RabbitMQ's distribution port taken by the time the node binds it (the
// failure seen in CI): the node is started again on other ports, and
// serves. Nothing is left in the working directory of the test.
func TestRabbitMQStartsAgainWhenItsDistributionPortIsTaken(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a RabbitMQ node")
	}
	wd, _ := os.Getwd()
	taken := takenFirst(t, 1) // pickPort's calls: AMQP port, distribution port, epmd port
	s := StartRabbitMQ(t)
	u, _ := url.Parse(s.URL())
	if u.Port() == strconv.Itoa(taken) {
		t.Fatalf("the node serves on the taken port %d", taken)
	}
	if err := amqpOK(u.Host); err != nil {
		t.Fatal(err)
	}
	if dumps, _ := filepath.Glob(filepath.Join(wd, "erl_crash.dump")); len(dumps) != 0 {
		t.Fatalf("the failed start left %v in the source tree", dumps)
	}
}

// A NATS server killed with kill -9 and restarted serves again on the same
// URL.
func TestNATSKillAndRestart(t *testing.T) {
	s := StartNATS(t)
	host := s.URL()[len("nats://"):]
	s.Kill()
	if err := dialOK(host); err == nil {
		t.Fatal("the killed server still answers")
	}
	s.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for dialOK(host) != nil {
		if ctx.Err() != nil {
			t.Fatal("the restarted server does not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
