#include <lakemesh/resilience/bulkhead.hpp>
#include <lakemesh/resilience/random.hpp>

#include <gtest/gtest.h>

#include <algorithm>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

TEST(Bulkhead, AdmitsUpToTheLimitThenRejectsWithoutQueue) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 2, .max_queue = 0, .max_wait = 0ms});
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::rejected);
    EXPECT_EQ(b.in_flight(), 2U);
    EXPECT_FALSE(b.release().has_value());
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
}

TEST(Bulkhead, ZeroLimitMeansUnlimited) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 0, .max_queue = 0, .max_wait = 0ms});
    for (int i = 0; i < 1000; ++i) {
        ASSERT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
    }
}

TEST(Bulkhead, WaitersAreAdmittedInOrderAsSlotsFree) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 2, .max_wait = 1s});
    ASSERT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
    const auto first = b.try_acquire(clock.now());
    const auto second = b.try_acquire(clock.now());
    EXPECT_EQ(first.admission, bulkhead_admission::queued);
    EXPECT_EQ(second.admission, bulkhead_admission::queued);
    EXPECT_EQ(first.wait_until, clock.now() + 1s);
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::rejected);
    EXPECT_EQ(b.release(), first.ticket);
    EXPECT_EQ(b.in_flight(), 1U);
    EXPECT_EQ(b.release(), second.ticket);
    EXPECT_EQ(b.release(), std::nullopt);
    EXPECT_EQ(b.in_flight(), 0U);
}

TEST(Bulkhead, NewArrivalDoesNotOvertakeWaiters) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 1, .max_wait = 1s});
    ASSERT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
    const auto waiter = b.try_acquire(clock.now());
    ASSERT_EQ(waiter.admission, bulkhead_admission::queued);
    EXPECT_EQ(b.release(), waiter.ticket);
}

TEST(Bulkhead, WaitEndsAtTheEarlierOfMaxWaitAndTheCallDeadline) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 5, .max_wait = 1s});
    b.try_acquire(clock.now());
    EXPECT_EQ(b.try_acquire(clock.now(), deadline::after(clock.now(), 200ms)).wait_until,
              clock.now() + 200ms);
    EXPECT_EQ(b.try_acquire(clock.now(), deadline::after(clock.now(), 5s)).wait_until,
              clock.now() + 1s);
    bulkhead unbounded({.max_concurrent = 1, .max_queue = 5, .max_wait = 0ms});
    unbounded.try_acquire(clock.now());
    EXPECT_EQ(unbounded.try_acquire(clock.now()).wait_until, time_point::max());
}

TEST(Bulkhead, ExpireRemovesTimedOutWaitersOnly) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 5, .max_wait = 100ms});
    b.try_acquire(clock.now());
    const auto early = b.try_acquire(clock.now());
    clock.advance(50ms);
    const auto late = b.try_acquire(clock.now());
    clock.advance(50ms);
    EXPECT_EQ(b.expire(clock.now()), std::vector<std::uint64_t>{early.ticket});
    EXPECT_EQ(b.waiting(), 1U);
    EXPECT_EQ(b.release(), late.ticket);
}

TEST(Bulkhead, CancelWaitRemovesTheWaiterOnce) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 5, .max_wait = 1s});
    b.try_acquire(clock.now());
    const auto w = b.try_acquire(clock.now());
    EXPECT_TRUE(b.cancel_wait(w.ticket));
    EXPECT_FALSE(b.cancel_wait(w.ticket));
    EXPECT_EQ(b.release(), std::nullopt);
}

TEST(Bulkhead, RaisingTheLimitAdmitsWaitersAndLoweringKeepsCallsInFlight) {
    test::manual_clock clock;
    bulkhead b({.max_concurrent = 1, .max_queue = 5, .max_wait = 1s});
    b.try_acquire(clock.now());
    const auto w1 = b.try_acquire(clock.now());
    const auto w2 = b.try_acquire(clock.now());
    const auto admitted = b.reconfigure({.max_concurrent = 3, .max_queue = 5, .max_wait = 1s});
    EXPECT_EQ(admitted, (std::vector<std::uint64_t>{w1.ticket, w2.ticket}));
    EXPECT_EQ(b.in_flight(), 3U);
    b.reconfigure({.max_concurrent = 1, .max_queue = 0, .max_wait = 1s});
    EXPECT_EQ(b.in_flight(), 3U);
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::rejected);
    b.release();
    b.release();
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::rejected);
    b.release();
    EXPECT_EQ(b.try_acquire(clock.now()).admission, bulkhead_admission::admitted);
}

TEST(BulkheadProperty, ConcurrencyNeverExceedsTheLimit) {
    random_source rng(3);
    for (int run = 0; run < 100; ++run) {
        const unsigned limit = 1 + static_cast<unsigned>(rng.below(8));
        const unsigned queue = static_cast<unsigned>(rng.below(5));
        bulkhead b({.max_concurrent = limit, .max_queue = queue, .max_wait = 50ms});
        test::manual_clock clock;
        std::size_t running = 0;
        std::vector<std::uint64_t> waiting;
        std::size_t admitted_total = 0, rejected_total = 0;
        for (int step = 0; step < 1000; ++step) {
            clock.advance(std::chrono::milliseconds(rng.below(10)));
            for (const auto t : b.expire(clock.now())) {
                std::erase(waiting, t);
            }
            switch (rng.below(3)) {
                case 0: {
                    const auto r = b.try_acquire(clock.now());
                    if (r.admission == bulkhead_admission::admitted) {
                        ++running;
                        ++admitted_total;
                    } else if (r.admission == bulkhead_admission::queued) {
                        waiting.push_back(r.ticket);
                    } else {
                        ++rejected_total;
                    }
                    break;
                }
                case 1:
                    if (running > 0) {
                        --running;
                        if (const auto t = b.release()) {
                            // The waiter woken is the oldest one still waiting.
                            ASSERT_FALSE(waiting.empty());
                            ASSERT_EQ(*t, waiting.front());
                            waiting.erase(waiting.begin());
                            ++running;
                            ++admitted_total;
                        }
                    }
                    break;
                default:
                    if (!waiting.empty()) {
                        const auto i = rng.below(waiting.size());
                        ASSERT_TRUE(b.cancel_wait(waiting[i]));
                        waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
                    }
            }
            ASSERT_LE(running, limit);
            ASSERT_EQ(running, b.in_flight());
            ASSERT_LE(waiting.size(), queue);
            ASSERT_EQ(waiting.size(), b.waiting());
        }
        EXPECT_GT(admitted_total, 0U);
        EXPECT_GT(rejected_total + admitted_total, 0U);
    }
}

}  // namespace
}  // namespace lakemesh::resilience
