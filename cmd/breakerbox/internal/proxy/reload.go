package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// Reload swaps in cfg atomically. A circuit keeps its state through a
// reload: one whose breaker settings changed gets a breaker with the new
// settings that carries the old one's state over (OPEN stays OPEN until its
// deadline, forced states stay forced, a failure streak carries over below
// the new threshold; see breaker.Registry.Renew), and the change is logged
// per circuit. Circuits no longer configured are dropped, each logged with
// the state it had.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	nt, err := newTable(cfg, s.metrics, s.transportFor)
	if err != nil {
		return err
	}
	s.stats.attach(nt)
	old := s.table.Swap(nt) // before Renew: the registry's Configure reads the new table
	var kept, changed, removed int
	for key, or := range old.circuits {
		nr, ok := nt.circuits[key]
		switch {
		case !ok:
			level, state := slog.LevelInfo, "unknown"
			if b, ok := s.registry.Lookup(key); ok {
				state = b.State().String()
				if b.State() != breaker.Closed { // an operator should know what went away
					level = slog.LevelWarn
				}
			}
			s.registry.Remove(key)
			s.metrics.forget(key)
			s.log.Log(context.Background(), level, "circuit removed by reload", slog.String("circuit", key), slog.String("state", state))
			removed++
		case nr.settings != or.settings:
			var before breaker.Snapshot
			if old, ok := s.registry.Lookup(key); ok {
				before = old.Snapshot()
			}
			b, err := s.registry.Renew(key)
			if err != nil { // config validation makes this unreachable
				s.log.Error("reload: circuit keeps its old settings", slog.String("circuit", key), slog.String("error", err.Error()))
				continue
			}
			after := b.Snapshot()
			attrs := []any{slog.String("circuit", key), slog.String("state", after.State.String()),
				slog.String("changed", settingsDiff(or.settings, nr.settings))}
			if after.ConsecutiveFailures != before.ConsecutiveFailures {
				attrs = append(attrs, slog.String("failure_streak", fmt.Sprintf("%d→%d (below the new failure_threshold)",
					before.ConsecutiveFailures, after.ConsecutiveFailures)))
			}
			s.log.Info("circuit reconfigured by reload, state kept", attrs...)
			changed++
		default:
			kept++
		}
	}
	for key := range nt.circuits {
		s.registry.Get(key)
	}
	s.log.Info("config reloaded", slog.Int("circuits_kept", kept), slog.Int("circuits_changed", changed),
		slog.Int("circuits_removed", removed), slog.Int("circuits", len(nt.circuits)))
	return nil
}

// settingsDiff lists what changed between two settings, e.g.
// "failure_threshold 5→3 open_timeout 1m0s→30s".
func settingsDiff(a, b config.Settings) string {
	var d []string
	add := func(name string, x, y any) {
		if x != y {
			d = append(d, fmt.Sprintf("%s %v→%v", name, x, y))
		}
	}
	add("failure_threshold", a.FailureThreshold, b.FailureThreshold)
	add("open_timeout", a.OpenTimeout.Duration, b.OpenTimeout.Duration)
	add("half_open_successes", a.HalfOpenSuccesses, b.HalfOpenSuccesses)
	add("half_open_probes", a.HalfOpenProbes, b.HalfOpenProbes)
	add("probe_timeout", a.ProbeTimeout.Duration, b.ProbeTimeout.Duration)
	add("timeout", a.Timeout.Duration, b.Timeout.Duration)
	return strings.Join(d, " ")
}
