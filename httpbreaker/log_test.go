package httpbreaker_test

import (
	"io"
	"log/slog"
)

// discardLogger keeps the breakers' transition records out of test output.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))
