// The Asio shell of the policy: real io_context and timers, scripted operations. Timeouts are
// a few milliseconds and guard operations that never complete on their own, so outcomes do not
// depend on scheduling.
#include <lakemesh/resilience/policy.hpp>

#include <gtest/gtest.h>
#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <deque>
#include <optional>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// An operation that completes with the next scripted error, after the io_context turns once.
struct scripted_operation {
    asio::io_context& io;
    std::deque<error_code> script{};
    int started = 0;

    auto op() {
        return [this](auto token) {
            return asio::async_initiate<decltype(token), void(error_code)>(
                [this](auto handler) {
                    ++started;
                    error_code ec;
                    if (!script.empty()) {
                        ec = script.front();
                        script.pop_front();
                    }
                    asio::post(io, asio::append(std::move(handler), ec));
                },
                token);
        };
    }
};

/// Operations that stay pending until the test completes them, or until they are cancelled
/// through their cancellation slot.
struct held_operations {
    asio::io_context& io;
    struct pending {
        asio::any_completion_handler<void(error_code)> handler;
    };
    std::deque<std::shared_ptr<pending>> held{};
    int started = 0;
    int cancelled = 0;
    /// false: a cancelled operation is only counted, and completes when the test says so.
    bool abort_when_cancelled = true;

    auto op() {
        return [this](auto token) {
            return asio::async_initiate<decltype(token), void(error_code)>(
                [this](auto handler) {
                    ++started;
                    auto slot = asio::get_associated_cancellation_slot(handler);
                    // Constructed, not assigned: Boost 1.81's any_completion_handler move
                    // assignment recurses endlessly.
                    auto p = std::make_shared<pending>(pending{std::move(handler)});
                    if (slot.is_connected()) {
                        slot.assign([this, p](asio::cancellation_type) {
                            if (p->handler && !abort_when_cancelled) {
                                ++cancelled;  // it completes when the test says so
                            } else if (p->handler) {
                                ++cancelled;
                                asio::post(io, asio::append(std::move(p->handler),
                                                            asio::error::operation_aborted));
                            }
                        });
                    }
                    held.push_back(p);
                },
                token);
        };
    }
    /// Completes the oldest held operation that has not completed yet.
    void complete_next(error_code ec = {}) {
        while (!held.empty()) {
            auto p = held.front();
            held.pop_front();
            if (p->handler) {
                asio::post(io, asio::append(std::move(p->handler), ec));
                return;
            }
        }
        FAIL() << "nothing held";
    }
};

policy_config fast_config() {
    policy_config cfg;
    cfg.target = "svc";
    cfg.retry.max_attempts = 3;
    cfg.retry.base_backoff = 1ms;
    cfg.retry.max_backoff = 2ms;
    cfg.retry_budget.window = 0s;
    cfg.circuit_breaker.reset();
    cfg.bulkhead.reset();
    return cfg;
}

struct PolicyTest : ::testing::Test {
    asio::io_context io;
    std::shared_ptr<test::event_recorder> events = std::make_shared<test::event_recorder>();

    policy make(policy_config cfg) { return policy(io, std::move(cfg), events, 1234); }
    // Held operations keep no work on the io_context, so it stops whenever it runs dry.
    void poll() {
        io.restart();
        io.poll();
    }
    void run() {
        io.restart();
        io.run();
    }
};

TEST_F(PolicyTest, SuccessOnFirstAttempt) {
    auto p = make(fast_config());
    scripted_operation server{io, {}};
    std::optional<error_code> result;
    async_execute(p, server.op(), [&](error_code ec) { result = ec; });
    EXPECT_FALSE(result.has_value()) << "handler ran inside the initiating function";
    run();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(*result);
    EXPECT_EQ(server.started, 1);
    EXPECT_EQ(events->attempts.size(), 1U);
}

TEST_F(PolicyTest, RetriesRecoverFromTransientFailures) {
    auto p = make(fast_config());
    scripted_operation server{io, {consul_errc::unavailable, transport_errc::connection_closed}};
    std::optional<error_code> result;
    async_execute(p, server.op(), [&](error_code ec) { result = ec; });
    run();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(*result);
    EXPECT_EQ(server.started, 3);
    ASSERT_EQ(events->retries.size(), 2U);
    EXPECT_EQ(events->retries[0].next_attempt, 2U);
    EXPECT_EQ(events->retries[0].error, consul_errc::unavailable);
    EXPECT_EQ(events->retries[1].next_attempt, 3U);
}

TEST_F(PolicyTest, NonRetryableErrorIsReturnedAtOnce) {
    auto p = make(fast_config());
    scripted_operation server{io, {consul_errc::permission_denied}};
    std::optional<error_code> result;
    async_execute(p, server.op(), [&](error_code ec) { result = ec; });
    run();
    EXPECT_EQ(*result, consul_errc::permission_denied);
    EXPECT_EQ(server.started, 1);
}

TEST_F(PolicyTest, RetriesExhaustedReportsTheLastError) {
    auto p = make(fast_config());
    scripted_operation server{
        io, {consul_errc::unavailable, consul_errc::unavailable, consul_errc::gateway_timeout}};
    std::optional<error_code> result;
    error_code last;
    async_execute(p, call_options{.last_error = &last}, server.op(),
                  [&](error_code ec) { result = ec; });
    run();
    EXPECT_EQ(*result, policy_errc::retries_exhausted);
    EXPECT_EQ(last, consul_errc::gateway_timeout);
    EXPECT_EQ(server.started, 3);
}

TEST_F(PolicyTest, NonIdempotentCallIsNotRetriedAfterTheRequestMayHaveBeenSent) {
    auto p = make(fast_config());
    scripted_operation server{io, {transport_errc::connection_closed}};
    std::optional<error_code> result;
    async_execute(p, call_options{.idempotent = false}, server.op(),
                  [&](error_code ec) { result = ec; });
    run();
    EXPECT_EQ(*result, transport_errc::connection_closed);
    EXPECT_EQ(server.started, 1);
}

TEST_F(PolicyTest, RetryBudgetStopsRetryStorms) {
    auto cfg = fast_config();
    cfg.retry_budget = {.ratio = 0.0, .min_retries_per_second = 0.1, .window = 10s};  // one retry
    auto p = make(cfg);
    scripted_operation server{io, {}};
    for (int i = 0; i < 10; ++i) {
        server.script.push_back(consul_errc::unavailable);
    }
    std::vector<error_code> results;
    for (int i = 0; i < 3; ++i) {
        async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    }
    run();
    ASSERT_EQ(results.size(), 3U);
    // Three calls, one retry in the budget: four attempts in total.
    EXPECT_EQ(server.started, 4);
    EXPECT_EQ(
        std::count(results.begin(), results.end(), error_code(policy_errc::retry_budget_exhausted)),
        3);
    EXPECT_EQ(events->budget_exhausted.size(), 3U);
}

TEST_F(PolicyTest, OpenBreakerRejectsWithoutCallingTheOperation) {
    auto cfg = fast_config();
    cfg.retry.max_attempts = 1;
    cfg.circuit_breaker = circuit_breaker_config{
        .consecutive_failures = 2, .failure_rate_threshold = 0.0, .open_duration = 1h};
    auto p = make(cfg);
    scripted_operation server{io, {consul_errc::internal_error, consul_errc::internal_error}};
    std::vector<error_code> results;
    for (int i = 0; i < 2; ++i) {
        async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
        run();
    }
    EXPECT_EQ(p.breaker().state(), breaker_state::open);
    async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    run();
    ASSERT_EQ(results.size(), 3U);
    EXPECT_EQ(results[2], policy_errc::circuit_open);
    EXPECT_EQ(server.started, 2);
    EXPECT_EQ(events->rejections, std::vector<error_code>{policy_errc::circuit_open});
    ASSERT_EQ(events->transitions.size(), 1U);
    EXPECT_EQ(events->transitions[0].to, breaker_state::open);
}

TEST_F(PolicyTest, NotFoundDoesNotCountAgainstTheBreaker) {
    auto cfg = fast_config();
    cfg.circuit_breaker = circuit_breaker_config{.consecutive_failures = 1};
    auto p = make(cfg);
    scripted_operation server{io, {consul_errc::not_found}};
    async_execute(p, server.op(), [](error_code) {});
    run();
    EXPECT_EQ(p.breaker().state(), breaker_state::closed);
}

TEST_F(PolicyTest, BulkheadLimitsConcurrencyQueuesAndRejects) {
    auto cfg = fast_config();
    cfg.bulkhead = bulkhead_config{.max_concurrent = 2, .max_queue = 1, .max_wait = 0ms};
    auto p = make(cfg);
    held_operations server{io};
    std::vector<error_code> results;
    for (int i = 0; i < 4; ++i) {
        async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    }
    poll();
    EXPECT_EQ(server.started, 2);
    EXPECT_EQ(p.concurrency().in_flight(), 2U);
    EXPECT_EQ(p.concurrency().waiting(), 1U);
    ASSERT_EQ(results.size(), 1U);
    EXPECT_EQ(results[0], policy_errc::bulkhead_full);
    server.complete_next();
    poll();
    EXPECT_EQ(server.started, 3);  // the waiter got the freed slot
    EXPECT_EQ(p.concurrency().in_flight(), 2U);
    server.complete_next();
    server.complete_next();
    run();
    EXPECT_EQ(results.size(), 4U);
    EXPECT_EQ(p.concurrency().in_flight(), 0U);
    EXPECT_EQ(events->rejections, std::vector<error_code>{policy_errc::bulkhead_full});
}

TEST_F(PolicyTest, BulkheadWaitTimesOut) {
    auto cfg = fast_config();
    cfg.bulkhead = bulkhead_config{.max_concurrent = 1, .max_queue = 1, .max_wait = 5ms};
    auto p = make(cfg);
    held_operations server{io};
    std::vector<error_code> results;
    async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    io.run_for(200ms);
    ASSERT_EQ(results.size(), 1U);
    EXPECT_EQ(results[0], policy_errc::bulkhead_wait_timeout);
    EXPECT_EQ(server.started, 1);
    server.complete_next();
    run();
    EXPECT_EQ(results.size(), 2U);
    EXPECT_EQ(p.concurrency().waiting(), 0U);
}

TEST_F(PolicyTest, PerTryTimeoutCancelsTheAttemptAndRetries) {
    auto cfg = fast_config();
    cfg.retry.per_try_timeout = 5ms;
    auto p = make(cfg);
    held_operations server{io};
    std::optional<error_code> result;
    error_code last;
    async_execute(p, call_options{.last_error = &last}, server.op(),
                  [&](error_code ec) { result = ec; });
    run();
    // Every attempt hung and was cancelled by its own timeout, then retried.
    EXPECT_EQ(server.started, 3);
    EXPECT_EQ(server.cancelled, 3);
    EXPECT_EQ(*result, policy_errc::retries_exhausted);
    EXPECT_EQ(last, transport_errc::timeout);
}

TEST_F(PolicyTest, DeadlineCancelsTheOperationInFlight) {
    auto cfg = fast_config();
    cfg.timeout = 10ms;
    auto p = make(cfg);
    held_operations server{io};
    std::optional<error_code> result;
    async_execute(p, server.op(), [&](error_code ec) { result = ec; });
    run();
    EXPECT_EQ(*result, policy_errc::deadline_exceeded);
    EXPECT_EQ(server.started, 1);
    EXPECT_EQ(server.cancelled, 1);
}

TEST_F(PolicyTest, ExpiredInheritedDeadlineStartsNoAttempt) {
    auto p = make(fast_config());
    scripted_operation server{io, {}};
    std::optional<error_code> result;
    async_execute(p, call_options{.inherited = deadline::at(clock::now() - 1ms)}, server.op(),
                  [&](error_code ec) { result = ec; });
    run();
    EXPECT_EQ(*result, policy_errc::deadline_exceeded);
    EXPECT_EQ(server.started, 0);
}

TEST_F(PolicyTest, NestedCallInheritsTheOuterDeadline) {
    auto outer_cfg = fast_config();
    outer_cfg.timeout = 1h;
    auto outer = make(outer_cfg);
    auto inner = make(fast_config());
    std::optional<deadline> seen_outer, seen_inner;
    std::optional<error_code> result;
    scripted_operation server{io, {}};
    async_execute(
        outer,
        [&](const attempt_context& ctx, auto token) {
            seen_outer = ctx.call_deadline;
            return async_execute(
                inner, call_options{.inherited = ctx.call_deadline},
                [&](const attempt_context& inner_ctx, auto inner_token) {
                    seen_inner = inner_ctx.call_deadline;
                    return server.op()(std::move(inner_token));
                },
                std::move(token));
        },
        [&](error_code ec) { result = ec; });
    run();
    ASSERT_TRUE(result && !*result);
    ASSERT_TRUE(seen_outer && seen_inner);
    EXPECT_TRUE(seen_outer->is_set());
    EXPECT_EQ(*seen_inner, *seen_outer);
}

TEST_F(PolicyTest, CallerCancellationAbortsTheAttemptInFlight) {
    auto p = make(fast_config());
    held_operations server{io};
    asio::cancellation_signal signal;
    std::optional<error_code> result;
    async_execute(p, server.op(),
                  asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    poll();
    EXPECT_EQ(server.started, 1);
    signal.emit(asio::cancellation_type::terminal);
    run();
    EXPECT_EQ(*result, asio::error::operation_aborted);
    EXPECT_EQ(server.started, 1);  // not retried
}

TEST_F(PolicyTest, CallerCancellationIsNotTurnedIntoATimeoutByALaterPerTryTimeout) {
    // An operation that takes its time to abort: the caller's cancel reaches it, and its
    // per-try timeout fires before it reports back. The call must still end as cancelled,
    // not be retried as a timed-out attempt.
    auto cfg = fast_config();
    cfg.retry.per_try_timeout = 5ms;
    auto p = make(cfg);
    held_operations server{io};
    server.abort_when_cancelled = false;
    asio::cancellation_signal signal;
    std::optional<error_code> result;
    async_execute(p, server.op(),
                  asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    poll();
    ASSERT_EQ(server.started, 1);
    signal.emit(asio::cancellation_type::terminal);
    EXPECT_EQ(server.cancelled, 1);
    // Past the per-try timeout: its timer runs while the attempt is still aborting.
    asio::steady_timer past(io, 30ms);
    past.async_wait([](error_code) {});
    run();
    EXPECT_FALSE(result.has_value());
    server.complete_next(asio::error::operation_aborted);
    run();
    ASSERT_TRUE(result.has_value());
    EXPECT_EQ(*result, asio::error::operation_aborted);
    EXPECT_EQ(server.started, 1) << "not retried";
}

TEST_F(PolicyTest, CallerCancellationDuringBackoffEndsTheCall) {
    auto cfg = fast_config();
    cfg.retry.base_backoff = 1h;
    cfg.retry.max_backoff = 1h;
    cfg.retry.jitter = jitter_kind::none;
    auto p = make(cfg);
    scripted_operation server{io, {consul_errc::unavailable}};
    asio::cancellation_signal signal;
    std::optional<error_code> result;
    async_execute(p, server.op(),
                  asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    poll();
    ASSERT_FALSE(result.has_value());
    signal.emit(asio::cancellation_type::terminal);
    run();
    EXPECT_EQ(*result, asio::error::operation_aborted);
}

TEST_F(PolicyTest, CancelAfterStyleTimerCancellation) {
    // Boost 1.81 has no asio::cancel_after; a timer emitting on the handler's slot is the same.
    auto p = make(fast_config());
    held_operations server{io};
    asio::cancellation_signal signal;
    asio::steady_timer timer(io, 5ms);
    timer.async_wait([&](error_code) { signal.emit(asio::cancellation_type::terminal); });
    std::optional<error_code> result;
    async_execute(p, server.op(),
                  asio::bind_cancellation_slot(signal.slot(), [&](error_code ec) { result = ec; }));
    run();
    EXPECT_EQ(*result, asio::error::operation_aborted);
}

TEST_F(PolicyTest, ValueOfTheLastAttemptIsDelivered) {
    auto p = make(fast_config());
    int calls = 0;
    auto op = [&](auto token) {
        return asio::async_initiate<decltype(token), void(error_code, std::string)>(
            [&](auto handler) {
                ++calls;
                const error_code ec =
                    calls < 2 ? error_code(consul_errc::unavailable) : error_code();
                asio::post(io, asio::append(std::move(handler), ec, std::to_string(calls)));
            },
            token);
    };
    std::optional<std::string> value;
    async_execute(p, op, [&](error_code ec, std::string v) {
        EXPECT_FALSE(ec);
        value = std::move(v);
    });
    run();
    EXPECT_EQ(value, "2");
}

TEST_F(PolicyTest, WorksWithUseFuture) {
    auto p = make(fast_config());
    scripted_operation server{io, {consul_errc::unavailable}};
    std::future<void> f = async_execute(p, server.op(), asio::use_future);
    run();
    EXPECT_NO_THROW(f.get());
    EXPECT_EQ(server.started, 2);
}

TEST_F(PolicyTest, ReplacingThePolicyKeepsCallsInFlight) {
    auto cfg = fast_config();
    cfg.bulkhead = bulkhead_config{.max_concurrent = 1, .max_queue = 4, .max_wait = 0ms};
    auto p = make(cfg);
    held_operations server{io};
    std::vector<error_code> results;
    for (int i = 0; i < 3; ++i) {
        async_execute(p, server.op(), [&](error_code ec) { results.push_back(ec); });
    }
    poll();
    EXPECT_EQ(server.started, 1);
    auto bigger = cfg;
    bigger.bulkhead->max_concurrent = 3;
    bigger.retry.max_attempts = 1;
    p.replace(bigger);
    poll();
    EXPECT_EQ(server.started, 3);  // the raised limit admitted both waiters
    for (int i = 0; i < 3; ++i) {
        server.complete_next();
    }
    run();
    EXPECT_EQ(results, std::vector<error_code>(3));
    EXPECT_EQ(p.config()->retry.max_attempts, 1U);
}

TEST_F(PolicyTest, ThrowingOperationFailsItsAttemptWithoutEscaping) {
    auto cfg = fast_config();
    cfg.retry.max_attempts = 1;
    auto p = make(cfg);
    std::optional<error_code> result;
    async_execute(
        p,
        [](auto token) {
            return asio::async_initiate<decltype(token), void(error_code)>(
                [](auto) { throw std::runtime_error("boom"); }, token);
        },
        [&](error_code ec) { result = ec; });
    run();
    ASSERT_TRUE(result.has_value());
    EXPECT_TRUE(*result);
}

TEST_F(PolicyTest, PolicyMayBeDestroyedWhileCallsAreInFlight) {
    held_operations server{io};
    std::optional<error_code> result;
    {
        auto p = make(fast_config());
        async_execute(p, server.op(), [&](error_code ec) { result = ec; });
        poll();
    }
    server.complete_next();
    run();
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(*result);
}

}  // namespace
}  // namespace lakemesh::resilience
