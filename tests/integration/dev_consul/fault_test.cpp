// Fault injection on dev_consul (a test-only C++ API): every test here needs the dev agent.
#include "consul_target.hpp"

#include <future>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;

class faults : public ::testing::Test {
  protected:
    void SetUp() override {
        if (consul_target::real_agent()) {
            GTEST_SKIP() << "fault injection needs dev_consul";
        }
    }
    testing::dev_consul dev;
    raw_http c{"127.0.0.1", dev.port()};
};

TEST_F(faults, http_500_for_the_next_n_requests) {
    dev.fail_next(2, testing::dev_fault::http_500);
    EXPECT_EQ(c.get("/v1/status/leader").status, 500u);
    EXPECT_EQ(c.get("/v1/status/leader").status, 500u);
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
}

TEST_F(faults, dropped_connection_without_an_answer) {
    dev.fail_next(1, testing::dev_fault::drop_connection);
    EXPECT_THROW(c.raw("GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"), std::exception);
    c.disconnect();
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
}

TEST_F(faults, latency_delays_answers) {
    dev.set_latency(150ms);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
    dev.set_latency(0ms);
}

TEST_F(faults, pause_holds_requests_until_resume) {
    dev.pause();
    auto pending = std::async(std::launch::async, [&] { return c.get("/v1/status/leader"); });
    EXPECT_EQ(pending.wait_for(200ms), std::future_status::timeout);
    dev.resume();
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(pending.get().status, 200u);
}

TEST_F(faults, restart_keeping_state_keeps_data_and_indexes) {
    ASSERT_EQ(c.put("/v1/kv/a", "1").status, 200u);
    auto before = c.get("/v1/kv/a").index();
    dev.restart(true);
    auto r = c.get("/v1/kv/a");  // the raw client reconnects transparently
    EXPECT_EQ(r.status, 200u);
    EXPECT_GE(r.index(), before);
}

TEST_F(faults, restart_losing_state_wipes_data_and_indexes_go_backwards) {
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(c.put("/v1/kv/k" + std::to_string(i), "1").status, 200u);
    }
    auto before = c.get("/v1/kv/k9").index();
    dev.restart(false);
    auto r = c.get("/v1/kv/k9");
    EXPECT_EQ(r.status, 404u);
    EXPECT_LT(r.index(), before);
    EXPECT_LT(dev.current_index(), before);
    // The agent's own node is registered again.
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
}

TEST_F(faults, stop_refuses_connections_and_start_listens_on_the_same_port) {
    auto port = dev.port();
    dev.stop();
    EXPECT_FALSE(dev.running());
    raw_http fresh("127.0.0.1", port);
    EXPECT_THROW(fresh.get("/v1/status/leader"), std::exception);
    dev.start();
    EXPECT_TRUE(dev.running());
    EXPECT_EQ(dev.port(), port);
    EXPECT_EQ(fresh.get("/v1/status/leader").status, 200u);
}

TEST_F(faults, stop_ends_blocking_queries_held_by_the_agent) {
    ASSERT_EQ(c.put("/v1/kv/a", "1").status, 200u);
    auto idx = c.get("/v1/kv/a").index();
    auto pending = std::async(std::launch::async, [&] {
        raw_http other("127.0.0.1", dev.port());
        try {
            other.get("/v1/kv/a?index=" + std::to_string(idx) + "&wait=30s");
            return false;
        } catch (const std::exception&) {
            return true;  // connection closed by the stop
        }
    });
    ASSERT_TRUE(eventually([&] { return dev.blocking_queries() == 1; }));
    dev.stop();
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(pending.get());
    EXPECT_EQ(dev.blocking_queries(), 0u);
}

}  // namespace
}  // namespace lakemesh::test
