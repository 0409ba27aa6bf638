package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

func TestLogLevelAndFormatFromFlagsAndEnvironment(t *testing.T) {
	tests := []struct {
		name              string
		env               map[string]string
		args              []string
		wantJSON          bool
		wantLowest        slog.Level
		wantErrorContains string
	}{
		{name: "DefaultsAreTextAtInfo", wantLowest: slog.LevelInfo},
		{name: "FlagsSetFormatAndLevel", args: []string{"--log-format", "json", "--log-level", "debug"}, wantJSON: true, wantLowest: slog.LevelDebug},
		{name: "EnvironmentSetsThem", env: map[string]string{"BREAKERBOX_LOG_FORMAT": "JSON", "BREAKERBOX_LOG_LEVEL": "warn"}, wantJSON: true, wantLowest: slog.LevelWarn},
		{name: "FlagWinsOverEnvironment", env: map[string]string{"BREAKERBOX_LOG_LEVEL": "error"}, args: []string{"--log-level", "info"}, wantLowest: slog.LevelInfo},
		{name: "BadFormatNamesTheFlag", args: []string{"--log-format", "xml"}, wantErrorContains: `--log-format "xml": want text or json`},
		{name: "BadEnvironmentNamesTheVariable", env: map[string]string{"BREAKERBOX_LOG_LEVEL": "loud"}, wantErrorContains: `--log-level "loud": want debug, info, warn or error (flag, or BREAKERBOX_LOG_LEVEL)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"BREAKERBOX_LOG_FORMAT", "BREAKERBOX_LOG_LEVEL"} {
				t.Setenv(k, tt.env[k])
			}
			fs := newFlags("serve", new(bytes.Buffer))
			o := addLogFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			log, err := o.logger(&buf)
			if tt.wantErrorContains != "" {
				if _, usage := err.(usageError); !usage || !strings.Contains(err.Error(), tt.wantErrorContains) {
					t.Fatalf("err = %v, want a usage error saying %q", err, tt.wantErrorContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if !log.Enabled(ctx, tt.wantLowest) || log.Enabled(ctx, tt.wantLowest-1) {
				t.Errorf("lowest level enabled is not %v", tt.wantLowest)
			}
			log.Error("x", "circuit", "a")
			if isJSON := json.Valid(bytes.TrimSpace(buf.Bytes())); isJSON != tt.wantJSON {
				t.Errorf("JSON %v, want %v: %s", isJSON, tt.wantJSON, buf.String())
			}
		})
	}
}

// TestServeLogsItsBannerAsJSON: with --log-format json every line of serve,
// the banner included, is a JSON record, and stdout stays empty.
func TestServeLogsItsBannerAsJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n", freeAddr(t), freeAddr(t))), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := new(syncbuf.Buffer), new(syncbuf.Buffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path, "--log-format", "json"}, stdout, stderr) }()
	waitFor(t, func() bool { return strings.Contains(stderr.String(), `"msg":"breakerbox started"`) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %q", line)
		}
		if rec["msg"] == "breakerbox started" && (rec["circuits"] != 1.0 || !strings.HasPrefix(rec["dashboard"].(string), "http://127.0.0.1:")) {
			t.Errorf("banner record: %v", rec)
		}
	}
	if stdout.String() != "" {
		t.Errorf("stdout: %q", stdout)
	}
}

func TestFleetLinesSayCircuitNotBreaker(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(circuitKey{slog.NewTextHandler(&buf, nil)})
	log.With("component", "redisstate").Warn("ignoring fleet state", "breaker", "genesys/eu-west-1", "err", "x")
	log.With("breaker", "a").Info("y")
	got := buf.String()
	if strings.Contains(got, "breaker=") || !strings.Contains(got, "component=redisstate circuit=genesys/eu-west-1 err=x") || !strings.Contains(got, "msg=y circuit=a") {
		t.Fatalf("%s", got)
	}
}
