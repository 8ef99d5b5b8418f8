// Session endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set), with the
// session locks they give KV.
#include "dev_hook.hpp"

#include <chrono>
#include <thread>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;

class session : public ::testing::Test {
  protected:
    void TearDown() override {
        for (const auto& id : created_) {
            c.put("/v1/session/destroy/" + id);
        }
        c.del("/v1/kv/" + p + "?recurse");
    }

    /// Creates a session from `body` and returns its ID (asserting success).
    std::string create(const json& body = json::object()) {
        auto r = c.put("/v1/session/create", body.dump());
        EXPECT_EQ(r.status, 200u) << r.body;
        if (r.status != 200u) {
            return {};
        }
        auto id = r.json_body()["ID"].get<std::string>();
        created_.push_back(id);
        return id;
    }

    json info(const std::string& id) { return c.get("/v1/session/info/" + id).json_body(); }

    json key(const std::string& k) {
        auto r = c.get("/v1/kv/" + k);
        return r.status == 200u ? r.json_body()[0] : json(nullptr);
    }

    consul_target target;
    raw_http c = target.client();
    std::string p = unique_name("session");
    std::vector<std::string> created_;
};

TEST_F(session, create_with_defaults_then_info_list_node) {
    auto id = create();
    ASSERT_EQ(id.size(), 36u);
    auto r = c.get("/v1/session/info/" + id);
    ASSERT_EQ(r.status, 200u);
    EXPECT_GT(r.index(), 0u);
    auto j = r.json_body();
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["ID"], id);
    EXPECT_EQ(j[0]["Node"], target.node_name());
    EXPECT_EQ(j[0]["Behavior"], "release");
    EXPECT_EQ(j[0]["TTL"], "");
    EXPECT_EQ(j[0]["LockDelay"], 15'000'000'000LL);
    EXPECT_EQ(j[0]["NodeChecks"], json::array({"serfHealth"}));
    EXPECT_TRUE(j[0]["ServiceChecks"].is_null());
    EXPECT_EQ(j[0]["Name"], "");
    EXPECT_GT(j[0]["CreateIndex"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(j[0]["CreateIndex"], j[0]["ModifyIndex"]);
    // structs.Session's fields, in its order.
    std::vector<std::string> keys;
    const auto ordered = nlohmann::ordered_json::parse(r.body);
    for (auto it = ordered[0].begin(); it != ordered[0].end(); ++it) {
        keys.push_back(it.key());
    }
    EXPECT_EQ(keys, (std::vector<std::string>{"ID", "Name", "Node", "LockDelay", "Behavior", "TTL",
                                              "NodeChecks", "ServiceChecks", "CreateIndex",
                                              "ModifyIndex"}));
    EXPECT_EQ(r.header("x-consul-query-backend"), "blocking-query");

    auto list = c.get("/v1/session/list");
    ASSERT_EQ(list.status, 200u);
    bool listed = false;
    for (const auto& s : list.json_body()) {
        listed = listed || s["ID"] == id;
    }
    EXPECT_TRUE(listed);

    auto node = c.get("/v1/session/node/" + target.node_name()).json_body();
    bool on_node = false;
    for (const auto& s : node) {
        on_node = on_node || s["ID"] == id;
        EXPECT_EQ(s["Node"], target.node_name());
    }
    EXPECT_TRUE(on_node);
}

TEST_F(session, create_reads_name_ttl_behavior_lock_delay_and_checks) {
    auto id = create({{"Name", p},
                      {"TTL", "30s"},
                      {"Behavior", "delete"},
                      {"LockDelay", "5s"},
                      {"Checks", json::array()}});
    auto j = info(id)[0];
    EXPECT_EQ(j["Name"], p);
    EXPECT_EQ(j["TTL"], "30s");
    EXPECT_EQ(j["Behavior"], "delete");
    EXPECT_EQ(j["LockDelay"], 5'000'000'000LL);
    EXPECT_TRUE(j["NodeChecks"].is_null() || j["NodeChecks"].empty());
    // A small number is read as seconds, as Consul does.
    auto id2 = create({{"LockDelay", 7}, {"Checks", json::array({"serfHealth"})}});
    auto j2 = info(id2)[0];
    EXPECT_EQ(j2["LockDelay"], 7'000'000'000LL);
    EXPECT_EQ(j2["NodeChecks"], json::array({"serfHealth"}));
}

TEST_F(session, node_checks_alone_are_the_exact_list) {
    // Consul's agent drops the default legacy Checks when NodeChecks is given, so NodeChecks
    // alone is the exact list; "Checks": [] empties both.
    auto none = create({{"NodeChecks", json::array()}});
    auto j = info(none)[0];
    EXPECT_TRUE(j["NodeChecks"].is_null() || j["NodeChecks"].empty()) << j.dump();
    auto serf = create({{"NodeChecks", json::array({"serfHealth"})}});
    EXPECT_EQ(info(serf)[0]["NodeChecks"], json::array({"serfHealth"}));
}

TEST_F(session, info_of_unknown_session_is_empty_list) {
    auto r = c.get("/v1/session/info/00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.json_body(), json::array());
    EXPECT_EQ(c.get("/v1/session/node/" + unique_name("no-such-node")).json_body(), json::array());
}

// Session IDs are looked up in go-memdb's UUID index, which refuses what is not a UUID.
TEST_F(session, malformed_session_ids_are_refused_by_the_uuid_index) {
    auto info = c.get("/v1/session/info/bogus");
    EXPECT_EQ(info.status, 500u);
    EXPECT_EQ(server_text(info), "failed session lookup: index error: UUID must be 36 characters");
    auto renew = c.put("/v1/session/renew/bogus");
    EXPECT_EQ(renew.status, 500u);
    EXPECT_EQ(server_text(renew), "failed session lookup: index error: UUID must be 36 characters");
    auto destroy = c.put("/v1/session/destroy/bogus");
    EXPECT_EQ(destroy.status, 500u);
    EXPECT_EQ(server_text(destroy),
              "apply failed: failed session lookup: index error: UUID must be 36 characters");
    auto hex = c.get("/v1/session/info/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz");
    EXPECT_EQ(hex.status, 500u);
    EXPECT_EQ(server_text(hex),
              "failed session lookup: index error: Invalid UUID: encoding/hex: invalid byte: "
              "U+007A 'z'");
}

TEST_F(session, destroy_removes_session_and_is_idempotent) {
    auto id = create();
    auto r = c.put("/v1/session/destroy/" + id);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.json_body(), json(true));
    EXPECT_EQ(info(id), json::array());
    EXPECT_EQ(c.put("/v1/session/destroy/" + id).json_body(), json(true));
}

TEST_F(session, renew_returns_session_and_unknown_is_404) {
    auto id = create({{"TTL", "15s"}});
    auto r = c.put("/v1/session/renew/" + id);
    ASSERT_EQ(r.status, 200u);
    auto j = r.json_body();
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["ID"], id);
    EXPECT_EQ(j[0]["TTL"], "15s");
    auto missing = c.put("/v1/session/renew/00000000-0000-0000-0000-000000000000");
    EXPECT_EQ(missing.status, 404u);
    EXPECT_EQ(missing.body, "Session id '00000000-0000-0000-0000-000000000000' not found");
}

TEST_F(session, create_validation_errors) {
    auto bad_ttl = c.put("/v1/session/create", R"({"TTL":"5s"})");
    EXPECT_EQ(bad_ttl.status, 500u);
    EXPECT_NE(bad_ttl.body.find("Invalid Session TTL '5000000000'"), std::string::npos)
        << bad_ttl.body;
    EXPECT_EQ(c.put("/v1/session/create", R"({"TTL":"86401s"})").status, 500u);
    EXPECT_EQ(c.put("/v1/session/create", R"({"TTL":"abc"})").status, 500u);
    auto bad_behavior = c.put("/v1/session/create", R"({"Behavior":"explode"})");
    EXPECT_EQ(bad_behavior.status, 500u);
    EXPECT_EQ(server_text(bad_behavior), "Invalid Behavior setting 'explode'");
    auto not_json = c.put("/v1/session/create", "{not json");
    EXPECT_EQ(not_json.status, 400u);
    EXPECT_EQ(not_json.body,
              "Request decode failed: invalid character 'n' looking for beginning of object key "
              "string");
    auto wrong_type = c.put("/v1/session/create", R"({"Name":42})");
    EXPECT_EQ(wrong_type.status, 400u);
    EXPECT_EQ(wrong_type.body,
              "Request decode failed: json: cannot unmarshal number into Go struct field .Name "
              "of type string");
    auto bad_delay = c.put("/v1/session/create", R"({"LockDelay":"soon"})");
    EXPECT_EQ(bad_delay.status, 400u);
    EXPECT_EQ(bad_delay.body, "Request decode failed: time: invalid duration \"soon\"");
    // What the state store refuses comes back as "apply failed: ...".
    auto missing_check = c.put("/v1/session/create", R"({"Checks":["no-such-check"]})");
    EXPECT_EQ(missing_check.status, 500u);
    EXPECT_EQ(server_text(missing_check),
              "apply failed: Missing check 'no-such-check' registration");
    auto missing_node = c.put("/v1/session/create", json{{"Node", unique_name("ghost")}}.dump());
    EXPECT_EQ(missing_node.status, 500u);
    EXPECT_EQ(server_text(missing_node), "apply failed: Missing node registration");
    // Bounds are inclusive.
    EXPECT_FALSE(create({{"TTL", "10s"}}).empty());
    EXPECT_FALSE(create({{"TTL", "86400s"}}).empty());
}

TEST_F(session, lock_acquire_and_release_between_two_sessions) {
    auto a = create();
    auto b = create();
    const auto k = p + "/leader";
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + a, "a").json_body(), json(true));
    auto held = key(k);
    EXPECT_EQ(held["Session"], a);
    EXPECT_EQ(held["LockIndex"], 1);
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + b, "b").json_body(), json(false));
    EXPECT_EQ(c.put("/v1/kv/" + k + "?release=" + b, "b").json_body(), json(false));
    EXPECT_EQ(c.put("/v1/kv/" + k + "?release=" + a, "a").json_body(), json(true));
    EXPECT_FALSE(key(k).contains("Session"));
    // An explicit release sets no lock-delay: b acquires at once.
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + b, "b").json_body(), json(true));
    auto now_b = key(k);
    EXPECT_EQ(now_b["Session"], b);
    EXPECT_EQ(now_b["LockIndex"], 2);
}

TEST_F(session, ttl_expiry_invalidates_after_twice_the_ttl_and_releases_lock) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
    auto id = create({{"TTL", "10s"}, {"LockDelay", "0s"}});
    const auto k = p + "/lock";
    ASSERT_EQ(c.put("/v1/kv/" + k + "?acquire=" + id, "v").json_body(), json(true));
    target.dev()->advance_clock(11s);
    EXPECT_EQ(info(id).size(), 1u) << "Consul waits up to 2 x TTL before invalidating";
    target.dev()->advance_clock(10s);
    EXPECT_EQ(info(id), json::array());
    auto released = key(k);
    ASSERT_FALSE(released.is_null());
    EXPECT_FALSE(released.contains("Session"));
    EXPECT_EQ(released["LockIndex"], 1);
    EXPECT_EQ(c.get("/v1/kv/" + k + "?raw").body, "v");
}

TEST_F(session, renew_pushes_the_ttl_deadline) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
    auto id = create({{"TTL", "10s"}});
    target.dev()->advance_clock(15s);
    ASSERT_EQ(c.put("/v1/session/renew/" + id).status, 200u);
    target.dev()->advance_clock(15s);  // 30s since creation, 15s since renewal
    EXPECT_EQ(info(id).size(), 1u);
    target.dev()->advance_clock(6s);
    EXPECT_EQ(info(id), json::array());
    EXPECT_EQ(c.put("/v1/session/renew/" + id).status, 404u);
}

TEST_F(session, behavior_delete_removes_held_keys_on_invalidation) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
    auto id = create({{"TTL", "10s"}, {"Behavior", "delete"}});
    const auto k = p + "/ephemeral";
    ASSERT_EQ(c.put("/v1/kv/" + k + "?acquire=" + id, "v").json_body(), json(true));
    ASSERT_EQ(c.put("/v1/kv/" + p + "/other", "v").json_body(), json(true));
    target.dev()->advance_clock(21s);
    EXPECT_EQ(c.get("/v1/kv/" + k).status, 404u);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/other").status, 200u);
}

TEST_F(session, lock_delay_blocks_reacquire_after_invalidation_until_it_passes) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
    auto a = create({{"LockDelay", "5s"}});
    auto b = create();
    const auto k = p + "/delayed";
    ASSERT_EQ(c.put("/v1/kv/" + k + "?acquire=" + a, "a").json_body(), json(true));
    ASSERT_EQ(c.put("/v1/session/destroy/" + a).json_body(), json(true));
    EXPECT_FALSE(key(k).contains("Session"));
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + b, "b").json_body(), json(false));
    target.dev()->advance_clock(4s);
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + b, "b").json_body(), json(false));
    target.dev()->advance_clock(2s);
    EXPECT_EQ(c.put("/v1/kv/" + k + "?acquire=" + b, "b").json_body(), json(true));
}

TEST_F(session, blocking_info_wakes_on_destroy) {
    auto id = create();
    auto first = c.get("/v1/session/info/" + id);
    ASSERT_EQ(first.status, 200u);
    std::thread destroyer([&] {
        std::this_thread::sleep_for(50ms);
        raw_http other = target.client();
        other.put("/v1/session/destroy/" + id);
    });
    auto started = std::chrono::steady_clock::now();
    auto r =
        c.get("/v1/session/info/" + id + "?index=" + std::to_string(first.index()) + "&wait=5s");
    destroyer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
    EXPECT_EQ(r.json_body(), json::array());
    EXPECT_GT(r.index(), first.index());
}

TEST_F(session, stopping_the_sessions_node_invalidates_it_and_releases_locks) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "second agent and stop()");
    testing::dev_consul_options opts;
    opts.node_name = unique_name("node2");
    testing::dev_consul second(*target.dev(), opts);
    auto id = create({{"Node", opts.node_name}});
    // A session without serfHealth survives the loss of its node's agent.
    auto survivor = create({{"Node", opts.node_name}, {"Checks", json::array()}});
    const auto k = p + "/owned";
    ASSERT_EQ(c.put("/v1/kv/" + k + "?acquire=" + id, "v").json_body(), json(true));
    ASSERT_EQ(c.get("/v1/session/node/" + opts.node_name).json_body().size(), 2u);

    second.stop();

    EXPECT_EQ(info(id), json::array());
    EXPECT_EQ(info(survivor).size(), 1u);
    EXPECT_FALSE(key(k).contains("Session"));
    // serfHealth is critical now, so a new default session on that node is refused.
    auto refused = c.put("/v1/session/create", json{{"Node", opts.node_name}}.dump());
    EXPECT_EQ(refused.status, 500u);
    EXPECT_EQ(server_text(refused), "apply failed: Check 'serfHealth' is in critical state");
}

TEST_F(session, linked_node_check_turning_critical_invalidates_the_session) {
    const auto check = unique_name("chk");
    // agent/check/register names the check "ID" (Consul refuses "CheckID" there).
    auto reg =
        c.put("/v1/agent/check/register",
              json{{"ID", check}, {"Name", check}, {"TTL", "60s"}, {"Status", "passing"}}.dump());
    ASSERT_EQ(reg.status, 200u) << reg.body;
    std::string id;
    ASSERT_TRUE(eventually([&] {
        auto r = c.put("/v1/session/create",
                       json{{"NodeChecks", json::array({"serfHealth", check})}}.dump());
        if (r.status != 200u) {
            return false;  // a real agent syncs the check to the catalog asynchronously
        }
        id = r.json_body()["ID"].get<std::string>();
        return true;
    }));
    created_.push_back(id);
    EXPECT_EQ(info(id)[0]["NodeChecks"], json::array({"serfHealth", check}));
    const auto k = p + "/guarded";
    ASSERT_EQ(c.put("/v1/kv/" + k + "?acquire=" + id, "v").json_body(), json(true));

    ASSERT_EQ(c.put("/v1/agent/check/fail/" + check).status, 200u);

    EXPECT_TRUE(eventually([&] { return info(id).empty(); }));
    EXPECT_FALSE(key(k).contains("Session"));
    // While the check is critical, no session can be linked to it.
    auto refused = c.put("/v1/session/create", json{{"NodeChecks", json::array({check})}}.dump());
    EXPECT_EQ(refused.status, 500u);
    EXPECT_EQ(server_text(refused), "apply failed: Check '" + check + "' is in critical state");
    c.put("/v1/agent/check/deregister/" + check);
}

TEST_F(session, removing_a_linked_service_check_invalidates_the_session) {
    const auto svc = unique_name("svc");
    auto reg =
        c.put("/v1/agent/service/register",
              json{{"ID", svc}, {"Name", svc}, {"Check", {{"TTL", "60s"}, {"Status", "passing"}}}}
                  .dump());
    ASSERT_EQ(reg.status, 200u) << reg.body;
    const auto check = "service:" + svc;
    std::string id;
    ASSERT_TRUE(eventually([&] {
        auto r = c.put("/v1/session/create",
                       json{{"ServiceChecks", json::array({{{"ID", check}}})}}.dump());
        if (r.status != 200u) {
            return false;
        }
        id = r.json_body()["ID"].get<std::string>();
        return true;
    }));
    created_.push_back(id);
    auto j = info(id)[0];
    ASSERT_EQ(j["ServiceChecks"].size(), 1u);
    EXPECT_EQ(j["ServiceChecks"][0], json({{"ID", check}, {"Namespace", ""}}));
    // Naming service checks only still keeps the default serfHealth node check.
    EXPECT_EQ(j["NodeChecks"], json::array({"serfHealth"}));

    ASSERT_EQ(c.put("/v1/agent/service/deregister/" + svc).status, 200u);

    EXPECT_TRUE(eventually([&] { return info(id).empty(); }));
}

TEST_F(session, missing_id_is_400) {
    EXPECT_EQ(c.put("/v1/session/destroy/").status, 400u);
    EXPECT_EQ(c.put("/v1/session/renew/").status, 400u);
    EXPECT_EQ(c.get("/v1/session/info/").status, 400u);
    EXPECT_EQ(c.get("/v1/session/node/").status, 400u);
}

}  // namespace
}  // namespace lakemesh::test
