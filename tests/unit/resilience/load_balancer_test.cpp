#include <lakemesh/resilience/load_balancer.hpp>

#include <gtest/gtest.h>

#include <map>

#include "test_support.hpp"

namespace lakemesh::resilience {
namespace {

using namespace std::chrono_literals;

// Built with append rather than operator+ to dodge a GCC 12 -Wrestrict false positive.
std::string numbered(const char* prefix, std::size_t i) {
    std::string out(prefix);
    out.append(std::to_string(i));
    return out;
}

std::vector<endpoint> make_endpoints(std::size_t n) {
    std::vector<endpoint> out;
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(
            endpoint{.id = numbered("e", i), .address = numbered("10.0.0.", i), .port = 8080});
    }
    return out;
}

load_balancer_config plain(balancer_kind kind) {
    load_balancer_config cfg;
    cfg.kind = kind;
    cfg.outlier_detection.reset();
    return cfg;
}

std::map<std::string, int> histogram(load_balancer& lb, time_point now, int picks) {
    std::map<std::string, int> counts;
    for (int i = 0; i < picks; ++i) {
        const auto h = lb.pick(now);
        EXPECT_TRUE(h.has_value());
        ++counts[lb.at(*h).id];
    }
    return counts;
}

TEST(LoadBalancer, EmptySetPicksNothing) {
    load_balancer lb(plain(balancer_kind::round_robin));
    EXPECT_FALSE(lb.pick(time_point{1h}).has_value());
}

TEST(LoadBalancer, RoundRobinVisitsEveryEndpointInTurn) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::round_robin));
    lb.update(make_endpoints(3), clock.now());
    std::vector<std::string> order;
    for (int i = 0; i < 6; ++i) {
        order.push_back(lb.at(*lb.pick(clock.now())).id);
    }
    EXPECT_EQ(order, (std::vector<std::string>{"e0", "e1", "e2", "e0", "e1", "e2"}));
}

TEST(LoadBalancer, RandomSpreadsRoughlyEvenly) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::random), 17);
    lb.update(make_endpoints(4), clock.now());
    for (const auto& [id, count] : histogram(lb, clock.now(), 40000)) {
        EXPECT_NEAR(count, 10000, 600) << id;
    }
}

TEST(LoadBalancer, WeightedFollowsConsulPassingAndWarningWeights) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::weighted), 5);
    auto eps = make_endpoints(3);
    eps[0].weight_passing = 3;
    eps[1].weight_passing = 1;
    eps[2].health = endpoint_health::warning;
    eps[2].weight_passing = 100;  // ignored while warning
    eps[2].weight_warning = 1;
    lb.update(eps, clock.now());
    const auto counts = histogram(lb, clock.now(), 50000);
    EXPECT_NEAR(counts.at("e0"), 30000, 900);
    EXPECT_NEAR(counts.at("e1"), 10000, 600);
    EXPECT_NEAR(counts.at("e2"), 10000, 600);
}

TEST(LoadBalancer, WeightedNeverPicksZeroWeight) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::weighted), 5);
    auto eps = make_endpoints(2);
    eps[1].health = endpoint_health::warning;
    eps[1].weight_warning = 0;
    lb.update(eps, clock.now());
    const auto counts = histogram(lb, clock.now(), 1000);
    EXPECT_EQ(counts.at("e0"), 1000);
}

TEST(LoadBalancer, LeastRequestAvoidsTheBusiestEndpoint) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::least_request), 9);
    lb.update(make_endpoints(2), clock.now());
    // Load e0 with calls in flight: with two endpoints P2C always compares both.
    const auto version = lb.pick(clock.now())->version;
    for (int i = 0; i < 5; ++i) {
        lb.on_start(endpoint_handle{0, version, 0});
    }
    for (int i = 0; i < 100; ++i) {
        EXPECT_EQ(lb.at(*lb.pick(clock.now())).id, "e1");
    }
    EXPECT_EQ(lb.in_flight(0), 5U);
}

TEST(LoadBalancer, AnAbandonedCallLeavesNoTraceButItsEnd) {
    test::manual_clock clock;
    load_balancer_config cfg = plain(balancer_kind::peak_ewma);
    outlier_config o;
    o.consecutive_failures = 1;
    cfg.outlier_detection = o;
    load_balancer lb(cfg, 5);
    lb.update(make_endpoints(2), clock.now());
    const auto version = lb.pick(clock.now())->version;
    const endpoint_handle e0{0, version, 0};
    lb.on_start(e0);
    lb.on_start(e0);
    lb.on_abandon(e0);
    EXPECT_EQ(lb.in_flight(0), 1U);
    lb.on_abandon(e0);
    lb.on_abandon(e0);  // never below zero
    EXPECT_EQ(lb.in_flight(0), 0U);
    EXPECT_EQ(lb.outliers().ejected_count(), 0U) << "an abandoned call is not a failure";
    EXPECT_EQ(lb.cost(0, clock.now()), lb.cost(1, clock.now())) << "nor a latency sample";
}

TEST(LoadBalancer, PeakEwmaPrefersTheFasterEndpointAndReactsToPeaks) {
    test::manual_clock clock;
    load_balancer_config cfg = plain(balancer_kind::peak_ewma);
    cfg.ewma_decay = 10s;
    load_balancer lb(cfg, 21);
    lb.update(make_endpoints(2), clock.now());
    const auto pick_version = lb.pick(clock.now())->version;
    const endpoint_handle fast{0, pick_version, 0};
    const endpoint_handle slow{1, pick_version, 0};
    for (int i = 0; i < 20; ++i) {
        lb.on_start(fast);
        lb.on_finish(fast, clock.now(), 2ms, true);
        lb.on_start(slow);
        lb.on_finish(slow, clock.now(), 50ms, true);
        clock.advance(10ms);
    }
    EXPECT_LT(lb.cost(0, clock.now()), lb.cost(1, clock.now()));
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(lb.at(*lb.pick(clock.now())).id, "e0");
    }
    // One very slow response on the fast endpoint is taken at once (peak), not averaged away.
    lb.on_start(fast);
    lb.on_finish(fast, clock.now(), 500ms, true);
    EXPECT_GT(lb.cost(0, clock.now()), lb.cost(1, clock.now()));
    // Idle time decays the peak so the endpoint gets traffic again.
    clock.advance(60s);
    EXPECT_LT(lb.cost(0, clock.now()), 500e6 * 0.01);
}

TEST(LoadBalancer, UpdateKeepsStateOfEndpointsThatRemain) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::least_request), 3);
    lb.update(make_endpoints(3), clock.now());
    auto eps = make_endpoints(3);
    // A handle must carry the key of its endpoint: get one from a real pick on e1.
    std::optional<endpoint_handle> on_e1;
    while (!on_e1) {
        const auto h = lb.pick(clock.now());
        if (lb.at(*h).id == "e1") {
            on_e1 = h;
        }
    }
    lb.on_start(*on_e1);
    lb.on_start(*on_e1);
    // e0 leaves, e3 arrives, e1 moves to index 0.
    std::vector<endpoint> next{eps[1], eps[2], endpoint{.id = "e3"}};
    lb.update(next, clock.now());
    EXPECT_EQ(lb.endpoints()[0].id, "e1");
    EXPECT_EQ(lb.in_flight(0), 2U);
    EXPECT_EQ(lb.in_flight(2), 0U);
    // A handle from before the update still reaches e1 at its new index.
    lb.on_finish(*on_e1, clock.now(), 1ms, true);
    EXPECT_EQ(lb.in_flight(0), 1U);
}

TEST(LoadBalancer, HandleOfARemovedEndpointIsIgnored) {
    test::manual_clock clock;
    load_balancer lb(plain(balancer_kind::round_robin));
    lb.update(make_endpoints(2), clock.now());
    const auto h = *lb.pick(clock.now());  // e0
    lb.on_start(h);
    lb.update({endpoint{.id = "e1"}}, clock.now());
    lb.on_finish(h, clock.now(), 1ms, false);
    EXPECT_EQ(lb.in_flight(0), 0U);
}

TEST(LoadBalancer, EjectedEndpointIsNotPickedUntilItsTimeIsUp) {
    test::manual_clock clock;
    auto events = std::make_shared<test::event_recorder>();
    load_balancer_config cfg;
    cfg.kind = balancer_kind::round_robin;
    cfg.outlier_detection = outlier_config{.consecutive_failures = 2,
                                           .interval = 0s,
                                           .base_ejection_time = 30s,
                                           .max_ejection_time = 300s,
                                           .max_ejection_percent = 50,
                                           .panic_threshold_percent = 0};
    load_balancer lb(cfg, 1, events);
    lb.update(make_endpoints(4), clock.now());
    std::optional<endpoint_handle> e2;
    while (!e2) {
        const auto h = lb.pick(clock.now());
        if (lb.at(*h).id == "e2") {
            e2 = h;
        }
    }
    lb.on_finish(*e2, clock.now(), 1ms, false);
    lb.on_finish(*e2, clock.now(), 1ms, false);
    ASSERT_EQ(events->ejected, std::vector<std::string>{"e2"});
    EXPECT_EQ(lb.eligible().size(), 3U);
    for (int i = 0; i < 30; ++i) {
        EXPECT_NE(lb.at(*lb.pick(clock.now())).id, "e2");
    }
    clock.advance(30s);
    lb.pick(clock.now());
    EXPECT_EQ(events->returned, std::vector<std::string>{"e2"});
    EXPECT_EQ(lb.eligible().size(), 4U);
}

}  // namespace
}  // namespace lakemesh::resilience
