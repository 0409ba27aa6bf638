package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// replicaOf is a Server named replica on the shared Redis, with its proxy
// and admin listeners.
func replicaOf(t *testing.T, client redis.UniversalClient, replica, upstream string, degraded bool) (*proxy.Server, string, string) {
	t.Helper()
	return loggedReplicaOf(t, client, replica, upstream, degraded, slog.New(slog.DiscardHandler))
}

// loggedReplicaOf is replicaOf logging to log.
func loggedReplicaOf(t *testing.T, client redis.UniversalClient, replica, upstream string, degraded bool, log *slog.Logger) (*proxy.Server, string, string) {
	t.Helper()
	cfg, err := config.Parse("fleet.yaml", []byte(fmt.Sprintf(`
services:
  - {name: pay, upstream: '%s', failure_threshold: 3}
  - {name: mail, upstream: '%s'}
`, upstream, upstream)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: log, Replica: replica,
		Redis: client, RedisPrefix: "test:", Degraded: func() bool { return degraded }})
	if err != nil {
		t.Fatal(err)
	}
	front, admin := httptest.NewServer(srv), httptest.NewServer(srv.Admin())
	t.Cleanup(func() { front.Close(); admin.Close() })
	return srv, front.URL, admin.URL
}

// TestHistorySurvivesARestartInRedis: a replica's transitions, with their
// evidence, are in the capped stream for the next process and for the
// other replicas.
func TestHistorySurvivesARestartInRedis(t *testing.T) {
	rs := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { client.Close() })
	up := newUpstream(t)
	up.status.Store(503)

	a, front, _ := replicaOf(t, client, "replica-a", up.URL, false)
	for range 3 {
		http.Get(front + "/pay/x")
	}
	a.Close() // writes what is queued

	_, _, admin := replicaOf(t, client, "replica-b", up.URL, false) // a new process
	var list []proxy.TransitionJSON
	getJSON(t, admin+"/api/transitions?circuit=pay", &list)
	if len(list) != 1 || list[0].To != "open" || list[0].Replica != "replica-a" || len(list[0].Evidence) != 3 || list[0].Evidence[2].Status != 503 {
		t.Fatalf("pay's transitions read by another process = %+v, want replica-a's opening with its three 503s", list)
	}
	getJSON(t, admin+"/api/transitions?circuit=mail", &list)
	if len(list) != 0 {
		t.Errorf("mail's transitions = %+v, want none", list)
	}

	// Capped: a burst far over the cap leaves about the cap.
	h := proxy.NewRedisHistory(client, "cap:", 20, slog.New(slog.DiscardHandler))
	for i := range 500 {
		h.Append(&proxy.TransitionJSON{Circuit: fmt.Sprint("c", i), To: "open"})
	}
	h.Close()
	if n := client.XLen(context.Background(), "cap:history:transitions").Val(); n == 0 || n > 200 {
		t.Errorf("stream length %d after 500 appends with a cap of 20, want it trimmed (approximately)", n)
	}
	if got, err := h.Recent(context.Background(), "c499", 5); err != nil || len(got) != 1 {
		t.Errorf("Recent(c499) = %v, %v: want the newest", got, err)
	}

	// Redis gone: the API answers from memory, saying so.
	rs.Kill()
	resp, err := http.Get(admin + "/api/transitions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Breakerbox-History") != "memory" {
		t.Errorf("with Redis down: %d, Breakerbox-History %q; want 200 from memory", resp.StatusCode, resp.Header.Get("Breakerbox-History"))
	}
}

// TestFleetTotals: each replica's last-minute totals are summed per
// circuit, and the fleet says which replicas are degraded.
func TestFleetTotals(t *testing.T) {
	rs := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { client.Close() })
	up := newUpstream(t)

	a, frontA, adminA := replicaOf(t, client, "replica-a", up.URL, false)
	b, frontB, _ := replicaOf(t, client, "replica-b", up.URL, true)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	for range 4 {
		http.Get(frontA + "/pay/x")
	}
	up.status.Store(500)
	for range 2 {
		http.Get(frontB + "/pay/x")
	}
	ctx := context.Background()
	for _, s := range []*proxy.Server{a, b} {
		if err := s.PublishFleetStats(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var fleet proxy.FleetJSON
	getJSON(t, adminA+"/api/fleet?name=pay", &fleet)
	if fleet.Replica != "replica-a" || !fleet.Shared || len(fleet.Replicas) != 2 {
		t.Fatalf("fleet = %+v, want replica-a's view of 2 replicas", fleet)
	}
	if fleet.Replicas[0].Degraded || !fleet.Replicas[1].Degraded {
		t.Errorf("replicas = %+v, want replica-b degraded alone", fleet.Replicas)
	}
	pay := fleet.Circuits["pay"]
	if len(pay.Replicas) != 2 || pay.ErrorPercent < 33 || pay.ErrorPercent > 34 || pay.RequestsPerSecond <= 0 {
		t.Errorf("pay over the fleet = %+v, want 6 calls from 2 replicas, 2 of them failed (33%%)", pay)
	}
	if _, ok := fleet.Circuits["mail"]; ok {
		t.Errorf("?name=pay answered mail too")
	}
}

// Two processes with one replica name (a copied config, a fixed host
// name): each says so in its log, once, and /api/fleet marks the name as
// a duplicate; a process that replaces another of the same name, as a
// restart does, says nothing, nor does one report in a row (a brief
// overlap).
func TestTwoProcessesWithOneReplicaNameAreTold(t *testing.T) {
	rs := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { client.Close() })
	up := newUpstream(t)
	ctx := context.Background()
	publish := func(ss ...*proxy.Server) {
		t.Helper()
		for _, s := range ss {
			if err := s.PublishFleetStats(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	const twinMsg = "another process reports to the fleet as this replica"
	newReplica := func(name string) (*proxy.Server, *syncbuf.Buffer, string) {
		buf := new(syncbuf.Buffer)
		s, _, admin := loggedReplicaOf(t, client, name, up.URL, false, slog.New(slog.NewTextHandler(buf, nil)))
		t.Cleanup(s.Close)
		return s, buf, admin
	}

	// A restart: the old process's last report is replaced by the new one's.
	old, oldLog, _ := newReplica("web-1")
	publish(old)
	old.Close()
	restarted, restartedLog, _ := newReplica("web-1")
	publish(restarted, restarted)
	if strings.Contains(oldLog.String()+restartedLog.String(), twinMsg) {
		t.Fatalf("a restart was taken for two processes: %s%s", oldLog, restartedLog)
	}

	// A second live process under the same name, and one under its own:
	// once each replaced the other's report, nothing yet.
	twin, twinLog, _ := newReplica("web-1")
	other, otherLog, admin := newReplica("web-2")
	publish(twin, restarted, twin)
	if strings.Contains(twinLog.String()+restartedLog.String(), twinMsg) {
		t.Fatalf("one overlap was taken for two processes: %s%s", twinLog, restartedLog)
	}
	publish(twin, restarted, twin, other, restarted, twin, restarted, twin, other)
	for name, buf := range map[string]*syncbuf.Buffer{"restarted": restartedLog, "twin": twinLog} {
		if n := strings.Count(buf.String(), twinMsg); n != 1 || !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "replica=web-1") {
			t.Errorf("%s's log has %d lines about the twin, want 1 ERROR naming web-1:\n%s", name, n, buf)
		}
	}
	if strings.Contains(otherLog.String(), twinMsg) {
		t.Errorf("web-2 was told of a twin: %s", otherLog)
	}
	var fleet proxy.FleetJSON
	getJSON(t, admin+"/api/fleet", &fleet)
	dup := map[string]bool{}
	for _, r := range fleet.Replicas {
		dup[r.Replica] = r.Duplicate
	}
	if len(dup) != 2 || !dup["web-1"] || dup["web-2"] {
		t.Errorf("fleet replicas %+v: want web-1 a duplicate, web-2 not", fleet.Replicas)
	}
}
