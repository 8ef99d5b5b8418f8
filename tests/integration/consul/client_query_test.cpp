// What consul::client puts on the wire for query options (consistency, dc, namespace, filter,
// blocking index and wait, token) and how it reads query meta back, checked against a recording
// loopback server; plus the same options end to end against dev_consul (or a real agent).
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "recording_http_server.hpp"
#include "run_future.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::client;
using consul::client_config;
using consul::consistency_mode;
using consul::query_options;

const auto both = asio::use_future([](error_code ec, auto r) {
    return std::pair{ec, std::move(r)};
});

class client_query : public ::testing::Test {
  protected:
    client_config config() const {
        client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", server.port()}};
        return cfg;
    }
    template <class F>
    auto run(F&& start) {
        return test::run_future(io, std::forward<F>(start));
    }

    recording_http_server server;
    asio::io_context io;
};

TEST_F(client_query, consistency_modes_become_query_flags) {
    server.set_body("[]");
    client c(io, config());
    query_options q;
    q.consistency = consistency_mode::stale;
    run([&] { return c.async_kv_list("a", q, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/a?recurse&stale");
    q.consistency = consistency_mode::consistent;
    run([&] { return c.async_kv_list("a", q, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/a?recurse&consistent");
    q.consistency = consistency_mode::default_mode;
    run([&] { return c.async_kv_list("a", q, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/a?recurse");
}

TEST_F(client_query, config_defaults_apply_and_options_override_them) {
    server.set_body("[]");
    auto cfg = config();
    cfg.consistency = consistency_mode::stale;
    cfg.datacenter = "dc1";
    cfg.namespace_name = "team a";
    client c(io, cfg);
    run([&] { return c.async_kv_keys("p/", "/", both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/p/?keys&separator=%2F&dc=dc1&ns=team%20a&stale");
    query_options q;
    q.datacenter = "dc2";
    q.namespace_name = "b";
    q.consistency = consistency_mode::default_mode;
    run([&] { return c.async_kv_keys("p/", "/", q, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/p/?keys&separator=%2F&dc=dc2&ns=b");
}

TEST_F(client_query, blocking_index_wait_and_filter_are_encoded) {
    server.set_body("[]");
    client c(io, config());
    query_options q;
    q.index = 42;
    q.wait = 1500ms;
    q.filter = "Flags == 3 and Key != \"x&y\"";
    run([&] { return c.async_kv_list("f", q, both); });
    EXPECT_EQ(server.last_target(),
              "/v1/kv/f?recurse&index=42&wait=1500ms&filter=Flags%20%3D%3D%203%20and%20Key%20%21%"
              "3D%20%22x%26y%22");
    // wait without an index means nothing to Consul and is not sent.
    query_options no_index;
    no_index.wait = 5s;
    run([&] { return c.async_kv_list("f", no_index, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/f?recurse");
}

TEST_F(client_query, query_meta_is_read_from_consul_headers) {
    server.set_body("[]");
    server.set_header("X-Consul-Index", "1234");
    server.set_header("X-Consul-KnownLeader", "false");
    server.set_header("X-Consul-LastContact", "250");
    client c(io, config());
    auto [ec, r] = run([&] { return c.async_kv_list("m", both); });
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(r.meta.index, 1234u);
    EXPECT_FALSE(r.meta.known_leader);
    EXPECT_EQ(r.meta.last_contact, 250ms);

    server.set_header("X-Consul-KnownLeader", "true");
    server.set_header("X-Consul-LastContact", "0");
    auto [ec2, r2] = run([&] { return c.async_kv_list("m", both); });
    ASSERT_FALSE(ec2) << ec2.message();
    EXPECT_TRUE(r2.meta.known_leader);
    EXPECT_EQ(r2.meta.last_contact, 0ms);
}

TEST_F(client_query, token_goes_only_in_the_consul_header) {
    server.set_body("[]");
    auto cfg = config();
    cfg.token = "s3cr3t-token";
    client c(io, cfg);
    run([&] { return c.async_kv_list("t", both); });
    EXPECT_EQ(server.last_header("X-Consul-Token"), "s3cr3t-token");
    EXPECT_EQ(server.last_target().find("s3cr3t"), std::string::npos);
    EXPECT_EQ(server.last_header("Authorization"), "");
}

// A client's datacenter and namespace apply to its writes as well as its reads, as in Consul's
// Go client: otherwise a client set to namespace "team-a" would read one namespace and write
// another.
TEST_F(client_query, writes_carry_the_configured_datacenter_and_namespace) {
    auto cfg = config();
    cfg.datacenter = "dc1";
    cfg.namespace_name = "team-a";
    client c(io, cfg);

    server.set_body("true");
    run([&] { return c.async_kv_put("w/k", "v", both); });
    EXPECT_EQ(server.last_method(), "PUT");
    EXPECT_EQ(server.last_target(), "/v1/kv/w/k?dc=dc1&ns=team-a");
    run([&] { return c.async_kv_put("w/k", "v", {.flags = 7, .cas = 3}, both); });
    EXPECT_EQ(server.last_target(), "/v1/kv/w/k?flags=7&cas=3&dc=dc1&ns=team-a");
    run([&] { return c.async_kv_delete("w/", {.recurse = true}, both); });
    EXPECT_EQ(server.last_method(), "DELETE");
    EXPECT_EQ(server.last_target(), "/v1/kv/w/?recurse&dc=dc1&ns=team-a");
    // A write's own options win over the config's.
    run([&] {
        return c.async_kv_put("w/k", "v", {.datacenter = "dc2", .namespace_name = "b"}, both);
    });
    EXPECT_EQ(server.last_target(), "/v1/kv/w/k?dc=dc2&ns=b");

    server.set_body(R"({"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"})");
    run([&] { return c.session().async_create(consul::session_options{}, both); });
    EXPECT_EQ(server.last_target(), "/v1/session/create?dc=dc1&ns=team-a");

    server.set_body(R"({"Results":[{"KV":{"Key":"w/k","Flags":0,"Value":null,"LockIndex":0,)"
                    R"("CreateIndex":1,"ModifyIndex":1}}],"Errors":null})");
    std::vector<consul::txn_kv_op> ops{
        consul::txn_kv_op{.verb = consul::txn_kv_verb::set, .key = "w/k", .value = "v"}};
    run([&] { return c.txn().async_commit(ops, both); });
    EXPECT_EQ(server.last_target(), "/v1/txn?dc=dc1&ns=team-a");

    server.set_body("");
    consul::service_registration reg;
    reg.name = "web";
    run([&] { return c.agent().async_service_register(reg, both); });
    EXPECT_EQ(server.last_target(), "/v1/agent/service/register?dc=dc1&ns=team-a");
    run([&] { return c.agent().async_check_pass("service:web", "ok", both); });
    EXPECT_EQ(server.last_target(), "/v1/agent/check/pass/service%3Aweb?note=ok&dc=dc1&ns=team-a");
}

TEST_F(client_query, http_auth_goes_as_basic_authorization) {
    server.set_body("[]");
    auto cfg = config();
    cfg.token = "tok";
    cfg.http_auth = "user:pass";
    client c(io, cfg);
    run([&] { return c.async_kv_list("t", both); });
    EXPECT_EQ(server.last_header("Authorization"), "Basic dXNlcjpwYXNz");
    EXPECT_EQ(server.last_header("X-Consul-Token"), "tok");
}

// Decode errors reach the caller with the field named, from a 200 answer the client cannot
// use: wrong type, missing field, bad base64, not JSON at all.
TEST_F(client_query, decode_errors_reach_the_caller_naming_the_field) {
    client c(io, config());
    struct bad_answer {
        std::string body;
        error_code expected;
        std::string named;
    };
    for (const auto& b : {
             bad_answer{R"([{"Key":"k","Flags":"x","Value":null,"CreateIndex":1,)"
                        R"("ModifyIndex":1,"LockIndex":0}])",
                        decode_errc::wrong_type, "Flags"},
             bad_answer{R"([{"Flags":0,"Value":null,"CreateIndex":1,"ModifyIndex":1,)"
                        R"("LockIndex":0}])",
                        decode_errc::missing_field, "Key"},
             bad_answer{R"([{"Key":"k","Flags":0,"Value":"@@@@","CreateIndex":1,)"
                        R"("ModifyIndex":1,"LockIndex":0}])",
                        decode_errc::invalid_base64, "Value"},
             bad_answer{"[{\"Key\":", decode_errc::malformed_json, ""},
         }) {
        server.set_body(b.body);
        auto [ec, r] = run([&] { return c.async_kv_list("d", both); });
        EXPECT_EQ(ec, b.expected) << b.body << ": " << ec.message();
        EXPECT_NE(r.diag.to_string().find(b.named), std::string::npos)
            << b.body << ": " << r.diag.to_string();
    }
}

TEST_F(client_query, filter_with_a_newline_is_rejected_before_sending) {
    client c(io, config());
    query_options q;
    q.filter = "Key == \"a\"\r\nX-Evil: 1";
    auto [ec, r] = run([&] { return c.async_kv_list("f", q, both); });
    EXPECT_EQ(ec, make_error_code(validation_errc::header_injection));
    EXPECT_EQ(server.hits.load(), 0);
}

// The same options end to end: every mode answers, with query meta, against dev_consul or a
// real agent.
TEST(client_query_e2e, every_consistency_mode_reads_with_meta) {
    consul_target target;
    asio::io_context io;
    client c(io, target.client_config());
    const std::string key = unique_name("query");
    auto put = c.async_kv_put(key, "v", asio::use_future);
    io.run();
    ASSERT_TRUE(put.get().value);
    for (auto mode :
         {consistency_mode::default_mode, consistency_mode::stale, consistency_mode::consistent}) {
        query_options q;
        q.consistency = mode;
        io.restart();
        auto f = c.async_kv_get(key, q, both);
        io.run();
        auto [ec, r] = f.get();
        ASSERT_FALSE(ec) << ec.message() << " mode " << static_cast<int>(mode);
        ASSERT_TRUE(r.value.has_value());
        EXPECT_EQ(r.value->value, "v");
        EXPECT_GE(r.meta.index, r.value->modify_index);
        EXPECT_TRUE(r.meta.known_leader);
    }
    io.restart();
    auto del = c.async_kv_delete(key, asio::use_future);
    io.run();
    EXPECT_TRUE(del.get().value);
}

}  // namespace
}  // namespace lakemesh::test
