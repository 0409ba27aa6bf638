package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
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
	opts := proxy.Options{Logger: log}
	fleet, err := openFleet(cfg, log)
	if err != nil {
		return err
	}
	if fleet != nil {
		defer fleet.Close()
		opts.Sync = fleet
		opts.Collectors = append(opts.Collectors, newFleetCollector(fleet))
	}
	srv, err := proxy.New(cfg, opts)
	if err != nil {
		return err
	}
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
	source := path
	if source == "" {
		source = "the embedded default config"
	}
	fmt.Fprintf(stdout, "breakerbox: %d circuits from %s\n", len(srv.Circuits()), source)
	fmt.Fprintf(stdout, "proxy:      http://%s/<service>/...  (e.g. http://%s/cloudflare/client/v4/zones)\n", pl.Addr(), pl.Addr())
	fmt.Fprintf(stdout, "dashboard:  http://%s/\n", al.Addr())
	fmt.Fprintf(stdout, "metrics:    http://%s/metrics   api: http://%s/api/circuits\n", al.Addr(), al.Addr())
	if fleet != nil {
		fmt.Fprintf(stdout, "state:      %s, shared by the fleet (this replica: %s)\n", cfg.StateRedacted(), fleet.Replica())
	} else {
		fmt.Fprintf(stdout, "state:      memory (this process only)\n")
	}

	return runServers(ctx, srv, pl, al, path, grace, log)
}

// runServers serves the proxy on pl and the admin API on al until ctx is
// done, then drains in-flight proxy requests for up to grace. SIGHUP reloads
// the config file at path.
func runServers(ctx context.Context, srv *proxy.Server, pl, al net.Listener, path string, grace time.Duration, log *slog.Logger) error {
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	proxySrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	adminSrv := &http.Server{Handler: srv.Admin(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
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
			return err
		case <-hup:
			reload(srv, path, log)
			continue
		case <-ctx.Done():
		}
		break
	}
	log.Info("shutting down: draining in-flight requests", slog.Duration("grace", grace))
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	adminSrv.Close() // event streams never end by themselves
	err := proxySrv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		proxySrv.Close()
		return fmt.Errorf("shutdown: requests still in flight after %v", grace)
	}
	log.Info("stopped")
	return err
}

func reload(srv *proxy.Server, path string, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP: running on the embedded default config; nothing to reload (start with --config FILE)")
		return
	}
	cfg, err := config.Load(path)
	if err == nil {
		if old := srv.Config(); cfg.State != old.State || cfg.Quorum != old.Quorum {
			err = fmt.Errorf("state and quorum cannot change on reload (was %s, quorum %d): restart breakerbox to change them",
				old.StateRedacted(), old.Quorum)
		}
	}
	if err == nil {
		err = srv.Reload(cfg)
	}
	if err != nil {
		log.Error("SIGHUP: config rejected, keeping the old one", slog.String("error", err.Error()))
	}
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
	circuits := 0
	for _, s := range cfg.Services {
		circuits += max(len(s.PerRegion), 1)
	}
	fmt.Fprintf(stdout, "%s: ok: %d services, %d circuits, state %s\n", args[0], len(cfg.Services), circuits, cfg.StateRedacted())
	return nil
}
