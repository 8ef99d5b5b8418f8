// Catalog endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "dev_hook.hpp"

#include <algorithm>
#include <future>
#include <set>

namespace lakemesh::test {
namespace {

class catalog : public ::testing::Test {
  protected:
    void TearDown() override {
        for (const auto& id : registered) {
            c.put("/v1/agent/service/deregister/" + id);
        }
    }
    void register_service(const json& def) {
        registered.push_back(def.value("ID", def["Name"].get<std::string>()));
        auto r = c.put("/v1/agent/service/register", def.dump());
        ASSERT_EQ(r.status, 200u) << r.body;
    }

    consul_target target;
    raw_http c = target.client();
    std::string name = unique_name("cat");
    std::vector<std::string> registered;
};

TEST_F(catalog, services_maps_names_to_the_union_of_tags) {
    register_service(json{{"Name", name}, {"ID", name + "-1"}, {"Tags", {"b", "a"}}});
    register_service(json{{"Name", name}, {"ID", name + "-2"}, {"Tags", {"c", "a"}}});
    auto r = c.get("/v1/catalog/services");
    ASSERT_EQ(r.status, 200u);
    EXPECT_GT(r.index(), 0u);
    auto j = r.json_body();
    ASSERT_TRUE(j.contains(name));
    auto tags = j[name].get<std::vector<std::string>>();
    std::sort(tags.begin(), tags.end());
    EXPECT_EQ(tags, (std::vector<std::string>{"a", "b", "c"}));
    // A server agent registers itself as the "consul" service.
    EXPECT_EQ(j["consul"], json::array());
    EXPECT_EQ(r.header("x-consul-effective-consistency"), "leader");
    // Consul 1.10 does not filter this endpoint.
    EXPECT_EQ(c.get("/v1/catalog/services?filter=Bogus%20%3D%3D%201").status, 200u);
}

TEST_F(catalog, service_lists_instances_with_node_and_service_fields) {
    register_service(json{{"Name", name},
                          {"ID", name + "-1"},
                          {"Tags", {"primary", "v1"}},
                          {"Port", 9000},
                          {"Address", "10.1.1.1"},
                          {"Meta", {{"zone", "a"}}}});
    register_service(json{{"Name", name}, {"ID", name + "-2"}, {"Tags", {"v1"}}, {"Port", 9001}});
    auto r = c.get("/v1/catalog/service/" + name);
    ASSERT_EQ(r.status, 200u);
    EXPECT_GT(r.index(), 0u);
    auto j = r.json_body();
    ASSERT_EQ(j.size(), 2u);
    auto first = j[0]["ServiceID"] == name + "-1" ? j[0] : j[1];
    EXPECT_EQ(first["Node"], target.node_name());
    EXPECT_FALSE(first["ID"].get<std::string>().empty());
    EXPECT_FALSE(first["Address"].get<std::string>().empty());
    EXPECT_FALSE(first["Datacenter"].get<std::string>().empty());
    EXPECT_TRUE(first["TaggedAddresses"].is_object());
    EXPECT_TRUE(first["NodeMeta"].is_object());
    EXPECT_EQ(first["ServiceName"], name);
    EXPECT_EQ(first["ServiceTags"], json({"primary", "v1"}));
    EXPECT_EQ(first["ServiceAddress"], "10.1.1.1");
    EXPECT_EQ(first["ServicePort"], 9000);
    EXPECT_EQ(first["ServiceMeta"]["zone"], "a");
    EXPECT_EQ(first["ServiceWeights"], json({{"Passing", 1}, {"Warning", 1}}));
    EXPECT_EQ(first["ServiceEnableTagOverride"], false);
    EXPECT_GT(first["CreateIndex"].get<std::uint64_t>(), 0u);
    // structs.ServiceNode of Consul 1.10.11.
    EXPECT_EQ(first["ServiceKind"], "");
    EXPECT_EQ(first["ServiceSocketPath"], "");
    EXPECT_EQ(first["ServiceProxy"],
              json({{"Mode", ""}, {"MeshGateway", json::object()}, {"Expose", json::object()}}));
    EXPECT_EQ(first["ServiceConnect"], json::object());
    EXPECT_EQ(first["ServiceTaggedAddresses"]["lan_ipv4"],
              json({{"Address", "10.1.1.1"}, {"Port", 9000}}));
    auto second = j[0]["ServiceID"] == name + "-1" ? j[1] : j[0];
    EXPECT_FALSE(second.contains("ServiceTaggedAddresses"));
    EXPECT_EQ(second["ServiceMeta"], json::object());

    EXPECT_EQ(c.get("/v1/catalog/service/" + name + "?tag=primary").json_body().size(), 1u);
    EXPECT_EQ(c.get("/v1/catalog/service/" + name + "?tag=v1").json_body().size(), 2u);
    EXPECT_EQ(c.get("/v1/catalog/service/" + name + "?tag=v1&tag=primary").json_body().size(), 1u);
    EXPECT_EQ(c.get("/v1/catalog/service/" + name + "?tag=v1&tag=nope").json_body().size(), 0u);
    auto f = c.get("/v1/catalog/service/" + name + "?filter=ServicePort%20%3D%3D%209001");
    ASSERT_EQ(f.status, 200u) << f.body;
    ASSERT_EQ(f.json_body().size(), 1u);
    EXPECT_EQ(f.json_body()[0]["ServiceID"], name + "-2");
    EXPECT_EQ(c.get("/v1/catalog/service/" + name + "-nothing").json_body(), json::array());
}

TEST_F(catalog, nodes_and_node_describe_this_agent) {
    register_service(json{{"Name", name}, {"Port", 1234}});
    auto nodes = c.get("/v1/catalog/nodes");
    ASSERT_EQ(nodes.status, 200u);
    EXPECT_GT(nodes.index(), 0u);
    bool found = false;
    for (const auto& n : nodes.json_body()) {
        if (n["Node"] == target.node_name()) {
            found = true;
            EXPECT_FALSE(n["ID"].get<std::string>().empty());
            EXPECT_FALSE(n["Address"].get<std::string>().empty());
            EXPECT_TRUE(n["Meta"].is_object());
        }
    }
    EXPECT_TRUE(found);

    auto node = c.get("/v1/catalog/node/" + target.node_name());
    ASSERT_EQ(node.status, 200u);
    auto j = node.json_body();
    EXPECT_EQ(j["Node"]["Node"], target.node_name());
    EXPECT_EQ(j["Node"]["Meta"]["consul-network-segment"], "");
    for (auto t : {"lan", "lan_ipv4", "wan", "wan_ipv4"}) {
        EXPECT_TRUE(j["Node"]["TaggedAddresses"].contains(t)) << t;
    }
    ASSERT_TRUE(j["Services"].contains("consul"));
    EXPECT_EQ(j["Services"]["consul"]["Meta"]["version"], "1.10.11");
    ASSERT_TRUE(j["Services"].contains(name));
    EXPECT_EQ(j["Services"][name]["Port"], 1234);
    EXPECT_EQ(j["Services"][name]["Service"], name);

    auto unknown = c.get("/v1/catalog/node/" + name + "-no-such-node");
    EXPECT_EQ(unknown.status, 200u);
    EXPECT_TRUE(unknown.json_body().is_null());
    EXPECT_EQ(unknown.index(), 1u);
}

TEST_F(catalog, datacenters_lists_the_agents_datacenter) {
    auto dc = c.get("/v1/agent/self").json_body()["Config"]["Datacenter"];
    auto j = c.get("/v1/catalog/datacenters").json_body();
    ASSERT_TRUE(j.is_array());
    EXPECT_NE(std::find(j.begin(), j.end(), dc), j.end());
}

TEST_F(catalog, services_blocking_query_wakes_on_registration) {
    auto first = c.get("/v1/catalog/services");
    auto fut = std::async(std::launch::async, [&] {
        auto c2 = target.client();
        return c2.get("/v1/catalog/services?index=" + std::to_string(first.index()) + "&wait=5s");
    });
    if (target.dev() != nullptr) {
        ASSERT_TRUE(eventually([&] { return target.dev()->blocking_queries() >= 1; }));
    }
    register_service(json{{"Name", name}});
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(2)), std::future_status::ready);
    auto r = fut.get();
    EXPECT_GT(r.index(), first.index());
    EXPECT_TRUE(r.json_body().contains(name));
}

// Consul 1.10 makes the filter inside its RPC: a bad one is a 500 that carries the meta of a
// query that never ran.
TEST_F(catalog, invalid_filter_is_500_with_the_meta_of_no_query) {
    auto r = c.get("/v1/catalog/service/" + name + "?filter=ServicePort%20%3D%3D");
    EXPECT_EQ(r.status, 500u);
    EXPECT_TRUE(
        r.body.starts_with("Failed to create boolean expression evaluator: 1:15 (14): "
                           "no match found, expected: "))
        << r.body;
    EXPECT_EQ(r.index(), 1u);
    EXPECT_EQ(r.header("x-consul-knownleader"), "false");
    auto selector = c.get("/v1/catalog/nodes?filter=Bogus%20%3D%3D%201");
    EXPECT_EQ(selector.status, 500u);
    EXPECT_EQ(selector.body,
              "Failed to create boolean expression evaluator: Selector \"Bogus\" is not valid");
}

// A service's reads answer with that service's index: registering another service leaves it.
TEST_F(catalog, service_reads_carry_the_services_own_index) {
    register_service(json{{"Name", name}, {"ID", name + "-1"}});
    const auto mine = c.get("/v1/catalog/service/" + name).index();
    EXPECT_EQ(c.get("/v1/health/service/" + name).index(), mine);
    register_service(json{{"Name", name + "-other"}});
    EXPECT_EQ(c.get("/v1/catalog/service/" + name).index(), mine);
    EXPECT_GT(c.get("/v1/catalog/services").index(), mine);
    register_service(json{{"Name", name}, {"ID", name + "-2"}});
    EXPECT_GT(c.get("/v1/catalog/service/" + name).index(), mine);
}

TEST_F(catalog, a_joined_agent_shares_the_catalog_and_membership) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "second agent sharing its catalog, and stop()");
    testing::dev_consul_options opts;
    opts.node_name = name + "-node2";
    testing::dev_consul second(*target.dev(), opts);
    raw_http c2("127.0.0.1", second.port());

    std::set<std::string> names;
    for (const auto& n : c.get("/v1/catalog/nodes").json_body()) {
        names.insert(n["Node"]);
    }
    EXPECT_TRUE(names.count(target.node_name()));
    EXPECT_TRUE(names.count(opts.node_name));

    auto members = c2.get("/v1/agent/members").json_body();
    ASSERT_EQ(members.size(), 2u);
    EXPECT_EQ(c2.get("/v1/agent/self").json_body()["Config"]["NodeName"], opts.node_name);

    // A service registered through the second agent lives on its node, visible from the first.
    ASSERT_EQ(c2.put("/v1/agent/service/register", json{{"Name", name}}.dump()).status, 200u);
    auto inst = c.get("/v1/catalog/service/" + name).json_body();
    ASSERT_EQ(inst.size(), 1u);
    EXPECT_EQ(inst[0]["Node"], opts.node_name);
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(name));

    auto serf_status = [&] {
        for (const auto& chk : c.get("/v1/health/node/" + opts.node_name).json_body()) {
            if (chk["CheckID"] == "serfHealth") {
                return chk["Status"].get<std::string>();
            }
        }
        return std::string("absent");
    };
    EXPECT_EQ(serf_status(), "passing");
    second.stop();
    EXPECT_EQ(serf_status(), "critical");
    for (const auto& m : c.get("/v1/agent/members").json_body()) {
        if (m["Name"] == opts.node_name) {
            EXPECT_EQ(m["Status"], 4);
        }
    }
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body(), json::array());
}

}  // namespace
}  // namespace lakemesh::test
