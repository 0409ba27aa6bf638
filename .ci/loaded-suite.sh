#!/usr/bin/env bash
# The suite on a loaded machine: runs the README's test command RUNS times in
# a row (default 5) while a second copy of the same suite runs in a loop at
# the same time, then prints each run's wall time and result. Every run must
# pass: no test may depend on how busy the machine is.
#
#   bash .ci/loaded-suite.sh            # 5 runs
#   RUNS=2 bash .ci/loaded-suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
runs=${RUNS:-5}
logs=$(mktemp -d)
every=$(for m in $(go list -m -f '{{.Dir}}'); do printf '%s/... ' "$m"; done)

# The load: the same suite, again and again, in a process group of its own
# so that it can be stopped whole when the measured runs end.
setsid bash -c '
  i=0
  while :; do
    i=$((i + 1))
    go test -race -count=1 '"$every"' >"'"$logs"'/load-$i.log" 2>&1
    echo "load run $i: exit $?" >>"'"$logs"'/load.txt"
  done' &
load=$!
trap 'kill -- -$load 2>/dev/null' EXIT

failed=0
for i in $(seq "$runs"); do
  start=$(date +%s)
  go test -race -count=1 $every >"$logs/run-$i.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then
    echo "run $i: ok in ${secs}s"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED in ${secs}s (log: $logs/run-$i.log)"
    grep -E '^(--- FAIL|FAIL|panic:)' "$logs/run-$i.log" | head -20
  fi
done
kill -- -$load 2>/dev/null
echo "load: $(cat "$logs/load.txt" 2>/dev/null | tr '\n' ';')"
grep -hE '^(--- FAIL|FAIL)' "$logs"/load-*.log 2>/dev/null | sort | uniq -c | head -20
echo "$runs runs: $((runs - failed)) passed, $failed failed (logs in $logs)"
[ $failed -eq 0 ]
