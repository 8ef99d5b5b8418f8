// Runtime policy reload, without sockets: the parser of one service's call settings (a KV value
// under <prefix>config/policies/), its consistency check, and the policy_reload settings.
#include <lakemesh/mesh_integrator.hpp>

#include "mesh/policy_watch.hpp"

#include <gtest/gtest.h>

namespace lakemesh {
namespace {

using namespace std::chrono_literals;
using mesh::detail::service_call_config_from_json;

struct parsed {
    service_call_config sc;
    error_code ec;
    diagnostics diag;
};

parsed parse(std::string_view text, const service_call_config& base = {}) {
    parsed p;
    p.sc = service_call_config_from_json(text, base, p.ec, p.diag);
    return p;
}

TEST(mesh_policy_json, a_valid_value_sets_its_fields_and_keeps_the_others_from_the_base) {
    service_call_config base;
    base.policy.retry.max_attempts = 5;
    base.policy.retry.per_try_timeout = 300ms;
    base.policy.bulkhead.reset();
    base.query.tag = "primary";
    auto p = parse(R"({"timeout": "2s", "retry": {"max_attempts": 1},
                       "circuit_breaker": {"consecutive_failures": 3},
                       "balancer": "round_robin", "hedge": {"delay": "15ms"},
                       "outlier_detection": false, "meta": {"zone": "a"}})",
                   base);
    ASSERT_FALSE(p.ec) << p.diag.to_string();
    EXPECT_EQ(p.sc.policy.timeout, 2s);
    EXPECT_EQ(p.sc.policy.retry.max_attempts, 1u);
    EXPECT_EQ(p.sc.policy.retry.per_try_timeout, 300ms);  // from the base
    ASSERT_TRUE(p.sc.policy.circuit_breaker);
    EXPECT_EQ(p.sc.policy.circuit_breaker->consecutive_failures, 3u);
    EXPECT_FALSE(p.sc.policy.bulkhead);  // from the base
    EXPECT_EQ(p.sc.balancer.kind, resilience::balancer_kind::round_robin);
    EXPECT_FALSE(p.sc.balancer.outlier_detection);
    EXPECT_TRUE(p.sc.hedge.enabled);
    EXPECT_EQ(p.sc.hedge.delay, 15ms);
    EXPECT_EQ(p.sc.query.tag, "primary");  // from the base
    EXPECT_EQ(p.sc.query.meta.at("zone"), "a");
    EXPECT_FALSE(mesh::detail::validate_calls(p.sc, p.diag));

    // An empty object is the base itself.
    auto same = parse("{}", base);
    ASSERT_FALSE(same.ec);
    EXPECT_EQ(same.sc.policy.retry.max_attempts, 5u);
    EXPECT_EQ(same.sc.query.tag, "primary");
}

TEST(mesh_policy_json, the_file_and_kv_read_a_service_the_same_way) {
    const std::string value = R"({"retry": {"max_attempts": 2, "base_backoff": "5ms"},
                                  "bulkhead": {"max_concurrent": 7}, "tag": "v2"})";
    error_code ec;
    diagnostics diag;
    auto cfg = mesh_config::from_json(R"({"services": {"stock": )" + value + "}}", ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    auto p = parse(value, cfg.default_calls);
    ASSERT_FALSE(p.ec) << p.diag.to_string();
    const auto& f = cfg.services.at("stock");
    EXPECT_EQ(p.sc.policy.retry.max_attempts, f.policy.retry.max_attempts);
    EXPECT_EQ(p.sc.policy.retry.base_backoff, f.policy.retry.base_backoff);
    ASSERT_TRUE(p.sc.policy.bulkhead && f.policy.bulkhead);
    EXPECT_EQ(p.sc.policy.bulkhead->max_concurrent, f.policy.bulkhead->max_concurrent);
    EXPECT_EQ(p.sc.query, f.query);
}

TEST(mesh_policy_json, an_unknown_field_is_named) {
    auto p = parse(R"({"retyr": {"max_attempts": 1}})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_EQ(p.diag.client_message(), "retyr: unknown field");

    p = parse(R"({"retry": {"max_attemps": 1}})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_EQ(p.diag.client_message(), "retry.max_attemps: unknown field");

    // The file's "policy" wrapper is not part of the shape: the fields are at the top.
    p = parse(R"({"policy": {"retry": {"max_attempts": 1}}})");
    EXPECT_EQ(p.diag.client_message(), "policy: unknown field");
}

TEST(mesh_policy_json, a_wrong_type_is_named) {
    auto p = parse(R"({"retry": {"max_attempts": "3"}})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(p.diag.client_message().find("retry.max_attempts: expected an integer"),
              std::string::npos)
        << p.diag.client_message();

    p = parse(R"({"retry": 3})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(p.diag.client_message().find("retry: expected an object"), std::string::npos)
        << p.diag.client_message();

    p = parse(R"({"include_warning": "yes"})");
    EXPECT_NE(p.diag.client_message().find("include_warning: expected true or false"),
              std::string::npos)
        << p.diag.client_message();
}

TEST(mesh_policy_json, an_invalid_value_is_named) {
    auto p = parse(R"({"retry": {"max_attempts": 0}})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_argument));
    EXPECT_NE(p.diag.client_message().find("retry.max_attempts: 0 is out of range"),
              std::string::npos)
        << p.diag.client_message();

    p = parse(R"({"timeout": "soon"})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_duration));
    EXPECT_EQ(p.diag.client_message().rfind("timeout: ", 0), 0u) << p.diag.client_message();

    p = parse(R"({"balancer": "fastest"})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(p.diag.client_message().rfind("balancer: ", 0), 0u) << p.diag.client_message();

    p = parse(R"({"circuit_breaker": {"failure_rate_threshold": 1.5}})");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(p.diag.client_message().rfind("circuit_breaker.failure_rate_threshold: ", 0), 0u)
        << p.diag.client_message();
}

TEST(mesh_policy_json, bad_json_and_non_objects_are_rejected) {
    auto p = parse("{\"retry\": ");
    EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(p.diag.client_message().find("not valid JSON at line 1"), std::string::npos)
        << p.diag.client_message();

    for (const char* text : {"[]", "3", "\"retry\"", "null", ""}) {
        p = parse(text);
        EXPECT_EQ(p.ec, make_error_code(validation_errc::invalid_configuration)) << text;
        EXPECT_FALSE(p.diag.client_message().empty()) << text;
    }
}

TEST(mesh_policy_json, inconsistent_settings_are_rejected_by_validate_calls) {
    auto p = parse(R"({"retry": {"base_backoff": "2s", "max_backoff": "1s"}})");
    ASSERT_FALSE(p.ec) << p.diag.to_string();
    EXPECT_EQ(mesh::detail::validate_calls(p.sc, p.diag),
              make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(p.diag.client_message().rfind("retry.max_backoff: ", 0), 0u)
        << p.diag.client_message();

    p = parse(R"({"circuit_breaker": {"open_duration": "2m", "max_open_duration": "1m"}})");
    ASSERT_FALSE(p.ec);
    EXPECT_TRUE(mesh::detail::validate_calls(p.sc, p.diag));
    EXPECT_EQ(p.diag.client_message().rfind("circuit_breaker.max_open_duration: ", 0), 0u);

    p = parse(R"({"outlier_detection": {"base_ejection_time": "10m"}})");
    ASSERT_FALSE(p.ec);
    EXPECT_TRUE(mesh::detail::validate_calls(p.sc, p.diag));
    EXPECT_EQ(p.diag.client_message().rfind("outlier_detection.max_ejection_time: ", 0), 0u);

    // Zero caps mean "no cap".
    p = parse(R"({"retry": {"base_backoff": "2s", "max_backoff": 0}})");
    ASSERT_FALSE(p.ec);
    EXPECT_FALSE(mesh::detail::validate_calls(p.sc, p.diag));
}

TEST(mesh_policy_json, the_policy_reload_setting_is_read_and_checked) {
    error_code ec;
    diagnostics diag;
    auto cfg = mesh_config::from_json("{}", ec, diag);
    ASSERT_FALSE(ec);
    EXPECT_FALSE(cfg.policy_reload);

    cfg = mesh_config::from_json(R"({"policy_reload": {}})", ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    ASSERT_TRUE(cfg.policy_reload);
    EXPECT_EQ(cfg.policy_reload->prefix, "lakemesh/");

    cfg = mesh_config::from_json(R"({"policy_reload": {"prefix": "ops/lake/"}})", ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    EXPECT_EQ(cfg.policy_reload->prefix, "ops/lake/");

    cfg = mesh_config::from_json(R"({"policy_reload": {"prefx": "ops/"}})", ec, diag);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_EQ(diag.client_message(), "policy_reload.prefx: unknown field");

    cfg = mesh_config::from_json(R"({"policy_reload": {"prefix": 7}})", ec, diag);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_EQ(diag.client_message().rfind("policy_reload.prefix: expected a string", 0), 0u)
        << diag.client_message();

    for (const char* bad : {"ops", "/ops/", "ops//x/", "", "o\nps/"}) {
        mesh_config c;
        c.policy_reload = policy_reload_config{bad};
        diagnostics d;
        EXPECT_EQ(validate(c, d), make_error_code(validation_errc::invalid_key)) << bad;
        EXPECT_NE(d.client_message().find("policy_reload.prefix"), std::string::npos);
    }
    mesh_config good;
    good.policy_reload = policy_reload_config{"ops/lake/"};
    EXPECT_FALSE(validate(good, diag)) << diag.to_string();
}

}  // namespace
}  // namespace lakemesh
