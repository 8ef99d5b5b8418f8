#include <lakemesh/resilience/retry.hpp>

#include <gtest/gtest.h>
#include <boost/asio/error.hpp>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

retry_config exponential(jitter_kind jitter) {
    retry_config cfg;
    cfg.base_backoff = 10ms;
    cfg.max_backoff = 200ms;
    cfg.multiplier = 2.0;
    cfg.jitter = jitter;
    return cfg;
}

TEST(Backoff, WithoutJitterGrowsExponentiallyUpToTheCap) {
    const retry_config cfg = exponential(jitter_kind::none);
    backoff b(cfg);
    random_source rng(1);
    EXPECT_EQ(b.next(rng), 10ms);
    EXPECT_EQ(b.next(rng), 20ms);
    EXPECT_EQ(b.next(rng), 40ms);
    EXPECT_EQ(b.next(rng), 80ms);
    EXPECT_EQ(b.next(rng), 160ms);
    EXPECT_EQ(b.next(rng), 200ms);
    EXPECT_EQ(b.next(rng), 200ms);
}

TEST(Backoff, CeilingDoesNotOverflowForManyRetries) {
    const retry_config cfg = exponential(jitter_kind::none);
    const backoff b(cfg);
    EXPECT_EQ(b.ceiling(10'000), 200ms);
}

TEST(Backoff, ZeroCapMeansUncapped) {
    retry_config cfg = exponential(jitter_kind::none);
    cfg.max_backoff = 0ms;
    const backoff b(cfg);
    EXPECT_EQ(b.ceiling(11), 10ms * 1024);
}

TEST(BackoffProperty, FullJitterStaysWithinZeroAndTheCappedExponential) {
    const retry_config cfg = exponential(jitter_kind::full);
    random_source rng(42);
    duration smallest = duration::max();
    duration largest = duration::zero();
    for (int run = 0; run < 2000; ++run) {
        backoff b(cfg);
        for (unsigned retry = 1; retry <= 8; ++retry) {
            const duration d = b.next(rng);
            ASSERT_GE(d, duration::zero());
            ASSERT_LE(d, b.ceiling(retry));
            ASSERT_LE(d, cfg.max_backoff);
            smallest = std::min(smallest, d);
            largest = std::max(largest, d);
        }
    }
    // Actually jittered: the whole range is used.
    EXPECT_LT(smallest, 1ms);
    EXPECT_GT(largest, 190ms);
}

TEST(BackoffProperty, DecorrelatedJitterStaysWithinBaseAndCapAndThreeTimesPrevious) {
    const retry_config cfg = exponential(jitter_kind::decorrelated);
    random_source rng(7);
    for (int run = 0; run < 2000; ++run) {
        backoff b(cfg);
        duration previous = cfg.base_backoff;
        for (int retry = 0; retry < 10; ++retry) {
            const duration d = b.next(rng);
            ASSERT_GE(d, cfg.base_backoff);
            ASSERT_LE(d, cfg.max_backoff);
            ASSERT_LE(d, previous * 3);
            previous = d;
        }
    }
}

TEST(Backoff, SameSeedGivesSameDelays) {
    const retry_config cfg = exponential(jitter_kind::full);
    random_source a(99), b(99);
    backoff x(cfg), y(cfg);
    for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(x.next(a), y.next(b));
    }
}

TEST(RetryBudget, FloorAllowsRetriesWithoutTraffic) {
    test::manual_clock clock;
    retry_budget budget({.ratio = 0.0, .min_retries_per_second = 1.0, .window = 10s});
    for (int i = 0; i < 10; ++i) {
        EXPECT_TRUE(budget.try_withdraw(clock.now())) << i;
    }
    EXPECT_FALSE(budget.try_withdraw(clock.now()));
}

TEST(RetryBudget, RatioOfRecentRequests) {
    test::manual_clock clock;
    retry_budget budget({.ratio = 0.1, .min_retries_per_second = 0.0, .window = 10s});
    EXPECT_FALSE(budget.try_withdraw(clock.now()));
    for (int i = 0; i < 100; ++i) {
        budget.record_request(clock.now());
    }
    int allowed = 0;
    while (budget.try_withdraw(clock.now())) {
        ++allowed;
    }
    EXPECT_EQ(allowed, 10);
    EXPECT_DOUBLE_EQ(budget.available(clock.now()), 0.0);
}

TEST(RetryBudget, OldRequestsAndRetriesLeaveTheWindow) {
    test::manual_clock clock;
    retry_budget budget({.ratio = 0.5, .min_retries_per_second = 0.0, .window = 10s});
    for (int i = 0; i < 10; ++i) {
        budget.record_request(clock.now());
    }
    for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(budget.try_withdraw(clock.now()));
    }
    EXPECT_FALSE(budget.try_withdraw(clock.now()));
    clock.advance(5s);
    for (int i = 0; i < 2; ++i) {
        budget.record_request(clock.now());
    }
    // 12 requests -> 6 retries allowed, 5 spent.
    EXPECT_TRUE(budget.try_withdraw(clock.now()));
    EXPECT_FALSE(budget.try_withdraw(clock.now()));
    clock.advance(6s);
    // The first 10 requests and 5 retries left the window: 2 requests -> 1 retry, 1 spent.
    EXPECT_FALSE(budget.try_withdraw(clock.now()));
    clock.advance(10s);
    EXPECT_DOUBLE_EQ(budget.available(clock.now()), 0.0);
    budget.record_request(clock.now());
    budget.record_request(clock.now());
    EXPECT_TRUE(budget.try_withdraw(clock.now()));
}

TEST(RetryBudget, ZeroWindowMeansNoBudget) {
    test::manual_clock clock;
    retry_budget budget({.ratio = 0.0, .min_retries_per_second = 0.0, .window = 0s});
    for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(budget.try_withdraw(clock.now()));
    }
}

TEST(RetryBudgetProperty, RetriesNeverExceedRatioPlusFloorInAnyWindow) {
    random_source rng(2024);
    const retry_budget_config cfg{.ratio = 0.2, .min_retries_per_second = 2.0, .window = 10s};
    test::manual_clock clock;
    retry_budget budget(cfg);
    struct stamp {
        time_point at;
        bool retry;
    };
    std::vector<stamp> history;
    std::size_t granted = 0;
    for (int step = 0; step < 20000; ++step) {
        clock.advance(std::chrono::milliseconds(rng.below(20)));
        if (rng.below(3) != 0) {
            budget.record_request(clock.now());
            history.push_back({clock.now(), false});
            continue;
        }
        if (!budget.try_withdraw(clock.now())) {
            continue;
        }
        ++granted;
        history.push_back({clock.now(), true});
        // The budget's window spans 9 to 10 s (ten one-second buckets): every retry of the last
        // 9 s counts against it, and only requests of the last 10 s can pay for them.
        std::size_t requests = 0, retries = 0;
        for (auto it = history.rbegin(); it != history.rend() && clock.now() - it->at < 10s; ++it) {
            if (!it->retry) {
                ++requests;
            } else if (clock.now() - it->at < 9s) {
                ++retries;
            }
        }
        ASSERT_LE(static_cast<double>(retries),
                  cfg.min_retries_per_second * 10.0 + cfg.ratio * static_cast<double>(requests))
            << "step " << step;
    }
    // The budget does grant retries: it is not simply refusing everything.
    EXPECT_GT(granted, 1000U);
}

TEST(RetryState, NonRetryableErrorStopsWithThatError) {
    retry_config cfg;
    retry_state state(cfg, {});
    random_source rng;
    state.on_attempt();
    const auto d = state.on_failure(consul_errc::not_found, time_point{1h}, nullptr, rng);
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.error, consul_errc::not_found);
}

TEST(RetryState, RetriesUntilMaxAttemptsThenRetriesExhausted) {
    retry_config cfg = exponential(jitter_kind::none);
    cfg.max_attempts = 3;
    retry_state state(cfg, {});
    random_source rng;
    state.on_attempt();
    auto d = state.on_failure(consul_errc::unavailable, time_point{1h}, nullptr, rng);
    EXPECT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 10ms);
    state.on_attempt();
    d = state.on_failure(consul_errc::unavailable, time_point{1h}, nullptr, rng);
    EXPECT_TRUE(d.retry);
    EXPECT_EQ(d.delay, 20ms);
    state.on_attempt();
    d = state.on_failure(consul_errc::unavailable, time_point{1h}, nullptr, rng);
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.error, policy_errc::retries_exhausted);
}

TEST(RetryState, SingleAttemptReturnsTheOriginalError) {
    retry_config cfg;
    cfg.max_attempts = 1;
    retry_state state(cfg, {});
    random_source rng;
    state.on_attempt();
    EXPECT_EQ(state.on_failure(transport_errc::timeout, time_point{1h}, nullptr, rng).error,
              transport_errc::timeout);
}

TEST(RetryState, NonIdempotentCallRetriesOnlyFailuresThatProveNothingWasSent) {
    retry_config cfg;
    cfg.idempotent = false;
    random_source rng;
    retry_state state(cfg, {});
    state.on_attempt();
    EXPECT_FALSE(
        state.on_failure(transport_errc::connection_closed, time_point{1h}, nullptr, rng).retry);
    retry_state second(cfg, {});
    second.on_attempt();
    EXPECT_TRUE(
        second.on_failure(transport_errc::connect_failed, time_point{1h}, nullptr, rng).retry);
    retry_state third(cfg, {});
    third.on_attempt();
    EXPECT_TRUE(
        third.on_failure(boost::asio::error::connection_refused, time_point{1h}, nullptr, rng)
            .retry);
    // The per-call override wins over the configuration.
    retry_state overridden(cfg, {}, true);
    overridden.on_attempt();
    EXPECT_TRUE(
        overridden.on_failure(transport_errc::connection_closed, time_point{1h}, nullptr, rng)
            .retry);
}

TEST(RetryState, CustomClassifierReplacesIsRetryable) {
    retry_config cfg;
    cfg.retry_on = [](const error_code& ec) { return ec == consul_errc::conflict; };
    random_source rng;
    retry_state state(cfg, {});
    state.on_attempt();
    EXPECT_TRUE(state.on_failure(consul_errc::conflict, time_point{1h}, nullptr, rng).retry);
    state.on_attempt();
    EXPECT_FALSE(state.on_failure(consul_errc::unavailable, time_point{1h}, nullptr, rng).retry);
}

TEST(RetryState, BackoffThatWouldEndPastTheDeadlineStopsTheCall) {
    retry_config cfg = exponential(jitter_kind::none);
    cfg.max_attempts = 10;
    test::manual_clock clock;
    retry_state state(cfg, deadline::after(clock.now(), 25ms));
    random_source rng;
    state.on_attempt();
    EXPECT_TRUE(
        state.on_failure(transport_errc::timeout, clock.now(), nullptr, rng).retry);  // 10ms
    clock.advance(10ms);
    state.on_attempt();
    // The next backoff is 20 ms but only 15 ms remain.
    const auto d = state.on_failure(transport_errc::timeout, clock.now(), nullptr, rng);
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.error, policy_errc::deadline_exceeded);
}

TEST(RetryState, BudgetRefusalStopsWithBudgetExhausted) {
    test::manual_clock clock;
    retry_budget budget({.ratio = 0.0, .min_retries_per_second = 0.1, .window = 10s});
    retry_config cfg;
    random_source rng;
    retry_state first(cfg, {});
    first.on_attempt();
    EXPECT_TRUE(first.on_failure(transport_errc::timeout, clock.now(), &budget, rng).retry);
    retry_state second(cfg, {});
    second.on_attempt();
    const auto d = second.on_failure(transport_errc::timeout, clock.now(), &budget, rng);
    EXPECT_FALSE(d.retry);
    EXPECT_EQ(d.error, policy_errc::retry_budget_exhausted);
}

TEST(RetryStateProperty, NoAttemptIsEverScheduledAtOrPastTheDeadline) {
    random_source rng(5);
    for (int run = 0; run < 500; ++run) {
        retry_config cfg;
        cfg.max_attempts = 1 + static_cast<unsigned>(rng.below(20));
        cfg.base_backoff = std::chrono::milliseconds(1 + rng.below(50));
        cfg.max_backoff = std::chrono::milliseconds(50 + rng.below(500));
        cfg.jitter = static_cast<jitter_kind>(rng.below(3));
        test::manual_clock clock;
        const deadline dl =
            deadline::after(clock.now(), std::chrono::milliseconds(1 + rng.below(2000)));
        retry_state state(cfg, dl);
        unsigned attempts = 0;
        while (true) {
            ASSERT_FALSE(dl.expired(clock.now())) << "attempt started past the deadline";
            state.on_attempt();
            ++attempts;
            clock.advance(std::chrono::milliseconds(rng.below(100)));  // the attempt runs
            const auto d = state.on_failure(transport_errc::timeout, clock.now(), nullptr, rng);
            if (!d.retry) {
                break;
            }
            clock.advance(d.delay);
        }
        ASSERT_LE(attempts, cfg.max_attempts);
    }
}

}  // namespace
}  // namespace lakemesh::resilience
