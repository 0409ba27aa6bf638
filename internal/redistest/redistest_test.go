package redistest

import (
	"context"
	"net"
	"testing"
)

// A port taken between its choice and redis-server's bind: the server is
// started again on another port, and the one that answers is ours.
func TestStartsAgainOnAnotherPortWhenItsPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	calls := 0
	freePort = func(t testing.TB) int {
		calls++
		if calls == 1 {
			return taken
		}
		return pickFree(t)
	}
	defer func() { freePort = pickFree }()
	s := Start(t)
	if s.Port == taken {
		t.Fatalf("started on the taken port %d", taken)
	}
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("%d ports picked, want 2 (the taken one, then a free one)", calls)
	}
}

func TestSentinelFailsOver(t *testing.T) {
	s := StartSentinel(t, 1, 3)
	old := s.Primary()
	if old != s.Servers[0] {
		t.Fatalf("primary %s, want the first server", old)
	}
	old.Kill()
	now := s.WaitFailover(old)
	if now != s.Servers[1] {
		t.Fatalf("promoted %s, want the replica", now)
	}
}

func TestClusterFailsOver(t *testing.T) {
	c := StartCluster(t, 3)
	p := c.PrimaryOf("{x}")
	if err := p.Client().Set(context.Background(), "{x}", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	c.WaitOK(p)
	if q := c.PrimaryOf("{x}"); q == p {
		t.Fatalf("%s still serves the slot", q)
	}
}

func TestTLS(t *testing.T) {
	s := StartTLS(t, NewTLSFiles(t))
	if err := s.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}
