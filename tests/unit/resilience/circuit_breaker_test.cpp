#include <lakemesh/resilience/circuit_breaker.hpp>
#include <lakemesh/resilience/random.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

circuit_breaker_config consecutive_only(unsigned failures) {
    circuit_breaker_config cfg;
    cfg.consecutive_failures = failures;
    cfg.failure_rate_threshold = 0.0;
    cfg.open_duration = 1s;
    cfg.open_duration_multiplier = 2.0;
    cfg.max_open_duration = 5s;
    return cfg;
}

void fail(circuit_breaker& b, test::manual_clock& clock, int times = 1) {
    for (int i = 0; i < times; ++i) {
        const auto p = b.try_acquire(clock.now());
        ASSERT_TRUE(p);
        b.on_failure(p, clock.now(), 1ms);
    }
}

void succeed(circuit_breaker& b, test::manual_clock& clock, int times = 1, duration latency = 1ms) {
    for (int i = 0; i < times; ++i) {
        const auto p = b.try_acquire(clock.now());
        ASSERT_TRUE(p);
        b.on_success(p, clock.now(), latency);
    }
}

TEST(CircuitBreaker, TripsOnConsecutiveFailuresAndRejectsWhileOpen) {
    test::manual_clock clock;
    circuit_breaker b(consecutive_only(3));
    fail(b, clock, 2);
    succeed(b, clock);  // resets the run
    fail(b, clock, 2);
    EXPECT_EQ(b.state(), breaker_state::closed);
    fail(b, clock);
    EXPECT_EQ(b.state(), breaker_state::open);
    EXPECT_FALSE(b.try_acquire(clock.now()));
    clock.advance(999ms);
    EXPECT_FALSE(b.try_acquire(clock.now()));
}

TEST(CircuitBreaker, HalfOpenAfterOpenDurationThenClosesOnSuccessfulProbe) {
    test::manual_clock clock;
    auto events = std::make_shared<test::event_recorder>();
    circuit_breaker b(consecutive_only(1));
    b.set_listener(events, "svc");
    fail(b, clock);
    clock.advance(1s);
    const auto probe = b.try_acquire(clock.now());
    ASSERT_TRUE(probe);
    EXPECT_EQ(b.state(), breaker_state::half_open);
    // Only one probe at a time.
    EXPECT_FALSE(b.try_acquire(clock.now()));
    b.on_success(probe, clock.now(), 1ms);
    EXPECT_EQ(b.state(), breaker_state::closed);
    ASSERT_EQ(events->transitions.size(), 3U);
    EXPECT_EQ(events->transitions[0].from, breaker_state::closed);
    EXPECT_EQ(events->transitions[0].to, breaker_state::open);
    EXPECT_EQ(events->transitions[0].open_for, 1s);
    EXPECT_EQ(events->transitions[0].target, "svc");
    EXPECT_EQ(events->transitions[1].to, breaker_state::half_open);
    EXPECT_EQ(events->transitions[2].to, breaker_state::closed);
}

TEST(CircuitBreaker, FailedProbeReopensForLongerUpToTheCap) {
    test::manual_clock clock;
    circuit_breaker b(consecutive_only(1));
    fail(b, clock);
    EXPECT_EQ(b.open_until() - clock.now(), 1s);
    const duration expected[] = {2s, 4s, 5s, 5s};
    for (const duration open_for : expected) {
        clock.current = b.open_until();
        fail(b, clock);  // the probe fails
        EXPECT_EQ(b.state(), breaker_state::open);
        EXPECT_EQ(b.open_until() - clock.now(), open_for);
    }
    // Closing resets the growth.
    clock.current = b.open_until();
    succeed(b, clock);
    EXPECT_EQ(b.state(), breaker_state::closed);
    EXPECT_EQ(b.trips(), 0U);
    fail(b, clock);
    EXPECT_EQ(b.open_until() - clock.now(), 1s);
}

TEST(CircuitBreaker, FixedOpenDurationWithMultiplierOne) {
    test::manual_clock clock;
    auto cfg = consecutive_only(1);
    cfg.open_duration_multiplier = 1.0;
    circuit_breaker b(cfg);
    for (int i = 0; i < 4; ++i) {
        fail(b, clock);
        EXPECT_EQ(b.open_until() - clock.now(), 1s);
        clock.current = b.open_until();
    }
}

TEST(CircuitBreaker, HalfOpenAdmitsExactlyItsProbesAndNeedsAllToSucceed) {
    test::manual_clock clock;
    auto cfg = consecutive_only(1);
    cfg.half_open_probes = 3;
    circuit_breaker b(cfg);
    fail(b, clock);
    clock.advance(1s);
    const auto p1 = b.try_acquire(clock.now());
    const auto p2 = b.try_acquire(clock.now());
    const auto p3 = b.try_acquire(clock.now());
    ASSERT_TRUE(p1 && p2 && p3);
    EXPECT_FALSE(b.try_acquire(clock.now()));
    b.on_success(p1, clock.now(), 1ms);
    b.on_success(p2, clock.now(), 1ms);
    EXPECT_EQ(b.state(), breaker_state::half_open);
    EXPECT_FALSE(b.try_acquire(clock.now()));
    b.on_success(p3, clock.now(), 1ms);
    EXPECT_EQ(b.state(), breaker_state::closed);
}

TEST(CircuitBreaker, IgnoredProbeReturnsItsSlot) {
    test::manual_clock clock;
    circuit_breaker b(consecutive_only(1));
    fail(b, clock);
    clock.advance(1s);
    const auto probe = b.try_acquire(clock.now());
    ASSERT_TRUE(probe);
    EXPECT_FALSE(b.try_acquire(clock.now()));
    b.on_ignored(probe);
    EXPECT_TRUE(b.try_acquire(clock.now()));
}

TEST(CircuitBreaker, OutcomeOfACallAdmittedBeforeATransitionIsIgnored) {
    test::manual_clock clock;
    circuit_breaker b(consecutive_only(1));
    const auto slow_call = b.try_acquire(clock.now());
    fail(b, clock);  // trips
    clock.advance(1s);
    const auto probe = b.try_acquire(clock.now());
    ASSERT_TRUE(probe);
    // The old call succeeding must not count as the probe's success.
    b.on_success(slow_call, clock.now(), 2s);
    EXPECT_EQ(b.state(), breaker_state::half_open);
    b.on_failure(probe, clock.now(), 1ms);
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, FailureRateOverCountWindowNeedsMinimumCalls) {
    test::manual_clock clock;
    circuit_breaker_config cfg;
    cfg.consecutive_failures = 0;
    cfg.window = window_kind::count;
    cfg.window_size = 10;
    cfg.minimum_calls = 6;
    cfg.failure_rate_threshold = 0.5;
    circuit_breaker b(cfg);
    // 3 failures out of 5: rate 60 % but below the minimum number of calls.
    fail(b, clock);
    succeed(b, clock);
    fail(b, clock);
    succeed(b, clock);
    fail(b, clock);
    EXPECT_EQ(b.state(), breaker_state::closed);
    EXPECT_EQ(b.window_calls(), 5U);
    EXPECT_EQ(b.window_failures(), 3U);
    succeed(b, clock);  // 3 / 6 = 50 %, at the threshold
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, CountWindowForgetsTheOldestCalls) {
    test::manual_clock clock;
    circuit_breaker_config cfg;
    cfg.consecutive_failures = 0;
    cfg.window_size = 4;
    cfg.minimum_calls = 4;
    cfg.failure_rate_threshold = 0.75;
    circuit_breaker b(cfg);
    fail(b, clock, 2);
    succeed(b, clock, 2);  // 2/4
    succeed(b, clock, 2);  // window now: s s s s
    EXPECT_EQ(b.window_failures(), 0U);
    EXPECT_EQ(b.window_calls(), 4U);
    fail(b, clock, 2);  // s s f f = 50 %
    EXPECT_EQ(b.state(), breaker_state::closed);
    fail(b, clock);  // s f f f = 75 %
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, TimeWindowDropsCallsOlderThanTheWindow) {
    test::manual_clock clock;
    circuit_breaker_config cfg;
    cfg.consecutive_failures = 0;
    cfg.window = window_kind::time;
    cfg.window_duration = 10s;
    cfg.minimum_calls = 4;
    cfg.failure_rate_threshold = 0.5;
    circuit_breaker b(cfg);
    fail(b, clock, 3);
    clock.advance(11s);
    succeed(b, clock);
    // The three failures left the window: 0 / 1.
    EXPECT_EQ(b.window_calls(), 1U);
    EXPECT_EQ(b.window_failures(), 0U);
    fail(b, clock, 2);
    EXPECT_EQ(b.state(), breaker_state::closed);  // 2 / 3, below minimum calls
    fail(b, clock);
    EXPECT_EQ(b.state(), breaker_state::open);  // 3 / 4
}

TEST(CircuitBreaker, SlowCallRateTrips) {
    test::manual_clock clock;
    circuit_breaker_config cfg;
    cfg.consecutive_failures = 0;
    cfg.failure_rate_threshold = 0.0;
    cfg.window_size = 10;
    cfg.minimum_calls = 4;
    cfg.slow_call_duration = 100ms;
    cfg.slow_call_rate_threshold = 0.5;
    circuit_breaker b(cfg);
    succeed(b, clock, 2, 10ms);
    succeed(b, clock, 1, 100ms);
    EXPECT_EQ(b.window_slow_calls(), 1U);
    EXPECT_EQ(b.state(), breaker_state::closed);
    succeed(b, clock, 1, 500ms);  // 2 slow of 4
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, SlowProbeReopens) {
    test::manual_clock clock;
    auto cfg = consecutive_only(1);
    cfg.slow_call_duration = 100ms;
    cfg.slow_call_rate_threshold = 0.5;
    circuit_breaker b(cfg);
    fail(b, clock);
    clock.advance(1s);
    succeed(b, clock, 1, 200ms);
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, ClosingClearsTheWindow) {
    test::manual_clock clock;
    circuit_breaker_config cfg;
    cfg.consecutive_failures = 0;
    cfg.window_size = 10;
    cfg.minimum_calls = 2;
    cfg.failure_rate_threshold = 0.5;
    cfg.open_duration = 1s;
    circuit_breaker b(cfg);
    fail(b, clock, 2);
    ASSERT_EQ(b.state(), breaker_state::open);
    clock.advance(1s);
    succeed(b, clock);
    ASSERT_EQ(b.state(), breaker_state::closed);
    EXPECT_EQ(b.window_calls(), 0U);
    succeed(b, clock);
    fail(b, clock);  // 1/2 = 50 %: trips again, so the old failures did not linger
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreaker, ReconfigureKeepsTheState) {
    test::manual_clock clock;
    circuit_breaker b(consecutive_only(1));
    fail(b, clock);
    auto cfg = consecutive_only(10);
    b.reconfigure(cfg);
    EXPECT_EQ(b.state(), breaker_state::open);
}

TEST(CircuitBreakerSet, PerEndpointBreakersAreIndependentAndRetainKeepsSurvivors) {
    test::manual_clock clock;
    circuit_breaker_set set(consecutive_only(1));
    fail(set.get("a"), clock);
    EXPECT_EQ(set.get("a").state(), breaker_state::open);
    EXPECT_EQ(set.get("b").state(), breaker_state::closed);
    set.retain({"a", "c"});
    EXPECT_EQ(set.size(), 1U);
    ASSERT_NE(set.find("a"), nullptr);
    EXPECT_EQ(set.find("a")->state(), breaker_state::open);
    EXPECT_EQ(set.find("b"), nullptr);
}

TEST(CircuitBreakerProperty, HalfOpenNeverAdmitsMoreThanItsProbes) {
    random_source rng(11);
    for (int run = 0; run < 200; ++run) {
        circuit_breaker_config cfg = consecutive_only(1 + static_cast<unsigned>(rng.below(3)));
        cfg.half_open_probes = 1 + static_cast<unsigned>(rng.below(4));
        circuit_breaker b(cfg);
        test::manual_clock clock;
        std::vector<breaker_permit> in_flight;
        for (int step = 0; step < 300; ++step) {
            clock.advance(std::chrono::milliseconds(rng.below(400)));
            const auto action = rng.below(4);
            if (action == 0 || in_flight.empty()) {
                if (const auto p = b.try_acquire(clock.now())) {
                    in_flight.push_back(p);
                }
            } else {
                const std::size_t i = rng.below(in_flight.size());
                const auto p = in_flight[i];
                in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(i));
                if (action == 1) {
                    b.on_success(p, clock.now(), 1ms);
                } else if (action == 2) {
                    b.on_failure(p, clock.now(), 1ms);
                } else {
                    b.on_ignored(p);
                }
            }
            if (b.state() == breaker_state::half_open) {
                // Permits of the current half-open generation are its probes.
                std::size_t probes = 0;
                for (const auto& p : in_flight) {
                    probes += p.generation == b.generation() ? 1 : 0;
                }
                ASSERT_LE(probes, cfg.half_open_probes);
            }
            if (b.state() == breaker_state::open && clock.now() < b.open_until()) {
                ASSERT_FALSE(b.try_acquire(clock.now()));
            }
        }
    }
}

}  // namespace
}  // namespace lakemesh::resilience
