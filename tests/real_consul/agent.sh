#!/usr/bin/env bash
# Starts, stops and restarts real Consul agents on loopback for the real-agent test leg.
#
#   agent.sh STATE_DIR init CONSUL_BINARY     remember the binary; pick free ports
#   agent.sh STATE_DIR start-dev              one `-dev` agent (state in memory)
#   agent.sh STATE_DIR start-server           one server with a data dir (state survives a stop)
#   agent.sh STATE_DIR stop | start           stop it (state kept for start-server) / start again
#   agent.sh STATE_DIR restart                stop, then start with the same state
#   agent.sh STATE_DIR restart-clean          stop, wipe its data dir, start: the state is lost
#   agent.sh STATE_DIR start-cluster          three servers (-bootstrap-expect 3)
#   agent.sh STATE_DIR kill N                 SIGKILL cluster server N (1..3)
#   agent.sh STATE_DIR leader                 prints the number (1..3) of the cluster's leader
#   agent.sh STATE_DIR wait-ready N           waits until server N has a leader again
#   agent.sh STATE_DIR http N                 prints server N's HTTP address (N=1 for one agent)
#   agent.sh STATE_DIR stop-all               stops every agent it started
#
# Every start returns once the agent has a leader and its own node is in the catalog (sessions
# need that), or fails after 60 s. The tests' LAKEMESH_CONSUL_CONTROL is "agent.sh STATE_DIR".
set -euo pipefail

state="$1"
verb="$2"
shift 2
mkdir -p "$state"

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Four ports per agent (http, serf-lan, serf-wan, server RPC), three agents.
pick_ports() {
    local base
    for base in $(seq 18500 20 19500); do
        local ok=1 p
        for p in $(seq "$base" $((base + 11))); do
            port_free "$p" || { ok=0; break; }
        done
        if ((ok)); then
            echo "$base" >"$state/base"
            return
        fi
    done
    echo "agent.sh: no free ports between 18500 and 19511" >&2
    exit 1
}

base() { cat "$state/base"; }
# Servers keep their raft log in memory-backed /dev/shm when there is one: every write is
# fsynced, and on a loaded two-core machine fsyncs of three servers on one disk make raft
# commits take seconds. Durability across a machine crash is not what these tests are about.
data_dir() {
    local root="$state"
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        root="/dev/shm/lakemesh-consul-$(printf '%s' "$(cd "$state" && pwd)" | md5sum | cut -c1-8)"
    fi
    echo "$root/data-$1"
}
http_port() { echo $(($(base) + ($1 - 1) * 4)); }
serf_lan() { echo $(($(base) + ($1 - 1) * 4 + 1)); }
binary() { cat "$state/binary"; }

# $1: agent number; the rest: mode flags.
launch() {
    local n="$1"
    shift
    local h
    h=$(http_port "$n")
    nohup "$(binary)" agent "$@" -node "lakemesh-real-$n" -client 127.0.0.1 -bind 127.0.0.1 \
        -http-port "$h" -dns-port -1 -grpc-port -1 -serf-lan-port "$(serf_lan "$n")" \
        -serf-wan-port $((h + 2)) -server-port $((h + 3)) \
        -hcl 'enable_script_checks = true' >>"$state/agent-$n.log" 2>&1 &
    echo $! >"$state/pid-$n"
}

wait_ready() {
    local n="$1" h deadline
    h=$(http_port "$n")
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        if curl -sf "http://127.0.0.1:$h/v1/status/leader" 2>/dev/null | grep -q ':' &&
            curl -sf "http://127.0.0.1:$h/v1/catalog/node/lakemesh-real-$n" 2>/dev/null |
            grep -q '"Node"'; then
            return 0
        fi
        sleep 0.1
    done
    echo "agent.sh: agent $n not ready after 60 s; its log:" >&2
    tail -20 "$state/agent-$n.log" >&2
    exit 1
}

stop_agent() {
    local n="$1" pid
    [ -f "$state/pid-$n" ] || return 0
    pid=$(cat "$state/pid-$n")
    rm -f "$state/pid-$n"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

start_single() {
    case "$(cat "$state/mode")" in
        dev) launch 1 -dev ;;
        server) launch 1 -server -bootstrap-expect 1 -data-dir "$(data_dir 1)" \
            -hcl 'performance { raft_multiplier = 1 }' ;;
    esac
    wait_ready 1
}

case "$verb" in
    init)
        echo "$1" >"$state/binary"
        pick_ports
        ;;
    start-dev)
        echo dev >"$state/mode"
        start_single
        ;;
    start-server)
        echo server >"$state/mode"
        rm -rf "$(data_dir 1)"
        start_single
        ;;
    stop) stop_agent 1 ;;
    start) start_single ;;
    restart)
        stop_agent 1
        start_single
        ;;
    restart-clean)
        stop_agent 1
        rm -rf "$(data_dir 1)"
        start_single
        ;;
    start-cluster)
        echo cluster >"$state/mode"
        for n in 1 2 3; do
            rm -rf "$(data_dir "$n")"
            joins=()
            for m in 1 2 3; do
                [ "$m" = "$n" ] || joins+=(-retry-join "127.0.0.1:$(serf_lan "$m")")
            done
            launch "$n" -server -bootstrap-expect 3 -data-dir "$(data_dir "$n")" \
                -hcl 'performance { raft_multiplier = 1 }' "${joins[@]}"
        done
        for n in 1 2 3; do wait_ready "$n"; done
        ;;
    kill)
        pid=$(cat "$state/pid-$1")
        rm -f "$state/pid-$1"
        kill -9 "$pid"
        ;;
    leader)
        leader=$(curl -sf "http://127.0.0.1:$(http_port 1)/v1/status/leader" | tr -d '"')
        for n in 1 2 3; do
            # The leader's RPC address is its server port.
            if [ "${leader##*:}" = "$(($(http_port "$n") + 3))" ]; then
                echo "$n"
            fi
        done
        ;;
    wait-ready) wait_ready "$1" ;;
    http) echo "127.0.0.1:$(http_port "$1")" ;;
    stop-all)
        for n in 1 2 3; do stop_agent "$n"; done
        case "$(data_dir 1)" in
            /dev/shm/*) rm -rf "$(dirname "$(data_dir 1)")" ;;
        esac
        ;;
    *)
        echo "agent.sh: unknown verb $verb" >&2
        exit 2
        ;;
esac
