package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/mailproxy"
)

// mailRelays runs one mailproxy.Listener per mail circuit of the config.
// Each takes its breaker from the proxy's registry, so a mail circuit is
// shared by the fleet, exported to /metrics and controlled by hand like an
// HTTP one.
type mailRelays struct {
	reg     *breaker.Registry
	log     *slog.Logger
	grace   time.Duration
	running map[string]*mailRelay // by circuit name
	wg      sync.WaitGroup        // Serve and background Shutdown goroutines
}

type mailRelay struct {
	cfg config.Mail
	l   *mailproxy.Listener
	ln  net.Listener
}

// startMail binds and serves every mail circuit of cfg; on error none is
// left running.
func startMail(cfg *config.Config, reg *breaker.Registry, grace time.Duration, log *slog.Logger) (*mailRelays, error) {
	m := &mailRelays{reg: reg, log: log, grace: grace, running: map[string]*mailRelay{}}
	for _, mc := range cfg.Mail {
		if err := m.start(mc); err != nil {
			m.shutdown(context.Background())
			return nil, err
		}
	}
	return m, nil
}

func (m *mailRelays) start(mc config.Mail) error {
	b, err := m.reg.Get(mc.Name)
	if err != nil {
		return fmt.Errorf("mail circuit %s: %w", mc.Name, err)
	}
	l := &mailproxy.Listener{Name: mc.Name, Protocol: mailproxy.Protocol(mc.Protocol), Upstream: mc.Upstream,
		TLSMode: mailproxy.TLSMode(mc.TLS), RootCAs: mc.RootCAs, Breaker: b, ReplyTimeout: mc.Timeout.Duration,
		Logger: m.log.With(slog.String("circuit", mc.Name))}
	if err := l.Validate(); err != nil { // config validation makes this unreachable
		return err
	}
	ln, err := net.Listen("tcp", mc.Listen)
	if err != nil {
		return fmt.Errorf("mail circuit %s: listen: %w", mc.Name, err)
	}
	r := &mailRelay{cfg: mc, l: l, ln: ln}
	m.running[mc.Name] = r
	m.wg.Go(func() {
		// net.ErrClosed: stop closed the socket before Shutdown marked
		// the Listener closed.
		if err := l.Serve(ln); !errors.Is(err, mailproxy.ErrListenerClosed) && !errors.Is(err, net.ErrClosed) {
			m.log.Error("mail listener stopped", slog.String("circuit", mc.Name), slog.String("error", err.Error()))
		}
	})
	return nil
}

// Addrs are the bound addresses of the mail circuits, by name.
func (m *mailRelays) Addrs() map[string]net.Addr {
	if m == nil {
		return nil
	}
	out := map[string]net.Addr{}
	for name, r := range m.running {
		out[name] = r.ln.Addr()
	}
	return out
}

// reload brings the listeners in line with cfg, after the proxy's Reload
// has renewed the registry: a circuit whose entry or breaker changed gets a
// new listener (its breaker's state lives in the registry and carries
// over); sessions of the old one may finish within the grace period. One
// that is no longer configured stops the same way.
func (m *mailRelays) reload(cfg *config.Config) {
	want := map[string]config.Mail{}
	for _, mc := range cfg.Mail {
		want[mc.Name] = mc
	}
	for name, r := range m.running {
		mc, keep := want[name]
		if keep && mc.Equal(r.cfg) {
			if b, _ := m.reg.Lookup(name); b == r.l.Breaker {
				continue
			}
		}
		// Stop every changed listener before binding new ones: two entries
		// may have swapped ports.
		m.stop(r)
		if !keep {
			m.log.Info("mail listener stopped by reload", slog.String("circuit", name))
		}
	}
	for _, mc := range cfg.Mail {
		if _, running := m.running[mc.Name]; running {
			continue
		}
		if err := m.start(mc); err != nil {
			m.log.Error("reload: mail circuit not served", slog.String("circuit", mc.Name), slog.String("error", err.Error()))
			continue
		}
		m.log.Info("mail listener (re)started by reload", slog.String("circuit", mc.Name), slog.String("listen", mc.Listen))
	}
}

// stop closes r's listening socket at once (its port is free on return)
// and lets its sessions finish within the grace period.
func (m *mailRelays) stop(r *mailRelay) {
	delete(m.running, r.cfg.Name)
	_ = r.ln.Close()
	m.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.grace)
		defer cancel()
		_ = r.l.Shutdown(ctx)
	})
}

// shutdown stops every listener and waits for their sessions to end until
// ctx is done, then ends the rest.
func (m *mailRelays) shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range m.running {
		wg.Go(func() { _ = r.l.Shutdown(ctx) })
	}
	wg.Wait()
	m.running = map[string]*mailRelay{}
	m.wg.Wait()
}
