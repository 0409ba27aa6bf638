package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// logOptions are serve's --log-format and --log-level, whose defaults come
// from BREAKERBOX_LOG_FORMAT and BREAKERBOX_LOG_LEVEL (a flag wins over its
// variable).
type logOptions struct {
	format, level string
}

func addLogFlags(fs *flags) *logOptions {
	o := &logOptions{}
	fs.StringVar(&o.format, "log-format", envOr("BREAKERBOX_LOG_FORMAT", "text"), "log format: text or json (env BREAKERBOX_LOG_FORMAT)")
	fs.StringVar(&o.level, "log-level", envOr("BREAKERBOX_LOG_LEVEL", "info"), "lowest level logged: debug, info, warn or error (env BREAKERBOX_LOG_LEVEL)")
	return o
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// logger builds the process's logger writing to w.
func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(o.level) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error (flag, or BREAKERBOX_LOG_LEVEL)", o.level)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(o.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json (flag, or BREAKERBOX_LOG_FORMAT)", o.format)}
}
