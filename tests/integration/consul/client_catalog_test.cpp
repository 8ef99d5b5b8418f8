// consul::client catalog endpoints against dev_consul (or a real agent): services, service,
// nodes, node, datacenters, blocking reads and validation.
#include "client_test_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <thread>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::catalog_service;
using consul::query_options;

class client_catalog : public consul_client_test {
  protected:
    void TearDown() override {
        for (const auto& id : registered_) {
            raw("PUT", "agent/service/deregister/" + id);
        }
    }

    /// Registers a service on the agent (the typed agent API is not used here on purpose).
    void register_service(const std::string& id, const std::string& name, json extra = {}) {
        json body{{"ID", id}, {"Name", name}};
        if (extra.is_object()) {
            body.update(extra);
        }
        ASSERT_EQ(raw("PUT", "agent/service/register", body.dump()), 200u);
        registered_.push_back(id);
    }

    /// The catalog's instances of `name`, polled until `count` appear (a real agent syncs its
    /// services to the catalog asynchronously).
    std::vector<catalog_service> instances(const std::string& name, std::size_t count = 1) {
        std::vector<catalog_service> out;
        auto end = std::chrono::steady_clock::now() + 5s;
        do {
            auto r = run([&] { return c.catalog().async_service(name, asio::use_future); });
            out = r.value;
            if (out.size() >= count) {
                break;
            }
            std::this_thread::sleep_for(20ms);
        } while (std::chrono::steady_clock::now() < end);
        return out;
    }

    std::string svc = unique_name("catsvc");
    std::vector<std::string> registered_;
};

TEST_F(client_catalog, service_reflects_an_agent_registered_service) {
    register_service(svc + "-1", svc,
                     json{{"Tags", {"v1", "primary"}},
                          {"Address", "10.1.2.3"},
                          {"Port", 8080},
                          {"Meta", {{"version", "1.2"}}},
                          {"Weights", {{"Passing", 5}, {"Warning", 2}}}});
    auto list = instances(svc);
    ASSERT_EQ(list.size(), 1u);
    const auto& s = list.front();
    EXPECT_EQ(s.service_id, svc + "-1");
    EXPECT_EQ(s.service_name, svc);
    EXPECT_EQ(s.service_tags, (std::vector<std::string>{"v1", "primary"}));
    EXPECT_EQ(s.service_address, "10.1.2.3");
    EXPECT_EQ(s.service_port, 8080);
    EXPECT_EQ(s.service_meta, (std::map<std::string, std::string>{{"version", "1.2"}}));
    EXPECT_EQ(s.service_weights.passing, 5);
    EXPECT_EQ(s.service_weights.warning, 2);
    EXPECT_EQ(s.node, target.node_name());
    EXPECT_FALSE(s.address.empty());
    EXPECT_FALSE(s.datacenter.empty());
    EXPECT_GT(s.create_index, 0u);
    EXPECT_GE(s.modify_index, s.create_index);
}

TEST_F(client_catalog, service_tag_and_filter_and_unknown_service) {
    register_service(svc + "-a", svc, json{{"Tags", {"blue"}}, {"Meta", {{"zone", "a"}}}});
    register_service(svc + "-b", svc, json{{"Tags", {"green"}}, {"Meta", {{"zone", "b"}}}});
    ASSERT_EQ(instances(svc, 2).size(), 2u);

    query_options none;
    auto blue = run([&] { return c.catalog().async_service(svc, "blue", none, asio::use_future); });
    ASSERT_EQ(blue.value.size(), 1u);
    EXPECT_EQ(blue.value[0].service_id, svc + "-a");
    EXPECT_GT(blue.meta.index, 0u);

    query_options filtered;
    filtered.filter = "ServiceMeta.zone == \"b\"";
    auto zone_b = run([&] { return c.catalog().async_service(svc, filtered, asio::use_future); });
    ASSERT_EQ(zone_b.value.size(), 1u);
    EXPECT_EQ(zone_b.value[0].service_id, svc + "-b");

    auto unknown =
        run([&] { return c.catalog().async_service(unique_name("nothing"), asio::use_future); });
    EXPECT_TRUE(unknown.value.empty());
    EXPECT_GT(unknown.meta.index, 0u);
}

TEST_F(client_catalog, services_map_names_to_tags) {
    register_service(svc + "-1", svc, json{{"Tags", {"x"}}});
    register_service(svc + "-2", svc, json{{"Tags", {"y"}}});
    ASSERT_EQ(instances(svc, 2).size(), 2u);
    auto r = run([&] { return c.catalog().async_services(asio::use_future); });
    ASSERT_TRUE(r.value.count(svc)) << "service missing from catalog/services";
    auto tags = r.value[svc];
    std::sort(tags.begin(), tags.end());
    EXPECT_EQ(tags, (std::vector<std::string>{"x", "y"}));
    EXPECT_GT(r.meta.index, 0u);
}

TEST_F(client_catalog, nodes_and_node_with_its_services) {
    register_service(svc + "-1", svc, json{{"Port", 9000}, {"Tags", {"t"}}});
    ASSERT_EQ(instances(svc).size(), 1u);

    auto nodes = run([&] { return c.catalog().async_nodes(asio::use_future); });
    auto self = std::find_if(nodes.value.begin(), nodes.value.end(),
                             [&](const auto& n) { return n.node == target.node_name(); });
    ASSERT_NE(self, nodes.value.end());
    EXPECT_FALSE(self->address.empty());
    EXPECT_GT(nodes.meta.index, 0u);

    auto node = run([&] { return c.catalog().async_node(target.node_name(), asio::use_future); });
    ASSERT_TRUE(node.value.has_value());
    EXPECT_EQ(node.value->node.node, target.node_name());
    EXPECT_EQ(node.value->node.address, self->address);
    ASSERT_TRUE(node.value->services.count(svc + "-1"));
    const auto& s = node.value->services.at(svc + "-1");
    EXPECT_EQ(s.service, svc);
    EXPECT_EQ(s.port, 9000);
    EXPECT_EQ(s.tags, std::vector<std::string>{"t"});
    EXPECT_EQ(s.weights.passing, 1);  // Consul's default weights
}

TEST_F(client_catalog, unknown_node_is_nullopt_not_an_error) {
    auto r =
        run([&] { return c.catalog().async_node(unique_name("no-such-node"), asio::use_future); });
    EXPECT_FALSE(r.value.has_value());
}

TEST_F(client_catalog, datacenters_include_the_agents) {
    auto r = run([&] { return c.catalog().async_datacenters(asio::use_future); });
    ASSERT_FALSE(r.value.empty());
    auto nodes = run([&] { return c.catalog().async_nodes(asio::use_future); });
    ASSERT_FALSE(nodes.value.empty());
    EXPECT_NE(std::find(r.value.begin(), r.value.end(), nodes.value.front().datacenter),
              r.value.end());
}

TEST_F(client_catalog, blocking_service_query_is_woken_by_a_registration) {
    auto first = run([&] { return c.catalog().async_service(svc, asio::use_future); });
    ASSERT_TRUE(first.value.empty());
    ASSERT_GT(first.meta.index, 0u);

    // Block (up to 10 s) for a change past that index, then register while it waits.
    query_options q;
    q.index = first.meta.index;
    q.wait = 10s;
    auto start = std::chrono::steady_clock::now();
    auto blocked = c.catalog().async_service(svc, q, asio::use_future);
    io.restart();
    for (int i = 0; i < 20; ++i) {
        io.run_one_for(5ms);  // let the blocking request reach the agent
    }
    // A real agent shared with other tests wakes a query for an absent service on any
    // registration; only dev_consul's catalog is quiet enough to see it still waiting.
    if (target.dev() != nullptr) {
        EXPECT_NE(blocked.wait_for(0s), std::future_status::ready);
    }
    register_service(svc + "-1", svc);
    ASSERT_TRUE(wait_ready(blocked));
    auto woke = blocked.get();
    // A real agent may also wake for unrelated catalog changes; keep blocking until it shows.
    while (woke.value.empty() && std::chrono::steady_clock::now() - start < 10s) {
        q.index = woke.meta.index;
        woke = run([&] { return c.catalog().async_service(svc, q, asio::use_future); });
    }
    ASSERT_EQ(woke.value.size(), 1u);
    EXPECT_EQ(woke.value[0].service_id, svc + "-1");
    EXPECT_GT(woke.meta.index, first.meta.index);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);  // woken, not timed out
}

TEST_F(client_catalog, awaitable_token_with_named_options) {
    register_service(svc + "-1", svc);
    ASSERT_EQ(instances(svc).size(), 1u);
    std::size_t count = 0;
    std::size_t dcs = 0;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            query_options stale;
            stale.consistency = consul::consistency_mode::stale;
            auto r = co_await c.catalog().async_service(svc, stale, asio::use_awaitable);
            count = r.value.size();
            auto d = co_await c.catalog().async_datacenters(asio::use_awaitable);
            dcs = d.value.size();
        },
        asio::detached);
    io.restart();
    io.run();
    EXPECT_EQ(count, 1u);
    EXPECT_GE(dcs, 1u);
}

TEST_F(client_catalog, validation_errors) {
    error_code ec;
    c.catalog().async_service(
        "", [&](error_code e, consul::result<std::vector<catalog_service>>) { ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(ec, validation_errc::invalid_name);

    error_code node_ec;
    c.catalog().async_node("a\r\nb", [&](error_code e, auto) { node_ec = e; });
    error_code filter_ec;
    query_options bad;
    bad.filter = "x\n";
    c.catalog().async_nodes(bad, [&](error_code e, auto) { filter_ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(node_ec, validation_errc::header_injection);
    EXPECT_EQ(filter_ec, validation_errc::header_injection);
}

TEST_F(client_catalog, invalid_filter_is_consuls_bad_request) {
    query_options bad;
    bad.filter = "this is not a filter ==";
    error_code ec;
    diagnostics diag;
    c.catalog().async_nodes(bad, [&](error_code e, auto r) {
        ec = e;
        diag = r.diag;
    });
    io.restart();
    io.run();
    // 400 from Consul 1.11+, 500 with go-bexpr's text from 1.10 (and dev_consul): both a
    // bad request, not a server error worth retrying.
    EXPECT_EQ(ec, consul_errc::bad_request);
    EXPECT_TRUE(diag.http_status() == 400u || diag.http_status() == 500u) << diag.http_status();
    EXPECT_FALSE(is_retryable(ec));
    EXPECT_FALSE(diag.server_message().empty());
}

}  // namespace
}  // namespace lakemesh::test
