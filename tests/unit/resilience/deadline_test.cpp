#include <lakemesh/resilience/deadline.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

TEST(Deadline, DefaultIsNoneAndNeverExpires) {
    const deadline d;
    EXPECT_FALSE(d.is_set());
    EXPECT_FALSE(d.expired(time_point::max() - 1s));
    EXPECT_EQ(d.remaining(time_point{}), duration::max());
}

TEST(Deadline, AfterExpiresExactlyAtTheTimeout) {
    test::manual_clock clock;
    const deadline d = deadline::after(clock.now(), 100ms);
    EXPECT_EQ(d.remaining(clock.now()), 100ms);
    clock.advance(99ms);
    EXPECT_FALSE(d.expired(clock.now()));
    clock.advance(1ms);
    EXPECT_TRUE(d.expired(clock.now()));
    EXPECT_EQ(d.remaining(clock.now()), duration::zero());
}

TEST(Deadline, ZeroTimeoutIsAlreadyExpired) {
    const time_point now{1h};
    EXPECT_TRUE(deadline::after(now, 0s).expired(now));
}

TEST(Deadline, HugeTimeoutSaturates) {
    const time_point now{1h};
    const deadline d = deadline::after(now, duration::max());
    EXPECT_FALSE(d.is_set());
}

TEST(Deadline, NestedCallInheritsTheRemainingTime) {
    test::manual_clock clock;
    const deadline outer = deadline::after(clock.now(), 1s);
    clock.advance(700ms);
    // The inner call asks for 2 s but only 300 ms remain.
    const deadline inner = outer.nested(clock.now(), 2s);
    EXPECT_EQ(inner.remaining(clock.now()), 300ms);
    // A shorter inner timeout wins.
    EXPECT_EQ(outer.nested(clock.now(), 100ms).remaining(clock.now()), 100ms);
    // No inner timeout: the outer deadline as is.
    EXPECT_EQ(outer.nested(clock.now(), 0s), outer);
    // No outer deadline: the inner timeout alone.
    EXPECT_EQ(deadline::none().nested(clock.now(), 50ms).remaining(clock.now()), 50ms);
}

}  // namespace
}  // namespace lakemesh::resilience
