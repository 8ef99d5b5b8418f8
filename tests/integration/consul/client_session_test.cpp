// consul::client session endpoints against dev_consul (or a real agent): create, info, renew,
// list, node, destroy, TTL validation and expiry, and the locks sessions hold.
#include "client_test_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::session_behavior;
using consul::session_info;
using consul::session_options;

class client_session : public consul_client_test {
  protected:
    void TearDown() override {
        for (const auto& id : created_) {
            raw("PUT", "session/destroy/" + id);
        }
        raw("DELETE", "kv/" + p + "?recurse");
    }

    std::string create(const session_options& o) {
        auto r = run([&] { return c.session().async_create(o, asio::use_future); });
        EXPECT_EQ(r.value.size(), 36u) << r.diag.to_string();
        if (!r.value.empty()) {
            created_.push_back(r.value);
        }
        return r.value;
    }

    std::string p = unique_name("client-session");
    std::vector<std::string> created_;
};

TEST_F(client_session, create_info_renew_list_node_destroy) {
    session_options o;
    o.name = p;
    o.ttl = 30s;
    o.behavior = session_behavior::delete_keys;
    o.lock_delay = 5s;
    o.node_checks = std::vector<std::string>{};
    auto id = create(o);
    ASSERT_FALSE(id.empty());

    auto info = run([&] { return c.session().async_info(id, asio::use_future); });
    ASSERT_TRUE(info.value.has_value()) << info.diag.to_string();
    EXPECT_EQ(info.value->id, id);
    EXPECT_EQ(info.value->name, p);
    EXPECT_EQ(info.value->node, target.node_name());
    EXPECT_EQ(info.value->ttl, 30s);
    EXPECT_EQ(info.value->behavior, session_behavior::delete_keys);
    EXPECT_EQ(info.value->lock_delay, 5s);
    EXPECT_TRUE(info.value->node_checks.empty());
    EXPECT_GT(info.value->create_index, 0u);
    EXPECT_GT(info.meta.index, 0u);

    auto renewed = run([&] { return c.session().async_renew(id, asio::use_future); });
    EXPECT_EQ(renewed.value.id, id);
    EXPECT_GE(renewed.value.ttl, 30s);  // Consul may hand back a longer TTL

    auto list = run([&] { return c.session().async_list(asio::use_future); });
    EXPECT_TRUE(std::any_of(list.value.begin(), list.value.end(),
                            [&](const session_info& s) { return s.id == id; }));
    EXPECT_GT(list.meta.index, 0u);

    auto on_node =
        run([&] { return c.session().async_node(target.node_name(), asio::use_future); });
    EXPECT_TRUE(std::any_of(on_node.value.begin(), on_node.value.end(),
                            [&](const session_info& s) { return s.id == id; }));
    for (const auto& s : on_node.value) {
        EXPECT_EQ(s.node, target.node_name());
    }

    auto destroyed = run([&] { return c.session().async_destroy(id, asio::use_future); });
    EXPECT_TRUE(destroyed.value);
    auto gone = run([&] { return c.session().async_info(id, asio::use_future); });
    EXPECT_FALSE(gone.value.has_value());
}

TEST_F(client_session, defaults_are_consuls) {
    auto r = run([&] { return c.session().async_create(asio::use_future); });
    ASSERT_EQ(r.value.size(), 36u) << r.diag.to_string();
    created_.push_back(r.value);
    auto info = run([&] { return c.session().async_info(r.value, asio::use_future); });
    ASSERT_TRUE(info.value.has_value());
    EXPECT_EQ(info.value->behavior, session_behavior::release);
    EXPECT_EQ(info.value->lock_delay, 15s);
    EXPECT_EQ(info.value->ttl, 0s);
    EXPECT_EQ(info.value->node_checks, std::vector<std::string>{"serfHealth"});
}

TEST_F(client_session, renew_of_a_destroyed_session_is_not_found) {
    session_options o;
    o.ttl = 10s;
    o.node_checks = std::vector<std::string>{};
    auto id = create(o);
    ASSERT_FALSE(id.empty());
    run([&] { return c.session().async_destroy(id, asio::use_future); });

    error_code ec;
    diagnostics diag;
    c.session().async_renew(id, [&](error_code e, consul::result<session_info> r) {
        ec = e;
        diag = r.diag;
    });
    io.restart();
    io.run();
    EXPECT_EQ(ec, consul_errc::not_found);
    EXPECT_EQ(diag.http_status(), 404u);
    EXPECT_FALSE(is_retryable(ec));
}

TEST_F(client_session, unknown_session_info_is_nullopt) {
    auto r = run([&] {
        return c.session().async_info("00000000-0000-0000-0000-000000000000", asio::use_future);
    });
    EXPECT_FALSE(r.value.has_value());
}

TEST_F(client_session, ttl_outside_consuls_range_is_rejected_before_sending) {
    for (auto ttl : {std::chrono::milliseconds(5s), std::chrono::milliseconds(9999),
                     std::chrono::milliseconds(86401s), std::chrono::milliseconds(-10s)}) {
        session_options o;
        o.ttl = ttl;
        error_code ec;
        diagnostics diag;
        c.session().async_create(o, [&](error_code e, consul::result<std::string> r) {
            ec = e;
            diag = r.diag;
        });
        io.restart();
        io.run();
        EXPECT_EQ(ec, validation_errc::invalid_duration) << ttl.count();
        EXPECT_NE(diag.client_message().find("10s and 86400s"), std::string::npos);
    }
    session_options edge;
    edge.ttl = 86400s;
    edge.node_checks = std::vector<std::string>{};
    EXPECT_FALSE(create(edge).empty());
}

TEST_F(client_session, create_on_an_unknown_node_reports_consuls_reason) {
    session_options o;
    o.node = unique_name("no-such-node");
    error_code ec;
    consul::result<std::string> r;
    c.session().async_create(o, [&](error_code e, consul::result<std::string> res) {
        ec = e;
        r = std::move(res);
    });
    io.restart();
    io.run();
    EXPECT_EQ(ec, consul_errc::internal_error);  // Consul's status for a missing node
    EXPECT_TRUE(r.value.empty());
    EXPECT_EQ(r.diag.http_status(), 500u);
    EXPECT_NE(r.diag.server_message().find("node"), std::string::npos) << r.diag.server_message();
}

TEST_F(client_session, ttl_expiry_releases_a_lock) {
    LAKEMESH_NEEDS_DEV(target);  // needs the dev agent's clock
    session_options o;
    o.ttl = 10s;
    o.lock_delay = 0s;
    o.node_checks = std::vector<std::string>{};
    auto id = create(o);
    ASSERT_FALSE(id.empty());
    consul::kv_put_options acquire;
    acquire.acquire = id;
    auto got = run([&] { return c.async_kv_put(p + "/lock", "held", acquire, asio::use_future); });
    ASSERT_TRUE(got.value);
    auto held = run([&] { return c.async_kv_get(p + "/lock", asio::use_future); });
    ASSERT_TRUE(held.value);
    EXPECT_EQ(held.value->session, id);

    // Renewal keeps it alive past one TTL...
    target.dev()->advance_clock(15s);
    auto renewed = run([&] { return c.session().async_renew(id, asio::use_future); });
    EXPECT_EQ(renewed.value.id, id);
    // ...and without renewal it ends within twice the TTL, releasing the lock.
    target.dev()->advance_clock(21s);
    auto info = run([&] { return c.session().async_info(id, asio::use_future); });
    EXPECT_FALSE(info.value.has_value());
    auto released = run([&] { return c.async_kv_get(p + "/lock", asio::use_future); });
    ASSERT_TRUE(released.value);  // behavior release: the key stays
    EXPECT_TRUE(released.value->session.empty());
    EXPECT_EQ(released.value->value, "held");

    error_code ec;
    c.session().async_renew(id, [&](error_code e, auto) { ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(ec, consul_errc::not_found);
}

TEST_F(client_session, destroy_with_delete_behavior_deletes_held_keys) {
    session_options o;
    o.behavior = session_behavior::delete_keys;
    o.lock_delay = 0s;
    o.node_checks = std::vector<std::string>{};
    auto id = create(o);
    ASSERT_FALSE(id.empty());
    consul::kv_put_options acquire;
    acquire.acquire = id;
    ASSERT_TRUE(
        run([&] { return c.async_kv_put(p + "/doomed", "v", acquire, asio::use_future); }).value);
    EXPECT_TRUE(run([&] { return c.session().async_destroy(id, asio::use_future); }).value);
    auto after = run([&] { return c.async_kv_get(p + "/doomed", asio::use_future); });
    EXPECT_FALSE(after.value.has_value());
}

TEST_F(client_session, awaitable_lifecycle_with_named_options) {
    std::string id;
    bool renewed = false;
    bool gone = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            session_options o;
            o.name = "co-" + p;
            o.node_checks = std::vector<std::string>{};
            o.ttl = 20s;
            auto created = co_await c.session().async_create(o, asio::use_awaitable);
            id = created.value;
            auto r = co_await c.session().async_renew(id, asio::use_awaitable);
            renewed = r.value.id == id && r.value.name == o.name;
            co_await c.session().async_destroy(id, asio::use_awaitable);
            consul::query_options q;
            q.consistency = consul::consistency_mode::consistent;
            auto info = co_await c.session().async_info(id, q, asio::use_awaitable);
            gone = !info.value.has_value();
        },
        asio::detached);
    io.restart();
    io.run();
    EXPECT_EQ(id.size(), 36u);
    EXPECT_TRUE(renewed);
    EXPECT_TRUE(gone);
}

TEST_F(client_session, invalid_ids_send_nothing) {
    error_code destroy_ec, renew_ec, info_ec, node_ec;
    c.session().async_destroy("", [&](error_code e, auto) { destroy_ec = e; });
    c.session().async_renew("a\nb", [&](error_code e, auto) { renew_ec = e; });
    c.session().async_info("", [&](error_code e, auto) { info_ec = e; });
    c.session().async_node("", [&](error_code e, auto) { node_ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(destroy_ec, validation_errc::invalid_name);
    EXPECT_EQ(renew_ec, validation_errc::header_injection);
    EXPECT_EQ(info_ec, validation_errc::invalid_name);
    EXPECT_EQ(node_ec, validation_errc::invalid_name);
}

}  // namespace
}  // namespace lakemesh::test
