#!/usr/bin/env bash
# Load benchmark of the sidecar against one local upstream, side by side:
#   direct            wrk → upstream
#   reverseproxy      wrk → plain net/http/httputil.ReverseProxy → upstream
#   reverseproxy+pool the same with a BufferPool (as breakerbox has): like for like
#   breakerbox        wrk → breakerbox (closed circuit) → upstream
#   nginx             wrk → nginx proxy_pass (keepalive) → upstream
# Prints requests/s and p50/p99 latency as a Markdown table. Loopback only.
#   DURATION=10s CONNS=32 THREADS=2 bash bench/proxy-load.sh
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18081}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

up=127.0.0.1:$BASE; rp=127.0.0.1:$((BASE+1)); bb=127.0.0.1:$((BASE+2)); bbadmin=127.0.0.1:$((BASE+3)); ngx=127.0.0.1:$((BASE+4)); rpp=127.0.0.1:$((BASE+5))
go build -o "$tmp/proxyload" ./proxyload
(cd .. && go build -o "$tmp/breakerbox" ./cmd/breakerbox)

"$tmp/proxyload" -mode upstream -listen "$up" & pids+=($!)
"$tmp/proxyload" -mode proxy -listen "$rp" -upstream "http://$up" & pids+=($!)
"$tmp/proxyload" -mode proxy -pool -listen "$rpp" -upstream "http://$up" & pids+=($!)
cat > "$tmp/bb.yaml" <<YAML
listen: $bb
admin: $bbadmin
services:
  - name: up
    upstream: http://$up
YAML
"$tmp/breakerbox" serve --config "$tmp/bb.yaml" >/dev/null 2>"$tmp/bb.log" & pids+=($!)
mkdir -p "$tmp/nginx"
cat > "$tmp/nginx.conf" <<NGINX
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx; proxy_temp_path $tmp/nginx; fastcgi_temp_path $tmp/nginx;
  uwsgi_temp_path $tmp/nginx; scgi_temp_path $tmp/nginx;
  upstream u { server $up; keepalive 256; }
  server {
    listen $ngx;
    location /up/ { proxy_pass http://u/; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$tmp/nginx.conf" -p "$tmp" -g 'daemon off;' & pids+=($!)

for addr in "$up" "$rp" "$rpp" "$bb" "$ngx"; do
  for i in $(seq 100); do curl -fs -o /dev/null "http://$addr/up/ping" 2>/dev/null && break; [ "$addr" = "$up" ] && curl -fs -o /dev/null "http://$addr/ping" && break; sleep 0.1; done
done

run() { # name url
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '| %s | %s | %s | %s | %s |\n' "$1" "$rps" "$p50" "$p99" "${errs:-none}"
}
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) CPUs, $(go version | awk '{print $3}'), $(nginx -v 2>&1 | sed 's/.*: //')"
echo
echo "| target | requests/s | p50 | p99 | errors |"
echo "|---|---:|---:|---:|---|"
run direct "http://$up/ping"
run reverseproxy "http://$rp/up/ping"
run reverseproxy+pool "http://$rpp/up/ping"
run breakerbox "http://$bb/up/ping"
run nginx "http://$ngx/up/ping"
