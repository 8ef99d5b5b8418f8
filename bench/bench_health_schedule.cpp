// Cost of the health scheduler's sans-I/O core with 10,000 TTL checks at a 10 s interval (issue
// 6: the whole scheduler must stay under 2 % of one core, i.e. 20 ms per second of 1,000 probe
// firings). Each measurement sits beside an empty-call baseline from the same run.
#include <lakemesh/health/check_schedule.hpp>
#include <lakemesh/health/ttl_check_fsm.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

namespace health = lakemesh::health;
using namespace std::chrono_literals;

constexpr int check_count = 10'000;
constexpr auto interval = 10s;
const health::time_point start{std::chrono::hours(1)};

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

health::check_schedule make_schedule(bool with_wake_timers) {
    health::check_schedule schedule(health::schedule_config{.seed = 1});
    for (int i = 0; i < check_count; ++i) {
        const auto check = schedule.add(interval, start);
        if (with_wake_timers) {
            // As the shell keeps them: the TTL-refresh wake of every check, 15 s out.
            schedule.set_wake(check, start + 15s + i * 1ms);
        }
    }
    return schedule;
}

/// One probe firing: the shell's timer went off at next_due(); pop it, which re-arms it for the
/// next interval. Items = firings; 1,000 per second at 10,000 checks / 10 s.
void schedule_pop_one_of_10k(benchmark::State& state) {
    health::check_schedule schedule = make_schedule(state.range(0) != 0);
    for (auto _ : state) {
        const health::time_point now = *schedule.next_due();
        auto fired = schedule.pop_next(now);
        if (fired->kind == health::due_kind::wake) {
            // Keep the wake population constant: re-arm it one refresh period on.
            schedule.set_wake(fired->check, now + 15s);
        }
        benchmark::DoNotOptimize(fired);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(schedule_pop_one_of_10k)->Arg(0)->Arg(1)->ArgName("wake_timers");

/// One tick of a shell on a fixed 10 ms timer: pop_due of everything due (about ten firings).
void schedule_tick_10ms_of_10k(benchmark::State& state) {
    health::check_schedule schedule = make_schedule(false);
    std::vector<health::due_check> batch;
    batch.reserve(256);
    health::time_point now = start;
    std::int64_t fired = 0;
    for (auto _ : state) {
        now += 10ms;
        batch.clear();
        fired += static_cast<std::int64_t>(schedule.pop_due(now, batch));
        benchmark::DoNotOptimize(batch.data());
    }
    state.SetItemsProcessed(fired);
    state.counters["firings_per_tick"] =
        static_cast<double>(fired) / static_cast<double>(state.iterations());
}
BENCHMARK(schedule_tick_10ms_of_10k);

/// The whole sans-I/O path of one probe of an unchanged passing check: pop the probe timer,
/// on_probe_due, on_probe_completed (no push: unchanged), set_wake. Every 15 s per check a
/// refresh push and its success are added (wake pop, on_wake, on_push_succeeded, set_wake).
void probe_cycle_of_10k_ttl_checks(benchmark::State& state) {
    health::check_schedule schedule = make_schedule(false);
    health::ttl_check_config cfg;
    cfg.ttl = 30s;
    std::vector<health::ttl_check_fsm> fsms(check_count, health::ttl_check_fsm(cfg));
    for (int i = 0; i < check_count; ++i) {
        fsms[i].on_registered(start, health::status::passing);
        fsms[i].on_probe_due(start);
        fsms[i].on_probe_completed(start, health::status::passing, "ok");
        fsms[i].on_push_succeeded(start);
    }
    std::int64_t pushes = 0;
    std::int64_t wakes = 0;
    for (auto _ : state) {
        const health::time_point now = *schedule.next_due();
        const auto fired = schedule.pop_next(now);
        health::ttl_check_fsm& fsm = fsms[fired->check.index];
        if (fired->kind == health::due_kind::probe) {
            const auto started = fsm.on_probe_due(now);
            benchmark::DoNotOptimize(started);
            auto done = fsm.on_probe_completed(now, health::status::passing, "ok");
            if (done.kind == health::check_action_kind::push) {
                ++pushes;
                done = fsm.on_push_succeeded(now);
            }
            benchmark::DoNotOptimize(done);
        } else {
            ++wakes;
            auto refresh = fsm.on_wake(now);
            if (refresh.kind == health::check_action_kind::push) {
                ++pushes;
                refresh = fsm.on_push_succeeded(now);
            }
            benchmark::DoNotOptimize(refresh);
        }
        schedule.set_wake(fired->check, fsm.wake_at());
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["pushes_per_pop"] =
        static_cast<double>(pushes) / static_cast<double>(state.iterations());
    state.counters["wakes_per_pop"] =
        static_cast<double>(wakes) / static_cast<double>(state.iterations());
}
BENCHMARK(probe_cycle_of_10k_ttl_checks);

}  // namespace

BENCHMARK_MAIN();
