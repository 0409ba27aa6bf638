#!/usr/bin/env bash
# Runs the side-by-side benchmarks and prints a benchstat table (libraries as
# columns) and the ratio summary (how many times faster breakerbox is).
#
#   ./run.sh                  # COUNT=6, -cpu 1,2, 1s per benchmark
#   COUNT=10 CPU=1,2,4 BENCHTIME=2s BENCH=ClosedSuccess ./run.sh
#   OUT=results.txt ./run.sh  # where the raw `go test` output goes
#
# The raw output is kept in $OUT so that benchstat can be rerun on it, e.g.
# against a later run: benchstat old.txt new.txt.
set -euo pipefail
cd "$(dirname "$0")"

COUNT=${COUNT:-6}
CPU=${CPU:-1,2}
BENCHTIME=${BENCHTIME:-1s}
BENCH=${BENCH:-.}
OUT=${OUT:-results.txt}
# benchstat from golang.org/x/perf, pinned; fetched through the Go module proxy.
BENCHSTAT=${BENCHSTAT:-golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da}
GO=${GO:-go}

echo "# $($GO version); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')" >&2
echo "# go test -run '^\$' -bench '$BENCH' -benchmem -count $COUNT -cpu $CPU -benchtime $BENCHTIME > $OUT" >&2
$GO test -run '^$' -bench "$BENCH" -benchmem -count "$COUNT" -cpu "$CPU" -benchtime "$BENCHTIME" . > "$OUT"

echo
echo "## benchstat (columns: libraries; rows: scenario and GOMAXPROCS; deltas vs breakerbox)"
echo
$GO run "$BENCHSTAT" -col '/lib@(breakerbox baseline gobreaker failsafe eapache rubyist)' "$OUT"
echo
echo "## breakerbox vs the others"
echo
$GO run ./cmd/ratios "$OUT"
