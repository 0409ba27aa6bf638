package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version and revision are set at link time by .ci/build.sh
// (-ldflags "-X main.version=v1.2.3 -X main.revision=abc123"); when empty
// they come from the build info Go records (the module version of a
// `go install ...@v1.2.3`, the VCS revision of a build in a git checkout).
var version, revision string

// buildInfo is what `breakerbox version` prints and breakerbox_build_info
// exports.
type buildInfo struct {
	Version, Revision, GoVersion string
	Modified                     bool // built from a checkout with uncommitted changes
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Revision: revision, GoVersion: "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = info.GoVersion
		if b.Version == "" {
			b.Version = info.Main.Version // "(devel)" for a local build
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Revision == "" {
					b.Revision = s.Value
				}
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	if b.Version == "" {
		b.Version = "(devel)"
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func versionCmd(args []string, stdout io.Writer) error {
	fs := newFlags("version", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	b := readBuildInfo()
	modified := ""
	if b.Modified {
		modified = " (modified)"
	}
	fmt.Fprintf(stdout, "breakerbox %s\nrevision:  %s%s\ngo:        %s\n", b.Version, b.Revision, modified, b.GoVersion)
	return nil
}

// newBuildInfoCollector is breakerbox_build_info{version,revision,goversion} 1,
// the usual way to put the running version on a dashboard and join it to
// other series.
func newBuildInfoCollector() prometheus.Collector {
	b := readBuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "breakerbox_build_info",
		Help:        "Always 1; the labels say which build of breakerbox is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
