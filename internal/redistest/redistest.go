//go:build unix

// Package redistest starts real redis-server processes for tests, on free
// loopback ports, with nothing kept on disk, and lets a test kill, restart,
// pause and resume them to inject faults.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a redis-server process owned by a test.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	Port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
	info   *redis.Client // the test's own connection, made once: commandstats count its HELLO
	// args are the server's own arguments, after the port and the defaults;
	// conf, if set, is a config file written before each start (a sentinel
	// needs one it can rewrite), with {port} replaced.
	args []string
	conf string
	// TLS, if set, is how clients reach the server: its port is then its
	// TLS port, and plain TCP is off.
	TLS *tls.Config
}

// Start starts a redis-server on a free loopback port and stops it when the
// test ends. Without a redis-server binary the test is skipped, except under
// CI=true, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, nil)
}

// StartWith starts a redis-server like Start, with more arguments, e.g.
// "--replicaof", "127.0.0.1", "6380".
func StartWith(t testing.TB, args []string) *Server {
	t.Helper()
	return startServer(t, &Server{args: args})
}

// startServer starts s (its args, conf and TLS set) on a free port.
func startServer(t testing.TB, s *Server) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found; .ci/run installs the Debian package redis-server")
		}
		t.Skip("redis-server not found: install it (apt-get install redis-server) to run this test")
	}
	s.t, s.bin, s.dir = t, bin, t.TempDir()
	t.Cleanup(func() { s.kill() })
	// redis-server cannot bind a port of its own choosing (--port 0 turns
	// TCP off), so a port chosen free can be taken before it binds: then it
	// is started again on another.
	for try := 0; try < 5; try++ {
		s.Port = freePort(t)
		if err = s.start(); err == nil {
			return s
		}
		if !portTaken(err) {
			break
		}
		t.Logf("redistest: port %d was taken; starting redis-server again on another", s.Port)
	}
	t.Fatal(err)
	return nil
}

// portTaken reports whether a failed start says its port was in use.
func portTaken(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "address already in use")
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the redis:// URL of database 0 (rediss:// for a TLS server).
func (s *Server) URL() string {
	if s.TLS != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// start starts redis-server on s.Port and waits until it answers. The
// server that answers must be this process (INFO's process_id): another
// redis-server that took the port first would answer too. On failure the
// process is gone and the error carries its log.
func (s *Server) start() error {
	logfile := filepath.Join(s.dir, "redis.log")
	os.Remove(logfile) // the log of a failed start is read alone
	var args []string
	if s.conf != "" {
		conf := filepath.Join(s.dir, "redis.conf")
		if err := os.WriteFile(conf, []byte(strings.ReplaceAll(s.conf, "{port}", strconv.Itoa(s.Port))), 0o600); err != nil {
			return err
		}
		args = append(args, conf)
	}
	port := []string{"--port", strconv.Itoa(s.Port)}
	if s.TLS != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.Port)}
	}
	args = append(append(args, port...), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--protected-mode", "yes",
		"--loglevel", "warning", "--logfile", logfile,
		"--repl-diskless-sync-delay", "0") // a replica syncs at once, and can then be promoted
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	// Timeouts of its own: go-redis ignores the context's deadline.
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, TLSConfig: s.TLS})
	defer c.Close()
	var err error
	for i := 0; i < 100; i++ {
		select {
		case <-exited:
			s.cmd = nil
			log, _ := os.ReadFile(logfile)
			return fmt.Errorf("redis-server on %s exited at start:\n%s", s.Addr(), log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var info string
		info, err = c.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if strings.Contains(info, "process_id:"+strconv.Itoa(cmd.Process.Pid)+"\r\n") {
				return nil
			}
			err = errors.New("another redis-server answers on its port")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	log, _ := os.ReadFile(logfile)
	return fmt.Errorf("redis-server on %s did not answer: %v\n%s", s.Addr(), err, log)
}

// Kill kills the server with SIGKILL: no shutdown, connections reset.
func (s *Server) Kill() { s.t.Helper(); s.kill() }

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must be able to die
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port, empty. If another
// process took the port meanwhile, it tries again for a few seconds.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	var err error
	for try := 0; try < 5; try++ {
		if err = s.start(); err == nil || !portTaken(err) {
			break
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
}

// Pause stops the process with SIGSTOP: connections stay open, nothing
// answers. Resume continues it.
func (s *Server) Pause()  { s.signal(syscall.SIGSTOP) }
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: s.TLS})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// CommandCalls returns the number of calls per command (lower case) from
// INFO commandstats.
func (s *Server) CommandCalls() map[string]int64 {
	s.t.Helper()
	if s.info == nil {
		s.info = s.Client()
	}
	info, err := s.info.Info(context.Background(), "commandstats").Result()
	if err != nil {
		s.t.Fatalf("INFO commandstats: %v", err)
	}
	calls := map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		// cmdstat_evalsha:calls=3,usec=...
		line, ok := strings.CutPrefix(sc.Text(), "cmdstat_")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(line, ":")
		rest, _ = strings.CutPrefix(rest, "calls=")
		n, _, _ := strings.Cut(rest, ",")
		calls[name], _ = strconv.ParseInt(n, 10, 64)
	}
	// The question itself, and the handshake of the test's connection.
	delete(calls, "info")
	delete(calls, "hello")
	return calls
}

// freePort picks the port of a start; a test of the retry path replaces it
// to hand out a taken one.
var freePort = pickFree

// pickFree returns a port on 127.0.0.1 that was free a moment ago.
func pickFree(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("redis-server %s", s.Addr()) }
