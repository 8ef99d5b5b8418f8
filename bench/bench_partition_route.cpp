// lakemesh-bench-partition-route: partition_table::route(key) on a 256-partition table fed by a
// dev_consul, while the table's own watch keeps replacing snapshots (a status key of some
// partition is rewritten every millisecond on the io thread). Each route() hashes the key,
// pins the current snapshot and reads the owner's port; heap allocations per route are counted
// (global operator new is replaced by a counting one). Baselines in the same run: the hash alone
// (partition_of) and a std::unordered_map<std::string, partition_owner> find of the same keys,
// which is what a hand-written routing table would cost without any concurrency.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/partition/partition_table.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include "partition/table_codec.hpp"

#include <benchmark/benchmark.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {
thread_local std::uint64_t t_allocs = 0;
}  // namespace

void* operator new(std::size_t n) {
    ++t_allocs;
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return ::operator new(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    ++t_allocs;
    return std::malloc(n == 0 ? 1 : n);
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

namespace {

namespace asio = boost::asio;
using namespace lakemesh;
using namespace std::chrono_literals;

constexpr std::uint32_t partitions = 256;
constexpr std::size_t n_keys = 4096;  // a power of two: the key index is masked

/// The dev agent, a client and the table, with an io thread that also churns a status key.
struct fixture {
    testing::dev_consul agent;
    asio::io_context io;
    std::optional<consul::client> client;
    std::optional<partition::partition_table> table;
    asio::steady_timer churn{io};
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> snapshots{0};
    std::uint64_t writes = 0;
    std::vector<std::string> keys;
    std::unordered_map<std::string, partition::partition_owner> baseline;
    std::thread thread;

    fixture() {
        consul::client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", agent.port()}};
        client.emplace(io, cfg);
        const std::string prefix = "lakemesh/bench/";
        // The table: a config key and an owner key per partition (as the registry writes them).
        int pending = static_cast<int>(partitions) + 1;
        client->async_kv_put(prefix + "config",
                             partition::detail::encode(partition::detail::cluster_config_value{
                                 "bench", partitions, 1, 0}),
                             [&](error_code, auto&&...) { --pending; });
        for (std::uint32_t p = 0; p < partitions; ++p) {
            client->async_kv_put(
                prefix + "partitions/" + std::to_string(p) + "/owner",
                partition::detail::encode(partition::detail::owner_value{
                    "node-" + std::to_string(p % 3), "10.0.0." + std::to_string(p % 3),
                    static_cast<std::uint16_t>(7000 + p % 3), (std::uint64_t{1} << 32) | p}),
                [&](error_code, auto&&...) { --pending; });
        }
        while (pending > 0) {
            io.run_one();
        }
        table.emplace(io.get_executor(), *client, partition::table_config{prefix, partitions, {}});
        table->start([this](const auto&) { snapshots.fetch_add(1); });
        while (snapshots.load() == 0) {
            io.run_one();
        }
        for (std::size_t i = 0; i < n_keys; ++i) {
            keys.push_back("user:" + std::to_string(i * 7919));
            baseline.emplace(keys.back(), table->route(keys.back()).owner());
        }
        churn_once(prefix);
        thread = std::thread([this] { io.run(); });
    }
    ~fixture() {
        stopping = true;
        asio::post(io, [this] {
            churn.cancel();
            table->stop();
        });
        thread.join();
        io.restart();
        table.reset();
        client.reset();
        io.poll();
    }
    void churn_once(const std::string& prefix) {
        if (stopping) {
            return;
        }
        const auto p = static_cast<std::uint32_t>(writes++ % partitions);
        client->async_kv_put(prefix + "partitions/" + std::to_string(p) + "/status",
                             R"({"state":"active","owner":"node-0","token":1})",
                             [this, prefix](error_code, auto&&...) {
                                 churn.expires_after(1ms);
                                 churn.async_wait([this, prefix](error_code ec) {
                                     if (!ec) {
                                         churn_once(prefix);
                                     }
                                 });
                             });
    }
};

fixture& shared() {
    static fixture f;
    return f;
}

void report(benchmark::State& state, std::uint64_t allocs, std::uint64_t sink) {
    state.counters["allocs_per_op"] =
        benchmark::Counter(static_cast<double>(allocs), benchmark::Counter::kAvgIterations);
    benchmark::DoNotOptimize(sink);
}

void BM_route(benchmark::State& state) {
    auto& f = shared();
    const auto before_snapshots = f.snapshots.load();
    const auto a0 = t_allocs;
    std::uint64_t sink = 0;
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 977;
    for (auto _ : state) {
        auto v = f.table->route(f.keys[i++ & (n_keys - 1)]);
        sink += v ? v->port : 0;
    }
    report(state, t_allocs - a0, sink);
    if (state.thread_index() == 0) {
        state.counters["snapshots_replaced"] =
            static_cast<double>(f.snapshots.load() - before_snapshots);
    }
}
BENCHMARK(BM_route)->Threads(1)->Threads(2)->UseRealTime();

void BM_partition_of_baseline(benchmark::State& state) {
    auto& f = shared();
    const auto a0 = t_allocs;
    std::uint64_t sink = 0;
    std::size_t i = 0;
    for (auto _ : state) {
        sink += partition::partition_of(f.keys[i++ & (n_keys - 1)], partitions);
    }
    report(state, t_allocs - a0, sink);
}
BENCHMARK(BM_partition_of_baseline);

void BM_unordered_map_find_baseline(benchmark::State& state) {
    auto& f = shared();
    const auto a0 = t_allocs;
    std::uint64_t sink = 0;
    std::size_t i = 0;
    for (auto _ : state) {
        auto it = f.baseline.find(f.keys[i++ & (n_keys - 1)]);
        sink += it != f.baseline.end() ? it->second.port : 0;
    }
    report(state, t_allocs - a0, sink);
}
BENCHMARK(BM_unordered_map_find_baseline);

}  // namespace

BENCHMARK_MAIN();
