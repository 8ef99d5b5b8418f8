// blocking_watch driven by consul::client reads (watch_read) against dev_consul or a real agent:
// follows changes as they happen, survives an agent restart that loses state, and stopping it
// ends the blocking query in flight.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/consul/watch.hpp>

#include "consul_target.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::kv_pair;
using consul::query_options;

class client_watch : public ::testing::Test {
  protected:
    consul::client_config config() const { return target.client_config(); }

    /// Runs the io_context until `done()` holds or `limit` passes; returns done().
    template <class Pred>
    bool run_until(Pred done, std::chrono::milliseconds limit = 5s) {
        const auto end = std::chrono::steady_clock::now() + limit;
        io.restart();
        while (!done() && std::chrono::steady_clock::now() < end) {
            io.run_one_for(10ms);
        }
        return done();
    }

    void put(const std::string& key, const std::string& value) {
        auto f = c.async_kv_put(key, value, asio::use_future);
        ASSERT_TRUE(run_until([&] { return f.wait_for(0s) == std::future_status::ready; }));
        ASSERT_TRUE(f.get().value);
    }

    consul::blocking_watch<std::vector<kv_pair>> prefix_watch() {
        consul::watch_config wc;
        wc.min_unchanged_interval = 10ms;
        wc.error_backoff_base = 10ms;
        wc.error_backoff_cap = 100ms;
        query_options base;
        auto fetch = consul::watch_read<std::vector<kv_pair>>(
            base, [this](const query_options& q, auto handler) {
                c.async_kv_list(prefix, q, std::move(handler));
            });
        consul::watch_handlers<std::vector<kv_pair>> handlers;
        handlers.on_value = [this](const std::vector<kv_pair>& v, std::uint64_t index) {
            seen.push_back(v);
            indexes.push_back(index);
        };
        handlers.on_error = [this](const error_code&) { ++errors; };
        return consul::blocking_watch<std::vector<kv_pair>>(io, wc, std::move(fetch),
                                                            std::move(handlers));
    }

    consul_target target;
    asio::io_context io;
    consul::client c{io, config()};
    std::string prefix = unique_name("watch") + "/";
    std::vector<std::vector<kv_pair>> seen;
    std::vector<std::uint64_t> indexes;
    int errors = 0;
};

TEST_F(client_watch, follows_changes_without_polling) {
    auto w = prefix_watch();
    w.start();
    ASSERT_TRUE(run_until([&] { return seen.size() == 1; }));
    EXPECT_TRUE(seen[0].empty());
    put(prefix + "a", "1");
    ASSERT_TRUE(run_until([&] { return seen.size() == 2; }));
    ASSERT_EQ(seen[1].size(), 1u);
    EXPECT_EQ(seen[1][0].value, "1");
    put(prefix + "b", "2");
    ASSERT_TRUE(run_until([&] { return seen.size() == 3; }));
    EXPECT_EQ(seen[2].size(), 2u);
    EXPECT_LT(indexes[1], indexes[2]);
    // Nothing changes under the prefix: the blocking query stays parked, no more deliveries.
    EXPECT_FALSE(run_until([&] { return seen.size() > 3; }, 200ms));
    EXPECT_EQ(errors, 0);
    w.stop();
}

TEST_F(client_watch, stop_ends_the_blocking_query_in_flight) {
    LAKEMESH_NEEDS_DEV(target);
    auto w = prefix_watch();
    w.start();
    ASSERT_TRUE(run_until([&] { return seen.size() == 1; }));
    ASSERT_TRUE(run_until([&] { return target.dev()->blocking_queries() >= 1; }));
    w.stop();
    EXPECT_FALSE(w.running());
    ASSERT_TRUE(run_until([&] { return target.dev()->blocking_queries() == 0; }))
        << "the agent still holds the watch's query";
    // The io_context runs out: nothing of the watch is left pending.
    io.restart();
    const auto t0 = std::chrono::steady_clock::now();
    io.run_for(2s);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

// Tests that restart the agent (run alone against a real agent).
class client_watch_agent_restart : public client_watch {};

TEST_F(client_watch_agent_restart, lost_state_resynchronises) {
    LAKEMESH_NEEDS_CONTROL(target);
    // Some history, so the agent's index is well ahead of where a fresh agent starts (an index
    // equal to the old one would hide the loss, in Consul as here).
    for (int i = 0; i < 5; ++i) {
        put(prefix + "old", "x" + std::to_string(i));
    }
    auto w = prefix_watch();
    w.start();
    ASSERT_TRUE(run_until([&] { return seen.size() == 1; }));
    ASSERT_EQ(seen[0].size(), 1u);
    const auto before = indexes[0];
    target.restart_agent(/*keep_state=*/false);
    // The agent forgot everything: the watch must deliver the (now empty) prefix again, then
    // follow new writes, although the new indexes are below the ones it saw before.
    put(prefix + "new", "y");
    ASSERT_TRUE(run_until([&] {
        return !seen.empty() && seen.back().size() == 1 && seen.back()[0].key == prefix + "new";
    })) << "deliveries: "
        << seen.size() << " errors: " << errors << " index: " << w.index() << " before " << before;
    EXPECT_LT(indexes.back(), before);
    w.stop();
}

}  // namespace
}  // namespace lakemesh::test
