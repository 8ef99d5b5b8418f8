#include <lakemesh/resilience/outlier_detector.hpp>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> ids(std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) {
        std::string id("e");  // append, not operator+: dodges a GCC 12 -Wrestrict false positive
        id.append(std::to_string(i));
        out.push_back(std::move(id));
    }
    return out;
}

outlier_config consecutive(unsigned failures) {
    return outlier_config{.consecutive_failures = failures,
                          .interval = 0s,
                          .base_ejection_time = 10s,
                          .max_ejection_time = 25s,
                          .max_ejection_percent = 100,
                          .panic_threshold_percent = 0};
}

void fail(outlier_detector& d, std::size_t index, test::manual_clock& clock, int times) {
    for (int i = 0; i < times; ++i) {
        d.record(index, false, clock.now());
    }
}

TEST(OutlierDetector, ConsecutiveFailuresEjectAndASuccessResetsTheRun) {
    test::manual_clock clock;
    auto events = std::make_shared<test::event_recorder>();
    outlier_detector d(consecutive(3), events);
    d.update(ids(4), clock.now());
    fail(d, 1, clock, 2);
    d.record(1, true, clock.now());
    fail(d, 1, clock, 2);
    EXPECT_FALSE(d.is_ejected(1));
    fail(d, 1, clock, 1);
    EXPECT_TRUE(d.is_ejected(1));
    ASSERT_EQ(events->ejections.size(), 1U);
    EXPECT_EQ(events->ejections[0].endpoint_id, "e1");
    EXPECT_EQ(events->ejections[0].reason, ejection_reason::consecutive_failures);
    EXPECT_EQ(events->ejections[0].until, clock.now() + 10s);
}

TEST(OutlierDetector, EjectionTimeGrowsWithRepeatsAndIsCapped) {
    test::manual_clock clock;
    auto events = std::make_shared<test::event_recorder>();
    outlier_detector d(consecutive(1), events);
    d.update(ids(2), clock.now());
    const duration expected[] = {10s, 20s, 25s, 25s};
    for (const duration length : expected) {
        fail(d, 0, clock, 1);
        ASSERT_TRUE(d.is_ejected(0));
        EXPECT_EQ(events->ejections.back().until - clock.now(), length);
        clock.advance(length - 1ms);
        EXPECT_FALSE(d.tick(clock.now()));
        clock.advance(1ms);
        EXPECT_TRUE(d.tick(clock.now()));
        EXPECT_FALSE(d.is_ejected(0));
    }
    EXPECT_EQ(d.ejection_count(0), 4U);
}

TEST(OutlierDetector, EjectionCountDecaysOverCleanIntervals) {
    test::manual_clock clock;
    auto cfg = consecutive(1);
    cfg.interval = 10s;
    cfg.success_rate_minimum_hosts = 100;  // no success-rate ejection here
    outlier_detector d(cfg);
    d.update(ids(2), clock.now());
    fail(d, 0, clock, 1);
    clock.advance(10s);
    d.tick(clock.now());  // returns e0 and runs the interval: e0 was ejected, no decay yet
    EXPECT_EQ(d.ejection_count(0), 1U);
    clock.advance(10s);
    d.tick(clock.now());
    EXPECT_EQ(d.ejection_count(0), 0U);
}

TEST(OutlierDetector, MaxEjectionPercentLimitsEjectedEndpoints) {
    test::manual_clock clock;
    auto cfg = consecutive(1);
    cfg.max_ejection_percent = 30;
    outlier_detector d(cfg);
    d.update(ids(10), clock.now());
    for (std::size_t i = 0; i < 10; ++i) {
        fail(d, i, clock, 1);
    }
    EXPECT_EQ(d.ejected_count(), 3U);
}

TEST(OutlierDetector, AtLeastOneEndpointMayBeEjected) {
    test::manual_clock clock;
    auto cfg = consecutive(1);
    cfg.max_ejection_percent = 10;
    outlier_detector d(cfg);
    d.update(ids(3), clock.now());
    fail(d, 0, clock, 1);
    fail(d, 1, clock, 1);
    EXPECT_EQ(d.ejected_count(), 1U);
}

TEST(OutlierDetector, PanicWhenTooFewEndpointsAreEligible) {
    test::manual_clock clock;
    auto cfg = consecutive(1);
    cfg.panic_threshold_percent = 50;
    outlier_detector d(cfg);
    d.update(ids(4), clock.now());
    fail(d, 0, clock, 1);
    EXPECT_FALSE(d.panic());  // 3 of 4 eligible
    fail(d, 1, clock, 1);
    EXPECT_FALSE(d.panic());  // 2 of 4: exactly at the threshold
    fail(d, 2, clock, 1);
    EXPECT_TRUE(d.panic());  // 1 of 4
}

TEST(OutlierDetector, SuccessRateEjectsTheOutlier) {
    test::manual_clock clock;
    auto events = std::make_shared<test::event_recorder>();
    outlier_config cfg{.consecutive_failures = 0,
                       .interval = 10s,
                       .success_rate_minimum_hosts = 5,
                       .success_rate_request_volume = 50,
                       .success_rate_stdev_factor = 1.9,
                       .base_ejection_time = 30s,
                       .max_ejection_time = 300s,
                       .max_ejection_percent = 50,
                       .panic_threshold_percent = 0};
    outlier_detector d(cfg, events);
    d.update(ids(6), clock.now());
    for (std::size_t i = 0; i < 6; ++i) {
        const int failures = i == 4 ? 40 : static_cast<int>(i % 2);
        for (int n = 0; n < 100; ++n) {
            d.record(i, n >= failures, clock.now());
        }
    }
    // An endpoint below the request volume is not judged.
    clock.advance(10s);
    EXPECT_TRUE(d.tick(clock.now()));
    EXPECT_TRUE(d.is_ejected(4));
    EXPECT_EQ(d.ejected_count(), 1U);
    ASSERT_EQ(events->ejections.size(), 1U);
    EXPECT_EQ(events->ejections[0].reason, ejection_reason::success_rate);
}

TEST(OutlierDetector, SuccessRateNeedsEnoughHostsWithVolume) {
    test::manual_clock clock;
    outlier_config cfg{.consecutive_failures = 0,
                       .interval = 10s,
                       .success_rate_minimum_hosts = 5,
                       .success_rate_request_volume = 50,
                       .max_ejection_percent = 50,
                       .panic_threshold_percent = 0};
    outlier_detector d(cfg);
    d.update(ids(6), clock.now());
    for (std::size_t i = 0; i < 4; ++i) {
        for (int n = 0; n < 100; ++n) {
            d.record(i, i != 0 || n > 60, clock.now());
        }
    }
    clock.advance(10s);
    d.tick(clock.now());
    EXPECT_EQ(d.ejected_count(), 0U);
}

TEST(OutlierDetector, UpdateKeepsStateOfEndpointsThatRemain) {
    test::manual_clock clock;
    outlier_detector d(consecutive(2));
    d.update(ids(3), clock.now());
    fail(d, 2, clock, 2);
    fail(d, 1, clock, 1);
    ASSERT_TRUE(d.is_ejected(2));
    d.update({"e2", "e1", "new"}, clock.now());
    EXPECT_TRUE(d.is_ejected(0));
    EXPECT_EQ(d.ejected_count(), 1U);
    // e1's run of one failure survived the update.
    fail(d, 1, clock, 1);
    EXPECT_TRUE(d.is_ejected(1));
    EXPECT_FALSE(d.is_ejected(2));
}

}  // namespace
}  // namespace lakemesh::resilience
