// Costs of the resilience layer's decisions, each beside a baseline measured in the same run so
// that ratios survive a change of machine. Results and ratios are kept in BENCHMARKS.md.
#include <lakemesh/resilience/bulkhead.hpp>
#include <lakemesh/resilience/circuit_breaker.hpp>
#include <lakemesh/resilience/load_balancer.hpp>
#include <lakemesh/resilience/policy.hpp>
#include <lakemesh/resilience/random.hpp>
#include <lakemesh/resilience/retry.hpp>

#include <benchmark/benchmark.h>
#include <boost/asio/append.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <random>
#include <string>

namespace {

namespace asio = boost::asio;
namespace res = lakemesh::resilience;
using namespace std::chrono_literals;

[[gnu::noinline]] int empty_function(int x) {
    benchmark::DoNotOptimize(x);
    return x;
}

void baseline_empty_call(benchmark::State& state) {
    int x = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(empty_function(x));
    }
}
BENCHMARK(baseline_empty_call);

void baseline_uniform_int_pick_1000(benchmark::State& state) {
    std::mt19937_64 engine(42);
    std::uniform_int_distribution<std::size_t> pick(0, 999);
    for (auto _ : state) {
        benchmark::DoNotOptimize(pick(engine));
    }
}
BENCHMARK(baseline_uniform_int_pick_1000);

void baseline_steady_clock_now(benchmark::State& state) {
    for (auto _ : state) {
        benchmark::DoNotOptimize(res::clock::now());
    }
}
BENCHMARK(baseline_steady_clock_now);

/// The decisions async_execute takes for a call that succeeds at the first attempt: budget
/// deposit, deadline, breaker admission and outcome, bulkhead slot and release, retry state.
void policy_decision_successful_call(benchmark::State& state) {
    const res::retry_config retry_cfg{};
    res::retry_budget budget{};
    res::circuit_breaker breaker{};
    res::bulkhead bulk{};
    res::time_point now{1h};
    for (auto _ : state) {
        now += 1us;
        budget.record_request(now);
        const res::deadline dl = res::deadline{}.nested(now, 1s);
        res::retry_state retry(retry_cfg, dl);
        const auto permit = breaker.try_acquire(now);
        const auto slot = bulk.try_acquire(now, dl);
        retry.on_attempt();
        benchmark::DoNotOptimize(slot);
        bulk.release();
        breaker.on_success(permit, now, 3ms);
        benchmark::DoNotOptimize(retry);
    }
}
BENCHMARK(policy_decision_successful_call);

/// The same with the two clock reads the Asio shell makes per call.
void policy_decision_successful_call_with_clock(benchmark::State& state) {
    const res::retry_config retry_cfg{};
    res::retry_budget budget{};
    res::circuit_breaker breaker{};
    res::bulkhead bulk{};
    for (auto _ : state) {
        const res::time_point now = res::clock::now();
        budget.record_request(now);
        const res::deadline dl = res::deadline{}.nested(now, 1s);
        res::retry_state retry(retry_cfg, dl);
        const auto permit = breaker.try_acquire(now);
        const auto slot = bulk.try_acquire(now, dl);
        retry.on_attempt();
        benchmark::DoNotOptimize(slot);
        const res::time_point end = res::clock::now();
        bulk.release();
        breaker.on_success(permit, end, end - now);
        benchmark::DoNotOptimize(retry);
    }
}
BENCHMARK(policy_decision_successful_call_with_clock);

/// The whole Asio shell: async_execute of an operation that completes through io_context::post.
void async_execute_successful_call(benchmark::State& state) {
    asio::io_context io;
    res::policy_config cfg;
    cfg.timeout = 1s;
    res::policy p(io, cfg, {}, 1);
    auto op = [&io](auto token) {
        return asio::async_initiate<decltype(token), void(lakemesh::error_code)>(
            [&io](auto handler) {
                asio::post(io, asio::append(std::move(handler), lakemesh::error_code{}));
            },
            token);
    };
    std::size_t done = 0;
    for (auto _ : state) {
        res::async_execute(p, op, [&done](lakemesh::error_code) { ++done; });
        io.restart();
        io.run();
    }
    benchmark::DoNotOptimize(done);
}
BENCHMARK(async_execute_successful_call);

/// The same operation posted and run without any policy: the cost of Asio alone.
void baseline_posted_operation(benchmark::State& state) {
    asio::io_context io;
    std::size_t done = 0;
    for (auto _ : state) {
        asio::post(io, [&done] { ++done; });
        io.restart();
        io.run();
    }
    benchmark::DoNotOptimize(done);
}
BENCHMARK(baseline_posted_operation);

std::vector<res::endpoint> endpoints(std::size_t n) {
    std::vector<res::endpoint> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        out[i].id = "node-" + std::to_string(i) + "/svc";
        out[i].weight_passing = 1 + static_cast<std::uint32_t>(i % 5);
    }
    return out;
}

void pick(benchmark::State& state, res::balancer_kind kind) {
    res::load_balancer_config cfg;
    cfg.kind = kind;
    res::load_balancer lb(cfg, 42);
    res::time_point now{1h};
    lb.update(endpoints(static_cast<std::size_t>(state.range(0))), now);
    // Some load and latency history so that P2C has something to compare.
    res::random_source rng(7);
    for (int i = 0; i < 5000; ++i) {
        const auto h = *lb.pick(now);
        lb.on_start(h);
        if (rng.below(2) == 0) {
            lb.on_finish(h, now, std::chrono::microseconds(100 + rng.below(5000)), true);
        }
    }
    for (auto _ : state) {
        benchmark::DoNotOptimize(lb.pick(now));
    }
}

void p2c_least_request_pick(benchmark::State& state) {
    pick(state, res::balancer_kind::least_request);
}
void p2c_peak_ewma_pick(benchmark::State& state) {
    pick(state, res::balancer_kind::peak_ewma);
}
void round_robin_pick(benchmark::State& state) {
    pick(state, res::balancer_kind::round_robin);
}
void weighted_pick(benchmark::State& state) {
    pick(state, res::balancer_kind::weighted);
}
BENCHMARK(p2c_least_request_pick)->Arg(1000);
BENCHMARK(p2c_peak_ewma_pick)->Arg(1000);
BENCHMARK(round_robin_pick)->Arg(1000);
BENCHMARK(weighted_pick)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
