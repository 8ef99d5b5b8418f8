// Blocking queries (?index, ?wait): held while unchanged, answered on a change of that endpoint's
// data only, with indexes that only grow.
#include "dev_hook.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <sys/resource.h>

#include <future>
#include <thread>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto wake_budget = 250ms;  // sanitizers slow every step down several times
#else
constexpr auto wake_budget = 50ms;
#endif

class blocking : public ::testing::Test {
  protected:
    consul_target target;
    raw_http c = target.client();
    std::string p = unique_name("block");

    /// Waits until the server holds `n` blocking queries (dev), or a moment (real agent).
    void await_parked(std::size_t n) {
        if (auto* d = target.dev()) {
            ASSERT_TRUE(eventually([&] { return d->blocking_queries() >= n; }));
        } else {
            std::this_thread::sleep_for(200ms);
        }
    }
};

TEST_F(blocking, unchanged_endpoint_holds_until_wait_then_answers_same_data) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/a", "1").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/a");
    auto start = steady::now();
    auto again = c.get("/v1/kv/" + p + "/a?index=" + std::to_string(first.index()) + "&wait=300ms");
    auto held = steady::now() - start;
    EXPECT_GE(held, 300ms);
    EXPECT_LT(held, 300ms + 300ms / 16 + 1s);
    EXPECT_EQ(again.status, 200u);
    EXPECT_EQ(again.body, first.body);
    EXPECT_GE(again.index(), first.index());
}

TEST_F(blocking, write_to_the_watched_key_answers_promptly_with_a_larger_index) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/a", "1").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/a");
    auto pending = std::async(std::launch::async, [&] {
        auto other = target.client();
        auto r =
            other.get("/v1/kv/" + p + "/a?index=" + std::to_string(first.index()) + "&wait=10s");
        return std::make_pair(r, steady::now());
    });
    await_parked(1);
    auto writer = target.client();
    ASSERT_EQ(writer.put("/v1/kv/" + p + "/a", "2").status, 200u);
    auto written = steady::now();
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    auto [r, answered] = pending.get();
    EXPECT_LT(answered - written, wake_budget);
    EXPECT_EQ(r.status, 200u);
    EXPECT_GT(r.index(), first.index());
    EXPECT_EQ(r.json_body()[0]["Value"], "Mg==");
}

TEST_F(blocking, write_elsewhere_does_not_wake_the_query) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/a", "1").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/a");
    auto pending = std::async(std::launch::async, [&] {
        auto other = target.client();
        return other.get("/v1/kv/" + p + "/a?index=" + std::to_string(first.index()) + "&wait=10s");
    });
    await_parked(1);
    auto writer = target.client();
    ASSERT_EQ(writer.put("/v1/kv/" + p + "/b", "x").status, 200u);
    ASSERT_EQ(writer.put("/v1/kv/" + p + "/ab", "x").status, 200u);  // shares the prefix
    EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout);
    if (auto* d = target.dev()) {
        EXPECT_EQ(d->blocking_queries(), 1u);
    }
    ASSERT_EQ(writer.del("/v1/kv/" + p + "/a").status, 200u);
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    auto r = pending.get();
    EXPECT_EQ(r.status, 404u);
    EXPECT_GT(r.index(), first.index());
}

TEST_F(blocking, recurse_query_wakes_on_a_new_key_under_the_prefix) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/dir/a", "1").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/dir?recurse");
    auto pending = std::async(std::launch::async, [&] {
        auto other = target.client();
        return other.get("/v1/kv/" + p + "/dir?recurse&index=" + std::to_string(first.index()) +
                         "&wait=10s");
    });
    await_parked(1);
    ASSERT_EQ(target.client().put("/v1/kv/" + p + "/dir/b", "2").status, 200u);
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(pending.get().json_body().size(), 2u);
}

// A listing answers with the highest index under its prefix, so only changes under the prefix
// (a delete too, through its tombstone) wake it.
TEST_F(blocking, recurse_query_ignores_writes_outside_its_prefix_and_wakes_on_a_delete) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/dir/a", "1").status, 200u);
    ASSERT_EQ(c.put("/v1/kv/" + p + "/dir/b", "2").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/dir/?recurse");
    auto pending = std::async(std::launch::async, [&] {
        auto other = target.client();
        return other.get("/v1/kv/" + p + "/dir/?recurse&index=" + std::to_string(first.index()) +
                         "&wait=10s");
    });
    await_parked(1);
    auto writer = target.client();
    ASSERT_EQ(writer.put("/v1/kv/" + p + "/elsewhere", "x").status, 200u);
    ASSERT_EQ(writer.put("/v1/kv/" + p + "/dirt", "x").status, 200u);  // shares the text prefix
    EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout);
    ASSERT_EQ(writer.del("/v1/kv/" + p + "/dir/b").status, 200u);
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    auto r = pending.get();
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.json_body().size(), 1u);
    EXPECT_GT(r.index(), first.index());
    c.del("/v1/kv/" + p + "?recurse");
}

// Consul answers a blocking query once the index passes the one given; a change that leaves
// the index where it was (the same value written again) does not end the wait.
TEST_F(blocking, rewriting_the_same_value_does_not_wake_the_query) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/same", "1").status, 200u);
    auto first = c.get("/v1/kv/" + p + "/same");
    auto pending = std::async(std::launch::async, [&] {
        auto other = target.client();
        return other.get("/v1/kv/" + p + "/same?index=" + std::to_string(first.index()) +
                         "&wait=10s");
    });
    await_parked(1);
    ASSERT_EQ(target.client().put("/v1/kv/" + p + "/same", "1").status, 200u);
    EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout);
    ASSERT_EQ(target.client().put("/v1/kv/" + p + "/same", "2").status, 200u);
    ASSERT_EQ(pending.wait_for(5s), std::future_status::ready);
    EXPECT_GT(pending.get().index(), first.index());
    c.del("/v1/kv/" + p + "?recurse");
}

TEST_F(blocking, indexes_only_grow_and_stale_consistent_are_accepted) {
    std::uint64_t last = 0;
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(c.put("/v1/kv/" + p + "/k" + std::to_string(i % 3), std::to_string(i)).status,
                  200u);
        const char* mode = i % 3 == 0 ? "?stale" : (i % 3 == 1 ? "?consistent" : "");
        auto r = c.get("/v1/kv/" + p + "/k" + std::to_string(i % 3) + mode);
        ASSERT_EQ(r.status, 200u);
        EXPECT_GT(r.index(), last);
        last = r.index();
    }
}

TEST_F(blocking, invalid_index_or_wait_is_400) {
    auto index = c.get("/v1/kv/" + p + "?index=abc");
    EXPECT_EQ(index.status, 400u);
    EXPECT_EQ(index.body, "Invalid index");
    auto wait = c.get("/v1/kv/" + p + "?index=1&wait=forever");
    EXPECT_EQ(wait.status, 400u);
    EXPECT_EQ(wait.body, "Invalid wait time");
    EXPECT_EQ(c.get("/v1/kv/" + p + "?index=1&wait=10").status, 400u);  // a unit is required
}

TEST_F(blocking, index_zero_does_not_block) {
    auto start = steady::now();
    auto r = c.get("/v1/kv/" + p + "/nothing?index=0&wait=5s");
    EXPECT_EQ(r.status, 404u);
    EXPECT_LT(steady::now() - start, 2s);
}

// 1,000 blocking queries on one dev agent, each on its own connection, all answered by one write.
TEST_F(blocking, thousand_concurrent_blocking_queries_are_held_and_all_answered) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "blocking_queries()");
    constexpr std::size_t n = 1000;
    rlimit lim{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
    if (lim.rlim_cur < 4 * n) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 4 * n);
        ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
    }
    ASSERT_GE(lim.rlim_cur, 2 * n + 64) << "file descriptor limit too low for this test";

    ASSERT_EQ(c.put("/v1/kv/" + p + "/hot", "1").status, 200u);
    auto idx = c.get("/v1/kv/" + p + "/hot").index();
    namespace asio = boost::asio;
    using tcp = asio::ip::tcp;
    asio::io_context io;
    std::vector<std::unique_ptr<tcp::socket>> sockets;
    const std::string req = "GET /v1/kv/" + p + "/hot?index=" + std::to_string(idx) +
                            "&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n";
    tcp::endpoint ep(asio::ip::make_address(target.host()), target.port());
    for (std::size_t i = 0; i < n; ++i) {
        auto s = std::make_unique<tcp::socket>(io);
        s->connect(ep);
        asio::write(*s, asio::buffer(req));
        sockets.push_back(std::move(s));
    }
    ASSERT_TRUE(eventually([&] { return target.dev()->blocking_queries() == n; }, 20s))
        << target.dev()->blocking_queries();
    ASSERT_EQ(c.put("/v1/kv/" + p + "/hot", "2").status, 200u);
    std::size_t answered = 0;
    for (auto& s : sockets) {
        asio::streambuf buf;
        asio::read_until(*s, buf, "\r\n\r\n");
        std::string head(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
        if (head.starts_with("HTTP/1.1 200") &&
            head.find("X-Consul-Index: " + std::to_string(idx) + "\r\n") == std::string::npos) {
            ++answered;
        }
    }
    EXPECT_EQ(answered, n);
    EXPECT_TRUE(eventually([&] { return target.dev()->blocking_queries() == 0; }));
}

}  // namespace
}  // namespace lakemesh::test
