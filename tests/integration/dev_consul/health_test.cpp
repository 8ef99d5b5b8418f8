// Health endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "dev_hook.hpp"

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
    // structs.NodeService of Consul 1.10.11, as health/service answers it.
    for (auto f : {"ID", "Service", "Tags", "Address", "Meta", "Weights", "EnableTagOverride",
                   "Proxy", "Connect", "CreateIndex", "ModifyIndex"}) {
        EXPECT_TRUE(e["Service"].contains(f)) << f;
    }
    EXPECT_EQ(e["Service"]["Proxy"],
              json({{"Mode", ""}, {"MeshGateway", json::object()}, {"Expose", json::object()}}));
    EXPECT_EQ(e["Service"]["Connect"], json::object());
    EXPECT_FALSE(e["Service"].contains("Port"));  // 0 is left out
    EXPECT_FALSE(e["Service"].contains("Kind"));
    EXPECT_FALSE(e["Service"].contains("TaggedAddresses"));  // no Address, none added
    std::set<std::string> check_ids;
    for (const auto& chk : e["Checks"]) {
        check_ids.insert(chk["CheckID"].get<std::string>());
        for (auto f : {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID",
                       "ServiceName", "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort",
                       "Definition", "CreateIndex", "ModifyIndex"}) {
            EXPECT_TRUE(chk.contains(f)) << f;
        }
        EXPECT_EQ(chk["Definition"], json::object());
    }
    EXPECT_TRUE(check_ids.count("serfHealth"));
    EXPECT_TRUE(check_ids.count(name + "-1-ttl"));
    // The node's own checks first, then the instance's (each by check ID).
    bool seen_service_check = false;
    for (const auto& chk : e["Checks"]) {
        const bool node_level = chk["ServiceID"] == "";
        EXPECT_FALSE(node_level && seen_service_check) << e["Checks"].dump();
        seen_service_check = seen_service_check || !node_level;
    }
    EXPECT_EQ(r.header("x-consul-effective-consistency"), "leader");
    EXPECT_EQ(
        c.get("/v1/health/service/" + name + "?stale").header("x-consul-effective-consistency"),
        "stale");
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?consistent")
                  .header("x-consul-effective-consistency"),
              "consistent");
    auto both = c.get("/v1/health/service/" + name + "?stale&consistent");
    EXPECT_EQ(both.status, 400u);
    EXPECT_EQ(both.body, "Cannot specify ?stale with ?consistent, conflicting semantics.");
    EXPECT_EQ(c.get("/v1/health/service/" + name + "-none").json_body(), json::array());
}

TEST_F(health, service_meta_is_null_without_meta_and_tagged_addresses_follow_the_address) {
    registered.push_back(name + "-x");
    ASSERT_EQ(
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"ID", name + "-x"}, {"Address", "192.0.2.7"}, {"Port", 9000}}
                  .dump())
            .status,
        200u);
    auto svc = c.get("/v1/health/service/" + name).json_body()[0]["Service"];
    EXPECT_TRUE(svc["Meta"].is_null());
    EXPECT_EQ(svc["Tags"], json::array());
    EXPECT_EQ(svc["Port"], 9000);
    EXPECT_EQ(svc["TaggedAddresses"]["lan_ipv4"], json({{"Address", "192.0.2.7"}, {"Port", 9000}}));
    EXPECT_EQ(svc["TaggedAddresses"]["wan_ipv4"], json({{"Address", "192.0.2.7"}, {"Port", 9000}}));
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
    // A missing key matches only the negative operators.
    EXPECT_EQ(filtered("\"zone\" not in Service.Meta"), set{cc});
    EXPECT_EQ(filtered("Service.Meta.zone != \"x\""), set{cc});
    EXPECT_EQ(filtered("Service.ID contains \"" + name + "-b\""), set{b});
    EXPECT_EQ(filtered("Service.Tags is empty"), set{});
    EXPECT_EQ(filtered("Checks.Status == \"passing\"").size(), 3u);
    EXPECT_EQ(filtered("Node.Node == \"" + target.node_name() + "\"").size(), 3u);
}

// Consul 1.10 answers a filter go-bexpr refuses with 500 and go-bexpr's own text.
TEST_F(health, filter_errors_are_500_with_go_bexprs_text) {
    add_instance(name, name + "-a", json::array(), json::object(), "passing");
    const std::string prefix = "Failed to create boolean expression evaluator: ";
    const std::vector<std::pair<std::string, std::string>> cases{
        {"Service.Meta.ver ==",
         "1:20 (19): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] "
         "or [a-zA-Z]"},
        {"(\"blue\" in Service.Tags", "1:24 (23): rule \"grouping\": Unmatched parentheses"},
        {"Service.Tags wibble",
         "1:14 (13): no match found, expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", "
         "\"matches\", \"not\" or [ \\t\\r\\n]"},
        {"\"unterminated", "1:14 (13): rule \"string\": Unterminated string literal"},
        {"Service.ID == 1x", "1:16 (15): rule \"number\": Invalid number literal"},
        {"Service.Nope == 1", "Selector \"Service.Nope\" is not valid"},
        {"Service.CreateIndex == 1", "Selector \"Service.CreateIndex\" is not valid"},
        {"Service.Tags == \"a\"", "Invalid match operator \"Equal\" for selector \"Service.Tags\""},
        // This version's go-bexpr has no emptiness test for strings.
        {"Service.Meta.zone is empty",
         "Invalid match operator \"Is Empty\" for selector \"Service.Meta.zone\""},
        {"Service.Meta.zone is not empty",
         "Invalid match operator \"Is Not Empty\" for selector \"Service.Meta.zone\""},
        {"Service.Port == \"abc\"",
         "Failed to coerce value \"abc\" for selector \"Service.Port\": strconv.ParseInt: "
         "parsing \"abc\": invalid syntax"},
    };
    for (const auto& [filter, text] : cases) {
        auto r = c.get("/v1/health/service/" + name + "?filter=" + url_encode(filter));
        EXPECT_EQ(r.status, 500u) << filter;
        EXPECT_EQ(server_text(r), prefix + text) << filter;
        EXPECT_FALSE(r.header("x-consul-index").has_value()) << filter;
    }
}

TEST_F(health, nested_parentheses_group_as_written) {
    add_instance(name, name + "-a", json::array(), json::object(), "passing");
    // Kept shallow: Consul 1.10's filter parser takes time exponential in the nesting (seconds
    // at depth 9; a real agent spins for good on deep filters).
    const auto nested = [&](int depth) {
        return std::string(depth, '(') + "Service.ID == \"" + name + "-a\"" +
               std::string(depth, ')');
    };
    EXPECT_EQ(filtered(nested(5)), std::set<std::string>{name + "-a"});
    EXPECT_EQ(filtered("not (not (" + nested(3) + "))"), std::set<std::string>{name + "-a"});
}

TEST_F(health, deeply_nested_filter_is_refused_not_a_crash) {
    // A real agent would spin on this filter until it stops; dev_consul parses in linear time
    // and bounds the depth its stack allows.
    LAKEMESH_NEEDS_DEV_HOOK(target, "bounded filter parser (Consul's never returns here)");
    add_instance(name, name + "-a", json::array(), json::object(), "passing");
    const std::string deep =
        std::string(5000, '(') + "Service.ID == \"" + name + "-a\"" + std::string(5000, ')');
    auto r = c.get("/v1/health/service/" + name + "?filter=" + url_encode(deep));
    EXPECT_EQ(r.status, 500u);
    EXPECT_NE(r.body.find("nested too deeply"), std::string::npos) << r.body;
    const std::string hundred =
        std::string(100, '(') + "Service.ID == \"" + name + "-a\"" + std::string(100, ')');
    EXPECT_EQ(filtered(hundred), std::set<std::string>{name + "-a"});
}

// Consul 1.10 does not check the state: one it does not know matches no check. (Later
// versions refuse it with 400.)
TEST_F(health, unknown_state_matches_no_check) {
    auto r = c.get("/v1/health/state/sideways");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.json_body(), json::array());
    EXPECT_GT(r.index(), 0u);
    auto missing = c.get("/v1/health/state/");
    EXPECT_EQ(missing.status, 400u);
    EXPECT_EQ(missing.body, "Missing check state");
}

// On a real agent, activity of other tests on the same node can wake the query (Consul's watch
// set covers the node's checks): run alone there (suites *_exclusive).
class health_exclusive : public health {};

TEST_F(health_exclusive, blocking_query_wakes_on_check_change_only) {
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
    add_instance(name, name + "-1", json::array(), json::object(), "passing");
    auto before = c.get("/v1/health/service/" + name).index();
    set_status(name + "-1", "passing");  // same status and output: no catalog write
    EXPECT_EQ(c.get("/v1/health/service/" + name).index(), before);
}

// dev_consul encodes one health/service answer per (query, raft index) and hands it to every
// waiter of that query: the sharing must not leak an answer to another query, another index, or
// across a restart that starts the index over.
TEST_F(health, waiters_of_one_query_share_the_answer_of_that_query_and_index_only) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "blocking_queries() and restart()");
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
        // A new value each time: writing the same entry again leaves the index alone.
        ASSERT_EQ(after.put(key, std::to_string(i)).status, 200u);
        index = after.get(key).index();
    }
    ASSERT_EQ(index, raft);
    EXPECT_EQ(after.get("/v1/health/service/" + name).json_body().size(), 0u);
}

TEST_F(health, shared_answers_tell_apart_queries_that_differ_only_in_decoded_bytes) {
    add_instance(name, name + "-1", json::array({"a", "b"}), json::object(), "passing");
    // One tag "a\ntag=b" (no instance has it), then the two tags a and b (the instance has both).
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?tag=a%0Atag=b").json_body().size(), 0u);
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?tag=a&tag=b").json_body().size(), 1u);
}

}  // namespace
}  // namespace lakemesh::test
