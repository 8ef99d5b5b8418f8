// consul::client transactions against dev_consul (or a real agent): commits with mixed
// operations, rollbacks with per-operation errors, locks, and client-side validation.
#include "client_test_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::txn_kv_op;
using consul::txn_kv_verb;
using consul::txn_result;
using v = txn_kv_verb;

class client_txn : public consul_client_test {
  protected:
    void TearDown() override {
        for (const auto& id : sessions_) {
            raw("PUT", "session/destroy/" + id);
        }
        raw("DELETE", "kv/" + p + "?recurse");
    }

    /// Commits `ops`, returning the error code and the result.
    std::pair<error_code, consul::result<txn_result>> commit(const std::vector<txn_kv_op>& ops) {
        std::pair<error_code, consul::result<txn_result>> out;
        bool done = false;
        c.txn().async_commit(ops, [&](error_code ec, consul::result<txn_result> r) {
            out = {ec, std::move(r)};
            done = true;
        });
        io.restart();
        while (!done) {
            io.run_one_for(10ms);
        }
        return out;
    }

    std::optional<consul::kv_pair> get(const std::string& key) {
        return run([&] { return c.async_kv_get(key, asio::use_future); }).value;
    }

    std::string p = unique_name("client-txn");
    std::vector<std::string> sessions_;
};

TEST_F(client_txn, mixed_operations_commit_and_return_results) {
    ASSERT_TRUE(
        run([&] { return c.async_kv_put(p + "/old", "gone soon", asio::use_future); }).value);
    const std::string binary("\0\x01\xff bytes", 9);
    std::vector<txn_kv_op> ops{
        {.verb = v::set, .key = p + "/a", .value = "alpha", .flags = 7},
        {.verb = v::cas, .key = p + "/b", .value = binary, .index = 0},
        {.verb = v::check_not_exists, .key = p + "/c"},
        {.verb = v::delete_key, .key = p + "/old"},
        {.verb = v::get, .key = p + "/a"},
    };
    auto [ec, r] = commit(ops);
    ASSERT_FALSE(ec) << ec.message() << " " << r.diag.to_string();
    EXPECT_TRUE(r.value.errors.empty());
    // set, cas and get return an entry each; check-not-exists and delete return nothing.
    ASSERT_EQ(r.value.results.size(), 3u);
    EXPECT_EQ(r.value.results[0].key, p + "/a");
    EXPECT_EQ(r.value.results[0].flags, 7u);
    EXPECT_GT(r.value.results[0].modify_index, 0u);
    EXPECT_EQ(r.value.results[1].key, p + "/b");
    EXPECT_EQ(r.value.results[2].key, p + "/a");
    EXPECT_EQ(r.value.results[2].value, "alpha");
    EXPECT_EQ(r.value.results[2].modify_index, r.value.results[0].modify_index);

    auto b = get(p + "/b");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->value, binary);
    EXPECT_FALSE(get(p + "/old"));
}

TEST_F(client_txn, read_only_transaction_with_get_tree_and_checks) {
    ASSERT_TRUE(run([&] { return c.async_kv_put(p + "/t/1", "one", asio::use_future); }).value);
    ASSERT_TRUE(run([&] { return c.async_kv_put(p + "/t/2", "two", asio::use_future); }).value);
    auto one = get(p + "/t/1");
    ASSERT_TRUE(one);
    std::vector<txn_kv_op> ops{
        {.verb = v::check_index, .key = p + "/t/1", .index = one->modify_index},
        {.verb = v::get_tree, .key = p + "/t/"},
    };
    consul::txn_options stale;
    stale.consistency = consul::consistency_mode::stale;
    auto r = run([&] { return c.txn().async_commit(ops, stale, asio::use_future); });
    ASSERT_EQ(r.value.results.size(), 3u) << r.diag.to_string();
    EXPECT_EQ(r.value.results[0].key, p + "/t/1");
    EXPECT_EQ(r.value.results[1].value, "one");
    EXPECT_EQ(r.value.results[2].value, "two");
    EXPECT_TRUE(r.meta.known_leader);  // read-only transactions answer like reads
}

TEST_F(client_txn, rollback_reports_each_failing_operation_and_writes_nothing) {
    ASSERT_TRUE(run([&] { return c.async_kv_put(p + "/x", "1", asio::use_future); }).value);
    auto x = get(p + "/x");
    ASSERT_TRUE(x);
    std::vector<txn_kv_op> ops{
        {.verb = v::set, .key = p + "/y", .value = "should not land"},
        {.verb = v::cas, .key = p + "/x", .value = "2", .index = x->modify_index + 1000},
    };
    auto [ec, r] = commit(ops);
    EXPECT_EQ(ec, consul_errc::conflict);
    EXPECT_EQ(r.diag.http_status(), 409u);
    ASSERT_EQ(r.value.errors.size(), 1u) << r.diag.to_string();
    EXPECT_EQ(r.value.errors[0].op_index, 1u);
    EXPECT_NE(r.value.errors[0].what.find(p + "/x"), std::string::npos) << r.value.errors[0].what;
    EXPECT_TRUE(r.value.results.empty());
    EXPECT_NE(r.diag.server_message().find("op 1"), std::string::npos);
    EXPECT_FALSE(get(p + "/y"));
    EXPECT_EQ(get(p + "/x")->value, "1");
}

TEST_F(client_txn, lock_check_session_and_unlock_with_a_session) {
    consul::session_options so;
    so.lock_delay = 0s;
    so.node_checks = std::vector<std::string>{};
    auto s = run([&] { return c.session().async_create(so, asio::use_future); });
    ASSERT_EQ(s.value.size(), 36u) << s.diag.to_string();
    sessions_.push_back(s.value);
    const auto id = s.value;
    const auto key = p + "/leader";

    std::vector<txn_kv_op> lock{{.verb = v::lock, .key = key, .value = "me", .session = id}};
    auto [ec, locked] = commit(lock);
    ASSERT_FALSE(ec) << locked.diag.to_string();
    ASSERT_EQ(locked.value.results.size(), 1u);
    EXPECT_EQ(locked.value.results[0].session, id);
    EXPECT_EQ(locked.value.results[0].lock_index, 1u);
    auto held = get(key);
    ASSERT_TRUE(held);
    EXPECT_EQ(held->session, id);
    EXPECT_EQ(held->value, "me");

    std::vector<txn_kv_op> check_and_unlock{
        {.verb = v::check_session, .key = key, .session = id},
        {.verb = v::unlock, .key = key, .value = "free", .session = id},
    };
    auto [ec2, unlocked] = commit(check_and_unlock);
    ASSERT_FALSE(ec2) << unlocked.diag.to_string();
    auto after = get(key);
    ASSERT_TRUE(after);
    EXPECT_TRUE(after->session.empty());
    EXPECT_EQ(after->value, "free");

    // Unlocking what is no longer held rolls back.
    std::vector<txn_kv_op> unlock_again{{.verb = v::unlock, .key = key, .session = id}};
    auto [ec3, refused] = commit(unlock_again);
    EXPECT_EQ(ec3, consul_errc::conflict);
    ASSERT_EQ(refused.value.errors.size(), 1u);
    EXPECT_EQ(refused.value.errors[0].op_index, 0u);
}

TEST_F(client_txn, validation_rejects_before_sending) {
    std::vector<txn_kv_op> too_many(consul::max_txn_ops + 1,
                                    txn_kv_op{.verb = v::get, .key = p + "/k"});
    auto [ec, r] = commit(too_many);
    EXPECT_EQ(ec, validation_errc::invalid_argument);
    EXPECT_NE(r.diag.client_message().find("64"), std::string::npos);

    std::vector<txn_kv_op> lock_without_session{{.verb = v::lock, .key = p + "/l"}};
    EXPECT_EQ(commit(lock_without_session).first, validation_errc::invalid_name);

    std::vector<txn_kv_op> slash{{.verb = v::set, .key = "/" + p}};
    EXPECT_EQ(commit(slash).first, validation_errc::invalid_key);

    std::vector<txn_kv_op> empty_key{{.verb = v::get, .key = ""}};
    EXPECT_EQ(commit(empty_key).first, validation_errc::invalid_key);

    std::vector<txn_kv_op> control{{.verb = v::set, .key = p + "/\x01"}};
    EXPECT_EQ(commit(control).first, validation_errc::control_character);
}

TEST_F(client_txn, exactly_the_limit_is_accepted) {
    std::vector<txn_kv_op> ops;
    for (std::size_t i = 0; i < consul::max_txn_ops; ++i) {
        ops.push_back({.verb = v::set, .key = p + "/many/" + std::to_string(i), .value = "v"});
    }
    auto [ec, r] = commit(ops);
    ASSERT_FALSE(ec) << r.diag.to_string();
    EXPECT_EQ(r.value.results.size(), consul::max_txn_ops);
}

TEST_F(client_txn, awaitable_token) {
    bool ok = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            std::vector<txn_kv_op> ops{{.verb = v::set, .key = p + "/co", .value = "coroutine"},
                                       {.verb = v::get, .key = p + "/co"}};
            auto r = co_await c.txn().async_commit(ops, asio::use_awaitable);
            ok = r.value.results.size() == 2 && r.value.results[1].value == "coroutine";
        },
        asio::detached);
    io.restart();
    io.run();
    EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace lakemesh::test
