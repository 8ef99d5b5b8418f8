// lakemesh-bench-service-cache: service_cache::lookup hits on a cache of 10,000 services while
// a writer thread keeps replacing snapshots (issue 5). Lookups are timed in batches of 64
// (steady_clock around the batch, divided); p50/p99 of the per-lookup time, heap allocations
// per lookup (global operator new is replaced by a counting one) and the writer's update rate
// are reported as counters. Baselines in the same run: std::unordered_map<std::string, ...>
// find with no concurrency, and an empty batch.
#include <lakemesh/discovery/service_cache.hpp>

#include "fake_service_source.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <random>
#include <thread>
#include <unordered_map>

namespace {
thread_local std::uint64_t t_allocs = 0;
std::atomic<std::uint64_t> g_allocs{0};
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
using steady = std::chrono::steady_clock;

constexpr std::size_t services = 10'000;
constexpr std::size_t batch = 64;
constexpr std::size_t random_names = 1 << 16;

/// 10,000 services resolved through the fake source, and a writer thread that bumps random
/// services and runs the io_context (watch wake-ups, snapshot swaps, epoch collection).
struct harness {
    asio::io_context io;
    // Keeps poll() from leaving the io_context stopped when it runs out of ready handlers.
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    bench::fake_service_source fake{io, 4};
    std::unique_ptr<discovery::service_cache> cache;
    std::vector<std::string> names;
    std::vector<std::string> order_keys;  // random lookup order, pre-generated
    std::vector<std::string_view> order;  // views of order_keys
    std::thread writer;
    std::atomic<bool> run_writer{false};
    std::atomic<std::uint64_t> writer_updates{0};

    harness() {
        discovery::service_cache_config cfg;
        cfg.max_services = services;
        cfg.first_resolve.bulkhead.reset();  // 10,000 first resolves at once: no concurrency cap
        cache = std::make_unique<discovery::service_cache>(io.get_executor(), fake.source(), cfg);
        names.reserve(services);
        for (std::size_t i = 0; i < services; ++i) {
            names.push_back("service-" + std::to_string(i));
        }
        std::size_t done = 0;
        for (const auto& n : names) {
            cache->async_resolve(n, [&done](error_code ec, const discovery::resolve_result&) {
                if (!ec) {
                    ++done;
                }
            });
        }
        while (done < services) {
            io.run_one();
        }
        std::mt19937_64 rng(42);
        std::uniform_int_distribution<std::size_t> pick(0, services - 1);
        // Copies laid out in lookup order, so reading the name is a sequential access for the
        // cache as for the unordered_map baseline (which needs std::string keys anyway).
        order_keys.reserve(random_names);
        for (std::size_t i = 0; i < random_names; ++i) {
            order_keys.push_back(names[pick(rng)]);
        }
        order.assign(order_keys.begin(), order_keys.end());
    }
    ~harness() { stop_writer(); }

    void start_writer() {
        if (run_writer.exchange(true)) {
            return;
        }
        writer = std::thread([this] {
            std::mt19937_64 rng(7);
            std::uniform_int_distribution<std::size_t> pick(0, services - 1);
            const auto before = cache->stats().updates;
            while (run_writer.load(std::memory_order_relaxed)) {
                fake.bump(names[pick(rng)]);
                io.poll();
                writer_updates.store(cache->stats().updates - before, std::memory_order_relaxed);
            }
        });
    }
    void stop_writer() {
        if (run_writer.exchange(false)) {
            writer.join();
        }
    }
};

harness& the_harness() {
    static harness h;
    return h;
}

double percentile(std::vector<double>& v, double p) {
    if (v.empty()) {
        return 0;
    }
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

/// Times batches of 64 calls of f(name) and reports per-call p50/p99 and allocations per call.
template <class T, class F>
void timed_batches(benchmark::State& state, const std::vector<T>& order, F&& f) {
    std::vector<double> per_call;
    per_call.reserve(1 << 22);
    std::size_t pos = (static_cast<std::size_t>(state.thread_index()) * 7919) % order.size();
    std::uint64_t calls = 0;
    const std::uint64_t allocs_before = t_allocs;
    for (auto _ : state) {
        const auto t0 = steady::now();
        for (std::size_t i = 0; i < batch; ++i) {
            f(order[pos]);
            pos = (pos + 1) & (order.size() - 1);
        }
        const auto t1 = steady::now();
        if (per_call.size() < per_call.capacity()) {
            per_call.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / batch);
        }
        calls += batch;
    }
    const std::uint64_t allocs = t_allocs - allocs_before;
    state.SetItemsProcessed(static_cast<std::int64_t>(calls));
    using C = benchmark::Counter;
    state.counters["p50_ns"] = C(percentile(per_call, 0.50), C::kAvgThreads);
    state.counters["p99_ns"] = C(percentile(per_call, 0.99), C::kAvgThreads);
    state.counters["allocs_per_call"] =
        C(calls ? static_cast<double>(allocs) / static_cast<double>(calls) : 0, C::kAvgThreads);
}

void lookup_hit_under_writer(benchmark::State& state) {
    auto& h = the_harness();
    if (state.thread_index() == 0) {
        h.start_writer();
    }
    const auto u0 = h.writer_updates.load();
    const auto t0 = steady::now();
    std::uint64_t misses = 0;
    timed_batches(state, h.order, [&](std::string_view name) {
        auto v = h.cache->lookup(name);
        benchmark::DoNotOptimize(v.get());
        misses += !v;
    });
    const double secs = std::chrono::duration<double>(steady::now() - t0).count();
    using C = benchmark::Counter;
    state.counters["writer_updates_per_s"] =
        C(static_cast<double>(h.writer_updates.load() - u0) / secs, C::kAvgThreads);
    state.counters["misses"] = C(static_cast<double>(misses), C::kAvgThreads);
    if (state.thread_index() == 0) {
        h.stop_writer();
    }
}
BENCHMARK(lookup_hit_under_writer)->Threads(1)->Threads(2)->UseRealTime();

/// The same lookups with no writer running (the cache's own no-contention figure).
void lookup_hit_no_writer(benchmark::State& state) {
    auto& h = the_harness();
    timed_batches(state, h.order, [&](std::string_view name) {
        auto v = h.cache->lookup(name);
        benchmark::DoNotOptimize(v.get());
    });
}
BENCHMARK(lookup_hit_no_writer)->UseRealTime();

/// One name over and over: everything in L1, so this is the instruction cost alone.
void lookup_hit_one_name(benchmark::State& state) {
    auto& h = the_harness();
    const std::vector<std::string_view> one(1 << 10, h.names[1234]);
    timed_batches(state, one, [&](std::string_view name) {
        auto v = h.cache->lookup(name);
        benchmark::DoNotOptimize(v.get());
    });
}
BENCHMARK(lookup_hit_one_name)->UseRealTime();

void baseline_unordered_map_find(benchmark::State& state) {
    auto& h = the_harness();
    static const auto map = [&] {
        std::unordered_map<std::string, std::shared_ptr<int>> m;
        for (const auto& n : h.names) {
            m.emplace(n, std::make_shared<int>(1));
        }
        return m;
    }();
    // std::string keys: find needs a std::string (no heterogeneous lookup), so pre-build them.
    timed_batches(state, h.order_keys, [&](const std::string& name) {
        auto it = map.find(name);
        benchmark::DoNotOptimize(it->second.get());
    });
}
BENCHMARK(baseline_unordered_map_find)->UseRealTime();

void baseline_unordered_map_find_one_name(benchmark::State& state) {
    auto& h = the_harness();
    std::unordered_map<std::string, std::shared_ptr<int>> map;
    for (const auto& n : h.names) {
        map.emplace(n, std::make_shared<int>(1));
    }
    const std::vector<std::string> one(1 << 10, h.names[1234]);
    timed_batches(state, one, [&](const std::string& name) {
        auto it = map.find(name);
        benchmark::DoNotOptimize(it->second.get());
    });
}
BENCHMARK(baseline_unordered_map_find_one_name)->UseRealTime();

void baseline_empty_batch(benchmark::State& state) {
    auto& h = the_harness();
    timed_batches(state, h.order, [](std::string_view name) { benchmark::DoNotOptimize(name); });
}
BENCHMARK(baseline_empty_batch)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
