#!/usr/bin/env bash
# The sidecar's instructions per proxied request (or, with MODE=reject, per
# rejection), counted by callgrind: unlike CPU time, the count does not
# depend on what else the machine is doing (repeat runs agree within ~4 %),
# so a change to the data path can be weighed on a busy machine. User space
# only: the kernel's share (most of a rejection's cost) is not counted.
# bench/RESULTS.md, "Proxy engines, fifth round", has a run.
#
#   bash bench/proxy-callgrind.sh [ENGINE] [REV...]   # default: fasthttp, this tree
#   bash bench/proxy-callgrind.sh fasthttp 1ccd302 .
#   bash bench/proxy-callgrind.sh net/http rp+pool .                # against the pooled ReverseProxy
#   MODE=reject bash bench/proxy-callgrind.sh net/http 087cf25 .   # per rejection (open circuit)
#
# For each revision (git revisions are built from `git archive`; "." is the
# working tree) it runs `breakerbox serve` under valgrind --tool=callgrind
# ("rp+pool" runs proxy-load.sh's pooled httputil.ReverseProxy instead:
# proxyload -mode proxy -pool) in front of the Go upstream (proxyload -mode
# upstream) or, with MODE=reject, of a closed port (the first GET opens the
# circuit for an hour), warms it with 200 GETs, then counts the
# instructions of $N GETs over one keep-alive
# connection (curl) and prints the count per request. What the idle sidecar
# does meanwhile (its timers, the Go runtime's monitor) is counted too. The
# sidecar runs with GOMAXPROCS 1: callgrind runs one thread at a time, and
# idle threads spinning for work would be counted as the request's. The
# engine "net/http" writes no listen_engine (revisions before it existed).
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin"
ENGINE=${1:-fasthttp}; shift || true
[ $# -gt 0 ] || set -- .
N=${N:-2000}
MODE=${MODE:-proxy} # proxy | reject
command -v valgrind >/dev/null || { echo "proxy-callgrind: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
command -v curl >/dev/null || { echo "proxy-callgrind: curl is not installed" >&2; exit 1; }

tmp=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/proxyload" ./proxyload
mapfile -t port < <("$tmp/proxyload" -mode ports -n 4)
up=127.0.0.1:${port[0]}; dead=127.0.0.1:${port[3]}; bb=127.0.0.1:${port[1]}; admin=127.0.0.1:${port[2]}
"$tmp/proxyload" -mode upstream -listen "$up" & pids+=($!)
case $MODE in
  proxy) service="upstream: 'http://$up'" ;;
  reject) service="upstream: 'http://$dead', failure_threshold: 1, open_timeout: 1h" ;;
  *) echo "proxy-callgrind: MODE=$MODE: want proxy or reject" >&2; exit 2 ;;
esac
cat > "$tmp/bb.yaml" <<YAML
listen: $bb
$([ "$ENGINE" = net/http ] || echo "listen_engine: $ENGINE")
admin: $admin
services:
  - {name: up, $service}
YAML

wait_up() { for _ in $(seq 600); do curl -so /dev/null "$1" && return; sleep 0.1; done; echo "proxy-callgrind: $1 did not answer" >&2; return 1; }
get() { curl -s $(for _ in $(seq "$1"); do printf -- '-o /dev/null http://%s/up/x ' "$bb"; done); }
instructions() { # command...: Ir of N GETs
  # Go's preemption signals (SIGURG) trip callgrind's signal bookkeeping,
  # and so does any signal that ends the process: the counts are taken
  # with callgrind_control's dumps (each dump starts the count afresh)
  # and the process is killed.
  rm -f "$tmp"/cg.out*
  GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$@" >"$tmp/vg.log" 2>&1 &
  local pid=$!
  wait_up "http://$bb/up/x" || { kill -KILL $pid; tail -20 "$tmp/vg.log" >&2; exit 1; } # any answer: the listener is serving
  get 200 # warm: connections, pools, lazy set-up
  callgrind_control -d $pid >/dev/null 2>&1
  get "$N"
  callgrind_control -d $pid >/dev/null 2>&1
  kill -KILL $pid; wait $pid 2>/dev/null || true
  grep -m1 '^summary:' "$tmp/cg.out.2" | cut -d' ' -f2
}

wait_up "http://$up/"
for rev in "$@"; do
  cmd=("$tmp/bb" serve --config "$tmp/bb.yaml")
  if [ "$rev" = rp+pool ]; then
    [ "$MODE" = proxy ] || { echo "proxy-callgrind: rp+pool has no open circuit (MODE=$MODE)" >&2; exit 2; }
    cmd=("$tmp/proxyload" -mode proxy -pool -listen "$bb" -upstream "http://$up")
  elif [ "$rev" = . ]; then
    (cd .. && go build -o "$tmp/bb" ./cmd/breakerbox)
  else
    rm -rf "$tmp/src"; mkdir "$tmp/src"
    git -C .. archive "$rev" | tar -x -C "$tmp/src"
    (cd "$tmp/src" && go build -o "$tmp/bb" ./cmd/breakerbox)
  fi
  ir=$(instructions "${cmd[@]}")
  [ -n "$ir" ] || { echo "proxy-callgrind: $rev: callgrind wrote no count" >&2; exit 1; }
  echo "$rev ($ENGINE): $(( ir / N )) instructions per request (Ir $ir for $N)"
done
