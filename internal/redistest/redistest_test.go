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
