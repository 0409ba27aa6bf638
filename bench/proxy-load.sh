#!/usr/bin/env bash
# Load benchmark of the sidecar, side by side in one run, on loopback:
#   breakerbox          this tree's cmd/breakerbox, closed circuit
#   breakerbox-fasthttp the same with listen_engine: fasthttp
#   breakerbox@REV      the same at git revision $BASELINE (optional: the "before")
#   rp+pool             plain httputil.ReverseProxy with a BufferPool (as breakerbox has)
#   rp+pool+tuned       the same with breakerbox's transport settings
#   nginx               nginx proxy_pass, upstream keepalive, 2 workers
#   haproxy             HAProxy, 2 threads, http-reuse always
# all in front of one upstream (nginx answering 206 bytes of JSON; the Go
# helper if nginx is missing). For each target and connection count: req/s,
# CPU seconds per 100k requests (utime+stime deltas of the target's processes
# from /proc/<pid>/stat), vCPU per 1,000 req/s (the same, scaled), p99 at
# full load (wrk's) and at a fixed $RATE req/s (proxyload -mode rate: open
# loop, from when each request was due), peak RSS (VmHWM). Then an open circuit: breakerbox's rejections/s against
# nginx answering a static 503 and nginx proxying to the dead upstream. Then
# many circuits: startup, RSS, /metrics and /api/circuits CPU with $MANY
# services, before and after traffic to every one.
#
# Rounds are interleaved (every target once per round) and the table shows
# the median and the range, because the machine may be shared: compare the
# ratios within one run, not numbers across runs.
#
#   ROUNDS=5 DURATION=10s CONNS="32 256" BASELINE=087cf25 bash bench/proxy-load.sh   # full run
#   DURATION=1s CONNS=8 bash bench/proxy-load.sh                                    # CI smoke
#   MODE=ceiling ROUNDS=3 BASELINE=087cf25 bash bench/proxy-load.sh                  # engine ceilings
#   MODE=reject ROUNDS=5 BASELINE=087cf25 bash bench/proxy-load.sh                   # rejections per server core
#
# MODE=ceiling measures what the HTTP engine alone costs (issue 13): the open
# circuit against servers that only write breakerbox's prebuilt 503 on
# net/http and on fasthttp (proxyload -mode reject) and nginx's static 503;
# the closed circuit against nginx and a minimal fasthttp proxy (proxyload
# -mode fastproxy). It skips rp+pool, HAProxy, the fixed rate and many circuits.
#
# MODE=reject measures the open circuit alone with every server pinned to
# CPU 1 (Go servers then run with GOMAXPROCS 1, nginx with one worker) and
# wrk, one thread, pinned to CPU 0: the answers/s are what one server core
# gives, not what is left of two cores after the load generator took its
# share. The "server CPU" column says whether the core was saturated (100 %);
# where it is not, the load generator was the limit.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-$([ "${MODE:-full}" = ceiling ] && echo 32 || echo 32 256)}
ROUNDS=${ROUNDS:-1}
THREADS=${THREADS:-2}
BASELINE=${BASELINE:-}
MANY=${MANY:-10000}  # 0 skips the many-circuits part
LOAD=${LOAD:-1}      # 0 skips the load parts (only many circuits)
RATE=${RATE:-2000}   # the fixed rate of the p99 column; 0 skips it
MODE=${MODE:-full}   # full | ceiling | reject
if [ "$MODE" != full ]; then RATE=0; MANY=0; fi
on_server=(); on_client=()
if [ "$MODE" = reject ]; then
  [ "$(nproc)" -ge 2 ] || { echo "proxy-load: MODE=reject needs 2 CPUs (the servers on one, wrk on the other)" >&2; exit 1; }
  on_server=(taskset -c 1); on_client=(taskset -c 0); THREADS=1
fi

if ! command -v wrk >/dev/null; then # the load generator is needed; nginx and HAProxy rows are skipped if missing
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; } ||
    { echo "proxy-load: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
fi
have_nginx=1; command -v nginx >/dev/null || have_nginx=0
have_haproxy=1; command -v haproxy >/dev/null || have_haproxy=0

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/proxyload" ./proxyload
(cd .. && go build -o "$tmp/breakerbox" ./cmd/breakerbox)
if [ -n "$BASELINE" ]; then
  mkdir "$tmp/base-src"
  git -C .. archive "$BASELINE" | tar -x -C "$tmp/base-src"
  (cd "$tmp/base-src" && go build -o "$tmp/breakerbox-base" ./cmd/breakerbox)
fi

mapfile -t port < <("$tmp/proxyload" -mode ports -n 19)
up=127.0.0.1:${port[0]}; bb=127.0.0.1:${port[1]}; bbadmin=127.0.0.1:${port[2]}
rpp=127.0.0.1:${port[3]}; rpt=127.0.0.1:${port[4]}; ngx=127.0.0.1:${port[5]}; hap=127.0.0.1:${port[6]}
base=127.0.0.1:${port[7]}; baseadmin=127.0.0.1:${port[8]}; dead=127.0.0.1:${port[9]}
many=127.0.0.1:${port[10]}; manyadmin=127.0.0.1:${port[11]}
fpx=127.0.0.1:${port[12]}; rjn=127.0.0.1:${port[13]}; rjf=127.0.0.1:${port[14]}
bbf=127.0.0.1:${port[15]}; bbfadmin=127.0.0.1:${port[16]}

ngx_common() { # prefix
  cat <<NGINX
pid $1.pid;
error_log $1-error.log;
events { worker_connections 4096; }
NGINX
}
ngx_http_common="access_log off; keepalive_requests 1000000;
  client_body_temp_path $tmp; proxy_temp_path $tmp; fastcgi_temp_path $tmp; uwsgi_temp_path $tmp; scgi_temp_path $tmp;"
body='{"ok":true,"id":"0123456789abcdef","items":['$(printf '{"n":1},%.0s' $(seq 19))'{"n":1}]}'

declare -A pidof # target → pid of its main process
start_bb() { # name binary listen admin [engine]
  cat > "$tmp/$1.yaml" <<YAML
listen: $3
${5:+listen_engine: $5}
admin: $4
services:
  - name: up
    upstream: http://$up
  - name: down
    upstream: http://$dead
    failure_threshold: 1
    open_timeout: 1h
YAML
  "${on_server[@]}" "$2" serve --config "$tmp/$1.yaml" >/dev/null 2>"$tmp/$1.log" & pids+=($!); pidof[$1]=$!
}

if [ $have_nginx = 1 ]; then
  { echo "worker_processes 1;"; ngx_common "$tmp/upstream"
    echo "http { $ngx_http_common server { listen $up; location / { default_type application/json; return 200 '$body'; } } }"; } > "$tmp/upstream.conf"
  nginx -c "$tmp/upstream.conf" -p "$tmp" -g 'daemon off;' & pids+=($!)
else
  echo "(nginx is not installed: the Go helper is the upstream, and the nginx rows are skipped; apt-get install nginx-light)"
  "$tmp/proxyload" -mode upstream -listen "$up" & pids+=($!)
fi
start_bb breakerbox "$tmp/breakerbox" "$bb" "$bbadmin"
start_bb breakerbox-fasthttp "$tmp/breakerbox" "$bbf" "$bbfadmin" fasthttp
[ -n "$BASELINE" ] && start_bb "breakerbox@$BASELINE" "$tmp/breakerbox-base" "$base" "$baseadmin"
# (their logs say "context canceled" for the requests in flight when wrk stops)
if [ "$MODE" = full ]; then
  "$tmp/proxyload" -mode proxy -pool -listen "$rpp" -upstream "http://$up" 2>"$tmp/rp.log" & pids+=($!); pidof[rp+pool]=$!
  "$tmp/proxyload" -mode proxy -pool -tuned -listen "$rpt" -upstream "http://$up" 2>"$tmp/rpt.log" & pids+=($!); pidof[rp+pool+tuned]=$!
fi
[ "$MODE" = ceiling ] && { "$tmp/proxyload" -mode fastproxy -listen "$fpx" -upstream "http://$up" 2>"$tmp/fpx.log" & pids+=($!); pidof["fasthttp proxy"]=$!; }
if [ "$MODE" != full ]; then
  "${on_server[@]}" "$tmp/proxyload" -mode reject -engine net/http -listen "$rjn" 2>"$tmp/rjn.log" & pids+=($!); pidof["net/http static 503"]=$!
  "${on_server[@]}" "$tmp/proxyload" -mode reject -engine fasthttp -listen "$rjf" 2>"$tmp/rjf.log" & pids+=($!); pidof["fasthttp static 503"]=$!
fi
if [ $have_nginx = 1 ]; then
  { echo "worker_processes $([ "$MODE" = reject ] && echo 1 || echo 2);"; ngx_common "$tmp/nginx"
    cat <<NGINX
http {
  $ngx_http_common
  upstream u { server $up; keepalive 512; keepalive_requests 1000000; }
  server {
    listen $ngx;
    location /up/ { proxy_pass http://u/; proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /down/ { proxy_pass http://$dead/; }
    location /static503/ { default_type application/json; return 503 '{"error":"circuit open"}'; }
  }
}
NGINX
  } > "$tmp/nginx.conf"
  "${on_server[@]}" nginx -c "$tmp/nginx.conf" -p "$tmp" -g 'daemon off;' & pids+=($!); pidof[nginx]=$!
fi
if [ $have_haproxy = 1 ] && [ "$MODE" = full ]; then
  cat > "$tmp/haproxy.cfg" <<HAPROXY
global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind $hap
  http-request set-path %[path,regsub(^/up/,/)]
  default_backend be
backend be
  server up $up
HAPROXY
  haproxy -f "$tmp/haproxy.cfg" -db >/dev/null 2>"$tmp/haproxy.log" & pids+=($!); pidof[haproxy]=$!
elif [ $have_haproxy = 0 ]; then
  echo "(haproxy is not installed: its rows are skipped; apt-get install haproxy)"
fi

wait_up() { # url
  for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "proxy-load: nothing answers $1" >&2; exit 1
}
declare -A url
url[breakerbox]=http://$bb/up/ping
url[breakerbox-fasthttp]=http://$bbf/up/ping
[ -n "$BASELINE" ] && url[breakerbox@$BASELINE]=http://$base/up/ping
url[rp+pool]=http://$rpp/up/ping
url[rp+pool+tuned]=http://$rpt/up/ping
[ $have_nginx = 1 ] && url[nginx]=http://$ngx/up/ping
[ $have_haproxy = 1 ] && url[haproxy]=http://$hap/up/ping
targets=(breakerbox breakerbox-fasthttp); [ -n "$BASELINE" ] && targets+=("breakerbox@$BASELINE")
case $MODE in
  ceiling) url["fasthttp proxy"]=http://$fpx/up/ping
    targets+=("fasthttp proxy"); [ $have_nginx = 1 ] && targets+=(nginx) ;;
  reject) ;;
  *) targets+=(rp+pool rp+pool+tuned); [ $have_nginx = 1 ] && targets+=(nginx); [ $have_haproxy = 1 ] && targets+=(haproxy) ;;
esac
wait_up "http://$up/"
for t in "${targets[@]}"; do wait_up "${url[$t]}"; done
[ "$MODE" = reject ] && targets=() # only the open circuit is measured

procs() { echo "$1"; pgrep -P "$1" || true; } # a target's processes: nginx has workers
utsys() { # "utime stime" of pid and its children (clock ticks)
  local u=0 s=0 p f pu ps
  for p in $(procs "$1"); do
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    read -r pu ps < <(awk '{print $12, $13}' <<<"$f")
    u=$((u + pu)); s=$((s + ps))
  done
  echo $u $s
}
ticks() { local u s; read -r u s < <(utsys "$1"); echo $((u + s)); } # total CPU of pid and its children (clock ticks)
hwm() { # peak RSS in MB, summed over the processes
  local kb=0 p
  for p in $(procs "$1"); do kb=$((kb + $(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
  echo $((kb / 1024))
}
hz=$(getconf CLK_TCK)
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}' <<<"$1"; }

results=$tmp/results.tsv
: > "$results"
load() { # kind target url conns pid
  local u0 s0 u1 s1 before after out rps reqs secs p99 errs
  read -r u0 s0 < <(utsys "$5")
  out=$("${on_client[@]}" wrk -t"$THREADS" -c"$4" -d"$DURATION" --latency "$3")
  read -r u1 s1 < <(utsys "$5")
  before=$((u0 + s0)); after=$((u1 + s1))
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  secs=$(awk '/requests in/ {sub(/s,?$/, "", $4); print $4}' <<<"$out")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  errs=$(awk '/Socket errors/ {print}' <<<"$out" | tr -s ' ')
  [ -n "$errs" ] && echo "  ($2 at $4 conns: $errs)" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$4" "$rps" \
    "$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.2f", n ? t / hz / n * 100000 : 0}')" "$p99" \
    "$(awk -v t=$((after - before)) -v hz="$hz" -v s="$secs" 'BEGIN {printf "%.0f", s ? t / hz / s * 100 : 0}')" \
    "$(awk -v t=$((u1 - u0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", n ? t / hz / n * 1e6 : 0}')" \
    "$(awk -v t=$((s1 - s0)) -v hz="$hz" -v n="$reqs" 'BEGIN {printf "%.1f", n ? t / hz / n * 1e6 : 0}')" >> "$results"
}

echo "proxy-load: wrk -t$THREADS -d$DURATION, connections: $CONNS, $ROUNDS interleaved round(s); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); $(go version | awk '{print $3}')$([ $have_nginx = 1 ] && echo ", $(nginx -v 2>&1 | sed 's/.*: //')")$([ $have_haproxy = 1 ] && echo ", HAProxy $(haproxy -v | awk 'NR==1 {print $3}')")"

# Open circuit: one failed request trips "down" (threshold 1, open for 1h).
open_targets=(breakerbox breakerbox-fasthttp); [ -n "$BASELINE" ] && open_targets+=("breakerbox@$BASELINE")
declare -A open_url
open_url[breakerbox]=http://$bb/down/x
open_url[breakerbox-fasthttp]=http://$bbf/down/x
[ -n "$BASELINE" ] && open_url[breakerbox@$BASELINE]=http://$base/down/x
for t in "${open_targets[@]}"; do curl -s -o /dev/null "${open_url[$t]}"; done
if [ "$MODE" != full ]; then
  open_targets+=("net/http static 503" "fasthttp static 503")
  open_url["net/http static 503"]=http://$rjn/down/x; open_url["fasthttp static 503"]=http://$rjf/down/x
fi
if [ $have_nginx = 1 ]; then
  open_targets+=("nginx static 503" "nginx proxy to dead upstream")
  open_url["nginx static 503"]=http://$ngx/static503/x; pidof["nginx static 503"]=${pidof[nginx]}
  open_url["nginx proxy to dead upstream"]=http://$ngx/down/x; pidof["nginx proxy to dead upstream"]=${pidof[nginx]}
fi
open_conns=${CONNS%% *}

[ "$LOAD" = 1 ] || ROUNDS=0
for round in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    for t in "${targets[@]}"; do load closed "$t" "${url[$t]}" "$c" "${pidof[$t]}"; done
  done
  for t in "${open_targets[@]}"; do load open "$t" "${open_url[$t]}" "$open_conns" "${pidof[$t]}"; done
  if [ "$RATE" -gt 0 ]; then
    for t in "${targets[@]}"; do
      read -r _ p99 _ errs < <("$tmp/proxyload" -mode rate -target "${url[$t]}" -rate "$RATE" -duration "$DURATION" -conns "$open_conns")
      [ "$errs" = 0 ] || echo "  ($t at $RATE req/s: $errs errors)" >&2
      printf 'rate\t%s\t%s\t\t\t%s\n' "$t" "$open_conns" "$p99" >> "$results"
    done
  fi
done

median_range() { # column: "median (min–max)" of the values on stdin
  sort -g | awk '{v[NR]=$1} END {if (!NR) exit; m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
    if (NR == 1) printf "%s", v[1]; else printf "%s (%s–%s)", m, v[1], v[NR]}'
}
col() { awk -F'\t' -v k="$1" -v t="$2" -v c="$3" -v i="$4" '$1==k && $2==t && $3==c {print $i}' "$results"; }
med() { col "$@" | sort -g | awk '{v[NR]=$1} END {if (NR) print NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

if [ "$LOAD" = 1 ]; then
if [ ${#targets[@]} -gt 0 ]; then
echo
echo "### Closed circuit (median of $ROUNDS, range in brackets)"
echo
echo "| target | conns | req/s | CPU s per 100k req | vCPU per 1,000 req/s | p99 ms (at full load) | peak RSS MB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in $CONNS; do
  for t in "${targets[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$c" "$(col closed "$t" "$c" 4 | median_range)" \
      "$(col closed "$t" "$c" 5 | median_range)" "$(awk -v v="$(med closed "$t" "$c" 5)" 'BEGIN {printf "%.3f", v / 100}')" \
      "$(col closed "$t" "$c" 6 | median_range)" "$(hwm "${pidof[$t]}")"
  done
done
if [ "$RATE" -gt 0 ]; then
  echo
  echo "p99 at a fixed $RATE req/s over $open_conns connections (ms, median of $ROUNDS): $(for t in "${targets[@]}"; do
    printf '%s %s; ' "$t" "$(col rate "$t" "$open_conns" 6 | median_range)"; done)"
fi
echo
[ "$MODE" = ceiling ] || echo "Ratios to the pooled ReverseProxy (medians): "
[ "$MODE" = ceiling ] || for c in $CONNS; do
  rp_cpu=$(med closed rp+pool "$c" 5)
  for t in "${targets[@]}"; do
    case $t in breakerbox*) ;; *) continue ;; esac
    awk -v t="$t" -v c="$c" -v p="$(med closed "$t" "$c" 5)" -v rp="$rp_cpu" \
      'BEGIN {printf "- %s at %s conns: %.2f× rp+pool'"'"'s CPU per request\n", t, c, p / rp}'
  done
done
if [ $have_nginx = 1 ]; then
  echo
  echo "Ratios to nginx (medians): "
  for c in $CONNS; do
    ng_rps=$(med closed nginx "$c" 4); ng_cpu=$(med closed nginx "$c" 5)
    for t in "${targets[@]}"; do
      [ "$t" = nginx ] && continue
      awk -v t="$t" -v c="$c" -v r="$(med closed "$t" "$c" 4)" -v p="$(med closed "$t" "$c" 5)" -v nr="$ng_rps" -v np="$ng_cpu" \
        'BEGIN {printf "- %s at %s conns: %.2f× nginx'"'"'s req/s, %.2f× its CPU per request\n", t, c, r / nr, np ? p / np : 0}'
    done
  done
fi

fi
echo
echo "### Open circuit at $open_conns connections (median of $ROUNDS)"
echo
echo "| target | answers/s | CPU s per 100k answers | µs in user / kernel per answer | p99 ms | server CPU % |"
echo "|---|---:|---:|---:|---:|---:|"
for t in "${open_targets[@]}"; do
  printf '| %s | %s | %s | %s / %s | %s | %s |\n' "$t" "$(col open "$t" "$open_conns" 4 | median_range)" \
    "$(col open "$t" "$open_conns" 5 | median_range)" "$(med open "$t" "$open_conns" 8)" "$(med open "$t" "$open_conns" 9)" \
    "$(col open "$t" "$open_conns" 6 | median_range)" "$(col open "$t" "$open_conns" 7 | median_range)"
done
if [ -n "$BASELINE" ]; then
  # Each round's ratio too: within a round the two ran about a minute
  # apart, so a drift of the machine between rounds cancels out of it.
  per_round() { # target column: target ÷ baseline, round by round, "median (min–max)"
    paste <(col open "$1" "$open_conns" "$2") <(col open "breakerbox@$BASELINE" "$open_conns" "$2") |
      awk '$2 > 0 {printf "%.2f\n", $1 / $2}' | median_range
  }
  echo
  for t in "${open_targets[@]}"; do
    [ "$t" = "breakerbox@$BASELINE" ] && continue
    awk -v t="$t" -v n="$(med open "$t" "$open_conns" 4)" -v o="$(med open "breakerbox@$BASELINE" "$open_conns" 4)" \
      -v p="$(med open "$t" "$open_conns" 5)" -v q="$(med open "breakerbox@$BASELINE" "$open_conns" 5)" \
      -v r="$(per_round "$t" 4)" -v rc="$(per_round "$t" 5)" \
      'BEGIN {printf "- %s answers %.2f× as many per second as breakerbox@'"$BASELINE"', at %.2f× its CPU per answer (each round'"'"'s two ratios, median and range: %s and %s)\n", t, n / o, p / q, r, rc}'
  done
fi
fi

# Many circuits.
if [ "$MANY" -gt 0 ]; then
  "$tmp/proxyload" -mode config -services "$MANY" -upstream "http://$up" -proxy "$many" -admin "$manyadmin" > "$tmp/many.yaml"
  read -r startup mpid < <("$tmp/proxyload" -mode startup -target "http://$many/svc00000/x" -log "$tmp/many.log" \
    "$tmp/breakerbox" serve --config "$tmp/many.yaml"); pids+=("$mpid")
  startcpu=$(( $(ticks "$mpid") * 1000 / hz )) # CPU spent until then: steadier than the wall time on a busy machine
  rss() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$mpid/status"; }
  rss_start=$(rss)
  scrape() { # path → "ms CPU per scrape, bytes, lines" over 5 scrapes
    local before after size lines
    curl -s "http://$manyadmin$1" > "$tmp/scrape"
    before=$(ticks $mpid)
    for _ in 1 2 3 4 5; do curl -s -o /dev/null "http://$manyadmin$1"; done
    after=$(ticks $mpid)
    size=$(wc -c < "$tmp/scrape"); lines=$(grep -vc '^#' "$tmp/scrape" || true)
    awk -v t=$((after - before)) -v hz="$hz" -v s="$size" -v l="$lines" 'BEGIN {printf "%.0f ms CPU, %.1f MB, %d lines", t / hz / 5 * 1000, s / 1e6, l}'
  }
  page='/api/circuits?view=page&limit=48'
  m0=$(scrape /metrics); a0=$(scrape /api/circuits); p0=$(scrape "$page")
  "$tmp/proxyload" -mode touch -services "$MANY" -target "http://$many"
  m1=$(scrape /metrics); a1=$(scrape /api/circuits); p1=$(scrape "$page")
  echo
  echo "### $MANY circuits (breakerbox serve with $MANY services; CPU per request from /proc, 5 requests each)"
  echo
  echo "- startup (exec to the first proxied answer): $startup ms wall, $startcpu ms CPU; RSS after start: $rss_start MB"
  echo "- before traffic: /metrics $m0; /api/circuits $a0; the dashboard's first page ($page) $p0"
  echo "- after one request to each circuit: /metrics $m1; /api/circuits $a1; the dashboard's first page $p1; RSS $(rss) MB"
fi
