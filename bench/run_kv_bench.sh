#!/usr/bin/env bash
# KV GET throughput of lakemesh::consul::client against wrk, both loading the same nginx that
# serves a Consul-shaped KV answer on loopback (issue 3).
#   bash bench/run_kv_bench.sh
# Environment:
#   KV_BENCH_DURATION  seconds per measurement (default 10)
#   KV_BENCH_ROUNDS    rounds; each runs wrk and lakemesh back to back, in alternating order;
#                      medians are shown (default 5)
#   KV_BENCH_SERVER_CPU / KV_BENCH_CLIENT_CPU  cores for nginx and for the clients (0 / 1)
# Installs nginx-light and wrk when missing (Debian), builds the release lakemesh-bench-kv,
# starts a private nginx in a temp dir and stops it on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

duration="${KV_BENCH_DURATION:-10}"
rounds="${KV_BENCH_ROUNDS:-5}"
server_cpu="${KV_BENCH_SERVER_CPU:-0}"
client_cpu="${KV_BENCH_CLIENT_CPU:-1}"
key="bench/key"

packages=(nginx-light wrk)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    echo "== installing missing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

echo "== building lakemesh-bench-kv (release)"
export CCACHE_BASEDIR="$here" CCACHE_NOHASHDIR=1
cmake --preset release >/dev/null
cmake --build build/release --target lakemesh-bench-kv -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
bench="$here/build/release/bench/lakemesh-bench-kv"

work="$(mktemp -d -t lakemesh-kv-bench.XXXXXX)"
nginx_pid=""
cleanup() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$nginx_pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A free loopback port: bind to 0 and read what the kernel chose.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

# What Consul 1.x answers for GET /v1/kv/bench/key: a one-entry JSON array, value in base64.
value64="$(printf '%s' 'some value of a realistic size for a service config entry' | base64 -w0)"
mkdir -p "$work/logs" "$work/tmp"
chmod 755 "$work"  # nginx workers run as nobody when started by root
printf '[{"LockIndex":0,"Key":"%s","Flags":0,"Value":"%s","CreateIndex":41,"ModifyIndex":42}]' \
    "$key" "$value64" >"$work/kv.json"

cat >"$work/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server_tokens off;
    server {
        listen 127.0.0.1:$port;
        location = /v1/kv/$key {
            default_type application/json;
            add_header X-Consul-Index 42 always;
            add_header X-Consul-Knownleader true always;
            add_header X-Consul-Lastcontact 0 always;
            add_header X-Consul-Default-Acl-Policy allow always;
            add_header Vary "Accept-Encoding" always;
            alias $work/kv.json;
        }
        location / { return 404; }
    }
}
EOF

echo "== starting nginx on 127.0.0.1:$port (core $server_cpu)"
taskset -c "$server_cpu" "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log" &
nginx_pid=$!
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$port/v1/kv/$key" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! curl -fsS "http://127.0.0.1:$port/v1/kv/$key" >/dev/null; then
    echo "nginx did not come up; see $work/logs/error.log" >&2
    cat "$work/logs/error.log" >&2 || true
    exit 1
fi

url="http://127.0.0.1:$port/v1/kv/$key"
run_wrk() {  # connections -> req/s
    taskset -c "$client_cpu" wrk -t1 -c"$1" -d"${duration}s" "$url" |
        awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'
}
run_lakemesh() {  # concurrency -> req/s
    env -u CONSUL_HTTP_SSL taskset -c "$client_cpu" "$bench" --addr "127.0.0.1:$port" --key "$key" \
        --concurrency "$1" --duration "$duration" |
        sed -n 's/.* rps=\([0-9]*\) errors=\([0-9]*\).*/\1 \2/p' |
        awk '{ if ($2 != 0) print "errors=" $2 > "/dev/stderr"; print $1 }'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A samples
for r in $(seq "$rounds"); do
    for c in 1 16; do
        # Alternate which client goes first, so a load change on a shared machine does not
        # always favour the same one.
        if ((r % 2)); then
            w="$(run_wrk "$c")"
            l="$(run_lakemesh "$c")"
        else
            l="$(run_lakemesh "$c")"
            w="$(run_wrk "$c")"
        fi
        ratio="$(awk -v l="$l" -v w="$w" 'BEGIN { printf "%.3f", (w > 0 ? l / w : 0) }')"
        echo "   round $r, $c connection(s): wrk $w req/s, lakemesh $l req/s, ratio $ratio"
        samples[wrk$c]+="$w "
        samples[lm$c]+="$l "
        samples[ratio$c]+="$ratio "
    done
done

echo
echo "KV GET of one key from nginx on 127.0.0.1 (core $server_cpu), client on core $client_cpu,"
echo "${duration} s per run, medians of $rounds rounds (each round runs both clients back to back)"
printf '%-12s %12s %14s %16s %22s %8s\n' connections "wrk req/s" "lakemesh req/s" "ratio of medians" "median per-round ratio" target
for c in 1 16; do
    w="$(echo "${samples[wrk$c]}" | median)"
    l="$(echo "${samples[lm$c]}" | median)"
    rr="$(echo "${samples[ratio$c]}" | median)"
    target=$([ "$c" = 1 ] && echo 0.90 || echo 0.80)
    ratio="$(awk -v l="$l" -v w="$w" 'BEGIN { printf "%.2f", (w > 0 ? l / w : 0) }')"
    printf '%-12s %12s %14s %16s %22s %8s\n' "$c" "$w" "$l" "$ratio" "$rr" ">= $target"
done
