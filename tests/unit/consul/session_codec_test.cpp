// Session request encoder, validation, answer decoders and Go durations.
#include "consul/session_codec.hpp"
#include "consul/go_duration.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace lakemesh::consul::detail {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

TEST(go_duration, parses_go_syntax) {
    EXPECT_EQ(parse_go_duration("15s"), std::chrono::nanoseconds(15s));
    EXPECT_EQ(parse_go_duration("1m30s"), std::chrono::nanoseconds(90s));
    EXPECT_EQ(parse_go_duration("1h"), std::chrono::nanoseconds(1h));
    EXPECT_EQ(parse_go_duration("250ms"), std::chrono::nanoseconds(250ms));
    EXPECT_EQ(parse_go_duration("1.5s"), std::chrono::nanoseconds(1500ms));
    EXPECT_EQ(parse_go_duration("10us"), std::chrono::nanoseconds(10us));
    EXPECT_EQ(parse_go_duration("\xC2\xB5s").has_value(), false);  // no number
    EXPECT_EQ(parse_go_duration("3\xC2\xB5s"), std::chrono::nanoseconds(3us));
    EXPECT_EQ(parse_go_duration("7ns"), std::chrono::nanoseconds(7));
    EXPECT_EQ(parse_go_duration("0"), std::chrono::nanoseconds(0));
    EXPECT_EQ(parse_go_duration("-2s"), std::chrono::nanoseconds(-2s));
    for (auto bad : {"", "s", "10", "10x", "1.s.", "--1s", "1e3s", "99999999999h"}) {
        EXPECT_FALSE(parse_go_duration(bad).has_value()) << bad;
    }
}

TEST(go_duration, formats_what_consul_parses) {
    EXPECT_EQ(format_go_duration(15s), "15s");
    EXPECT_EQ(format_go_duration(86400s), "86400s");
    EXPECT_EQ(format_go_duration(1500ms), "1500ms");
    EXPECT_EQ(format_go_duration(0ms), "0s");
    for (auto d : {1ms, 999ms, 10000ms, 12345ms}) {
        EXPECT_EQ(parse_go_duration(format_go_duration(d)), std::chrono::nanoseconds(d));
    }
}

TEST(session_codec, create_body_sends_only_what_differs_from_defaults) {
    EXPECT_EQ(json::parse(encode_session_create(session_options{})),
              (json{{"Behavior", "release"}}));
    session_options o;
    o.name = "leader";
    o.node = "n1";
    o.lock_delay = 0s;
    o.behavior = session_behavior::delete_keys;
    o.ttl = 30s;
    o.node_checks = std::vector<std::string>{};
    o.service_checks = {{"service:web", ""}, {"service:db", "team"}};
    auto j = json::parse(encode_session_create(o));
    EXPECT_EQ(j["Name"], "leader");
    EXPECT_EQ(j["Node"], "n1");
    EXPECT_EQ(j["LockDelay"], "0s");
    EXPECT_EQ(j["Behavior"], "delete");
    EXPECT_EQ(j["TTL"], "30s");
    EXPECT_EQ(j["NodeChecks"], json::array());
    EXPECT_FALSE(j.contains("Checks"));  // "Checks": [] would empty NodeChecks in Consul
    EXPECT_EQ(j["ServiceChecks"],
              json::parse(R"([{"ID":"service:web"},{"ID":"service:db","Namespace":"team"}])"));
}

TEST(session_codec, validation_of_ttl_lock_delay_and_ids) {
    diagnostics diag;
    session_options o;
    EXPECT_FALSE(validate_session_options(o, diag));
    for (auto ttl : {10s, 60s, 86400s}) {
        o.ttl = ttl;
        EXPECT_FALSE(validate_session_options(o, diag)) << ttl.count();
    }
    for (auto ttl : {std::chrono::milliseconds(1s), std::chrono::milliseconds(9999),
                     std::chrono::milliseconds(86400001), std::chrono::milliseconds(-1)}) {
        o.ttl = ttl;
        EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_duration)
            << ttl.count();
    }
    o.ttl = 0s;
    o.lock_delay = -1ms;
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_duration);
    o.lock_delay.reset();
    o.node_checks = std::vector<std::string>{""};
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_name);
    o.node_checks.reset();
    o.service_checks = {{"a\nb", ""}};
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::header_injection);
}

// Found by fuzz_session_codec: a name that is not UTF-8 passed validation and then made
// encode_session_create throw (json::dump), which the client reported as "out of memory".
TEST(session_codec, validation_refuses_text_json_cannot_carry) {
    diagnostics diag;
    session_options o;
    o.name = "lock\xdd";
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_argument);
    EXPECT_NE(diag.client_message().find("session name"), std::string::npos);
    o.name = "caf\xc3\xa9";
    EXPECT_FALSE(validate_session_options(o, diag));
    EXPECT_NO_THROW(encode_session_create(o));
    o.service_checks = {{"web", "ns\xff"}};
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_argument);
    o.service_checks.clear();
    o.node_checks = std::vector<std::string>{"\xc1\x81"};
    EXPECT_EQ(validate_session_options(o, diag), validation_errc::invalid_argument);
}

TEST(session_codec, create_answer) {
    std::string id;
    diagnostics diag;
    ASSERT_FALSE(decode_session_id(R"({"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"})", id, diag));
    EXPECT_EQ(id, "adf4238a-882b-9ddc-4a9d-5b6758e4159e");
    EXPECT_EQ(decode_session_id("{}", id, diag), decode_errc::missing_field);
    EXPECT_EQ(decode_session_id(R"({"ID":""})", id, diag), decode_errc::missing_field);
    EXPECT_EQ(decode_session_id(R"({"ID":5})", id, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_session_id(R"("x")", id, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_session_id("{", id, diag), decode_errc::malformed_json);
}

TEST(session_codec, sessions_with_nanosecond_lock_delay_and_go_ttl) {
    std::vector<session_info> out;
    diagnostics diag;
    ASSERT_FALSE(decode_sessions(R"([{"ID":"adf4238a","Name":"test-session","Node":"raja",
        "LockDelay":15000000000,"Behavior":"delete","TTL":"1m30s",
        "NodeChecks":["serfHealth"],"ServiceChecks":[{"ID":"service:web","Namespace":""}],
        "CreateIndex":1086449,"ModifyIndex":1086450}])",
                                 out, diag))
        << diag.to_string();
    ASSERT_EQ(out.size(), 1u);
    const auto& s = out[0];
    EXPECT_EQ(s.id, "adf4238a");
    EXPECT_EQ(s.name, "test-session");
    EXPECT_EQ(s.node, "raja");
    EXPECT_EQ(s.lock_delay, 15s);
    EXPECT_EQ(s.behavior, session_behavior::delete_keys);
    EXPECT_EQ(s.ttl, 90s);
    EXPECT_EQ(s.node_checks, std::vector<std::string>{"serfHealth"});
    ASSERT_EQ(s.service_checks.size(), 1u);
    EXPECT_EQ(s.service_checks[0].id, "service:web");
    EXPECT_EQ(s.create_index, 1086449u);
    EXPECT_EQ(s.modify_index, 1086450u);
}

TEST(session_codec, legacy_checks_null_and_empty_answers) {
    std::vector<session_info> out;
    diagnostics diag;
    ASSERT_FALSE(
        decode_sessions(R"([{"ID":"a","Checks":["serfHealth","c1"],"TTL":""}])", out, diag));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].node_checks, (std::vector<std::string>{"serfHealth", "c1"}));
    EXPECT_EQ(out[0].ttl, 0s);
    EXPECT_EQ(out[0].behavior, session_behavior::release);
    ASSERT_FALSE(decode_sessions("null", out, diag));
    EXPECT_TRUE(out.empty());
    ASSERT_FALSE(decode_sessions("[]", out, diag));
    EXPECT_TRUE(out.empty());
}

TEST(session_codec, session_errors_name_the_field) {
    std::vector<session_info> out;
    diagnostics diag;
    EXPECT_EQ(decode_sessions(R"([{"Name":"x"}])", out, diag), decode_errc::missing_field);
    EXPECT_NE(diag.client_message().find("ID"), std::string::npos);
    EXPECT_EQ(decode_sessions(R"([{"ID":"a","LockDelay":"15s"}])", out, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find("LockDelay"), std::string::npos);
    EXPECT_EQ(decode_sessions(R"([{"ID":"a","TTL":"forever"}])", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_sessions(R"([{"ID":"a","Behavior":"explode"}])", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_sessions(R"([{"ID":"a","NodeChecks":"serfHealth"}])", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_sessions(R"([{"ID":"a","ServiceChecks":[{"Namespace":"x"}]}])", out, diag),
              decode_errc::missing_field);
    EXPECT_EQ(decode_sessions(R"({"ID":"a"})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_sessions("[{", out, diag), decode_errc::malformed_json);
    EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace lakemesh::consul::detail
