// Agent endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "consul_target.hpp"

namespace lakemesh::test {
namespace {

class agent : public ::testing::Test {
  protected:
    void TearDown() override {
        for (const auto& id : registered) {
            c.put("/v1/agent/service/deregister/" + id);
        }
    }

    http_reply register_service(const json& def, const std::string& query = "") {
        if (def.contains("ID")) {
            registered.push_back(def["ID"]);
        } else if (def.contains("Name") && def["Name"].is_string()) {
            registered.push_back(def["Name"]);
        }
        return c.put("/v1/agent/service/register" + query, def.dump());
    }

    json agent_checks() { return c.get("/v1/agent/checks").json_body(); }

    consul_target target;
    raw_http c = target.client();
    std::string name = unique_name("svc");
    std::vector<std::string> registered;
};

TEST_F(agent, self_reports_config_and_member) {
    auto r = c.get("/v1/agent/self");
    ASSERT_EQ(r.status, 200u);
    auto j = r.json_body();
    EXPECT_EQ(j["Config"]["NodeName"], target.node_name());
    EXPECT_FALSE(j["Config"]["Datacenter"].get<std::string>().empty());
    EXPECT_FALSE(j["Config"]["NodeID"].get<std::string>().empty());
    EXPECT_TRUE(j["Config"]["Version"].is_string());
    EXPECT_EQ(j["Member"]["Name"], target.node_name());
    EXPECT_EQ(j["Member"]["Port"], 8301);
    EXPECT_EQ(j["Member"]["Status"], 1);
}

TEST_F(agent, members_lists_this_agent_alive) {
    auto j = c.get("/v1/agent/members").json_body();
    ASSERT_TRUE(j.is_array());
    bool found = false;
    for (const auto& m : j) {
        if (m["Name"] == target.node_name()) {
            found = true;
            EXPECT_EQ(m["Status"], 1);
        }
    }
    EXPECT_TRUE(found);
}

TEST_F(agent, register_service_applies_defaults_and_lists_it) {
    auto r = register_service(json{{"Name", name},
                                   {"Tags", {"a", "b"}},
                                   {"Meta", {{"version", "1"}}},
                                   {"Port", 8080},
                                   {"Address", "10.0.0.1"}});
    ASSERT_EQ(r.status, 200u) << r.body;
    auto all = c.get("/v1/agent/services").json_body();
    ASSERT_TRUE(all.contains(name));
    auto s = all[name];
    EXPECT_EQ(s["ID"], name);
    EXPECT_EQ(s["Service"], name);
    EXPECT_EQ(s["Tags"], json({"a", "b"}));
    EXPECT_EQ(s["Meta"]["version"], "1");
    EXPECT_EQ(s["Port"], 8080);
    EXPECT_EQ(s["Address"], "10.0.0.1");
    EXPECT_EQ(s["Weights"], json({{"Passing", 1}, {"Warning", 1}}));
    EXPECT_EQ(s["EnableTagOverride"], false);
    EXPECT_FALSE(s["Datacenter"].get<std::string>().empty());

    auto one = c.get("/v1/agent/service/" + name);
    ASSERT_EQ(one.status, 200u);
    EXPECT_EQ(one.json_body()["Port"], 8080);

    auto filtered =
        c.get("/v1/agent/services?filter=" + std::string("Service%20%3D%3D%20%22") + name + "%22")
            .json_body();
    EXPECT_EQ(filtered.size(), 1u);

    ASSERT_EQ(c.put("/v1/agent/service/deregister/" + name).status, 200u);
    auto gone = c.get("/v1/agent/service/" + name);
    EXPECT_EQ(gone.status, 404u);
    EXPECT_EQ(gone.body, "unknown service ID: " + name);
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(name));
}

TEST_F(agent, service_checks_get_default_ids_names_and_critical_status) {
    ASSERT_EQ(register_service(json{{"Name", name}, {"Check", {{"TTL", "30s"}}}}).status, 200u);
    auto checks = agent_checks();
    auto id = "service:" + name;
    ASSERT_TRUE(checks.contains(id)) << checks.dump();
    EXPECT_EQ(checks[id]["Name"], "Service '" + name + "' check");
    EXPECT_EQ(checks[id]["Status"], "critical");
    EXPECT_EQ(checks[id]["ServiceID"], name);
    EXPECT_EQ(checks[id]["ServiceName"], name);
    EXPECT_EQ(checks[id]["Type"], "ttl");
    EXPECT_EQ(checks[id]["Node"], target.node_name());

    auto two = name + "-2";
    ASSERT_EQ(register_service(json{{"Name", two},
                                    {"Checks",
                                     {{{"TTL", "30s"}, {"Status", "passing"}},
                                      {{"TTL", "30s"}, {"Name", "second"}, {"Notes", "n"}}}}})
                  .status,
              200u);
    checks = agent_checks();
    ASSERT_TRUE(checks.contains("service:" + two + ":1"));
    ASSERT_TRUE(checks.contains("service:" + two + ":2"));
    EXPECT_EQ(checks["service:" + two + ":1"]["Status"], "passing");
    EXPECT_EQ(checks["service:" + two + ":2"]["Name"], "second");
    EXPECT_EQ(checks["service:" + two + ":2"]["Notes"], "n");
    EXPECT_FALSE(checks.contains("service:" + two));
}

TEST_F(agent, bad_registrations_get_consul_errors) {
    auto malformed = c.put("/v1/agent/service/register", "{\"Name\": ");
    EXPECT_EQ(malformed.status, 400u);
    auto empty = c.put("/v1/agent/service/register", "");
    EXPECT_EQ(empty.status, 400u);
    auto not_object = c.put("/v1/agent/service/register", "[1,2]");
    EXPECT_EQ(not_object.status, 400u);

    auto no_name = c.put("/v1/agent/service/register", json{{"Port", 1}}.dump());
    EXPECT_EQ(no_name.status, 400u);
    EXPECT_EQ(no_name.body, "Missing service name");

    auto wrong_type =
        c.put("/v1/agent/service/register", json{{"Name", name}, {"Port", "80"}}.dump());
    EXPECT_EQ(wrong_type.status, 400u);
    auto wrong_tags =
        c.put("/v1/agent/service/register", json{{"Name", name}, {"Tags", "x"}}.dump());
    EXPECT_EQ(wrong_tags.status, 400u);

    auto unknown_type = c.put("/v1/agent/service/register",
                              json{{"Name", name}, {"Check", {{"Notes", "x"}}}}.dump());
    EXPECT_EQ(unknown_type.status, 400u);
    EXPECT_EQ(unknown_type.body, "Invalid check: TTL must be > 0 for TTL checks");

    auto no_interval =
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"Check", {{"HTTP", "http://127.0.0.1:1/"}}}}.dump());
    EXPECT_EQ(no_interval.status, 400u);
    EXPECT_NE(no_interval.body.find("Interval must be > 0"), std::string::npos) << no_interval.body;

    auto both =
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"Check", {{"TTL", "10s"}, {"Interval", "10s"}}}}.dump());
    EXPECT_EQ(both.status, 400u);
    EXPECT_EQ(both.body, "Invalid check: Interval and TTL cannot both be specified");

    auto bad_duration = c.put("/v1/agent/service/register",
                              json{{"Name", name}, {"Check", {{"TTL", "soon"}}}}.dump());
    EXPECT_EQ(bad_duration.status, 400u);

    auto bad_weights = c.put("/v1/agent/service/register",
                             json{{"Name", name}, {"Weights", {{"Passing", 0}}}}.dump());
    EXPECT_EQ(bad_weights.status, 400u);

    // Nothing was registered by any of these.
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(name));
    auto unknown = c.put("/v1/agent/service/deregister/" + name);
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_EQ(unknown.body, "Unknown service ID \"" + name + "\"");
}

TEST_F(agent, ttl_pass_warn_fail_and_update_set_status_and_output) {
    ASSERT_EQ(register_service(json{{"Name", name}, {"Check", {{"TTL", "30s"}}}}).status, 200u);
    const std::string id = "service:" + name;
    auto status_of = [&] { return agent_checks()[id]; };

    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=all%20good").status, 200u);
    EXPECT_EQ(status_of()["Status"], "passing");
    EXPECT_EQ(status_of()["Output"], "all good");
    ASSERT_EQ(c.put("/v1/agent/check/warn/" + id).status, 200u);
    EXPECT_EQ(status_of()["Status"], "warning");
    EXPECT_EQ(status_of()["Output"], "");
    ASSERT_EQ(c.put("/v1/agent/check/fail/" + id + "?note=down").status, 200u);
    EXPECT_EQ(status_of()["Status"], "critical");
    auto upd = c.put("/v1/agent/check/update/" + id,
                     json{{"Status", "passing"}, {"Output", "from update"}}.dump());
    ASSERT_EQ(upd.status, 200u) << upd.body;
    EXPECT_EQ(status_of()["Status"], "passing");
    EXPECT_EQ(status_of()["Output"], "from update");

    auto bad_status =
        c.put("/v1/agent/check/update/" + id, json{{"Status", "great"}, {"Output", ""}}.dump());
    EXPECT_EQ(bad_status.status, 400u);
    EXPECT_EQ(bad_status.body, "Invalid check status: 'great'");
    EXPECT_EQ(c.put("/v1/agent/check/update/" + id, "{oops").status, 400u);
    EXPECT_EQ(status_of()["Status"], "passing");

    // Output that is not UTF-8 is stored with replacement characters, never breaking reads.
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=a%FFb").status, 200u);
    EXPECT_EQ(status_of()["Output"],
              "a\xEF\xBF\xBD"
              "b");

    auto unknown = c.put("/v1/agent/check/pass/" + id + "-nope");
    EXPECT_EQ(unknown.status, 404u);
    EXPECT_EQ(unknown.body, "Unknown check ID \"" + id +
                                "-nope\". Ensure that the check ID is passed, not the check name.");
}

TEST_F(agent, updating_a_non_ttl_check_says_it_has_no_ttl) {
    ASSERT_EQ(register_service(
                  json{{"Name", name}, {"Check", {{"TCP", "127.0.0.1:1"}, {"Interval", "1h"}}}})
                  .status,
              200u);
    const std::string id = "service:" + name;
    auto r = c.put("/v1/agent/check/pass/" + id);
    EXPECT_EQ(r.status, 500u);
    EXPECT_EQ(r.body, "CheckID \"" + id + "\" does not have associated TTL");
}

TEST_F(agent, ttl_check_goes_critical_when_not_updated_within_ttl) {
    LAKEMESH_NEEDS_DEV(target);
    ASSERT_EQ(register_service(json{{"Name", name}, {"Check", {{"TTL", "10s"}}}}).status, 200u);
    const std::string id = "service:" + name;
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=fine").status, 200u);
    target.dev()->advance_clock(std::chrono::seconds(9));
    EXPECT_EQ(agent_checks()[id]["Status"], "passing");
    target.dev()->advance_clock(std::chrono::seconds(2));
    auto chk = agent_checks()[id];
    EXPECT_EQ(chk["Status"], "critical");
    EXPECT_EQ(chk["Output"], "TTL expired (last output before timeout follows): fine");
    // An update re-arms the TTL.
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id).status, 200u);
    target.dev()->advance_clock(std::chrono::seconds(9));
    EXPECT_EQ(agent_checks()[id]["Status"], "passing");
    target.dev()->advance_clock(std::chrono::seconds(2));
    EXPECT_EQ(agent_checks()[id]["Output"], "TTL expired");
}

TEST_F(agent, deregister_critical_service_after_removes_the_service) {
    LAKEMESH_NEEDS_DEV(target);
    ASSERT_EQ(register_service(
                  json{{"Name", name},
                       {"Check", {{"TTL", "10s"}, {"DeregisterCriticalServiceAfter", "1m"}}}})
                  .status,
              200u);
    const std::string id = "service:" + name;
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id).status, 200u);
    target.dev()->advance_clock(std::chrono::seconds(30));  // TTL expired 20 s ago
    EXPECT_EQ(agent_checks()[id]["Status"], "critical");
    EXPECT_TRUE(c.get("/v1/agent/services").json_body().contains(name));
    target.dev()->advance_clock(std::chrono::seconds(41));  // critical for 61 s
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(name));
    EXPECT_FALSE(agent_checks().contains(id));
    EXPECT_EQ(c.get("/v1/catalog/service/" + name).json_body(), json::array());
}

TEST_F(agent, re_registering_keeps_check_status_and_does_not_move_the_index) {
    json def{{"Name", name}, {"Tags", {"x"}}, {"Check", {{"TTL", "30s"}}}};
    ASSERT_EQ(register_service(def).status, 200u);
    const std::string id = "service:" + name;
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=ok").status, 200u);
    auto before = c.get("/v1/health/service/" + name);
    ASSERT_EQ(register_service(def).status, 200u);
    EXPECT_EQ(agent_checks()[id]["Status"], "passing");
    EXPECT_EQ(agent_checks()[id]["Output"], "ok");
    if (target.dev() != nullptr) {
        EXPECT_EQ(c.get("/v1/health/service/" + name).index(), before.index());
    }
    def["Tags"] = json{"y"};
    ASSERT_EQ(register_service(def).status, 200u);
    EXPECT_EQ(agent_checks()[id]["Status"], "passing");
    EXPECT_EQ(agent_checks()[id]["ServiceTags"], json({"y"}));
}

TEST_F(agent, replace_existing_checks_drops_checks_not_in_the_definition) {
    json def{
        {"Name", name},
        {"Checks",
         {{{"CheckID", name + "-a"}, {"TTL", "30s"}}, {{"CheckID", name + "-b"}, {"TTL", "30s"}}}}};
    ASSERT_EQ(register_service(def).status, 200u);
    json only_a{{"Name", name}, {"Checks", {{{"CheckID", name + "-a"}, {"TTL", "30s"}}}}};
    ASSERT_EQ(register_service(only_a).status, 200u);
    EXPECT_TRUE(agent_checks().contains(name + "-b"));
    ASSERT_EQ(register_service(only_a, "?replace-existing-checks=true").status, 200u);
    auto checks = agent_checks();
    EXPECT_TRUE(checks.contains(name + "-a"));
    EXPECT_FALSE(checks.contains(name + "-b"));
}

TEST_F(agent, check_register_and_deregister) {
    auto no_name = c.put("/v1/agent/check/register", json{{"TTL", "10s"}}.dump());
    EXPECT_EQ(no_name.status, 400u);
    EXPECT_EQ(no_name.body, "Missing check name");
    auto bad_status = c.put("/v1/agent/check/register",
                            json{{"Name", name}, {"TTL", "10s"}, {"Status", "meh"}}.dump());
    EXPECT_EQ(bad_status.status, 400u);
    auto no_type = c.put("/v1/agent/check/register", json{{"Name", name}}.dump());
    EXPECT_EQ(no_type.status, 400u);
    EXPECT_EQ(no_type.body, "Invalid check: TTL must be > 0 for TTL checks");
    auto no_service =
        c.put("/v1/agent/check/register",
              json{{"Name", name}, {"TTL", "10s"}, {"ServiceID", name + "-none"}}.dump());
    EXPECT_EQ(no_service.status, 404u);
    EXPECT_EQ(no_service.body, "ServiceID \"" + name + "-none\" does not exist");

    auto ok =
        c.put("/v1/agent/check/register",
              json{{"Name", name}, {"TTL", "10s"}, {"Status", "warning"}, {"Notes", "n"}}.dump());
    ASSERT_EQ(ok.status, 200u) << ok.body;
    auto chk = agent_checks()[name];
    EXPECT_EQ(chk["CheckID"], name);
    EXPECT_EQ(chk["Status"], "warning");
    EXPECT_EQ(chk["ServiceID"], "");
    EXPECT_EQ(chk["Notes"], "n");

    ASSERT_EQ(register_service(json{{"Name", name + "-svc"}}).status, 200u);
    ASSERT_EQ(c.put("/v1/agent/check/register", json{{"Name", "extra"},
                                                     {"ID", name + "-extra"},
                                                     {"TTL", "10s"},
                                                     {"ServiceID", name + "-svc"}}
                                                    .dump())
                  .status,
              200u);
    EXPECT_EQ(agent_checks()[name + "-extra"]["ServiceName"], name + "-svc");

    ASSERT_EQ(c.put("/v1/agent/check/deregister/" + name).status, 200u);
    EXPECT_FALSE(agent_checks().contains(name));
    EXPECT_EQ(c.put("/v1/agent/check/deregister/" + name).status, 404u);
    ASSERT_EQ(c.put("/v1/agent/check/deregister/" + name + "-extra").status, 200u);
}

TEST_F(agent, service_maintenance_adds_and_removes_a_critical_check) {
    ASSERT_EQ(
        register_service(json{{"Name", name}, {"Check", {{"TTL", "30s"}, {"Status", "passing"}}}})
            .status,
        200u);
    const std::string maint = "_service_maintenance:" + name;
    EXPECT_EQ(c.put("/v1/agent/service/maintenance/" + name).status, 400u);
    EXPECT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=maybe").status, 400u);
    auto unknown = c.put("/v1/agent/service/maintenance/" + name + "-nope?enable=true");
    EXPECT_EQ(unknown.status, 404u);

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=true&reason=upgrade").status,
              200u);
    auto chk = agent_checks()[maint];
    EXPECT_EQ(chk["Status"], "critical");
    EXPECT_EQ(chk["Notes"], "upgrade");
    EXPECT_EQ(chk["ServiceID"], name);
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body(), json::array());

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=false").status, 200u);
    EXPECT_FALSE(agent_checks().contains(maint));
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body().size(), 1u);

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=true").status, 200u);
    EXPECT_NE(agent_checks()[maint]["Notes"].get<std::string>().find("no reason was provided"),
              std::string::npos);
}

TEST_F(agent, node_maintenance_adds_and_removes_node_check) {
    LAKEMESH_NEEDS_DEV(target);  // would disturb other users of a shared real agent
    EXPECT_EQ(c.put("/v1/agent/maintenance").status, 400u);
    ASSERT_EQ(c.put("/v1/agent/maintenance?enable=true&reason=patching").status, 200u);
    auto chk = agent_checks()["_node_maintenance"];
    EXPECT_EQ(chk["Status"], "critical");
    EXPECT_EQ(chk["Notes"], "patching");
    EXPECT_EQ(chk["ServiceID"], "");
    ASSERT_EQ(register_service(json{{"Name", name}}).status, 200u);
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body(), json::array());
    ASSERT_EQ(c.put("/v1/agent/maintenance?enable=false").status, 200u);
    EXPECT_FALSE(agent_checks().contains("_node_maintenance"));
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body().size(), 1u);
}

TEST_F(agent, wrong_method_is_405_and_serf_health_is_not_an_agent_check) {
    EXPECT_EQ(c.get("/v1/agent/service/register").status, 405u);
    EXPECT_FALSE(agent_checks().contains("serfHealth"));
}

}  // namespace
}  // namespace lakemesh::test
