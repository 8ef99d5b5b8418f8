// mesh_config::from_json and call_context::from_request: no sockets.
#include <lakemesh/mesh_integrator.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace lakemesh {
namespace {

using namespace std::chrono_literals;

mesh_config parse(std::string_view text, error_code& ec, diagnostics& diag) {
    return mesh_config::from_json(text, ec, diag);
}

TEST(mesh_config_json, a_full_file_sets_every_part) {
    error_code ec;
    diagnostics diag;
    auto cfg = parse(R"({
        "service": {"name": "orders", "id": "orders-1", "address": "10.0.0.5", "port": 8080,
                    "tags": ["v2"], "meta": {"zone": "a"},
                    "checks": [{"http": "http://10.0.0.5:8080/health", "interval": "5s",
                                "timeout": "1s"}]},
        "consul": {"address": "127.0.0.1:8501", "token": "secret", "request_timeout": "10s"},
        "cache": {"max_services": 64, "max_staleness": "1m"},
        "calls": {"timeout": "2s", "retry": {"max_attempts": 4, "per_try_timeout": "500ms"},
                  "bulkhead": {"max_concurrent": 10}, "balancer": "least_request"},
        "services": {"stock": {"retry": {"max_attempts": 2}, "circuit_breaker": false,
                               "tag": "primary"},
                     "search": {"hedge": {"delay": "15ms"}, "tls": true},
                     "prices": {"hedge": true, "tls": false}},
        "instance_tls": {"ca_file": "/etc/lake/ca.pem", "cert_file": "/etc/lake/me.pem",
                         "key_file": "/etc/lake/me.key", "server_name": "lake.internal"},
        "dependencies": ["stock"],
        "partitions": {"cluster": "lake", "node_id": "n1", "partitions": 64,
                       "fast_failover": true},
        "start_mode": "wait_for_consul",
        "stop_timeout": 3000
    })",
                     ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    EXPECT_EQ(cfg.service_name, "orders");
    EXPECT_EQ(cfg.service_id, "orders-1");
    EXPECT_EQ(cfg.address, "10.0.0.5");
    EXPECT_EQ(cfg.port, 8080);
    EXPECT_EQ(cfg.tags, std::vector<std::string>{"v2"});
    EXPECT_EQ(cfg.meta.at("zone"), "a");
    ASSERT_EQ(cfg.checks.size(), 1u);
    const auto& check = std::get<consul::check_definition>(cfg.checks[0]);
    EXPECT_EQ(check.interval, 5s);
    EXPECT_EQ(check.timeout, 1s);
    ASSERT_EQ(cfg.consul.addresses.size(), 1u);
    EXPECT_EQ(cfg.consul.addresses[0].port, 8501);
    EXPECT_EQ(cfg.consul.token, "secret");
    EXPECT_EQ(cfg.consul.request_timeout, 10s);
    EXPECT_EQ(cfg.cache.max_services, 64u);
    EXPECT_EQ(cfg.cache.max_staleness, 60s);
    EXPECT_EQ(cfg.default_calls.policy.timeout, 2s);
    EXPECT_EQ(cfg.default_calls.policy.retry.max_attempts, 4u);
    EXPECT_EQ(cfg.default_calls.policy.retry.per_try_timeout, 500ms);
    EXPECT_EQ(cfg.default_calls.balancer.kind, resilience::balancer_kind::least_request);
    // A service's settings start from "calls" and override what they name.
    const auto& stock = cfg.services.at("stock");
    EXPECT_EQ(stock.policy.retry.max_attempts, 2u);
    EXPECT_EQ(stock.policy.retry.per_try_timeout, 500ms);
    EXPECT_EQ(stock.policy.timeout, 2s);
    EXPECT_FALSE(stock.policy.circuit_breaker.has_value());
    ASSERT_TRUE(stock.policy.bulkhead.has_value());
    EXPECT_EQ(stock.policy.bulkhead->max_concurrent, 10u);
    EXPECT_EQ(stock.query.tag, "primary");
    EXPECT_FALSE(stock.hedge.enabled);
    EXPECT_TRUE(cfg.services.at("search").hedge.enabled);
    EXPECT_EQ(cfg.services.at("search").hedge.delay, 15ms);
    EXPECT_TRUE(cfg.services.at("prices").hedge.enabled);
    EXPECT_EQ(cfg.services.at("prices").hedge.delay, 0ms);  // at the observed p95
    // TLS to instances: by their meta unless a service says; verification stays on.
    EXPECT_FALSE(stock.tls.has_value());
    EXPECT_EQ(cfg.services.at("search").tls, std::optional<bool>(true));
    EXPECT_EQ(cfg.services.at("prices").tls, std::optional<bool>(false));
    EXPECT_EQ(cfg.instance_tls.ca_file, "/etc/lake/ca.pem");
    EXPECT_EQ(cfg.instance_tls.cert_file, "/etc/lake/me.pem");
    EXPECT_EQ(cfg.instance_tls.key_file, "/etc/lake/me.key");
    EXPECT_EQ(cfg.instance_tls.server_name, "lake.internal");
    EXPECT_TRUE(cfg.instance_tls.verify);
    EXPECT_EQ(cfg.dependencies, std::vector<std::string>{"stock"});
    ASSERT_TRUE(cfg.partitions.has_value());
    EXPECT_EQ(cfg.partitions->cluster, "lake");
    EXPECT_EQ(cfg.partitions->partitions, 64u);
    EXPECT_EQ(cfg.partitions->lease.lock_delay,
              partition::registry_config::fast_failover("lake", "n1").lease.lock_delay);
    EXPECT_EQ(cfg.start, start_mode::wait_for_consul);
    EXPECT_EQ(cfg.stop_timeout, 3s);
}

// The file shown in the README.
TEST(mesh_config_json, the_readme_example_parses) {
    error_code ec;
    diagnostics diag;
    auto cfg = parse(
        R"({"service": {"name": "orders", "port": 8080, "checks": [{"http": "http://127.0.0.1:8080/health", "interval": "5s"}]},
 "consul": {"address": "127.0.0.1:8500"},
 "calls": {"timeout": "2s", "retry": {"max_attempts": 3, "per_try_timeout": "500ms"}},
 "services": {"inventory": {"balancer": "least_request", "hedge": {"delay": "20ms"}}},
 "dependencies": ["inventory"], "start_mode": "wait_for_consul"})",
        ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    EXPECT_EQ(cfg.services.at("inventory").hedge.delay, 20ms);
    EXPECT_EQ(cfg.services.at("inventory").policy.retry.per_try_timeout, 500ms);
    EXPECT_EQ(cfg.start, start_mode::wait_for_consul);
}

struct bad_case {
    const char* text;
    validation_errc code;
    const char* names;  // what the message must contain
};

TEST(mesh_config_json, bad_input_names_the_field) {
    const bad_case cases[] = {
        {R"({"service": {"port": "80"}})", validation_errc::invalid_configuration,
         "service.port: expected an integer"},
        {R"({"service": {"port": 70000}})", validation_errc::invalid_argument, "service.port"},
        {R"({"services": {"stock": {"retry": {"max_atempts": 2}}}})",
         validation_errc::invalid_configuration, "services.stock.retry.max_atempts: unknown field"},
        {R"({"calls": {"timeout": "2 seconds"}})", validation_errc::invalid_duration,
         "calls.timeout"},
        {R"({"calls": {"balancer": "fastest"}})", validation_errc::invalid_argument,
         "calls.balancer"},
        {R"({"calls": {"hedge": {"delay": "soon"}}})", validation_errc::invalid_duration,
         "calls.hedge.delay"},
        {R"({"calls": {"hedge": {"after": "5ms"}}})", validation_errc::invalid_configuration,
         "calls.hedge.after: unknown field"},
        {R"({"start_mode": "later"})", validation_errc::invalid_argument, "start_mode"},
        {R"({"consul": {"address": "no port here"}})", validation_errc::invalid_argument,
         "consul.address"},
        {R"({"service": {"checks": [{"interval": "1s"}]}})", validation_errc::invalid_configuration,
         "service.checks[0]"},
        {R"({"service": {"name": "bad name"}})", validation_errc::invalid_name, "service_name"},
        {R"({"partitions": {"cluster": "lake", "node_id": "n1", "partitions": 0}})",
         validation_errc::invalid_argument, "partitions.partitions"},
        {R"([1, 2])", validation_errc::invalid_configuration, "expected an object"},
        {R"({"services": {"stock": {"tls": "yes"}}})", validation_errc::invalid_configuration,
         "services.stock.tls: expected true or false"},
        {R"({"instance_tls": {"ca": "/x"}})", validation_errc::invalid_configuration,
         "instance_tls.ca: unknown field"},
    };
    for (const auto& c : cases) {
        error_code ec;
        diagnostics diag;
        parse(c.text, ec, diag);
        EXPECT_EQ(ec, make_error_code(c.code)) << c.text << " -> " << diag.to_string();
        EXPECT_NE(diag.client_message().find(c.names), std::string::npos)
            << c.text << " -> " << diag.client_message();
    }
}

TEST(mesh_config_json, a_syntax_error_names_its_line_and_column) {
    error_code ec;
    diagnostics diag;
    parse("{\n  \"service\": {\n    \"port\": 80,\n  }\n}", ec, diag);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(diag.client_message().find("line 4"), std::string::npos) << diag.client_message();
}

TEST(mesh_config_json, a_missing_file_is_a_clear_error) {
    error_code ec;
    diagnostics diag;
    mesh_config::from_json_file("/nonexistent/lakemesh.json", ec, diag);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(diag.client_message().find("/nonexistent/lakemesh.json"), std::string::npos);

    const std::string path = ::testing::TempDir() + "lakemesh_mesh_config_test.json";
    std::ofstream(path) << R"({"service": {"name": "x", "port": 1}, "calls": {"timeout": 5}})";
    auto cfg = mesh_config::from_json_file(path, ec, diag);
    EXPECT_FALSE(ec) << diag.to_string();
    EXPECT_EQ(cfg.default_calls.policy.timeout, 5ms);
    std::remove(path.c_str());
}

TEST(call_context, reads_deadline_and_trace_and_ignores_malformed_headers) {
    const auto now = resilience::clock::now();
    mesh::http_request req;
    req.set_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    req.set_header("tracestate", "congo=t61rcWkgMzE");
    req.set_header("X-Lakemesh-Deadline-Ms", "250");
    auto ctx = call_context::from_request(req, now);
    EXPECT_EQ(ctx.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(ctx.tracestate, "congo=t61rcWkgMzE");
    EXPECT_EQ(ctx.deadline.when(), now + 250ms);

    const char* bad_parents[] = {
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // zero trace
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // zero parent
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // v00 with extra
        "garbage",
    };
    for (const char* tp : bad_parents) {
        mesh::http_request r;
        r.set_header("traceparent", tp);
        r.set_header("X-Lakemesh-Deadline-Ms", "-5");
        auto c = call_context::from_request(r, now);
        EXPECT_TRUE(c.traceparent.empty()) << tp;
        EXPECT_FALSE(c.deadline.is_set());
    }
}

}  // namespace
}  // namespace lakemesh

namespace lakemesh {
namespace {

TEST(mesh_config_json, the_admin_endpoint_settings_are_read_and_checked) {
    error_code ec;
    diagnostics diag;
    auto cfg = mesh_config::from_json(R"({"admin": {"enabled": true, "address": "10.0.0.5",
        "port": 9090, "token": "t0k3n", "read_timeout": "2s", "max_connections": 4}})",
                                      ec, diag);
    ASSERT_FALSE(ec) << diag.to_string();
    EXPECT_TRUE(cfg.admin.enabled);
    EXPECT_EQ(cfg.admin.address, "10.0.0.5");
    EXPECT_EQ(cfg.admin.port, 9090);
    EXPECT_EQ(cfg.admin.token, "t0k3n");
    EXPECT_EQ(cfg.admin.read_timeout, std::chrono::milliseconds(2000));
    EXPECT_EQ(cfg.admin.max_connections, 4u);
    EXPECT_EQ(cfg.admin.max_request_bytes, observe::admin_config{}.max_request_bytes);

    cfg = mesh_config::from_json(R"({})", ec, diag);
    ASSERT_FALSE(ec);
    EXPECT_FALSE(cfg.admin.enabled) << "off unless configured";

    cfg = mesh_config::from_json(R"({"admin": {"port": 70000}})", ec, diag);
    EXPECT_TRUE(ec);
    EXPECT_NE(diag.client_message().find("admin.port"), std::string::npos) << diag.to_string();
    cfg = mesh_config::from_json(R"({"admin": {"enable": true}})", ec, diag);
    EXPECT_TRUE(ec);
    EXPECT_NE(diag.client_message().find("admin.enable"), std::string::npos) << diag.to_string();
}

}  // namespace
}  // namespace lakemesh
