//go:build unix

package redistest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a primary, its replicas and the sentinels that watch them,
// all on loopback: a highly available Redis a test can fail over.
type Sentinel struct {
	t         testing.TB
	Master    string    // the name the sentinels know the primary by
	Servers   []*Server // the primary first, then its replicas
	Sentinels []*Server
}

// StartSentinel starts a primary with replicas replicas and sentinels
// sentinels (a quorum of a majority) that fail it over one second after it
// stops answering, and waits until every sentinel knows every replica and
// the other sentinels, so that a failover can start at once.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Master: "breakerbox"}
	primary := Start(t)
	s.Servers = append(s.Servers, primary)
	for range replicas {
		s.Servers = append(s.Servers, StartWith(t, []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}))
	}
	conf := fmt.Sprintf("port {port}\nsentinel resolve-hostnames no\n"+
		"sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 10000\n"+
		"sentinel parallel-syncs %[1]s 1\n", s.Master, primary.Port, sentinels/2+1)
	for range sentinels {
		s.Sentinels = append(s.Sentinels, startServer(t, &Server{conf: conf, args: []string{"--sentinel"}}))
	}
	for _, x := range s.Servers[1:] {
		waitSynced(t, x)
	}
	s.wait("the sentinels to know the replicas and each other", func(ctx context.Context, c *redis.SentinelClient) bool {
		m, err := c.Master(ctx, s.Master).Result()
		return err == nil && m["num-other-sentinels"] == strconv.Itoa(sentinels-1) && m["num-slaves"] == strconv.Itoa(replicas)
	})
	return s
}

// Addrs are the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	var a []string
	for _, x := range s.Sentinels {
		a = append(a, x.Addr())
	}
	return a
}

// Primary returns the server the sentinels name as the primary now.
func (s *Sentinel) Primary() *Server {
	s.t.Helper()
	var addr string
	s.wait("a primary", func(ctx context.Context, c *redis.SentinelClient) bool {
		a, err := c.GetMasterAddrByName(ctx, s.Master).Result()
		if err == nil && len(a) == 2 {
			addr = a[0] + ":" + a[1]
		}
		return err == nil
	})
	for _, x := range s.Servers {
		if x.Addr() == addr {
			return x
		}
	}
	s.t.Fatalf("redistest: the sentinels name %s, none of the servers started", addr)
	return nil
}

// WaitFailover waits until the sentinels name a primary other than old,
// and that primary answers as one.
func (s *Sentinel) WaitFailover(old *Server) *Server {
	s.t.Helper()
	var now *Server
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard: a failover takes seconds
	for time.Now().Before(deadline) {
		if p := s.Primary(); p != old {
			if p.Role() == "master" {
				now = p
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if now == nil {
		s.t.Fatalf("redistest: no failover from %s within a minute", old)
	}
	return now
}

// wait polls the sentinels until ok says yes for one of them.
func (s *Sentinel) wait(what string, ok func(context.Context, *redis.SentinelClient) bool) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard
	for time.Now().Before(deadline) {
		for _, x := range s.Sentinels {
			if x.cmd == nil {
				continue // killed by the test
			}
			c := redis.NewSentinelClient(&redis.Options{Addr: x.Addr(), MaxRetries: -1, DialTimeout: time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			yes := ok(ctx, c)
			cancel()
			c.Close()
			if yes {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: waited a minute for %s", what)
}

// Role is the server's role from ROLE: "master", "slave" once it has synced
// with its primary, "" if it does not answer or has not synced.
func (s *Server) Role() string {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), TLSConfig: s.TLS, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 {
		return ""
	}
	r, _ := role[0].(string)
	if r == "slave" && (len(role) < 4 || role[3] != "connected") {
		return ""
	}
	return r
}

// waitSynced waits until a replica has synced with its primary: one that
// has not cannot be promoted.
func waitSynced(t testing.TB, s *Server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard
	for s.Role() != "slave" {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s did not sync with its primary within a minute", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
