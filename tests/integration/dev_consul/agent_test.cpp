// Agent endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "dev_hook.hpp"

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

/// The serf member fields Consul 1.10.11 reports (agent/self "Member", agent/members).
void expect_member_fields(const json& m) {
    for (auto f : {"Name", "Addr", "Port", "Tags", "Status", "ProtocolMin", "ProtocolMax",
                   "ProtocolCur", "DelegateMin", "DelegateMax", "DelegateCur"}) {
        EXPECT_TRUE(m.contains(f)) << f;
    }
    for (auto t : {"acls", "build", "dc", "ft_fs", "ft_si", "id", "port", "raft_vsn", "role",
                   "segment", "vsn", "vsn_max", "vsn_min", "wan_join_port"}) {
        EXPECT_TRUE(m["Tags"].contains(t)) << t;
    }
    EXPECT_EQ(m["Tags"]["role"], "consul");
    EXPECT_TRUE(m["Port"].is_number_unsigned());
}

TEST_F(agent, self_reports_config_member_and_the_rest) {
    auto r = c.get("/v1/agent/self");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(r.index(), 0u);  // agent endpoints carry no query meta
    auto j = r.json_body();
    for (auto f : {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta"}) {
        EXPECT_TRUE(j.contains(f)) << f;
    }
    EXPECT_EQ(j["Config"]["NodeName"], target.node_name());
    EXPECT_FALSE(j["Config"]["Datacenter"].get<std::string>().empty());
    EXPECT_EQ(j["Config"]["PrimaryDatacenter"], j["Config"]["Datacenter"]);
    EXPECT_FALSE(j["Config"]["NodeID"].get<std::string>().empty());
    EXPECT_EQ(j["Config"]["Server"], true);
    EXPECT_EQ(j["Config"]["Version"], "1.10.11");
    EXPECT_TRUE(j["Config"]["Revision"].is_string());
    EXPECT_EQ(j["DebugConfig"]["NodeName"], target.node_name());
    EXPECT_EQ(j["DebugConfig"]["DevMode"], true);
    EXPECT_EQ(j["Coord"]["Vec"].size(), 8u);
    for (auto s : {"agent", "build", "consul", "raft", "runtime", "serf_lan", "serf_wan"}) {
        EXPECT_TRUE(j["Stats"].contains(s)) << s;
    }
    EXPECT_EQ(j["Stats"]["build"]["version"], "1.10.11");
    EXPECT_EQ(j["Meta"]["consul-network-segment"], "");
    EXPECT_EQ(j["Member"]["Name"], target.node_name());
    EXPECT_EQ(j["Member"]["Status"], 1);
    expect_member_fields(j["Member"]);
    // The serf LAN port: 8301 on dev_consul (it has no serf), the agent's own elsewhere.
    if (target.dev() != nullptr) {
        EXPECT_EQ(j["Member"]["Port"], 8301);
    } else {
        EXPECT_GT(j["Member"]["Port"].get<unsigned>(), 0u);
    }
}

TEST_F(agent, members_lists_this_agent_alive) {
    auto j = c.get("/v1/agent/members").json_body();
    ASSERT_TRUE(j.is_array());
    bool found = false;
    for (const auto& m : j) {
        if (m["Name"] == target.node_name()) {
            found = true;
            EXPECT_EQ(m["Status"], 1);
            expect_member_fields(m);
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
    // The agent adds lan/wan IPv4 tagged addresses for an IPv4 Address.
    EXPECT_EQ(s["TaggedAddresses"],
              json({{"lan_ipv4", {{"Address", "10.0.0.1"}, {"Port", 8080}}},
                    {"wan_ipv4", {{"Address", "10.0.0.1"}, {"Port", 8080}}}}));
    // A typical service has no Kind, Proxy or Connect in the agent's listing.
    EXPECT_FALSE(s.contains("Kind"));
    EXPECT_FALSE(s.contains("Proxy"));
    EXPECT_FALSE(s.contains("Connect"));
    EXPECT_FALSE(s.contains("ContentHash"));
    EXPECT_FALSE(all.contains("consul"));  // the server's own service is not the agent's

    auto one = c.get("/v1/agent/service/" + name);
    ASSERT_EQ(one.status, 200u);
    EXPECT_EQ(one.json_body()["Port"], 8080);
    ASSERT_TRUE(one.json_body()["ContentHash"].is_string());
    EXPECT_EQ(one.header("x-consul-contenthash"), one.json_body()["ContentHash"]);

    auto filtered =
        c.get("/v1/agent/services?filter=" + std::string("Service%20%3D%3D%20%22") + name + "%22")
            .json_body();
    EXPECT_EQ(filtered.size(), 1u);

    auto dereg = c.put("/v1/agent/service/deregister/" + name);
    ASSERT_EQ(dereg.status, 200u);
    EXPECT_EQ(dereg.body, "");
    EXPECT_FALSE(dereg.header("content-type").has_value());
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
    EXPECT_EQ(wrong_type.body,
              "Request decode failed: json: cannot unmarshal string into Go struct field .Port "
              "of type int");
    auto wrong_tags =
        c.put("/v1/agent/service/register", json{{"Name", name}, {"Tags", "x"}}.dump());
    EXPECT_EQ(wrong_tags.status, 400u);
    EXPECT_EQ(wrong_tags.body,
              "Request decode failed: json: cannot unmarshal string into Go struct field .Tags "
              "of type []string");
    auto unknown_field =
        c.put("/v1/agent/service/register", json{{"Name", name}, {"Bogus", 1}}.dump());
    EXPECT_EQ(unknown_field.status, 400u);
    EXPECT_EQ(unknown_field.body, "Request decode failed: json: unknown field \"Bogus\"");
    // Inside a service's check the ID is "CheckID"; "ID" is unknown there.
    auto check_id = c.put("/v1/agent/service/register",
                          json{{"Name", name}, {"Check", {{"ID", "x"}, {"TTL", "10s"}}}}.dump());
    EXPECT_EQ(check_id.status, 400u);
    EXPECT_EQ(check_id.body, "Request decode failed: json: unknown field \"ID\"");
    auto truncated = c.put("/v1/agent/service/register", "{\"Name\": ");
    EXPECT_EQ(truncated.body, "Request decode failed: unexpected EOF");

    auto unknown_type = c.put("/v1/agent/service/register",
                              json{{"Name", name}, {"Check", {{"Notes", "x"}}}}.dump());
    EXPECT_EQ(unknown_type.status, 400u);
    EXPECT_EQ(unknown_type.body, "Invalid check: TTL must be > 0 for TTL checks");

    auto no_interval =
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"Check", {{"HTTP", "http://127.0.0.1:1/"}}}}.dump());
    EXPECT_EQ(no_interval.status, 400u);
    EXPECT_EQ(no_interval.body,
              "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks");

    auto both =
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"Check", {{"TTL", "10s"}, {"Interval", "10s"}}}}.dump());
    EXPECT_EQ(both.status, 400u);
    EXPECT_EQ(both.body, "Invalid check: Interval and TTL cannot both be specified");

    auto bad_duration = c.put("/v1/agent/service/register",
                              json{{"Name", name}, {"Check", {{"TTL", "soon"}}}}.dump());
    EXPECT_EQ(bad_duration.status, 400u);
    EXPECT_EQ(bad_duration.body, "Request decode failed: time: invalid duration \"soon\"");

    auto bad_weights = c.put("/v1/agent/service/register",
                             json{{"Name", name}, {"Weights", {{"Passing", 0}}}}.dump());
    EXPECT_EQ(bad_weights.status, 400u);
    EXPECT_EQ(bad_weights.body, "Invalid Weights: Passing must be greater than 0");

    auto bad_status =
        c.put("/v1/agent/service/register",
              json{{"Name", name}, {"Check", {{"TTL", "10s"}, {"Status", "meh"}}}}.dump());
    EXPECT_EQ(bad_status.status, 400u);
    EXPECT_EQ(bad_status.body, "Status for checks must 'passing', 'warning', 'critical'");

    // Nothing was registered by any of these.
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(name));
    // Consul 1.10 logs an unknown service ID and answers 200.
    auto unknown = c.put("/v1/agent/service/deregister/" + name);
    EXPECT_EQ(unknown.status, 200u);
    EXPECT_EQ(unknown.body, "");
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

    // Consul 1.10 looks for a TTL check by that ID: none is a 500.
    auto unknown = c.put("/v1/agent/check/pass/" + id + "-nope");
    EXPECT_EQ(unknown.status, 500u);
    EXPECT_EQ(unknown.body, "CheckID \"" + id + "-nope\" does not have associated TTL");
    auto unknown_update =
        c.put("/v1/agent/check/update/" + id + "-nope", json{{"Status", "passing"}}.dump());
    EXPECT_EQ(unknown_update.status, 500u);
    auto extra = c.put("/v1/agent/check/update/" + id,
                       json{{"Status", "passing"}, {"Output", "o"}, {"Extra", 1}}.dump());
    EXPECT_EQ(extra.status, 400u);
    EXPECT_EQ(extra.body, "Request decode failed: json: unknown field \"Extra\"");
    auto wrong_type = c.put("/v1/agent/check/update/" + id, json{{"Status", 5}}.dump());
    EXPECT_EQ(wrong_type.body,
              "Request decode failed: json: cannot unmarshal number into Go struct field "
              "checkUpdate.Status of type string");
}

// The agent keeps a check's latest output; the catalog gets output that changed without the
// status only after check_update_interval (5 minutes), a new status at once.
TEST_F(agent, output_alone_reaches_the_catalog_later_a_new_status_at_once) {
    ASSERT_EQ(register_service(json{{"Name", name}, {"Check", {{"TTL", "30s"}}}}).status, 200u);
    const std::string id = "service:" + name;
    const auto catalog_output = [&] {
        for (const auto& chk : c.get("/v1/health/checks/" + name).json_body()) {
            if (chk["CheckID"] == id) {
                return chk["Output"].get<std::string>();
            }
        }
        return std::string("(absent)");
    };
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=first").status, 200u);
    EXPECT_EQ(catalog_output(), "first");
    const auto before = c.get("/v1/health/service/" + name).index();
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=second").status, 200u);
    EXPECT_EQ(agent_checks()[id]["Output"], "second");
    EXPECT_EQ(catalog_output(), "first");
    EXPECT_EQ(c.get("/v1/health/service/" + name).index(), before);
    ASSERT_EQ(c.put("/v1/agent/check/warn/" + id + "?note=third").status, 200u);
    EXPECT_EQ(catalog_output(), "third");
    EXPECT_GT(c.get("/v1/health/service/" + name).index(), before);
}

TEST_F(agent, deferred_output_reaches_the_catalog_within_the_update_interval) {
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
    ASSERT_EQ(register_service(json{{"Name", name}, {"Check", {{"TTL", "1h"}}}}).status, 200u);
    const std::string id = "service:" + name;
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=first").status, 200u);
    ASSERT_EQ(c.put("/v1/agent/check/pass/" + id + "?note=second").status, 200u);
    EXPECT_EQ(c.get("/v1/health/checks/" + name).json_body()[0]["Output"], "first");
    target.dev()->advance_clock(std::chrono::minutes(8));  // interval/2 + up to one interval
    EXPECT_EQ(c.get("/v1/health/checks/" + name).json_body()[0]["Output"], "second");
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
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
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
    LAKEMESH_NEEDS_DEV_HOOK(target, "advance_clock()");
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
    // Nothing changed: the service's index stays where it was.
    EXPECT_EQ(c.get("/v1/health/service/" + name).index(), before.index());
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
    // Consul 1.10 replaces for the bare parameter or "true" only.
    ASSERT_EQ(register_service(only_a, "?replace-existing-checks=1").status, 200u);
    EXPECT_TRUE(agent_checks().contains(name + "-b"));
    ASSERT_EQ(register_service(only_a, "?replace-existing-checks").status, 200u);
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
    EXPECT_EQ(no_service.status, 500u);
    EXPECT_EQ(no_service.body, "ServiceID \"" + name + "-none\" does not exist");
    // agent/check/register takes "ID"; "CheckID" is an unknown field there.
    auto check_id = c.put("/v1/agent/check/register",
                          json{{"Name", name}, {"CheckID", name}, {"TTL", "10s"}}.dump());
    EXPECT_EQ(check_id.status, 400u);
    EXPECT_EQ(check_id.body, "Request decode failed: json: unknown field \"CheckID\"");

    auto ok =
        c.put("/v1/agent/check/register",
              json{{"Name", name}, {"TTL", "10s"}, {"Status", "warning"}, {"Notes", "n"}}.dump());
    ASSERT_EQ(ok.status, 200u) << ok.body;
    auto chk = agent_checks()[name];
    EXPECT_EQ(chk["CheckID"], name);
    EXPECT_EQ(chk["Status"], "warning");
    EXPECT_EQ(chk["ServiceID"], "");
    EXPECT_EQ(chk["Notes"], "n");
    // Consul 1.10.11's HealthCheck: durations printed for agent/check/register's checks, the
    // definition sent empty, the agent's copy without raft indexes.
    EXPECT_EQ(chk["Type"], "ttl");
    EXPECT_EQ(chk["Interval"], "0s");
    EXPECT_EQ(chk["Timeout"], "0s");
    EXPECT_EQ(chk["ExposedPort"], 0);
    EXPECT_EQ(chk["Definition"], json::object());
    EXPECT_EQ(chk["ServiceTags"], json::array());
    EXPECT_EQ(chk["CreateIndex"], 0);
    EXPECT_EQ(chk["ModifyIndex"], 0);

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
    // Deregistering a check the agent does not know is not an error in Consul 1.10.
    auto again = c.put("/v1/agent/check/deregister/" + name);
    EXPECT_EQ(again.status, 200u);
    EXPECT_EQ(again.body, "");
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
    EXPECT_EQ(unknown.body, "No service registered with ID \"" + name + "-nope\"");
    auto bad = c.put("/v1/agent/service/maintenance/" + name + "?enable=maybe");
    EXPECT_EQ(bad.body, "Invalid value for enable: \"maybe\"");

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=true&reason=upgrade").status,
              200u);
    auto chk = agent_checks()[maint];
    EXPECT_EQ(chk["Status"], "critical");
    EXPECT_EQ(chk["Notes"], "upgrade");
    EXPECT_EQ(chk["ServiceID"], name);
    EXPECT_EQ(chk["Type"], "maintenance");
    EXPECT_EQ(chk["Name"], "Service Maintenance Mode");
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body(), json::array());

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=false").status, 200u);
    EXPECT_FALSE(agent_checks().contains(maint));
    EXPECT_EQ(c.get("/v1/health/service/" + name + "?passing").json_body().size(), 1u);

    ASSERT_EQ(c.put("/v1/agent/service/maintenance/" + name + "?enable=true").status, 200u);
    EXPECT_NE(agent_checks()[maint]["Notes"].get<std::string>().find("no reason was provided"),
              std::string::npos);
}

// Node maintenance takes every service of the node out of service: against a real agent shared
// with other tests it runs alone (suites *_exclusive).
class agent_exclusive : public agent {};

TEST_F(agent_exclusive, node_maintenance_adds_and_removes_node_check) {
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
    auto r = c.get("/v1/agent/service/register");
    EXPECT_EQ(r.status, 405u);
    EXPECT_EQ(r.body, "method GET not allowed");
    EXPECT_EQ(r.header("allow"), "OPTIONS,PUT");
    EXPECT_FALSE(agent_checks().contains("serfHealth"));
}

}  // namespace
}  // namespace lakemesh::test
