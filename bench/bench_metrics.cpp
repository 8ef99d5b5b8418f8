// Costs of the metrics registry: recording one call's metrics on the hot path (a counter
// increment and a histogram observation through kept handles; target <= 50 ns and no
// allocation, counted by a replaced global operator new) and rendering the exposition for
// 1,000 services x 10 endpoints. Baselines in the same run: a relaxed atomic increment, and
// copying a string as large as the exposition.
#include <lakemesh/observe/metrics.hpp>

#include "mesh/mesh_metrics.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
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

using namespace lakemesh;
using namespace lakemesh::observe;

constexpr int services = 1'000;
constexpr int endpoints = 10;

void baseline_relaxed_atomic_increment(benchmark::State& state) {
    static std::atomic<std::uint64_t> n{0};
    for (auto _ : state) {
        n.fetch_add(1, std::memory_order_relaxed);
    }
    benchmark::DoNotOptimize(n.load());
}
BENCHMARK(baseline_relaxed_atomic_increment)->Threads(1)->Threads(2);

/// The families a call path would keep: calls by service, endpoint and outcome, and latency by
/// service and endpoint, with the default (17) latency buckets.
struct call_metrics {
    metrics_registry reg;
    counter_family* calls = nullptr;
    histogram_family* latency = nullptr;

    call_metrics() {
        diagnostics diag;
        const auto b = histogram_family::default_buckets();
        if (reg.add_counter("lakemesh_calls_total", "Calls by service, endpoint and outcome.",
                            {"service", "endpoint", "outcome"}, calls, diag) ||
            reg.add_histogram("lakemesh_call_duration_seconds", "Call latency.",
                              {"service", "endpoint"}, {b.begin(), b.end()}, latency, diag))
            std::abort();
    }
};

call_metrics& shared_metrics() {
    static call_metrics m;
    return m;
}

void record_one_call(benchmark::State& state) {
    auto& m = shared_metrics();
    // Kept handles, as the call path keeps them per endpoint.
    counter* ok = m.calls->with({"lake", "10.0.0.1:8080", "ok"});
    histogram* lat = m.latency->with({"lake", "10.0.0.1:8080"});
    double v = 0.0001;
    const std::uint64_t allocs_before = t_allocs;
    for (auto _ : state) {
        ok->inc();
        lat->observe(v);
        // Walk the buckets so the search does not always stop at the same place.
        v = v < 5.0 ? v * 1.7 : 0.0001;
    }
    state.counters["allocs_per_call"] = benchmark::Counter(
        static_cast<double>(t_allocs - allocs_before), benchmark::Counter::kAvgIterations);
}
// Threads(2): both threads record into the same endpoint's handles (worst case: one cache
// line bouncing between cores).
BENCHMARK(record_one_call)->Threads(1)->Threads(2);

void render_1000_services_x_10_endpoints(benchmark::State& state) {
    call_metrics m;
    for (int s = 0; s < services; ++s) {
        const std::string service = "service-" + std::to_string(s);
        for (int e = 0; e < endpoints; ++e) {
            const std::string endpoint =
                "10.0." + std::to_string(s % 256) + "." + std::to_string(e) + ":8080";
            m.calls->with({service, endpoint, "ok"})->inc(static_cast<std::uint64_t>(s + e));
            m.latency->with({service, endpoint})->observe(0.001 * (e + 1));
        }
    }
    std::string out;
    std::size_t bytes = 0;
    for (auto _ : state) {
        out.clear();  // a reused buffer, as a scrape handler would keep
        m.reg.render(out);
        bytes = out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["bytes"] = static_cast<double>(bytes);
    state.counters["series"] = static_cast<double>(services * endpoints * (1 + 17 + 1 + 2));
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
}
BENCHMARK(render_1000_services_x_10_endpoints)->Unit(benchmark::kMillisecond);

void baseline_copy_exposition_sized_string(benchmark::State& state) {
    call_metrics m;
    for (int s = 0; s < services; ++s)
        for (int e = 0; e < endpoints; ++e) {
            const std::string service = "service-" + std::to_string(s);
            const std::string endpoint =
                "10.0." + std::to_string(s % 256) + "." + std::to_string(e) + ":8080";
            m.latency->with({service, endpoint});
            m.calls->with({service, endpoint, "ok"});
        }
    const std::string src = m.reg.render();
    std::string out;
    for (auto _ : state) {
        out.assign(src);
        benchmark::DoNotOptimize(out.data());
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(src.size()) * state.iterations());
}
BENCHMARK(baseline_copy_exposition_sized_string)->Unit(benchmark::kMillisecond);

}  // namespace

/// What mesh_integrator records for one successful call with one attempt, through the mesh's
/// own code: the cache-lookup hit, the attempt's endpoint children (found by the balancer's key
/// in the service's map), their ok counter and latency, the call's outcome counter and latency.
void mesh_record_one_call(benchmark::State& state) {
    static lakemesh::mesh::detail::mesh_metrics m(nullptr, {});
    static auto svc = m.make_service("lake");
    const std::string address = "10.0.0.1:8080";
    m.endpoint(*svc, 42, address);  // the endpoint's first attempt creates its children
    std::chrono::nanoseconds d{100'000};
    const std::uint64_t allocs_before = t_allocs;
    for (auto _ : state) {
        m.cache_lookup_hits->inc();
        auto& em = m.endpoint(*svc, 42, address);
        em.ok->inc();
        em.duration->observe(d);
        svc->record_call({}, d);
        d = d < std::chrono::seconds(5) ? d * 17 / 10 : std::chrono::nanoseconds(100'000);
    }
    state.counters["allocs_per_call"] = benchmark::Counter(
        static_cast<double>(t_allocs - allocs_before), benchmark::Counter::kAvgIterations);
}
BENCHMARK(mesh_record_one_call)->Threads(1);

/// /metrics of a mesh calling 1,000 services with 10 endpoints each, every child touched once:
/// the mesh's real families (per-service call outcomes and latency, per-endpoint attempts and
/// latency, the per-service gauges and counters) plus its process-wide ones.
void render_mesh_1000_services_x_10_endpoints(benchmark::State& state) {
    lakemesh::mesh::detail::mesh_metrics m(nullptr, {});
    std::vector<std::unique_ptr<lakemesh::mesh::detail::service_metrics>> keep;
    for (int s = 0; s < services; ++s) {
        auto svc = m.make_service("service-" + std::to_string(s));
        for (int e = 0; e < endpoints; ++e) {
            auto& em =
                m.endpoint(*svc, static_cast<std::uint64_t>(e),
                           "10.0." + std::to_string(s % 256) + "." + std::to_string(e) + ":8080");
            em.ok->inc();
            em.duration->observe(0.001 * (e + 1));
        }
        svc->record_call({}, std::chrono::milliseconds(3));
        keep.push_back(std::move(svc));
    }
    std::string out;
    std::size_t bytes = 0;
    for (auto _ : state) {
        out.clear();
        m.registry().render(out);
        bytes = out.size();
        benchmark::DoNotOptimize(out.data());
    }
    state.counters["bytes"] = static_cast<double>(bytes);
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
}
BENCHMARK(render_mesh_1000_services_x_10_endpoints)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
