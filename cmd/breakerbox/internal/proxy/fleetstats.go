package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fleet-wide totals. Every fleetEvery each replica writes its circuits'
// last-minute totals to its own Redis hash (prefix+"stats:"+replica, one
// field per circuit with traffic: "calls failures rejected seconds"), with
// its health in field "_replica", and refreshes the hash's TTL and its entry
// in the replicas' sorted set (score: the time of writing). GET /api/fleet
// reads every replica seen within fleetTTL and sums per circuit. A replica
// that stops writing (crashed, partitioned) drops out after fleetTTL.
//
// "_replica" is "degraded unix-time instance twin": instance is random per
// process, so a process whose reports keep replacing another instance's
// knows two processes share its name (a copied config, a fixed host name)
// and says so, in its log and in its report (twin "1", see checkTwin):
// their totals would overwrite each other, and the transitions' replica
// and decided_by could not tell them apart.
const (
	fleetEvery = 10 * time.Second
	fleetTTL   = 3 * fleetEvery
)

type fleetStats struct {
	s        *Server
	client   redis.UniversalClient
	prefix   string
	degraded func() bool
	instance string       // this process's, random
	twinAt   atomic.Int64 // unix time another instance was last seen under this name; 0: never
	twinLog  atomic.Int64 // unix time that was last logged
	lastPub  atomic.Int64 // unix time of this process's last report; 0: none yet
	twinRun  atomic.Int32 // reports in a row that replaced another live instance's
	stop     chan struct{}
	done     chan struct{}
}

func newFleetStats(s *Server, client redis.UniversalClient, prefix string, degraded func() bool) *fleetStats {
	f := &fleetStats{s: s, client: client, prefix: prefix, degraded: degraded, instance: rand.Text()[:12],
		stop: make(chan struct{}), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *fleetStats) close() {
	close(f.stop)
	<-f.done
}

func (f *fleetStats) loop() {
	defer close(f.done)
	tick := time.NewTicker(fleetEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f.publish(ctx, time.Now())
		cancel()
		if err != nil {
			f.s.log.Debug("fleet stats: not published", slog.String("error", err.Error()))
		}
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
	}
}

func (f *fleetStats) hashKey(replica string) string { return f.prefix + "stats:" + replica }

// publish writes this replica's totals at now.
func (f *fleetStats) publish(ctx context.Context, now time.Time) error {
	fields := map[string]any{"_replica": f.health(now)}
	for _, r := range f.s.table.Load().sorted {
		if st := r.stats.snapshot(now, f.s.started, false); st != nil && (st.RequestsPerSecond > 0 || st.RejectedPerSecond > 0) {
			calls := math.Round(st.RequestsPerSecond * st.WindowSeconds)
			fields[r.circuit] = fmt.Sprintf("%.0f %.0f %.0f %.1f", calls, math.Round(calls*st.ErrorPercent/100),
				math.Round(st.RejectedPerSecond*st.WindowSeconds), st.WindowSeconds)
		}
	}
	key := f.hashKey(f.s.replica)
	mine := f.lastPub.Load()
	var prev *redis.StringCmd
	cmds, err := f.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		prev = p.HGet(ctx, key, "_replica") // the last report under this name
		p.Del(ctx, key)
		p.HSet(ctx, key, fields)
		p.Expire(ctx, key, fleetTTL)
		p.ZAdd(ctx, f.prefix+"replicas", redis.Z{Score: float64(now.Unix()), Member: f.s.replica})
		p.ZRemRangeByScore(ctx, f.prefix+"replicas", "-inf", strconv.FormatInt(now.Add(-fleetTTL).Unix(), 10))
		return nil
	})
	if errors.Is(err, redis.Nil) { // no report under this name yet: only a later command's error counts
		err = nil
		for _, c := range cmds {
			if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
				err = e
				break
			}
		}
	}
	if err == nil {
		f.checkTwin(prev.Val(), mine, now)
		f.lastPub.Store(now.Unix())
	}
	return err
}

// checkTwin looks at the report this one replaced (prev), mine being the
// time of this process's report before: another instance's, written since
// then, means another process publishes under this replica's name. One
// written before may be the last of a process this one replaced, as in a
// restart, and one report in a row may be a brief overlap of the two; two
// in a row is a twin. That is logged at once, then every 10 minutes while
// it lasts.
func (f *fleetStats) checkTwin(prev string, mine int64, now time.Time) {
	v := strings.Fields(prev)
	if len(v) < 3 || v[2] == f.instance || mine == 0 {
		f.twinRun.Store(0)
		return
	}
	if at, err := strconv.ParseInt(v[1], 10, 64); err != nil || at < mine {
		f.twinRun.Store(0)
		return
	}
	if f.twinRun.Add(1) < 2 {
		return
	}
	f.twinAt.Store(now.Unix())
	last := f.twinLog.Load()
	if now.Unix()-last < int64((10*time.Minute).Seconds()) || !f.twinLog.CompareAndSwap(last, now.Unix()) {
		return
	}
	f.s.log.Error("another process reports to the fleet as this replica: give each replica its own name (replica: in the config, or a distinct host name); until then their totals overwrite each other in /api/fleet, and the transitions' replica and decided_by cannot tell them apart",
		slog.String("replica", f.s.replica), slog.String("instance", f.instance), slog.String("other_instance", v[2]))
}

func (f *fleetStats) health(now time.Time) string {
	d := "0"
	if f.degraded != nil && f.degraded() {
		d = "1"
	}
	twin := "0"
	if at := f.twinAt.Load(); at != 0 && now.Sub(time.Unix(at, 0)) <= fleetTTL {
		twin = "1"
	}
	return d + " " + strconv.FormatInt(now.Unix(), 10) + " " + f.instance + " " + twin
}

// ReplicaJSON is a replica of the fleet as GET /api/fleet shows it.
type ReplicaJSON struct {
	Replica string `json:"replica"`
	// Degraded: the replica has lost Redis and breaks on its own counts
	// (as of its last report).
	Degraded bool `json:"degraded"`
	// ReportedSecondsAgo is the age of its last report.
	ReportedSecondsAgo float64 `json:"reported_seconds_ago"`
	// Duplicate: more than one process reports under this name (see its
	// log); the figures are whichever reported last.
	Duplicate bool `json:"duplicate,omitempty"`
	Circuits  int  `json:"circuits_with_traffic"`
}

// FleetCircuitJSON is one circuit's last-minute totals over the fleet.
type FleetCircuitJSON struct {
	RequestsPerSecond float64  `json:"requests_per_second"`
	ErrorPercent      float64  `json:"error_percent"`
	RejectedPerSecond float64  `json:"rejected_per_second"`
	Replicas          []string `json:"replicas"` // those with traffic on it
}

// FleetJSON is GET /api/fleet.
type FleetJSON struct {
	Replica  string                      `json:"replica"` // this one
	Shared   bool                        `json:"shared"`  // false: no Redis, this replica alone
	Replicas []ReplicaJSON               `json:"replicas"`
	Circuits map[string]FleetCircuitJSON `json:"circuits"`
}

// read sums the fleet's reports (of the circuits in names, if not nil).
func (f *fleetStats) read(ctx context.Context, now time.Time, names map[string]bool) (*FleetJSON, error) {
	members, err := f.client.ZRangeByScore(ctx, f.prefix+"replicas", &redis.ZRangeBy{
		Min: strconv.FormatInt(now.Add(-fleetTTL).Unix(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(members))
	_, err = f.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range members {
			cmds[i] = p.HGetAll(ctx, f.hashKey(m))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &FleetJSON{Replica: f.s.replica, Shared: true, Replicas: []ReplicaJSON{}, Circuits: map[string]FleetCircuitJSON{}}
	type sum struct{ calls, failures, rejected, secs float64 }
	sums := map[string]*sum{}
	for i, m := range members {
		h := cmds[i].Val()
		rep := ReplicaJSON{Replica: m}
		v := strings.Fields(h["_replica"]) // degraded, time, and from newer replicas instance and twin
		if len(v) < 2 {
			continue // expired between the two reads
		}
		rep.Degraded = v[0] == "1"
		if t, err := strconv.ParseInt(v[1], 10, 64); err == nil {
			rep.ReportedSecondsAgo = math.Max(0, now.Sub(time.Unix(t, 0)).Seconds())
		}
		rep.Duplicate = len(v) >= 4 && v[3] == "1"
		for name, v := range h {
			if name == "_replica" {
				continue
			}
			rep.Circuits++
			if names != nil && !names[name] {
				continue
			}
			var x sum
			if _, err := fmt.Sscanf(v, "%g %g %g %g", &x.calls, &x.failures, &x.rejected, &x.secs); err != nil || x.secs <= 0 {
				continue
			}
			s := sums[name]
			if s == nil {
				s = &sum{}
				sums[name] = s
			}
			s.calls += x.calls / x.secs
			s.failures += x.failures / x.secs
			s.rejected += x.rejected / x.secs
			c := out.Circuits[name]
			c.Replicas = append(c.Replicas, m)
			out.Circuits[name] = c
		}
		out.Replicas = append(out.Replicas, rep)
	}
	for name, s := range sums {
		c := out.Circuits[name]
		c.RequestsPerSecond, c.RejectedPerSecond = round2(s.calls), round2(s.rejected)
		if s.calls > 0 {
			c.ErrorPercent = round2(100 * s.failures / s.calls)
		}
		sort.Strings(c.Replicas)
		out.Circuits[name] = c
	}
	sort.Slice(out.Replicas, func(i, j int) bool { return out.Replicas[i].Replica < out.Replicas[j].Replica })
	return out, nil
}

// fleet is GET /api/fleet[?name=NAME…]: the replicas and the fleet-wide
// last-minute totals per circuit. Without Redis it is this replica alone.
func (s *Server) fleet(w http.ResponseWriter, r *http.Request) {
	var names map[string]bool
	if ns := r.URL.Query()["name"]; len(ns) > 0 {
		names = map[string]bool{}
		for _, n := range ns {
			names[n] = true
		}
	}
	now := time.Now()
	if s.fleetStats == nil {
		out := &FleetJSON{Replica: s.replica, Replicas: []ReplicaJSON{{Replica: s.replica}}, Circuits: map[string]FleetCircuitJSON{}}
		n := 0
		for _, rt := range s.table.Load().sorted {
			st := rt.stats.snapshot(now, s.started, false)
			if st == nil || st.RequestsPerSecond == 0 && st.RejectedPerSecond == 0 {
				continue
			}
			n++
			if names == nil || names[rt.circuit] {
				out.Circuits[rt.circuit] = FleetCircuitJSON{RequestsPerSecond: st.RequestsPerSecond, ErrorPercent: st.ErrorPercent,
					RejectedPerSecond: st.RejectedPerSecond, Replicas: []string{s.replica}}
			}
		}
		out.Replicas[0].Circuits = n
		writeCompactJSON(w, http.StatusOK, out)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out, err := s.fleetStats.read(ctx, now, names)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "fleet totals unavailable: Redis: " + err.Error(), "replica": s.replica})
		return
	}
	writeCompactJSON(w, http.StatusOK, out)
}
