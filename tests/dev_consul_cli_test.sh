#!/usr/bin/env bash
# The lakemesh-dev-consul program: prints its address, answers HTTP, stops cleanly on SIGINT;
# takes Consul's script-check settings (-hcl, -enable-script-checks) and refuses other HCL.
set -euo pipefail
bin="$1"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# Only the script-check settings of -hcl are understood; anything else is refused, exit 1.
if "$bin" -dev -http-port 0 -hcl 'ui = true' >"$out" 2>&1; then
    echo "unsupported -hcl accepted"; cat "$out"; exit 1
fi
grep -q 'supports only enable_script_checks and enable_local_script_checks, not "ui"' "$out" || {
    echo "no clear -hcl error"; cat "$out"; exit 1
}
if "$bin" -dev -http-port 0 -enable-script-checks=maybe >"$out" 2>&1; then
    echo "bad -enable-script-checks value accepted"; exit 1
fi

"$bin" -dev -http-port 0 -node cli-test -hcl 'enable_script_checks = true' >"$out" 2>&1 &
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

# With enable_script_checks, a script check registers (a dev agent without it answers 500).
body='{"Name":"cli-script","Args":["true"],"Interval":"10s"}'
exec 3<>"/dev/tcp/$host/$port"
printf 'PUT /v1/agent/check/register HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' \
    "${#body}" "$body" >&3
reply="$(cat <&3)"
exec 3<&-
echo "$reply" | head -1 | grep -q "200 OK" || { echo "script check refused: $reply"; exit 1; }
grep -q "cli-test" "$out" || { echo "node name not printed"; exit 1; }
kill -INT "$pid"
wait "$pid"
rc=$?
[ "$rc" -eq 0 ] || { echo "exit code $rc after SIGINT"; exit 1; }
grep -q "dev agent stopped" "$out" || { echo "no clean stop message"; cat "$out"; exit 1; }
echo "dev agent CLI ok"
