// Health endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "consul_target.hpp"

#include <future>

namespace lakemesh::test {
namespace {

std::string url_encode(const std::string& s) {
    std::string out;
    const char* hex = "0123456789ABCDEF";
    for (unsigned char ch : s) {
        if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
            out += static_cast<char>(ch);
        } else {
            out += '%';
            out += hex[ch >> 4];
            out += hex[ch & 15];
        }
    }
    return out;
}

class health : public ::testing::Test {
  protected:
    void TearDown() override {
        for (const auto& id : registered) {
            c.put("/v1/agent/service/deregister/" + id);
        }
    }
    /// Registers instance `id` of `name` with one TTL check "<id>-ttl" in `status`.
    void add_instance(const std::string& svc, const std::string& id, const json& tags,
                      const json& meta, const std::string& status) {
        registered.push_back(id);
        json def{{"Name", svc},
                 {"ID", id},
                 {"Tags", tags},
                 {"Meta", meta},
                 {"Check", {{"CheckID", id + "-ttl"}, {"TTL", "60s"}}}};
        ASSERT_EQ(c.put("/v1/agent/service/register", def.dump()).status, 200u);
        set_status(id, status);
    }
    void set_status(const std::string& id, const std::string& status) {
        auto r = c.put("/v1/agent/check/update/" + id + "-ttl",
                       json{{"Status", status}, {"Output", status}}.dump());
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    std::set<std::string> ids(const std::string& query) {
        auto r = c.get("/v1/health/service/" + name + query);
        EXPECT_EQ(r.status, 200u) << r.body;
        std::set<std::string> out;
        if (r.status == 200) {
            for (const auto& e : r.json_body()) {
                out.insert(e["Service"]["ID"].get<std::string>());
            }
        }
        return out;
    }
    std::set<std::string> filtered(const std::string& expr) {
        return ids("?filter=" + url_encode(expr));
    }

    consul_target target;
    raw_http c = target.client();
    std::string name = unique_name("hl");
    std::vector<std::string> registered;
};

TEST_F(health, service_entries_carry_node_service_and_checks) {
    add_instance(name, name + "-1", {"v1"}, {{"zone", "a"}}, "passing");
    auto r = c.get("/v1/health/service/" + name);
    ASSERT_EQ(r.status, 200u);
    EXPECT_GT(r.index(), 0u);
    auto j = r.json_body();
    ASSERT_EQ(j.size(), 1u);
    const auto& e = j[0];
    EXPECT_EQ(e["Node"]["Node"], target.node_name());
    for (auto f :
         {"ID", "Address", "Datacenter", "TaggedAddresses", "Meta", "CreateIndex", "ModifyIndex"}) {
        EXPECT_TRUE(e["Node"].contains(f)) << f;
    }
    EXPECT_EQ(e["Service"]["ID"], name + "-1");
    EXPECT_EQ(e["Service"]["Service"], name);
    EXPECT_EQ(e["Service"]["Tags"], json({"v1"}));
    EXPECT_EQ(e["Service"]["Meta"]["zone"], "a");
    EXPECT_EQ(e["Service"]["Weights"], json({{"Passing", 1}, {"Warning", 1}}));
    std::set<std::string> check_ids;
    for (const auto& chk : e["Checks"]) {
        check_ids.insert(chk["CheckID"].get<std::string>());
    }
    EXPECT_TRUE(check_ids.count("serfHealth"));
    EXPECT_TRUE(check_ids.count(name + "-1-ttl"));
    EXPECT_EQ(e["Checks"][0]["CheckID"], "serfHealth");  // node checks first
    EXPECT_EQ(c.get("/v1/health/service/" + name + "-none").json_body(), json::array());
}

TEST_F(health, passing_drops_warning_and_critical_instances) {
    add_instance(name, name + "-ok", json::array(), json::object(), "passing");
    add_instance(name, name + "-warn", json::array(), json::object(), "warning");
    add_instance(name, name + "-bad", json::array(), json::object(), "critical");
    EXPECT_EQ(ids("").size(), 3u);
    EXPECT_EQ(ids("?passing"), std::set<std::string>{name + "-ok"});
    EXPECT_EQ(ids("?passing=true"), std::set<std::string>{name + "-ok"});
    EXPECT_EQ(ids("?passing=false").size(), 3u);
    auto bad = c.get("/v1/health/service/" + name + "?passing=perhaps");
    EXPECT_EQ(bad.status, 400u);
    EXPECT_EQ(bad.body, "Invalid value for ?passing");
}

TEST_F(health, tag_parameters_must_all_match) {
    add_instance(name, name + "-a", {"blue", "v1"}, json::object(), "passing");
    add_instance(name, name + "-b", {"green", "v1"}, json::object(), "passing");
    EXPECT_EQ(ids("?tag=blue"), std::set<std::string>{name + "-a"});
    EXPECT_EQ(ids("?tag=v1").size(), 2u);
    EXPECT_EQ(ids("?tag=v1&tag=green"), std::set<std::string>{name + "-b"});
    EXPECT_TRUE(ids("?tag=blue&tag=green").empty());
}

TEST_F(health, filter_supports_meta_tags_and_boolean_combinations) {
    add_instance(name, name + "-a", {"blue", "v1"}, {{"ver", "1"}, {"zone", "x"}}, "passing");
    add_instance(name, name + "-b", {"green"}, {{"ver", "2"}, {"zone", "x"}}, "passing");
    add_instance(name, name + "-c", {"blue"}, {{"ver", "2"}}, "passing");
    const std::string a = name + "-a", b = name + "-b", cc = name + "-c";
    using set = std::set<std::string>;
    EXPECT_EQ(filtered("Service.Meta.ver == \"1\""), set{a});
    EXPECT_EQ(filtered("Service.Meta.ver != \"1\""), (set{b, cc}));
    EXPECT_EQ(filtered("\"blue\" in Service.Tags"), (set{a, cc}));
    EXPECT_EQ(filtered("\"blue\" not in Service.Tags"), set{b});
    EXPECT_EQ(filtered("Service.Tags contains \"green\""), set{b});
    EXPECT_EQ(filtered("\"blue\" in Service.Tags and Service.Meta.ver == \"2\""), set{cc});
    EXPECT_EQ(filtered("Service.Meta.ver == \"1\" or Service.Tags contains \"green\""),
              (set{a, b}));
    EXPECT_EQ(filtered("not (\"blue\" in Service.Tags)"), set{b});
    EXPECT_EQ(filtered("Service.Meta.zone == \"x\" and (Service.Meta.ver == \"2\" or "
                       "\"v1\" in Service.Tags)"),
              (set{a, b}));
    EXPECT_EQ(filtered("Service.Meta.zone is empty"), set{cc});
    EXPECT_EQ(filtered("Node.Node == \"" + target.node_name() + "\"").size(), 3u);

    const std::vector<std::string> bad_filters{"Service.Meta.ver ==", "(\"blue\" in Service.Tags",
                                               "Service.Tags wibble", "== \"x\"", "\"unterminated"};
    for (const auto& bad : bad_filters) {
        auto r = c.get("/v1/health/service/" + name + "?filter=" + url_encode(bad));
        EXPECT_EQ(r.status, 400u) << bad;
        EXPECT_NE(r.body.find("Failed to create boolean expression evaluator"), std::string::npos)
            << r.body;
    }
}

TEST_F(health, deeply_nested_filter_is_refused_not_a_crash) {
    LAKEMESH_NEEDS_DEV(target);  // dev_consul bounds nesting; Consul's parser has no such limit
    add_instance(name, name + "-a", json::array(), json::object(), "passing");
    const std::string deep =
        std::string(5000, '(') + "Service.ID == \"x\"" + std::string(5000, ')');
    auto r = c.get("/v1/health/service/" + name + "?filter=" + url_encode(deep));
    EXPECT_EQ(r.status, 400u);
    EXPECT_EQ(filtered("((Service.ID == \"" + name + "-a\"))"), std::set<std::string>{name + "-a"});
}

TEST_F(health, checks_state_and_node_endpoints) {
    add_instance(name, name + "-1", json::array(), json::object(), "warning");
    auto checks = c.get("/v1/health/checks/" + name);
    ASSERT_EQ(checks.status, 200u);
    EXPECT_GT(checks.index(), 0u);
    auto j = checks.json_body();
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["CheckID"], name + "-1-ttl");
    EXPECT_EQ(j[0]["Status"], "warning");
    EXPECT_EQ(j[0]["ServiceName"], name);

    auto has = [&](const json& arr, const std::string& id) {
        for (const auto& chk : arr) {
            if (chk["CheckID"] == id) {
                return true;
            }
        }
        return false;
    };
    EXPECT_TRUE(has(c.get("/v1/health/state/warning").json_body(), name + "-1-ttl"));
    EXPECT_FALSE(has(c.get("/v1/health/state/passing").json_body(), name + "-1-ttl"));
    EXPECT_TRUE(has(c.get("/v1/health/state/any").json_body(), name + "-1-ttl"));
    set_status(name + "-1", "critical");
    EXPECT_TRUE(has(c.get("/v1/health/state/critical").json_body(), name + "-1-ttl"));

    auto node = c.get("/v1/health/node/" + target.node_name()).json_body();
    EXPECT_TRUE(has(node, "serfHealth"));
    EXPECT_TRUE(has(node, name + "-1-ttl"));
    EXPECT_EQ(c.get("/v1/health/node/" + name + "-no-node").json_body(), json::array());
}

TEST_F(health, invalid_state_is_rejected) {
    LAKEMESH_NEEDS_DEV(target);  // real agents differ across versions here
    EXPECT_EQ(c.get("/v1/health/state/sideways").status, 400u);
}

TEST_F(health, blocking_query_wakes_on_check_change_only) {
    add_instance(name, name + "-1", json::array(), json::object(), "passing");
    const std::string other = name + "-other";
    auto first = c.get("/v1/health/service/" + name);
    ASSERT_EQ(first.status, 200u);
    auto fut = std::async(std::launch::async, [&] {
        auto c2 = target.client();
        return c2.get("/v1/health/service/" + name + "?index=" + std::to_string(first.index()) +
                      "&wait=10s");
    });
    if (target.dev() != nullptr) {
        ASSERT_TRUE(eventually([&] { return target.dev()->blocking_queries() >= 1; }));
    } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // Unrelated writes: a KV key, another service and its check.
    ASSERT_EQ(c.put("/v1/kv/" + name + "/k", "v").status, 200u);
    add_instance(other, other + "-1", json::array(), json::object(), "passing");
    set_status(other + "-1", "critical");
    EXPECT_EQ(fut.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);

    set_status(name + "-1", "critical");
    ASSERT_EQ(fut.wait_for(std::chrono::seconds(1)), std::future_status::ready);
    auto r = fut.get();
    EXPECT_GT(r.index(), first.index());
    const auto entries = r.json_body();
    ASSERT_EQ(entries.size(), 1u);
    bool critical = false;
    for (const auto& chk : entries[0]["Checks"]) {
        critical = critical || (chk["CheckID"] == name + "-1-ttl" && chk["Status"] == "critical");
    }
    EXPECT_TRUE(critical) << r.body;
    c.del("/v1/kv/" + name + "?recurse");
}

TEST_F(health, same_status_and_output_does_not_wake_a_blocking_query) {
    LAKEMESH_NEEDS_DEV(target);
    add_instance(name, name + "-1", json::array(), json::object(), "passing");
    auto before = c.get("/v1/health/service/" + name).index();
    set_status(name + "-1", "passing");  // same status and output: no catalog write
    EXPECT_EQ(c.get("/v1/health/service/" + name).index(), before);
}

// dev_consul encodes one health/service answer per (query, raft index) and hands it to every
// waiter of that query: the sharing must not leak an answer to another query, another index, or
// across a restart that starts the index over.
TEST_F(health, waiters_of_one_query_share_the_answer_of_that_query_and_index_only) {
    LAKEMESH_NEEDS_DEV(target);
    add_instance(name, name + "-1", json::array(), json::object(), "passing");
    const auto first = c.get("/v1/health/service/" + name);
    ASSERT_EQ(first.status, 200u);
    std::vector<std::future<http_reply>> waiters;
    for (int i = 0; i < 3; ++i) {
        waiters.push_back(std::async(std::launch::async, [&] {
            auto ci = target.client();
            return ci.get("/v1/health/service/" + name + "?index=" + std::to_string(first.index()) +
                          "&wait=10s");
        }));
    }
    ASSERT_TRUE(eventually([&] { return target.dev()->blocking_queries() >= 3; }));
    set_status(name + "-1", "critical");
    const auto now = c.get("/v1/health/service/" + name);
    for (auto& w : waiters) {
        ASSERT_EQ(w.wait_for(std::chrono::seconds(5)), std::future_status::ready);
        const auto r = w.get();
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.index(), now.index());
        EXPECT_EQ(r.body, now.body);
    }
    EXPECT_GT(now.index(), first.index());
    EXPECT_NE(now.body, first.body);
    // Same index, other query: ?passing drops the now critical instance.
    const auto passing = c.get("/v1/health/service/" + name + "?passing");
    EXPECT_EQ(passing.index(), now.index());
    EXPECT_EQ(passing.json_body().size(), 0u);
    EXPECT_EQ(c.get("/v1/health/service/" + name).json_body().size(), 1u);

    // Bring the raft index back to the same value after a restart that lost the state: the
    // answer must be the new state's (no instance), not the one kept before the restart.
    const std::string key = "/v1/kv/" + name + "/k";
    ASSERT_EQ(c.put(key, "v").status, 200u);
    const auto raft = c.get(key).index();  // the last write was to KV: this is the raft index
    ASSERT_EQ(c.get("/v1/health/service/" + name).json_body().size(), 1u);
    target.dev()->restart(false);
    registered.clear();
    auto after = target.client();
    std::uint64_t index = 0;
    for (int i = 0; i < 10000 && index < raft; ++i) {
        ASSERT_EQ(after.put(key, "v").status, 200u);
        index = after.get(key).index();
    }
    ASSERT_EQ(index, raft);
    EXPECT_EQ(after.get("/v1/health/service/" + name).json_body().size(), 0u);
}

TEST_F(health, shared_answers_tell_apart_queries_that_differ_only_in_decoded_bytes) {
    LAKEMESH_NEEDS_DEV(target);
    add_instance(name, name + "-1", json::array({"a", "b"}), json::object(), "passing");
    // One tag "a\ntag=b" (no instance has it), then the two tags a and b (the instance has both).
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?tag=a%0Atag=b").json_body().size(), 0u);
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?tag=a&tag=b").json_body().size(), 1u);
}

}  // namespace
}  // namespace lakemesh::test
