#!/usr/bin/env bash
# The real-agent leg: the integration suite against HashiCorp Consul itself.
#
#   bash tests/real_consul/leg.sh BUILD_PRESET
#
# 1. every integration test against one `consul agent -dev` (the tests that stop or restart the
#    agent skip there);
# 2. the tests that need the agent to themselves, one at a time: those that stop or restart it
#    (suites *_agent_restart, which drive it through LAKEMESH_CONSUL_CONTROL) and those that
#    disturb every other user of it, e.g. node maintenance (suites *_exclusive), against one
#    server with a data dir;
# 3. the session, health and partition tests against a three-server cluster, then again after
#    the cluster's leader was killed with SIGKILL.
#
# The Consul binary: $LAKEMESH_CONSUL_BIN, else the xz-compressed build in ../shared/consul/
# beside this checkout (or beside the repository it was cloned from), else `consul` on PATH.
# Without one the leg is skipped with one line, unless LAKEMESH_REQUIRE_REAL_CONSUL=1 (CI).
set -uo pipefail

preset="${1:-debug}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"
work="$here/build/real-consul"
mkdir -p "$work"
# dev.sh's summary of the whole run, or one of this leg's own.
summary="${LAKEMESH_CI_SUMMARY:-$work/summary.txt}"
[ -n "${LAKEMESH_CI_SUMMARY:-}" ] || : >"$summary"
die() {
    echo "== real Consul leg: FAILED, $1" >&2
    echo "FAILED   real Consul leg: $1" >>"$summary"
    exit 1
}

find_consul() {
    if [ -n "${LAKEMESH_CONSUL_BIN:-}" ]; then
        echo "$LAKEMESH_CONSUL_BIN"
        return
    fi
    local roots=("$here/..")
    local origin
    origin=$(git -C "$here" config --get remote.origin.url 2>/dev/null || true)
    if [ -n "$origin" ] && [ -d "$origin" ]; then
        roots+=("$(cd "$origin" && pwd)/..")
    fi
    local r xz
    for r in "${roots[@]}"; do
        for xz in "$r"/shared/consul/consul-*-linux-amd64.xz; do
            [ -f "$xz" ] || continue
            if [ ! -x "$work/consul" ] || [ "$xz" -nt "$work/consul" ]; then
                xz -dc "$xz" >"$work/consul.tmp" && chmod +x "$work/consul.tmp" &&
                    mv "$work/consul.tmp" "$work/consul"
            fi
            echo "$work/consul"
            return
        done
    done
    command -v consul || true
}

consul_bin=$(find_consul)
if [ -z "$consul_bin" ]; then
    if [ "${LAKEMESH_REQUIRE_REAL_CONSUL:-0}" = 1 ]; then
        die "no Consul binary (../shared/consul, LAKEMESH_CONSUL_BIN or PATH)"
    fi
    echo "== real Consul leg skipped: no ../shared/consul beside this checkout, no LAKEMESH_CONSUL_BIN, no consul on PATH"
    exit 0
fi
echo "== real Consul leg: $("$consul_bin" version | head -1) from $consul_bin"

state="$work/state"
agent=(bash "$here/tests/real_consul/agent.sh" "$state")
cleanup() { "${agent[@]}" stop-all >/dev/null 2>&1 || true; }
trap cleanup EXIT
rm -rf "$state"
"${agent[@]}" init "$consul_bin" || die "agent.sh init"

failed=0
run_ctest() { bash "$here/cmake/ctest_leg.sh" "$summary" "$1" "$preset" "${@:2}"; }
restart_suites='_(agent_restart|exclusive)\.'
# The parts that hold sessions, run health checks or own partitions.
cluster_tests='^(session|client_session|health|health_test|health_scheduler_test|checks|txn|partition[a-z_]*)\.'

echo "== real Consul leg 1/3: every integration test against one -dev agent"
"${agent[@]}" start-dev || die "the -dev agent did not start"
CONSUL_HTTP_ADDR="$("${agent[@]}" http 1)" run_ctest "real Consul 1/3 (-dev agent)" \
    -L integration -E "$restart_suites" || failed=1
"${agent[@]}" stop-all

echo "== real Consul leg 2/3: the tests that need the agent to themselves, one at a time"
"${agent[@]}" start-server || die "the server with a data dir did not start"
CONSUL_HTTP_ADDR="$("${agent[@]}" http 1)" LAKEMESH_CONSUL_CONTROL="${agent[*]}" \
    run_ctest "real Consul 2/3 (agent to themselves)" -R "$restart_suites" -j 1 || failed=1
"${agent[@]}" stop-all

echo "== real Consul leg 3/3: sessions, health and partitions against a three-server cluster"
"${agent[@]}" start-cluster || die "the three-server cluster did not start"
CONSUL_HTTP_ADDR="$("${agent[@]}" http 1)" run_ctest "real Consul 3/3 (three-server cluster)" \
    -R "$cluster_tests" || failed=1
leader=$("${agent[@]}" leader)
survivor=1
[ "$leader" = 1 ] && survivor=2
survivor_http="$("${agent[@]}" http "$survivor")"
old_leader=$(curl -sf "http://$survivor_http/v1/status/leader" || true)
echo "== killing the cluster's leader (server $leader) with SIGKILL"
"${agent[@]}" kill "$leader"
"${agent[@]}" wait-ready "$survivor" || die "no survivor answered after the leader was killed"
# For a second or two after the kill the survivors still name the dead leader, and the election
# that follows stalls every write and session renew: tests started then measure the election,
# not the library (their nodes self-fence as designed). Wait for a new leader that accepts a
# write; the tests then run against the cluster as it is after losing a server.
deadline=$((SECONDS + 60))
until now_leader=$(curl -sf "http://$survivor_http/v1/status/leader") &&
    [ -n "$now_leader" ] && [ "$now_leader" != '""' ] && [ "$now_leader" != "$old_leader" ] &&
    curl -sf -X PUT --data x "http://$survivor_http/v1/kv/lakemesh-leg/leader-probe" |
    grep -q true; do
    if ((SECONDS >= deadline)); then
        die "no new leader accepting writes 60 s after the kill"
    fi
    sleep 0.2
done
curl -sf -X DELETE "http://$survivor_http/v1/kv/lakemesh-leg/leader-probe" >/dev/null || true
echo "== new leader $now_leader (was $old_leader)"
CONSUL_HTTP_ADDR="$survivor_http" run_ctest "real Consul 3/3 (cluster after its leader was killed)" \
    -R "$cluster_tests" || failed=1
"${agent[@]}" stop-all

if ((failed)); then
    echo "== real Consul leg: FAILED"
    exit 1
fi
echo "== real Consul leg passed"
