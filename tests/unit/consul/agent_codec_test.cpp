// Agent codecs without sockets: registration bodies as Consul expects them, and decoding of
// good, incomplete, mistyped and malformed answers.
#include "consul/agent_codec.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace lakemesh::consul::detail {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST(check_status_text, round_trips_and_rejects_other_text) {
    for (auto s : {check_status::passing, check_status::warning, check_status::critical,
                   check_status::maintenance}) {
        EXPECT_EQ(check_status_from_string(to_string(s)), s);
    }
    EXPECT_FALSE(check_status_from_string("Passing"));
    EXPECT_FALSE(check_status_from_string(""));
}

TEST(aggregate_status, worst_wins_and_maintenance_trumps_all) {
    std::vector<health_check> checks;
    EXPECT_EQ(aggregate_status(checks), check_status::passing);
    checks.push_back({.check_id = "a", .status = check_status::passing});
    EXPECT_EQ(aggregate_status(checks), check_status::passing);
    checks.push_back({.check_id = "b", .status = check_status::warning});
    EXPECT_EQ(aggregate_status(checks), check_status::warning);
    checks.push_back({.check_id = "c", .status = check_status::critical});
    EXPECT_EQ(aggregate_status(checks), check_status::critical);
    checks.push_back({.check_id = "_service_maintenance:web-1", .status = check_status::critical});
    EXPECT_EQ(aggregate_status(checks), check_status::maintenance);
    std::vector<health_check> node_maint{
        {.check_id = "_node_maintenance", .status = check_status::critical}};
    EXPECT_EQ(aggregate_status(node_maint), check_status::maintenance);
}

service_registration full_registration() {
    service_registration reg;
    reg.id = "web-1";
    reg.name = "web";
    reg.tags = {"v1", "primary"};
    reg.meta = {{"version", "1.2"}};
    reg.port = 8080;
    reg.address = "10.0.0.5";
    reg.weights = service_weights{.passing = 10, .warning = 1};
    reg.enable_tag_override = true;
    check_definition ttl;
    ttl.id = "web-1-ttl";
    ttl.name = "heartbeat";
    ttl.ttl = 15s;
    ttl.status = check_status::passing;
    ttl.deregister_critical_service_after = 90s;
    check_definition http;
    http.http = "http://10.0.0.5:8080/health";
    http.method = "HEAD";
    http.header = {{"X-Probe", {"1"}}};
    http.tls_skip_verify = true;
    http.interval = 1500ms;
    http.timeout = 1s;
    http.notes = "liveness";
    check_definition grpc;
    grpc.grpc = "10.0.0.5:9090/web";
    grpc.grpc_use_tls = true;
    grpc.interval = 10s;
    reg.checks = {ttl, http, grpc};
    reg.check = check_definition{.tcp = "10.0.0.5:8080", .interval = 5s};
    return reg;
}

TEST(encode_service_registration, renders_every_field_consul_knows) {
    std::string body;
    diagnostics diag;
    ASSERT_FALSE(encode_service_registration(full_registration(), body, diag)) << diag.to_string();
    auto j = json::parse(body);
    EXPECT_EQ(j["ID"], "web-1");
    EXPECT_EQ(j["Name"], "web");
    EXPECT_EQ(j["Tags"], json({"v1", "primary"}));
    EXPECT_EQ(j["Meta"]["version"], "1.2");
    EXPECT_EQ(j["Port"], 8080);
    EXPECT_EQ(j["Address"], "10.0.0.5");
    EXPECT_EQ(j["Weights"], json({{"Passing", 10}, {"Warning", 1}}));
    EXPECT_EQ(j["EnableTagOverride"], true);
    EXPECT_EQ(j["Check"], json({{"TCP", "10.0.0.5:8080"}, {"Interval", "5s"}}));
    ASSERT_EQ(j["Checks"].size(), 3u);
    EXPECT_EQ(j["Checks"][0], json({{"CheckID", "web-1-ttl"},
                                    {"Name", "heartbeat"},
                                    {"Status", "passing"},
                                    {"TTL", "15s"},
                                    {"DeregisterCriticalServiceAfter", "90s"}}));
    EXPECT_EQ(j["Checks"][1], json({{"HTTP", "http://10.0.0.5:8080/health"},
                                    {"Method", "HEAD"},
                                    {"Header", {{"X-Probe", {"1"}}}},
                                    {"TLSSkipVerify", true},
                                    {"Interval", "1500ms"},
                                    {"Timeout", "1s"},
                                    {"Notes", "liveness"}}));
    EXPECT_EQ(j["Checks"][2],
              json({{"GRPC", "10.0.0.5:9090/web"}, {"GRPCUseTLS", true}, {"Interval", "10s"}}));
}

TEST(encode_service_registration, minimal_registration_sends_only_the_name) {
    service_registration reg;
    reg.name = "db";
    std::string body;
    diagnostics diag;
    ASSERT_FALSE(encode_service_registration(reg, body, diag));
    EXPECT_EQ(json::parse(body), json({{"Name", "db"}}));
}

TEST(encode_service_registration, rejects_bad_input_naming_the_field) {
    auto expect = [](service_registration reg, error_code want, const std::string& field) {
        std::string body;
        diagnostics diag;
        EXPECT_EQ(encode_service_registration(reg, body, diag), want) << field;
        EXPECT_NE(diag.client_message().find(field), std::string::npos) << diag.client_message();
        EXPECT_TRUE(body.empty());
    };
    service_registration reg;
    expect(reg, validation_errc::invalid_name, "service name");
    reg.name = "web\r\nX-Evil: 1";
    expect(reg, validation_errc::header_injection, "service name");
    reg.name = "web";
    reg.id = std::string("id\x01", 3);
    expect(reg, validation_errc::control_character, "service ID");
    reg.id = "web-1";
    reg.tags = {"ok", "bad\n"};
    expect(reg, validation_errc::header_injection, "service tag");
    reg.tags.clear();
    reg.port = 70000;
    expect(reg, validation_errc::invalid_argument, "port");
    reg.port = 80;
    reg.checks = {check_definition{.ttl = -1s}};
    expect(reg, validation_errc::invalid_duration, "Checks[0].TTL");
    reg.checks = {check_definition{.status = check_status::maintenance, .ttl = 1s}};
    expect(reg, validation_errc::invalid_argument, "Checks[0].Status");
    reg.checks.clear();
    reg.check = check_definition{.id = "a\tb", .ttl = 1s};
    expect(reg, validation_errc::control_character, "Check.ID");
    reg.check.reset();
    reg.meta = {{"k", "\xff\xfe"}};
    expect(reg, validation_errc::invalid_argument, "UTF-8");
}

TEST(encode_check_definition, standalone_check_uses_id_and_service_id) {
    check_definition def;
    def.id = "mem";
    def.name = "memory";
    def.service_id = "web-1";
    def.ttl = 30s;
    std::string body;
    diagnostics diag;
    ASSERT_FALSE(encode_check_definition(def, body, diag));
    EXPECT_EQ(json::parse(body),
              json({{"ID", "mem"}, {"Name", "memory"}, {"ServiceID", "web-1"}, {"TTL", "30s"}}));
    def.name.clear();
    EXPECT_EQ(encode_check_definition(def, body, diag), validation_errc::invalid_name);
    EXPECT_NE(diag.client_message().find("check.Name"), std::string::npos);
}

TEST(encode_check_update, status_and_output) {
    std::string body;
    diagnostics diag;
    ASSERT_FALSE(encode_check_update(check_status::warning, "disk 91%", body, diag));
    EXPECT_EQ(json::parse(body), json({{"Status", "warning"}, {"Output", "disk 91%"}}));
    EXPECT_EQ(encode_check_update(check_status::maintenance, "", body, diag),
              validation_errc::invalid_argument);
}

// The update body is written by hand (it is sent for every TTL update): it must say exactly what
// json::dump says for every output, and refuse what is not UTF-8.
TEST(encode_check_update, escapes_the_output_as_json_does) {
    const std::string outputs[] = {
        "",
        "ok",
        "quote \" backslash \\ slash /",
        std::string("controls \b\f\n\r\t \x01\x1f\x7f end"),
        std::string("nul \0 inside", 13),
        "utf-8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    };
    for (const auto& output : outputs) {
        std::string body;
        diagnostics diag;
        ASSERT_FALSE(encode_check_update(check_status::passing, output, body, diag)) << output;
        EXPECT_EQ(body, R"({"Status":"passing","Output":)" + json(output).dump() + "}");
        const json j = json::parse(body);
        EXPECT_EQ(j.at("Output"), output);
        EXPECT_EQ(j.at("Status"), "passing");
    }
    for (const std::string bad : {"\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"}) {
        std::string body;
        diagnostics diag;
        EXPECT_EQ(encode_check_update(check_status::passing, bad, body, diag),
                  validation_errc::invalid_argument);
        EXPECT_NE(diag.client_message().find("UTF-8"), std::string::npos);
    }
}

// ------------------------------------------------------------------ decoding

constexpr const char* self_body = R"({
  "Config": {"Datacenter": "dc1", "PrimaryDatacenter": "dc1", "NodeName": "node-a",
             "NodeID": "0b4d2b9e-0000-4000-8000-000000000001", "Revision": "abc",
             "Server": true, "Version": "1.17.0", "BuildDate": "2023-11-01T00:00:00Z"},
  "DebugConfig": {}, "Coord": null,
  "Member": {"Name": "node-a", "Addr": "10.0.0.1", "Port": 8301, "Tags": {"role": "consul"},
             "Status": 1},
  "Stats": {}, "Meta": {"rack": "r1"}})";

TEST(decode_agent_self, reads_the_typed_subset) {
    agent_info a;
    diagnostics diag;
    ASSERT_FALSE(decode_agent_self(self_body, a, diag)) << diag.to_string();
    EXPECT_EQ(a.node_name, "node-a");
    EXPECT_EQ(a.datacenter, "dc1");
    EXPECT_EQ(a.primary_datacenter, "dc1");
    EXPECT_EQ(a.node_id, "0b4d2b9e-0000-4000-8000-000000000001");
    EXPECT_EQ(a.version, "1.17.0");
    EXPECT_EQ(a.revision, "abc");
    EXPECT_TRUE(a.server);
    EXPECT_EQ(a.address, "10.0.0.1");
    EXPECT_EQ(a.node_meta, (std::map<std::string, std::string>{{"rack", "r1"}}));
}

TEST(decode_agent_self, names_missing_and_mistyped_fields) {
    agent_info a;
    diagnostics diag;
    EXPECT_EQ(decode_agent_self(R"({"Config": {"Datacenter": "dc1"}})", a, diag),
              decode_errc::missing_field);
    EXPECT_EQ(diag.client_message(), "missing field self.Config.NodeName");
    EXPECT_EQ(decode_agent_self(R"({"Member": {}})", a, diag), decode_errc::missing_field);
    EXPECT_EQ(diag.client_message(), "missing field self.Config");
    EXPECT_EQ(decode_agent_self(R"({"Config": {"Datacenter": "dc1", "NodeName": 7}})", a, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find("self.Config.NodeName"), std::string::npos);
    EXPECT_EQ(decode_agent_self(R"([1,2])", a, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_agent_self(R"({"Config": )", a, diag), decode_errc::malformed_json);
}

TEST(decode_agent_members, reads_members) {
    std::vector<agent_member> m;
    diagnostics diag;
    ASSERT_FALSE(decode_agent_members(
        R"([{"Name":"a","Addr":"10.0.0.1","Port":8301,"Tags":{"dc":"dc1"},"Status":1},
            {"Name":"b","Addr":"10.0.0.2","Port":8301,"Tags":null,"Status":4}])",
        m, diag));
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0], (agent_member{"a", "10.0.0.1", 8301, {{"dc", "dc1"}}, 1}));
    EXPECT_EQ(m[1].status, 4);
    EXPECT_TRUE(m[1].tags.empty());
    EXPECT_EQ(decode_agent_members(R"([{"Name":"a"}])", m, diag), decode_errc::missing_field);
    EXPECT_EQ(diag.client_message(), "missing field members[0].Addr");
    EXPECT_TRUE(m.empty());
    EXPECT_EQ(decode_agent_members(R"([{"Name":"a","Addr":"x","Port":"8301"}])", m, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_agent_members(R"({})", m, diag), decode_errc::wrong_type);
}

// Found by fuzz_agent_codec: 2^64-1 wrapped to -1 (a "valid" port), and 1e300 was converted
// to an integer out of range (undefined behaviour, reported by UBSan).
TEST(decode_agent_members, rejects_numbers_outside_int_instead_of_wrapping) {
    std::vector<agent_member> m;
    diagnostics diag;
    for (const char* port : {"18446744073709551615", "9223372036854775808", "1e300", "-1e300",
                             "9.3e18", "2147483648", "8301.5"}) {
        const std::string body =
            std::string(R"([{"Name":"a","Addr":"10.0.0.1","Status":1,"Port":)") + port + "}]";
        EXPECT_EQ(decode_agent_members(body, m, diag), decode_errc::wrong_type) << port;
        EXPECT_TRUE(m.empty());
        EXPECT_NE(diag.client_message().find("members[0].Port"), std::string::npos);
    }
    ASSERT_FALSE(
        decode_agent_members(R"([{"Name":"a","Addr":"x","Port":8301.0,"Status":-1}])", m, diag));
    EXPECT_EQ(m.at(0).port, 8301);
    EXPECT_EQ(m.at(0).status, -1);
}

constexpr const char* services_body = R"({
  "web-1": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Meta": {"version": "1.2"},
            "Port": 8080, "Address": "10.0.0.5", "Weights": {"Passing": 10, "Warning": 1},
            "EnableTagOverride": false, "Datacenter": "dc1"},
  "db": {"ID": "db", "Service": "db", "Tags": null, "Meta": null, "Port": 0, "Address": "",
         "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": true,
         "Datacenter": "dc1", "Namespace": "team-a", "Kind": "connect-proxy"}})";

TEST(decode_agent_services, reads_services_by_id) {
    std::map<std::string, agent_service> s;
    diagnostics diag;
    ASSERT_FALSE(decode_agent_services(services_body, s, diag)) << diag.to_string();
    ASSERT_EQ(s.size(), 2u);
    const auto& web = s.at("web-1");
    EXPECT_EQ(web.service, "web");
    EXPECT_EQ(web.tags, std::vector<std::string>{"v1"});
    EXPECT_EQ(web.meta.at("version"), "1.2");
    EXPECT_EQ(web.port, 8080);
    EXPECT_EQ(web.address, "10.0.0.5");
    EXPECT_EQ(web.weights, (service_weights{10, 1}));
    EXPECT_EQ(web.datacenter, "dc1");
    const auto& db = s.at("db");
    EXPECT_TRUE(db.tags.empty());
    EXPECT_TRUE(db.enable_tag_override);
    EXPECT_EQ(db.namespace_name, "team-a");
    EXPECT_EQ(db.kind, "connect-proxy");
}

TEST(decode_agent_services, names_the_bad_field) {
    std::map<std::string, agent_service> s;
    diagnostics diag;
    EXPECT_EQ(decode_agent_services(R"({"x": {"ID": "x"}})", s, diag), decode_errc::missing_field);
    EXPECT_EQ(diag.client_message(), R"(missing field services["x"].Service)");
    EXPECT_TRUE(s.empty());
    EXPECT_EQ(decode_agent_services(R"({"x": {"ID": "x", "Service": "x", "Port": 1.5}})", s, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find(R"(services["x"].Port)"), std::string::npos);
    EXPECT_EQ(decode_agent_services(
                  R"({"x": {"ID": "x", "Service": "x", "Weights": {"Passing": "1"}}})", s, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find(R"(services["x"].Weights.Passing)"), std::string::npos);
    EXPECT_EQ(decode_agent_services(R"({"x": [1]})", s, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_agent_services(R"([])", s, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_agent_services("", s, diag), decode_errc::malformed_json);
}

TEST(decode_agent_checks, reads_checks_by_id) {
    std::map<std::string, agent_check> c;
    diagnostics diag;
    ASSERT_FALSE(decode_agent_checks(R"({"service:web-1": {
        "Node": "node-a", "CheckID": "service:web-1", "Name": "Service 'web' check",
        "Status": "warning", "Notes": "", "Output": "slow", "ServiceID": "web-1",
        "ServiceName": "web", "ServiceTags": ["v1"], "Type": "ttl", "Interval": "",
        "Timeout": "", "ExposedPort": 0, "Definition": {}, "CreateIndex": 0,
        "ModifyIndex": 0}})",
                                     c, diag))
        << diag.to_string();
    const auto& chk = c.at("service:web-1");
    EXPECT_EQ(chk.node, "node-a");
    EXPECT_EQ(chk.status, check_status::warning);
    EXPECT_EQ(chk.output, "slow");
    EXPECT_EQ(chk.service_id, "web-1");
    EXPECT_EQ(chk.service_tags, std::vector<std::string>{"v1"});
    EXPECT_EQ(chk.type, "ttl");
}

TEST(decode_agent_checks, rejects_unknown_status_and_missing_id) {
    std::map<std::string, agent_check> c;
    diagnostics diag;
    EXPECT_EQ(decode_agent_checks(R"({"a": {"CheckID": "a", "Status": "bogus"}})", c, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find(R"(checks["a"].Status)"), std::string::npos);
    EXPECT_EQ(decode_agent_checks(R"({"a": {"Status": "passing"}})", c, diag),
              decode_errc::missing_field);
    EXPECT_EQ(diag.client_message(), R"(missing field checks["a"].CheckID)");
    EXPECT_EQ(decode_agent_checks(R"({"a": {"CheckID": "a"}})", c, diag),
              decode_errc::missing_field);
    EXPECT_EQ(decode_agent_checks(R"({"a": {"CheckID": "a", "Status": "passing",
                                         "ServiceTags": "v1"}})",
                                  c, diag),
              decode_errc::wrong_type);
    EXPECT_TRUE(c.empty());
}

TEST(agent_decoders, never_throw_on_garbage) {
    const std::vector<std::string> inputs = {
        "",
        "null",
        "0",
        "\"s\"",
        "[",
        "{",
        "[null]",
        "{\"a\":null}",
        "\xff\xfe",
        "[[[[]]]]",
        R"({"Config":[]})",
        R"({"Config":{"NodeName":"n","Datacenter":"d"},"Member":7})",
        std::string("{\"a\":\"\0\"}", 8)};
    for (const auto& in : inputs) {
        diagnostics diag;
        agent_info a;
        std::vector<agent_member> m;
        std::map<std::string, agent_service> s;
        std::map<std::string, agent_check> c;
        EXPECT_NO_THROW({
            (void)decode_agent_self(in, a, diag);
            (void)decode_agent_members(in, m, diag);
            (void)decode_agent_services(in, s, diag);
            (void)decode_agent_checks(in, c, diag);
        }) << in;
    }
}

}  // namespace
}  // namespace lakemesh::consul::detail
