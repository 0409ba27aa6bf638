package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/redisstate"
)

func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config file (YAML); the embedded default when empty")
	grace := fs.Duration("grace", 10*time.Second, "how long in-flight requests may take to finish on shutdown")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	return serve(ctx, cfg, *path, *grace, log, stdout)
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// serve runs the proxy and admin listeners until ctx is done, then drains.
// SIGHUP reloads the config file.
func serve(ctx context.Context, cfg *config.Config, path string, grace time.Duration, log *slog.Logger, stdout io.Writer) error {
	opts := proxy.Options{Logger: log, Replica: cfg.Replica}
	fleet, err := openFleet(cfg, log)
	if err != nil {
		return err
	}
	if fleet != nil {
		defer fleet.Close()
		opts.Sync = fleet
		opts.Collectors = append(opts.Collectors, newFleetCollector(fleet))
		closeShared, err := shareWithFleet(cfg, fleet, &opts)
		if err != nil {
			return err
		}
		defer closeShared()
	}
	srv, err := proxy.New(cfg, opts)
	if err != nil {
		return err
	}
	defer srv.Close()
	stopOTLP, err := startOTLP(srv.Registry(), log, stdout)
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
	printBanner(stdout, cfg, path, srv, pl.Addr(), al.Addr(), fleet, mail)
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
	proxySrv, pl := limitedServer(proxyDeadlines(srv, lim.Proxy), pl, lim.Proxy, errLog)
	adminSrv, al := limitedServer(srv.Admin(), al, lim.Admin, errLog)
	errc := make(chan error, 2)
	go func() { errc <- proxySrv.Serve(pl) }()
	go func() { errc <- adminSrv.Serve(al) }()

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
	if cfg.State != old.State || cfg.Quorum != old.Quorum {
		return fmt.Errorf("state and quorum cannot change on reload (was %s, quorum %d): restart breakerbox to change them",
			old.StateRedacted(), old.Quorum)
	}
	if cfg.Listen != old.Listen || cfg.Admin != old.Admin {
		return fmt.Errorf("listen and admin cannot change on reload (was %s and %s): restart breakerbox to change them", old.Listen, old.Admin)
	}
	a, b := old.Limits, cfg.Limits
	a.Admin.MaxEventStreams, b.Admin.MaxEventStreams = 0, 0
	if a != b {
		return errors.New("limits (other than limits.admin.max_event_streams) cannot change on reload: restart breakerbox to change them")
	}
	return nil
}

func checkConfigCmd(args []string, stdout io.Writer) error {
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

// printBanner tells where everything is. The example proxy URL uses a
// configured service; the state line says whether the fleet is reachable.
func printBanner(w io.Writer, cfg *config.Config, path string, srv *proxy.Server, pa, aa net.Addr, fleet *redisstate.Fleet, mail *mailRelays) {
	source := path
	if source == "" {
		source = "the embedded default config"
	}
	example := cfg.Services[0].Name + "/"
	if rs := cfg.Services[0].Regions(); len(rs) > 0 {
		example += rs[0] + "/"
	}
	fmt.Fprintf(w, "breakerbox: %d circuits from %s\n", len(srv.Circuits()), source)
	fmt.Fprintf(w, "proxy:      http://%s/<service>/...  (e.g. http://%s/%s...)\n", pa, pa, example)
	fmt.Fprintf(w, "dashboard:  http://%s/\n", aa)
	fmt.Fprintf(w, "metrics:    http://%s/metrics   api: http://%s/api/circuits\n", aa, aa)
	addrs := mail.Addrs()
	for _, mc := range cfg.Mail {
		fmt.Fprintf(w, "mail:       %s %s → %s (tls: %s)\n", mc.Protocol, addrs[mc.Name], mc.Upstream, mc.TLS)
	}
	switch {
	case fleet == nil:
		fmt.Fprintf(w, "state:      memory (this process only)\n")
	case fleet.Stats().Degradations > 0: // Redis did not answer at start (the fleet is "degraded" until it subscribes, answered or not)
		fmt.Fprintf(w, "state:      %s UNREACHABLE: deciding on local counts until it answers (this replica: %s)\n",
			cfg.StateRedacted(), fleet.Replica())
	default:
		fmt.Fprintf(w, "state:      %s, shared by the fleet (this replica: %s)\n", cfg.StateRedacted(), fleet.Replica())
	}
	for _, warning := range cfg.Warnings {
		fmt.Fprintf(w, "WARNING:    %s\n", warning)
	}
}
