#!/usr/bin/env bash
# lakemesh developer entry point, used by the README's Quick start and by CI.
#   bash cmake/dev.sh demo   install missing Debian packages, build, run the demo (a Lake cluster
#                            on a dev Consul: failover and rebalance narrated, then Ctrl-C)
#   bash cmake/dev.sh test   install missing Debian packages, build, run every test
#                            (normal build, its integration tests again against a real
#                            Consul agent and cluster when ../shared/consul is there,
#                            packaging checks, ASan+UBSan build, a ThreadSanitizer build
#                            of the unit and integration tests, then a bounded libFuzzer
#                            run of every decoder, built with clang)
# Idempotent: packages already present are not reinstalled; builds are incremental (ccache).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

packages=(build-essential g++ cmake ninja-build ccache pkg-config git
          libboost1.81-dev libboost-url1.81-dev libboost-system1.81-dev
          nlohmann-json3-dev libspdlog-dev libfmt-dev libssl-dev openssl
          libgtest-dev libgmock-dev libbenchmark-dev
          clang libclang-rt-dev llvm
          curl xz-utils
          prometheus  # promtool checks the metrics exposition in the tests
          chromium)   # headless, renders the admin page in the tests (admin_page.*)

install_deps() {
    local missing=()
    for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        echo "== installing missing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

jobs="$(nproc 2>/dev/null || echo 2)"
# Let ccache share results between clones in different folders (CI builds a fresh clone).
export CCACHE_BASEDIR="$here" CCACHE_NOHASHDIR=1

build_preset() {
    local preset="$1"
    shift
    cmake --preset "$preset" "$@" >/dev/null
    if cmake --build --preset "$preset" -j "$jobs"; then
        return 0
    fi
    # The ccache is shared with other checkouts on this machine; an object cached while a header
    # was being edited elsewhere can be stale (seen as undefined references at link time). One
    # rebuild that ignores cached results and overwrites them tells such a cache apart from a
    # real build error.
    echo "== build ($preset) failed; rebuilding it once from scratch without cached objects (CCACHE_RECACHE=1)"
    cmake --build --preset "$preset" --target clean >/dev/null
    CCACHE_RECACHE=1 cmake --build --preset "$preset" -j "$jobs"
}

# The demo program (examples/demo/demo.cpp) and the Lake node it starts as processes; tests and
# benchmarks stay off in this tree. Arguments go to the demo (e.g. --ci: the scripted part only).
run_demo() {
    cmake --preset release -DLAKEMESH_BUILD_TESTS=OFF -DLAKEMESH_BUILD_BENCH=OFF \
        -DLAKEMESH_BUILD_EXAMPLES=ON >/dev/null
    cmake --build --preset release -j "$jobs" --target lakemesh-demo
    echo "== starting the demo: a dev Consul agent, three Lake nodes and a client (Ctrl-C stops it)"
    exec ./build/release/examples/lakemesh-demo "$@"
}

# Builds a tiny consumer project against lakemesh installed into a prefix, then again with
# add_subdirectory, to prove the packaging works.
check_packaging() {
    local work="$here/build/packaging"
    rm -rf "$work"
    mkdir -p "$work"
    echo "== packaging: install + find_package(lakemesh CONFIG)"
    cmake -S . -B "$work/lib" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
        -DLAKEMESH_BUILD_TESTS=OFF -DLAKEMESH_BUILD_EXAMPLES=OFF -DLAKEMESH_BUILD_BENCH=OFF \
        -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
    cmake --build "$work/lib" -j "$jobs" >/dev/null
    cmake --install "$work/lib" >/dev/null
    cmake -S tests/consumer -B "$work/consumer-package" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
        -DCMAKE_BUILD_TYPE=Release -DLAKEMESH_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
    cmake --build "$work/consumer-package" >/dev/null
    "$work/consumer-package/lakemesh-consumer"
    echo "== packaging: add_subdirectory(lakemesh)"
    cmake -S tests/consumer -B "$work/consumer-subdir" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
        -DCMAKE_BUILD_TYPE=Release -DLAKEMESH_CONSUMER_MODE=subdirectory -DLAKEMESH_SOURCE_DIR="$here" >/dev/null
    cmake --build "$work/consumer-subdir" -j "$jobs" >/dev/null
    "$work/consumer-subdir/lakemesh-consumer"
}

run_tests() {
    local failed=0
    local summary="$here/build/ci-summary.txt"
    mkdir -p "$here/build"
    : >"$summary"
    export LAKEMESH_CI_SUMMARY="$summary"
    echo "== build (debug): library, dev_consul, tests, examples, benchmarks"
    build_preset debug
    echo "== tests (debug)"
    bash cmake/ctest_leg.sh "$summary" "tests (debug)" debug || failed=1
    echo "== tests (debug) against a real Consul (../shared/consul)"
    bash tests/real_consul/leg.sh debug || failed=1
    if check_packaging; then
        echo "passed   packaging" >>"$summary"
    else
        echo "FAILED   packaging" >>"$summary"
        failed=1
    fi
    echo "== build (asan: AddressSanitizer + UndefinedBehaviorSanitizer)"
    build_preset asan
    echo "== tests (asan)"
    bash cmake/ctest_leg.sh "$summary" "tests (asan)" asan || failed=1
    # ThreadSanitizer: the unit and integration tests (the code used from several threads: cache
    # lookups and snapshot views, the epoch domain, metrics, probe completions, dev_consul's
    # server threads, the fault proxy). Examples and the multi-process tests are not built here.
    echo "== build (tsan: ThreadSanitizer, unit and integration tests)"
    build_preset tsan
    echo "== tests (tsan)"
    bash cmake/ctest_leg.sh "$summary" "tests (tsan)" tsan -L 'unit|integration' -E '^dev_consul_cli$' ||
        failed=1
    echo "== build (fuzz: libFuzzer targets, clang)"
    build_preset fuzz ${LAKEMESH_FUZZ_SECONDS:+-DLAKEMESH_FUZZ_SECONDS="$LAKEMESH_FUZZ_SECONDS"}
    echo "== fuzz (each decoder for a bounded time)"
    bash cmake/ctest_leg.sh "$summary" "fuzz" fuzz || failed=1
    echo "== summary"
    cat "$summary"
    if ((failed)); then
        echo "== FAILED"
        return 1
    fi
    echo "== all tests passed"
}

case "${1:-}" in
    demo) shift; install_deps; run_demo "$@" ;;
    test) install_deps; run_tests ;;
    deps) install_deps ;;
    *) echo "usage: bash cmake/dev.sh demo|test|deps" >&2; exit 2 ;;
esac
