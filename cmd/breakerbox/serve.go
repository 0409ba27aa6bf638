package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/redisstate"
	"github.com/breakerbox/breakerbox/redisstate/redisstateprom"
)

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stdout)
	path := fs.String("config", "", "config file (YAML); the embedded default when empty")
	grace := fs.Duration("grace", 10*time.Second, "how long in-flight requests may take to finish on shutdown")
	logOpts := addLogFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logOpts.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, *path, *grace, log)
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// serve runs the proxy and admin listeners until ctx is done, then drains.
// SIGHUP reloads the config file.
func serve(ctx context.Context, cfg *config.Config, path string, grace time.Duration, log *slog.Logger) error {
	opts := proxy.Options{Logger: log, Replica: cfg.Replica, Collectors: []prometheus.Collector{newBuildInfoCollector()}}
	var describer failureDescriber
	fleet, err := openFleet(ctx, cfg, log, describer.describe)
	if err != nil {
		return err
	}
	if fleet != nil {
		defer fleet.Close()
		opts.Sync = fleet
		opts.Collectors = append(opts.Collectors, redisstateprom.NewCollector(fleet))
		defer shareWithFleet(cfg, fleet, &opts)()
	}
	srv, err := proxy.New(cfg, opts)
	if err != nil {
		return err
	}
	describer.srv.Store(srv)
	defer srv.Close()
	stopOTLP, err := startOTLP(srv.Registry(), log)
	if err != nil {
		return err
	}
	defer stopOTLP()
	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	al, err := net.Listen("tcp", cfg.Admin)
	if err != nil {
		pl.Close()
		return fmt.Errorf("admin: %w", err)
	}
	mail, err := startMail(cfg, srv.Registry(), grace, log)
	if err != nil {
		pl.Close()
		al.Close()
		return err
	}
	if w := fdWarning(cfg.Limits); w != "" {
		cfg.Warnings = append(cfg.Warnings, w)
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	logBanner(log, cfg, path, srv, pl.Addr(), al.Addr(), fleet, mail)
	return runServers(ctx, srv, pl, al, mail, path, grace, log)
}

// runServers serves the proxy on pl and the admin API on al until ctx is
// done, then drains in-flight proxy requests and mail sessions for up to
// grace. SIGHUP reloads the config file at path. Each listener gets the
// config's limits: its own connection cap and timeouts. mail, if not nil,
// are the mail listeners, already serving.
func runServers(ctx context.Context, srv *proxy.Server, pl, al net.Listener, mail *mailRelays, path string, grace time.Duration, log *slog.Logger) error {
	if mail == nil {
		mail = &mailRelays{reg: srv.Registry(), log: log, grace: grace, running: map[string]*mailRelay{}}
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	lim := srv.Config().Limits
	proxySrv, pl := limitedProxy(srv, pl, lim.Proxy, errLog)
	adminSrv, al := limitedServer(srv.Admin(), al, lim.Admin, errLog)
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	go func() { errc <- adminSrv.Serve(al) }()
	srv.Health().SetReady(true)        // both listeners are bound and served: /readyz says so
	defer srv.Health().SetReady(false) // on shutdown or a failed listener

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case err := <-errc:
			proxySrv.Close()
			adminSrv.Close()
			now, cancel := context.WithCancel(context.Background())
			cancel() // a listener failed: end the sessions at once
			mail.shutdown(now)
			return err
		case <-hup:
			if cfg := reload(srv, path, log); cfg != nil {
				mail.reload(cfg)
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	log.Info("shutting down: draining in-flight requests", slog.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	adminSrv.Close() // event streams never end by themselves
	mailDone := make(chan struct{})
	go func() {
		defer close(mailDone)
		mail.shutdown(sctx)
	}()
	err := proxySrv.Shutdown(sctx)
	<-mailDone
	if errors.Is(err, context.DeadlineExceeded) {
		proxySrv.Close()
		return fmt.Errorf("shutdown: requests still in flight after %v", grace)
	}
	log.Info("stopped")
	return err
}

// reload applies the config file at path to srv, and returns it; nil when
// it was rejected (logged) and the old one stays.
func reload(srv *proxy.Server, path string, log *slog.Logger) *config.Config {
	if path == "" {
		log.Warn("SIGHUP: running on the embedded default config; nothing to reload (start with --config FILE)")
		return nil
	}
	cfg, err := config.Load(path)
	if err == nil {
		err = restartOnly(srv.Config(), cfg)
	}
	if err == nil {
		err = srv.Reload(cfg)
	}
	srv.Health().Reloaded(err)
	if err != nil {
		log.Error("SIGHUP: config rejected, keeping the old one", slog.String("error", err.Error()))
		return nil
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	return cfg
}

// restartOnly refuses a reload that changes what only a restart can: the
// shared state, the listeners and their limits (the event-stream cap, read
// per request, may change).
func restartOnly(old, cfg *config.Config) error {
	if cfg.State != old.State || !cfg.Redis.Equal(old.Redis) || cfg.Quorum != old.Quorum {
		return fmt.Errorf("state and quorum cannot change on reload (was %s, quorum %d): restart breakerbox to change them",
			old.StateRedacted(), old.Quorum)
	}
	if cfg.Listen != old.Listen || cfg.Admin != old.Admin || cfg.ListenEngine != old.ListenEngine {
		return fmt.Errorf("listen, listen_engine and admin cannot change on reload (was %s on %s and %s): restart breakerbox to change them",
			old.Listen, old.ListenEngine, old.Admin)
	}
	a, b := old.Limits, cfg.Limits
	a.Admin.MaxEventStreams, b.Admin.MaxEventStreams = 0, 0
	if a != b {
		return errors.New("limits (other than limits.admin.max_event_streams) cannot change on reload: restart breakerbox to change them")
	}
	return nil
}

func checkConfigCmd(args []string, stdout io.Writer) error {
	args, err := parseArgs(newFlags("check-config", stdout), args)
	if err != nil {
		return err
	}
	if len(args) != 1 {
		return usageError{"check-config: want exactly one FILE"}
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return err
	}
	if err := checkFleet(cfg); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	if err := checkListeners(cfg); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	circuits := len(cfg.Mail)
	for _, s := range cfg.Services {
		circuits += max(len(s.PerRegion), 1)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stdout, "%s: warning: %s\n", args[0], w)
	}
	fmt.Fprintf(stdout, "%s: ok: %d services, %d circuits, state %s\n", args[0], len(cfg.Services)+len(cfg.Mail), circuits, cfg.StateRedacted())
	return nil
}

// checkListeners binds listen, then admin beside it: names that validation
// does not resolve (admin: myhost:P beside listen: 127.0.0.1:P) must not
// make serve fail to start. If listen cannot be bound here (breakerbox is
// already running, or the address belongs to another host) there is
// nothing to compare.
func checkListeners(cfg *config.Config) error {
	pl, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil
	}
	defer pl.Close()
	al, err := net.Listen("tcp", cfg.Admin)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("admin: %s is the same socket as listen: %s: give the admin listener its own port", cfg.Admin, cfg.Listen)
	}
	if err == nil {
		al.Close()
	}
	return nil
}

// logBanner tells where everything is, through the log like every other
// line (JSON with --log-format json). The example proxy URL uses a
// configured service; the state says whether the fleet is reachable. The
// config's warnings were logged just before.
func logBanner(log *slog.Logger, cfg *config.Config, path string, srv *proxy.Server, pa, aa net.Addr, fleet *redisstate.Fleet, mail *mailRelays) {
	source := path
	if source == "" {
		source = "the embedded default config"
	}
	example := cfg.Services[0].Name + "/"
	if rs := cfg.Services[0].Regions(); len(rs) > 0 {
		example += rs[0] + "/"
	}
	attrs := []any{
		slog.Int("circuits", srv.CircuitCount()) /* not len(srv.Circuits()): 10,000 snapshots cost 0.1–0.2 s of start-up */, slog.String("config", source),
		slog.String("proxy", fmt.Sprintf("http://%s/<service>/...", pa)), slog.String("engine", cfg.ListenEngine),
		slog.String("example", fmt.Sprintf("http://%s/%s...", pa, example)),
		slog.String("dashboard", fmt.Sprintf("http://%s/", aa)), slog.String("metrics", fmt.Sprintf("http://%s/metrics", aa)),
		slog.String("api", fmt.Sprintf("http://%s/api/circuits", aa)),
	}
	switch {
	case fleet == nil:
		log.Info("breakerbox started", append(attrs, slog.String("state", "memory (this process only)"))...)
	case fleet.Stats().Degradations > 0: // Redis did not answer at start (the fleet is "degraded" until it subscribes, answered or not)
		log.Warn("breakerbox started: state "+cfg.StateRedacted()+" UNREACHABLE, deciding on local counts until it answers",
			append(attrs, slog.String("state", cfg.StateRedacted()), slog.String("replica", fleet.Replica()))...)
	default:
		log.Info("breakerbox started: state shared by the fleet",
			append(attrs, slog.String("state", cfg.StateRedacted()), slog.String("replica", fleet.Replica()))...)
	}
	addrs := mail.Addrs()
	for _, mc := range cfg.Mail {
		log.Info("mail listener", slog.String("circuit", mc.Name), slog.String("protocol", mc.Protocol),
			slog.String("listen", addrs[mc.Name].String()), slog.String("upstream", mc.Upstream), slog.String("tls", mc.TLS))
	}
}
