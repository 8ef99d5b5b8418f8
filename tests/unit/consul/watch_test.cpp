#include <lakemesh/consul/watch.hpp>

#include <gtest/gtest.h>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lakemesh::consul {
namespace {

using namespace std::chrono_literals;
using duration = watch_clock::duration;
using time_point = watch_clock::time_point;

// Time that moves only when the test says so.
struct manual_clock {
    time_point current{std::chrono::hours(1)};
    time_point now() const { return current; }
    void advance(duration d) { current += d; }
};

watch_config seeded(std::uint64_t seed = 7) {
    watch_config cfg;
    cfg.seed = seed;
    return cfg;
}

// Bounds of a jittered wait around `wait` with jitter fraction `f`.
std::pair<std::chrono::milliseconds, std::chrono::milliseconds> wait_bounds(
    std::chrono::milliseconds wait, double f) {
    const auto spread =
        std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(wait.count()) * f));
    return {wait - spread, wait + spread};
}

// ------------------------------------------------------------------------------ watch_fsm

TEST(watch_fsm, FirstFetchUsesIndexZeroAndAJitteredWait) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    EXPECT_EQ(fsm.state(), watch_state::idle);
    const watch_action a = fsm.start(clock.now());
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);
    const auto [low, high] = wait_bounds(5min, 1.0 / 16);
    EXPECT_GE(a.fetch.wait, low);
    EXPECT_LE(a.fetch.wait, high);
    EXPECT_FALSE(a.deliver);
    EXPECT_EQ(fsm.state(), watch_state::fetching);
}

TEST(watch_fsm, StartTwiceIsIgnored) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    EXPECT_EQ(fsm.start(clock.now()).kind, watch_action_kind::none);
}

TEST(watch_fsm, IndexMovingForwardDeliversAndFetchesAtOnceWithTheNewIndex) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    clock.advance(3ms);
    watch_action a = fsm.on_result(clock.now(), 42);
    EXPECT_TRUE(a.deliver);
    EXPECT_FALSE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 42U);
    EXPECT_EQ(fsm.index(), 42U);

    // A change that comes back fast is not rate-limited by default.
    clock.advance(1ms);
    a = fsm.on_result(clock.now(), 57);
    EXPECT_TRUE(a.deliver);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 57U);
}

TEST(watch_fsm, FirstResultIsDeliveredWhateverItsIndex) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    const watch_action a = fsm.on_result(clock.now(), 1);
    EXPECT_TRUE(a.deliver);
    EXPECT_EQ(a.fetch.index, 1U);
}

TEST(watch_fsm, UnchangedIndexAfterTheFullWaitDoesNotDeliverAndFetchesAtOnce) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    clock.advance(5min);  // the blocking call timed out on Consul's side
    const watch_action a = fsm.on_result(clock.now(), 42);
    EXPECT_FALSE(a.deliver);
    EXPECT_FALSE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 42U);
}

TEST(watch_fsm, UnchangedIndexReturnedFastWaitsUntilTheMinIntervalSinceTheCallStarted) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_unchanged_interval = 1s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);  // next call starts now
    const time_point call_start = clock.now();
    clock.advance(100ms);
    watch_action a = fsm.on_result(clock.now(), 42);
    EXPECT_FALSE(a.deliver);
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    EXPECT_EQ(a.wake_at, call_start + 1s);
    EXPECT_EQ(fsm.state(), watch_state::sleeping);

    // A timer that fires early (or a spurious wake-up) sleeps again until the same time.
    clock.advance(500ms);
    a = fsm.on_timer(clock.now());
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    EXPECT_EQ(a.wake_at, call_start + 1s);

    clock.advance(400ms);
    a = fsm.on_timer(clock.now());
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 42U);
    EXPECT_FALSE(a.deliver);
}

TEST(watch_fsm, UnchangedIndexNeverLoopsTightly) {
    // An agent that answers every call at once with the same index: the calls are spaced by the
    // minimum interval, however many there are.
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_unchanged_interval = 250ms;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 9);
    std::vector<time_point> fetch_times{clock.now()};
    for (int i = 0; i < 20; ++i) {
        watch_action a = fsm.on_result(clock.now(), 9);
        EXPECT_FALSE(a.deliver);
        if (a.kind == watch_action_kind::sleep) {
            clock.current = a.wake_at;
            a = fsm.on_timer(clock.now());
        }
        ASSERT_EQ(a.kind, watch_action_kind::fetch);
        fetch_times.push_back(clock.now());
    }
    for (std::size_t i = 1; i < fetch_times.size(); ++i) {
        EXPECT_GE(fetch_times[i] - fetch_times[i - 1], 250ms);
    }
}

TEST(watch_fsm, MinChangedIntervalRateLimitsChanges) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_changed_interval = 50ms;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    clock.advance(10ms);
    const watch_action a = fsm.on_result(clock.now(), 3);
    EXPECT_TRUE(a.deliver);
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    EXPECT_EQ(a.wake_at, clock.now() + 40ms);
}

TEST(watch_fsm, IndexGoingBackwardsResetsToZeroAndDelivers) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_unchanged_interval = 1s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    clock.advance(2s);
    watch_action a = fsm.on_result(clock.now(), 10);
    EXPECT_TRUE(a.deliver);
    EXPECT_TRUE(a.reset);
    EXPECT_EQ(fsm.index(), 0U);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);

    // The call after the reset delivers and follows the new index at once.
    clock.advance(1ms);
    a = fsm.on_result(clock.now(), 11);
    EXPECT_TRUE(a.deliver);
    EXPECT_FALSE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 11U);
}

TEST(watch_fsm, FastBackwardsIndexIsRateLimited) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_unchanged_interval = 1s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    const time_point call_start = clock.now();
    clock.advance(5ms);
    const watch_action a = fsm.on_result(clock.now(), 10);
    EXPECT_TRUE(a.reset);
    EXPECT_TRUE(a.deliver);
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    EXPECT_EQ(a.wake_at, call_start + 1s);
    clock.current = a.wake_at;
    const watch_action next = fsm.on_timer(clock.now());
    ASSERT_EQ(next.kind, watch_action_kind::fetch);
    EXPECT_EQ(next.fetch.index, 0U);
}

TEST(watch_fsm, ReturnedIndexZeroIsPassedBackAsOne) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    watch_action a = fsm.on_result(clock.now(), 0);
    EXPECT_TRUE(a.deliver);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 1U);

    // Zero again is the same as one: neither a change nor a reset.
    clock.advance(5min);
    a = fsm.on_result(clock.now(), 0);
    EXPECT_FALSE(a.deliver);
    EXPECT_FALSE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 1U);
}

TEST(watch_fsm, IndexDroppingToZeroResetsAndNeverPassesZeroBackFromAResponse) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    clock.advance(5min);
    watch_action a = fsm.on_result(clock.now(), 0);
    EXPECT_TRUE(a.reset);
    EXPECT_TRUE(a.deliver);
    EXPECT_EQ(a.fetch.index, 0U);  // the reset call
    a = fsm.on_result(clock.now(), 0);
    EXPECT_TRUE(a.deliver);
    EXPECT_EQ(a.fetch.index, 1U);
}

TEST(watch_fsm, ErrorsBackOffExponentiallyWithFullJitterAndKeepTheIndex) {
    manual_clock clock;
    watch_config cfg = seeded(3);
    cfg.error_backoff_base = 100ms;
    cfg.error_backoff_cap = 2s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    const error_code unavailable = consul_errc::unavailable;
    for (unsigned n = 1; n <= 8; ++n) {
        const watch_action a = fsm.on_error(clock.now(), unavailable);
        EXPECT_EQ(fsm.consecutive_errors(), n);
        const duration ceiling = std::min<duration>(2s, 100ms * (1 << (n - 1)));
        EXPECT_EQ(fsm.backoff_ceiling(n), ceiling);
        EXPECT_GE(a.backoff, duration::zero());
        EXPECT_LE(a.backoff, ceiling);
        EXPECT_FALSE(a.deliver);
        watch_action fetch = a;
        if (a.kind == watch_action_kind::sleep) {
            EXPECT_EQ(a.wake_at, clock.now() + a.backoff);
            clock.current = a.wake_at;
            fetch = fsm.on_timer(clock.now());
        }
        ASSERT_EQ(fetch.kind, watch_action_kind::fetch);
        // After errors the fetch does not block, but the index is kept for comparison.
        EXPECT_EQ(fetch.fetch.index, 0U);
        EXPECT_EQ(fsm.index(), 42U);
    }
}

TEST(watch_fsm, NonBlockingFetchAfterErrorsResynchronisesALostState) {
    manual_clock clock;
    watch_config cfg = seeded(5);
    cfg.min_unchanged_interval = 0s;
    cfg.error_backoff_base = 0s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 900);
    // The agent restarts and forgets everything: its index is now far below ours. A blocking
    // call with index 900 would hang for the whole wait, so the fetch after the error does not
    // block, and its lower index becomes the base at once.
    watch_action a = fsm.on_error(clock.now(), transport_errc::connection_closed);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);
    a = fsm.on_result(clock.now(), 12);
    EXPECT_TRUE(a.deliver);
    EXPECT_TRUE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 12U);
    // A resync that finds the same index delivers nothing and blocks on it again.
    a = fsm.on_error(clock.now(), transport_errc::connection_closed);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);
    a = fsm.on_result(clock.now(), 12);
    EXPECT_FALSE(a.deliver);
    EXPECT_FALSE(a.reset);
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 12U);
    // A resync that finds a higher index is an ordinary change.
    fsm.on_error(clock.now(), transport_errc::connection_closed);
    a = fsm.on_result(clock.now(), 20);
    EXPECT_TRUE(a.deliver);
    EXPECT_FALSE(a.reset);
    EXPECT_EQ(a.fetch.index, 20U);
}

TEST(watch_fsm, SuccessResetsTheBackoffAndAnUnchangedIndexAfterErrorsIsNotDelivered) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.min_unchanged_interval = 0s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    fsm.on_result(clock.now(), 42);
    for (int i = 0; i < 5; ++i) {
        const watch_action a = fsm.on_error(clock.now(), transport_errc::connect_failed);
        if (a.kind == watch_action_kind::sleep) {
            clock.current = a.wake_at;
            fsm.on_timer(clock.now());
        }
    }
    EXPECT_EQ(fsm.consecutive_errors(), 5U);
    const watch_action ok = fsm.on_result(clock.now(), 42);
    EXPECT_FALSE(ok.deliver);
    EXPECT_EQ(fsm.consecutive_errors(), 0U);
    const watch_action again = fsm.on_error(clock.now(), transport_errc::connect_failed);
    EXPECT_EQ(fsm.consecutive_errors(), 1U);
    EXPECT_LE(again.backoff, cfg.error_backoff_base);
}

TEST(watch_fsm, RetryNowEndsAnErrorBackoffAndNothingElse) {
    manual_clock clock;
    watch_config cfg = seeded(3);
    cfg.error_backoff_base = 10s;
    cfg.error_backoff_cap = 10s;
    cfg.min_unchanged_interval = 1s;
    watch_fsm fsm(cfg);
    fsm.start(clock.now());
    // Fetching: nothing to cut short.
    EXPECT_EQ(fsm.retry_now(clock.now()).kind, watch_action_kind::none);
    fsm.on_result(clock.now(), 42);
    // An unchanged index answered at once: a rate-limit sleep without errors stays.
    watch_action a = fsm.on_result(clock.now(), 42);
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    EXPECT_EQ(fsm.retry_now(clock.now()).kind, watch_action_kind::none);
    EXPECT_EQ(fsm.state(), watch_state::sleeping);
    clock.current = a.wake_at;
    ASSERT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::fetch);
    // Errors: a backoff of up to 10 s, unless the owner knows Consul answers again.
    a = fsm.on_error(clock.now(), transport_errc::connect_failed);
    a = a.kind == watch_action_kind::fetch
            ? fsm.on_error(clock.now(), transport_errc::connect_failed)
            : a;
    ASSERT_EQ(a.kind, watch_action_kind::sleep);
    clock.advance(1ms);
    a = fsm.retry_now(clock.now());
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);  // the non-blocking resync fetch that follows errors
    EXPECT_EQ(fsm.state(), watch_state::fetching);
    // The cancelled timer's late on_timer() is ignored: one fetch only.
    EXPECT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::none);
    a = fsm.on_result(clock.now(), 50);
    EXPECT_TRUE(a.deliver);
    EXPECT_EQ(fsm.consecutive_errors(), 0U);
    fsm.stop();
    EXPECT_EQ(fsm.retry_now(clock.now()).kind, watch_action_kind::stopped);
}

TEST(watch_fsm, ErrorBeforeTheFirstValueStillDeliversTheFirstSuccess) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    watch_action a = fsm.on_error(clock.now(), consul_errc::permission_denied);
    if (a.kind == watch_action_kind::sleep) {
        clock.current = a.wake_at;
        a = fsm.on_timer(clock.now());
    }
    ASSERT_EQ(a.kind, watch_action_kind::fetch);
    EXPECT_EQ(a.fetch.index, 0U);
    EXPECT_TRUE(fsm.on_result(clock.now(), 5).deliver);
}

TEST(watch_fsm, BackoffCeilingSaturatesAtTheCapAndZeroCapMeansNone) {
    watch_config cfg = seeded();
    cfg.error_backoff_base = 100ms;
    cfg.error_backoff_cap = 30s;
    const watch_fsm capped(cfg);
    EXPECT_EQ(capped.backoff_ceiling(0), 0s);
    EXPECT_EQ(capped.backoff_ceiling(1), 100ms);
    EXPECT_EQ(capped.backoff_ceiling(2), 200ms);
    EXPECT_EQ(capped.backoff_ceiling(9), 25600ms);
    EXPECT_EQ(capped.backoff_ceiling(10), 30s);
    EXPECT_EQ(capped.backoff_ceiling(4'000'000'000U), 30s);

    cfg.error_backoff_cap = 0s;
    const watch_fsm uncapped(cfg);
    EXPECT_EQ(uncapped.backoff_ceiling(11), 102400ms);
    EXPECT_EQ(uncapped.backoff_ceiling(200), duration::max());
}

TEST(watch_fsm_property, FullJitterBackoffStaysWithinZeroAndTheCeilingAndSpreads) {
    watch_config cfg;
    cfg.error_backoff_base = 10ms;
    cfg.error_backoff_cap = 1s;
    for (std::uint64_t seed = 1; seed <= 200; ++seed) {
        cfg.seed = seed;
        manual_clock clock;
        watch_fsm fsm(cfg);
        fsm.start(clock.now());
        duration smallest = duration::max();
        duration largest = duration::zero();
        for (unsigned n = 1; n <= 12; ++n) {
            const watch_action a = fsm.on_error(clock.now(), transport_errc::timeout);
            ASSERT_GE(a.backoff, duration::zero());
            ASSERT_LE(a.backoff, fsm.backoff_ceiling(n));
            ASSERT_LE(a.backoff, cfg.error_backoff_cap);
            smallest = std::min(smallest, a.backoff);
            largest = std::max(largest, a.backoff);
            if (a.kind == watch_action_kind::sleep) {
                clock.current = a.wake_at;
                ASSERT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::fetch);
            }
        }
        // Full jitter really spreads: over 12 draws the range is not degenerate.
        EXPECT_LT(smallest, largest);
    }
}

TEST(watch_fsm_property, WaitJitterStaysWithinBoundsAndCoversBothSides) {
    watch_config cfg;
    cfg.wait = 80s;
    cfg.wait_jitter = 0.125;
    cfg.min_unchanged_interval = 0s;
    const auto [low, high] = wait_bounds(cfg.wait, cfg.wait_jitter);
    bool below_nominal = false;
    bool above_nominal = false;
    for (std::uint64_t seed = 1; seed <= 50; ++seed) {
        cfg.seed = seed;
        manual_clock clock;
        watch_fsm fsm(cfg);
        watch_action a = fsm.start(clock.now());
        for (int i = 0; i < 40; ++i) {
            ASSERT_EQ(a.kind, watch_action_kind::fetch);
            ASSERT_GE(a.fetch.wait, low);
            ASSERT_LE(a.fetch.wait, high);
            below_nominal |= a.fetch.wait < cfg.wait;
            above_nominal |= a.fetch.wait > cfg.wait;
            clock.advance(cfg.wait);
            a = fsm.on_result(clock.now(), 100);
        }
    }
    EXPECT_TRUE(below_nominal);
    EXPECT_TRUE(above_nominal);
}

TEST(watch_fsm, WaitDefaultsClampsAndJitterOff) {
    manual_clock clock;
    watch_config cfg = seeded();
    cfg.wait = 0ms;
    EXPECT_EQ(watch_fsm(cfg).nominal_wait(), 5min);

    cfg.wait = 1h;
    cfg.wait_jitter = 0.5;
    for (int i = 0; i < 100; ++i) {
        cfg.seed = static_cast<std::uint64_t>(i);
        watch_fsm fsm(cfg);
        EXPECT_EQ(fsm.nominal_wait(), 10min);
        EXPECT_LE(fsm.start(clock.now()).fetch.wait, max_blocking_wait);
    }

    cfg.wait = 30s;
    cfg.wait_jitter = 0.0;
    watch_fsm exact(cfg);
    EXPECT_EQ(exact.start(clock.now()).fetch.wait, 30s);

    cfg.wait = 1ms;
    cfg.wait_jitter = 0.5;
    watch_fsm tiny(cfg);
    EXPECT_EQ(tiny.start(clock.now()).fetch.wait, 1ms);
}

TEST(watch_fsm, SameSeedGivesTheSameSchedule) {
    manual_clock clock;
    watch_fsm a(seeded(11));
    watch_fsm b(seeded(11));
    EXPECT_EQ(a.start(clock.now()).fetch, b.start(clock.now()).fetch);
    EXPECT_EQ(a.on_error(clock.now(), consul_errc::internal_error).backoff,
              b.on_error(clock.now(), consul_errc::internal_error).backoff);
}

TEST(watch_fsm, StopIsFinalAndEveryLaterEventAnswersStopped) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    fsm.start(clock.now());
    EXPECT_EQ(fsm.stop().kind, watch_action_kind::stopped);
    EXPECT_TRUE(fsm.stopped());
    EXPECT_EQ(fsm.on_result(clock.now(), 5).kind, watch_action_kind::stopped);
    EXPECT_FALSE(fsm.on_result(clock.now(), 5).deliver);
    EXPECT_EQ(fsm.on_error(clock.now(), consul_errc::unavailable).kind, watch_action_kind::stopped);
    EXPECT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::stopped);
    EXPECT_EQ(fsm.start(clock.now()).kind, watch_action_kind::stopped);
    EXPECT_EQ(fsm.state(), watch_state::stopped);
}

TEST(watch_fsm, StopWhileSleepingAndBeforeStart) {
    manual_clock clock;
    watch_fsm idle(seeded());
    idle.stop();
    EXPECT_EQ(idle.start(clock.now()).kind, watch_action_kind::stopped);

    watch_fsm sleeping(seeded());
    sleeping.start(clock.now());
    sleeping.on_error(clock.now(), consul_errc::unavailable);
    sleeping.stop();
    EXPECT_EQ(sleeping.on_timer(clock.now() + 1h).kind, watch_action_kind::stopped);
}

TEST(watch_fsm, EventsThatDoNotFitTheStateAreIgnored) {
    manual_clock clock;
    watch_fsm fsm(seeded());
    EXPECT_EQ(fsm.on_result(clock.now(), 5).kind, watch_action_kind::none);
    EXPECT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::none);
    fsm.start(clock.now());
    EXPECT_EQ(fsm.on_timer(clock.now()).kind, watch_action_kind::none);  // fetching
    watch_config cfg = seeded();
    cfg.error_backoff_base = 1s;
    watch_fsm sleeping(cfg);
    sleeping.start(clock.now());
    watch_action a;
    // Draw until the backoff is not zero, so the FSM sleeps.
    do {
        a = sleeping.on_error(clock.now(), consul_errc::unavailable);
        if (a.kind == watch_action_kind::fetch) {
            continue;
        }
    } while (a.kind != watch_action_kind::sleep);
    // A late completion while sleeping must not start a second fetch.
    EXPECT_EQ(sleeping.on_result(clock.now(), 9).kind, watch_action_kind::none);
    EXPECT_EQ(sleeping.on_error(clock.now(), consul_errc::unavailable).kind,
              watch_action_kind::none);
    EXPECT_EQ(sleeping.state(), watch_state::sleeping);
}

// ------------------------------------------------------------------------ blocking_watch shell

using handler_t = boost::asio::any_completion_handler<void(error_code, std::string, std::uint64_t)>;

struct reply {
    error_code ec;
    std::string value;
    std::uint64_t index = 0;
};

// A Consul stand-in: answers fetches from a script, asynchronously; when the script is empty it
// parks the fetch until cancelled, then answers with `answer_on_cancel`.
struct fake_consul {
    explicit fake_consul(boost::asio::io_context& c) : ctx(c) {}

    boost::asio::io_context& ctx;
    std::deque<reply> script;
    std::vector<fetch_params> calls;
    int cancellations = 0;
    reply answer_on_cancel{boost::asio::error::operation_aborted, "", 0};
    std::shared_ptr<std::optional<handler_t>> parked = std::make_shared<std::optional<handler_t>>();

    watch_fetch<std::string> fetch() {
        return [this](fetch_params params, handler_t handler) {
            calls.push_back(params);
            if (!script.empty()) {
                reply r = std::move(script.front());
                script.pop_front();
                boost::asio::post(ctx, [h = std::move(handler), r]() mutable {
                    std::move(h)(r.ec, r.value, r.index);
                });
                return;
            }
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            *parked = std::move(handler);
            if (slot.is_connected()) {
                slot.assign([this](boost::asio::cancellation_type) {
                    ++cancellations;
                    if (!parked->has_value()) {
                        return;
                    }
                    boost::asio::post(ctx,
                                      [h = std::move(**parked), r = answer_on_cancel]() mutable {
                                          std::move(h)(r.ec, r.value, r.index);
                                      });
                    parked->reset();
                });
            }
        };
    }
};

struct seen_value {
    std::string value;
    std::uint64_t index;
    friend bool operator==(const seen_value&, const seen_value&) = default;
};

watch_config fast_config() {
    watch_config cfg;
    cfg.wait = 10s;
    cfg.seed = 5;
    cfg.min_unchanged_interval = 0s;
    cfg.error_backoff_base = 1us;
    cfg.error_backoff_cap = 10us;
    return cfg;
}

TEST(watch_shell, DeliversValuesInOrderOnlyWhenTheIndexMoves) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}, {{}, "a", 5}, {{}, "b", 7}, {{}, "b", 7}, {{}, "c", 9}};
    std::vector<seen_value> seen;
    blocking_watch<std::string> watch(ctx, fast_config(), consul.fetch(),
                                      {.on_value = [&](const std::string& v, std::uint64_t i) {
                                          seen.push_back({v, i});
                                      }});
    EXPECT_FALSE(watch.running());
    watch.start();
    EXPECT_TRUE(watch.running());
    ctx.poll();
    EXPECT_EQ(seen, (std::vector<seen_value>{{"a", 5}, {"b", 7}, {"c", 9}}));
    std::vector<std::uint64_t> indexes;
    for (const auto& call : consul.calls) {
        indexes.push_back(call.index);
        EXPECT_GT(call.wait, 9s);
    }
    EXPECT_EQ(indexes, (std::vector<std::uint64_t>{0, 5, 5, 7, 7, 9}));
    EXPECT_EQ(watch.index(), 9U);
    watch.stop();
    EXPECT_FALSE(watch.running());
    ctx.run();
    EXPECT_EQ(consul.cancellations, 1);
}

TEST(watch_shell, StopCancelsTheFetchInFlightAndNothingIsDeliveredAfter) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}};
    // Even a value that arrives after stop() must not reach the subscriber.
    consul.answer_on_cancel = {{}, "late", 100};
    std::vector<seen_value> seen;
    int errors = 0;
    blocking_watch<std::string> watch(ctx, fast_config(), consul.fetch(),
                                      {.on_value =
                                           [&](const std::string& v, std::uint64_t i) {
                                               seen.push_back({v, i});
                                           },
                                       .on_error = [&](const error_code&) { ++errors; }});
    watch.start();
    ctx.poll();
    ASSERT_EQ(consul.calls.size(), 2U);
    ASSERT_TRUE(consul.parked->has_value());
    watch.stop();
    EXPECT_EQ(consul.cancellations, 1);
    ctx.run();  // returns: nothing left, no timer, no new fetch
    EXPECT_EQ(seen, (std::vector<seen_value>{{"a", 5}}));
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(consul.calls.size(), 2U);
    watch.start();  // stop is final
    EXPECT_EQ(consul.calls.size(), 2U);
}

TEST(watch_shell, ErrorsAreReportedBackedOffAndRecoveredFrom) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5},
                     {consul_errc::unavailable, "", 0},
                     {transport_errc::connect_failed, "", 0},
                     {consul_errc::permission_denied, "", 0},
                     {{}, "a", 5},
                     {{}, "b", 6}};
    std::vector<seen_value> seen;
    std::vector<error_code> errors;
    std::vector<unsigned> streaks;
    std::optional<blocking_watch<std::string>> watch;
    watch.emplace(
        ctx, fast_config(), consul.fetch(),
        watch_handlers<std::string>{.on_value =
                                        [&](const std::string& v, std::uint64_t i) {
                                            seen.push_back({v, i});
                                        },
                                    .on_error =
                                        [&](const error_code& ec) {
                                            errors.push_back(ec);
                                            streaks.push_back(watch->consecutive_errors());
                                        }});
    watch->start();
    // Backoffs are microseconds on a real steady_timer: run until the script is spent and the
    // watch parks on the next fetch.
    while (!consul.parked->has_value() && ctx.run_one() > 0) {
    }
    EXPECT_EQ(seen, (std::vector<seen_value>{{"a", 5}, {"b", 6}}));
    EXPECT_EQ(errors,
              (std::vector<error_code>{consul_errc::unavailable, transport_errc::connect_failed,
                                       consul_errc::permission_denied}));
    EXPECT_EQ(streaks, (std::vector<unsigned>{1, 2, 3}));
    EXPECT_EQ(watch->consecutive_errors(), 0U);
    std::vector<std::uint64_t> indexes;
    for (const auto& call : consul.calls) {
        indexes.push_back(call.index);
    }
    // Fetches after errors do not block (index 0); the first success takes the index back.
    EXPECT_EQ(indexes, (std::vector<std::uint64_t>{0, 5, 0, 0, 0, 5, 6}));
    watch.reset();
    ctx.run();
    EXPECT_EQ(consul.cancellations, 1);
}

TEST(watch_shell, RetryNowCutsAnErrorBackoffShort) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}, {transport_errc::connect_failed, "", 0}, {{}, "b", 6}};
    watch_config cfg = fast_config();
    cfg.error_backoff_base = 1h;  // a backoff no test would wait out
    cfg.error_backoff_cap = 1h;
    std::vector<seen_value> seen;
    blocking_watch<std::string> watch(
        ctx, cfg, consul.fetch(),
        watch_handlers<std::string>{.on_value = [&](const std::string& v, std::uint64_t i) {
            seen.push_back({v, i});
        }});
    watch.start();
    ctx.poll();
    ASSERT_EQ(consul.calls.size(), 2U);  // the value, then the failing fetch
    EXPECT_EQ(watch.consecutive_errors(), 1U);
    watch.retry_now();
    // Runs until the watch parks on the blocking fetch after "b"; the hour-long timer is gone.
    while (!consul.parked->has_value() && ctx.run_one() > 0) {
    }
    EXPECT_EQ(seen, (std::vector<seen_value>{{"a", 5}, {"b", 6}}));
    ASSERT_EQ(consul.calls.size(), 4U);
    EXPECT_EQ(consul.calls[2].index, 0U);
    EXPECT_EQ(consul.calls[3].index, 6U);
    watch.retry_now();  // no errors now: nothing changes
    ctx.poll();
    EXPECT_EQ(consul.calls.size(), 4U);
    watch.stop();
    ctx.run();
}

TEST(watch_shell, UnchangedIndexIsRateLimitedOnTheTimer) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}, {{}, "a", 5}, {{}, "a", 5}, {{}, "a", 5}};
    watch_config cfg = fast_config();
    cfg.min_unchanged_interval = 5ms;
    int values = 0;
    blocking_watch<std::string> watch(
        ctx, cfg, consul.fetch(),
        {.on_value = [&](const std::string&, std::uint64_t) { ++values; }});
    const auto started = watch_clock::now();
    watch.start();
    while (!consul.parked->has_value() && ctx.run_one() > 0) {
    }
    // Fetches 2..5 each start no sooner than 5 ms after the one before (fetch 2 follows a change).
    EXPECT_GE(watch_clock::now() - started, 15ms);
    EXPECT_EQ(values, 1);
    EXPECT_EQ(consul.calls.size(), 5U);
    watch.stop();
    ctx.run();
}

TEST(watch_shell, DestroyingTheWatchWhileAFetchIsInFlightIsSafe) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.answer_on_cancel = {{}, "late", 1};
    auto alive = std::make_shared<int>(0);
    int calls = 0;
    {
        blocking_watch<std::string> watch(
            ctx, fast_config(), consul.fetch(),
            {.on_value = [&calls, alive](const std::string&, std::uint64_t) { ++calls; },
             .on_error = [&calls, alive](const error_code&) { ++calls; }});
        watch.start();
        ctx.poll();
        ASSERT_TRUE(consul.parked->has_value());
    }
    // The handlers were released at stop(), before the in-flight fetch completed.
    EXPECT_EQ(alive.use_count(), 1);
    EXPECT_EQ(consul.cancellations, 1);
    ctx.run();
    EXPECT_EQ(calls, 0);
}

TEST(watch_shell, DestroyingTheWatchWithAFetchThatNeverCompletesIsSafe) {
    boost::asio::io_context ctx;
    std::optional<handler_t> kept;
    {
        blocking_watch<std::string> watch(
            ctx, fast_config(), [&](fetch_params, handler_t h) { kept = std::move(h); }, {});
        watch.start();
    }
    ctx.run();
    kept.reset();  // drops the last reference to the watch's state
    SUCCEED();
}

TEST(watch_shell, StopFromInsideTheValueHandler) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}, {{}, "b", 6}, {{}, "c", 7}};
    std::vector<std::string> seen;
    std::optional<blocking_watch<std::string>> watch;
    watch.emplace(ctx, fast_config(), consul.fetch(),
                  watch_handlers<std::string>{.on_value = [&](const std::string& v, std::uint64_t) {
                      seen.push_back(v);
                      if (v == "b") {
                          watch->stop();
                      }
                  }});
    watch->start();
    ctx.run();
    EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(consul.calls.size(), 2U);
}

TEST(watch_shell, DestroyFromInsideTheValueHandler) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    consul.script = {{{}, "a", 5}, {{}, "b", 6}};
    std::vector<std::string> seen;
    std::optional<blocking_watch<std::string>> watch;
    watch.emplace(ctx, fast_config(), consul.fetch(),
                  watch_handlers<std::string>{.on_value = [&](const std::string& v, std::uint64_t) {
                      seen.push_back(v);
                      watch.reset();
                  }});
    watch->start();
    ctx.run();
    EXPECT_EQ(seen, (std::vector<std::string>{"a"}));
    EXPECT_EQ(consul.calls.size(), 1U);
}

TEST(watch_shell, FetchCompletingInlineDoesNotRecurse) {
    boost::asio::io_context ctx;
    std::uint64_t next_index = 1;
    int values = 0;
    std::optional<blocking_watch<std::string>> watch;
    watch.emplace(
        ctx, fast_config(),
        [&](fetch_params, handler_t h) { std::move(h)(error_code{}, "v", next_index++); },
        watch_handlers<std::string>{.on_value = [&](const std::string&, std::uint64_t) {
            if (++values == 10'000) {
                watch->stop();
            }
        }});
    watch->start();
    ctx.run();
    EXPECT_EQ(values, 10'000);
}

TEST(watch_shell, ThrowingFetchCountsAsAFailedFetch) {
    boost::asio::io_context ctx;
    int attempts = 0;
    std::vector<error_code> errors;
    std::optional<blocking_watch<std::string>> watch;
    watch.emplace(
        ctx, fast_config(),
        [&](fetch_params, handler_t) {
            ++attempts;
            throw std::runtime_error("boom");
        },
        watch_handlers<std::string>{.on_error = [&](const error_code& ec) {
            errors.push_back(ec);
            if (errors.size() == 3) {
                watch->stop();
            }
        }});
    watch->start();
    ctx.run();
    EXPECT_EQ(attempts, 3);
    ASSERT_EQ(errors.size(), 3U);
    EXPECT_EQ(errors[0], boost::system::errc::io_error);
}

TEST(watch_shell, MovedFromWatchIsInert) {
    boost::asio::io_context ctx;
    fake_consul consul(ctx);
    blocking_watch<std::string> a(ctx, fast_config(), consul.fetch(), {});
    blocking_watch<std::string> b(std::move(a));
    a.start();  // NOLINT(bugprone-use-after-move): documented to do nothing
    EXPECT_TRUE(consul.calls.empty());
    EXPECT_FALSE(a.running());
    b.start();
    EXPECT_EQ(consul.calls.size(), 1U);
    b.stop();
    ctx.run();
}

}  // namespace
}  // namespace lakemesh::consul
