//go:build unix

package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster on loopback: primaries with one replica each,
// nodes failed over one second after they stop answering.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts a Redis Cluster of primaries primaries with a replica
// each (redis-cli --cluster create), and waits until every node says the
// cluster is ok.
func StartCluster(t testing.TB, primaries int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	var addrs []string
	for range 2 * primaries {
		// The cluster bus gets a port of its own: port+10000, the default,
		// may be above 65535 or taken.
		bus := freePort(t)
		n := StartWith(t, []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(bus)})
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK(nil)
	for _, n := range c.Nodes {
		if n.Role() != "master" {
			waitSynced(t, n)
		}
	}
	return c
}

// Addrs are the nodes' addresses: the seeds of a cluster client.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr())
	}
	return a
}

// PrimaryOf returns the node that serves key's slot now.
func (c *Cluster) PrimaryOf(key string) *Server {
	c.t.Helper()
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = cl.ClusterSlots(ctx).Result()
		}
		cancel()
		cl.Close()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				for _, m := range c.Nodes {
					if m.Addr() == s.Nodes[0].Addr {
						return m
					}
				}
			}
		}
	}
	c.t.Fatalf("redistest: no node serves %q", key)
	return nil
}

// WaitOK waits until every node but dead answers CLUSTER INFO with
// cluster_state:ok and, if dead is set, no node has dead serving slots (its
// replica was promoted).
func (c *Cluster) WaitOK(dead *Server) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard: a failover takes seconds
	for time.Now().Before(deadline) {
		if c.ok(dead) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("redistest: the cluster is not ok after a minute")
}

func (c *Cluster) ok(dead *Server) bool {
	for _, n := range c.Nodes {
		if n == dead || n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1, DialTimeout: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := cl.ClusterInfo(ctx).Result()
		var nodes string
		if err == nil {
			nodes, err = cl.ClusterNodes(ctx).Result()
		}
		cancel()
		cl.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
		if dead != nil {
			for _, line := range strings.Split(nodes, "\n") {
				// <id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch>
				// <link> <slot>...: the dead node must serve no slot.
				f := strings.Fields(line)
				if len(f) > 8 && strings.HasPrefix(f[1], dead.Addr()+"@") {
					return false
				}
			}
		}
	}
	return true
}
