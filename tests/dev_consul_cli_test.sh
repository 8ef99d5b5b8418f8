#!/usr/bin/env bash
# The lakemesh-dev-consul program: prints its address, answers HTTP, stops cleanly on SIGINT.
set -euo pipefail
bin="$1"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
"$bin" -dev -http-port 0 -node cli-test >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    grep -q "HTTP API:" "$out" && break
    sleep 0.05
done
url="$(sed -n 's/.*HTTP API: http:\/\/\(.*\)$/\1/p' "$out")"
[ -n "$url" ] || { echo "no address printed"; cat "$out"; exit 1; }
host="${url%:*}"
port="${url##*:}"
exec 3<>"/dev/tcp/$host/$port"
printf 'GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
reply="$(cat <&3)"
exec 3<&-
echo "$reply" | head -1 | grep -q "200 OK" || { echo "bad reply: $reply"; exit 1; }
grep -q "cli-test" "$out" || { echo "node name not printed"; exit 1; }
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || { echo "exit code $rc after SIGINT"; exit 1; }
grep -q "dev agent stopped" "$out" || { echo "no clean stop message"; cat "$out"; exit 1; }
echo "dev agent CLI ok"
