// ACL enforcement and HTTP-level behaviour of dev_consul: 403s, 404/405, keep-alive, bad requests.
#include "consul_target.hpp"

namespace lakemesh::test {
namespace {

testing::dev_consul_options with_token(std::string token) {
    testing::dev_consul_options o;
    o.acl_token = std::move(token);
    return o;
}

TEST(acl, requests_without_the_right_token_get_403) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV(target);
    raw_http anon(target.host(), target.port());
    auto r = anon.get("/v1/kv/x");
    EXPECT_EQ(r.status, 403u);
    EXPECT_NE(r.body.find("Permission denied"), std::string::npos);
    EXPECT_EQ(anon.put("/v1/kv/x", "v").status, 403u);
    EXPECT_EQ(anon.get("/v1/agent/self").status, 403u);

    raw_http wrong(target.host(), target.port(), "not-the-token");
    auto w = wrong.get("/v1/kv/x");
    EXPECT_EQ(w.status, 403u);
    EXPECT_EQ(w.body, "ACL not found");
    // Nothing was written by the rejected PUT.
    raw_http good(target.host(), target.port(), "root-token");
    EXPECT_EQ(good.get("/v1/kv/x").status, 404u);
}

TEST(acl, token_is_accepted_from_header_bearer_and_query) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV(target);
    raw_http c(target.host(), target.port());
    EXPECT_EQ(c.request("PUT", "/v1/kv/a", "1", {{"X-Consul-Token", "root-token"}}).status, 200u);
    EXPECT_EQ(c.request("GET", "/v1/kv/a", "", {{"Authorization", "Bearer root-token"}}).status,
              200u);
    EXPECT_EQ(c.get("/v1/kv/a?token=root-token").status, 200u);
    EXPECT_EQ(c.get("/v1/kv/a?token=nope").status, 403u);
}

TEST(acl, status_endpoints_need_no_token) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV(target);
    raw_http anon(target.host(), target.port());
    auto leader = anon.get("/v1/status/leader");
    EXPECT_EQ(leader.status, 200u);
    EXPECT_EQ(leader.json_body().get<std::string>(), "127.0.0.1:8300");
    EXPECT_EQ(anon.get("/v1/status/peers").json_body(), json::array({"127.0.0.1:8300"}));
}

TEST(http, unknown_paths_404_wrong_methods_405) {
    consul_target target;
    auto c = target.client();
    EXPECT_EQ(c.get("/v1/no/such/endpoint").status, 404u);
    EXPECT_EQ(c.get("/v2/kv/a").status, 404u);
    EXPECT_EQ(c.request("POST", "/v1/status/leader").status, 405u);
}

// Consul CE refuses a namespace (query or header) on the endpoints that read one, before the ACL
// check, and writes nothing. Runs against a real agent too, which must then be CE.
TEST(http, a_namespace_is_refused_as_consul_ce_does) {
    consul_target target;
    auto c = target.client();
    const std::string key = "/v1/kv/" + unique_name("ns");
    auto put = c.put(key + "?ns=team-a", "v");
    EXPECT_EQ(put.status, 400u);
    EXPECT_NE(
        put.body.find(R"(query parameter: "ns" - Namespaces are a Consul Enterprise feature)"),
        std::string::npos)
        << put.body;
    EXPECT_EQ(c.get(key).status, 404u);
    auto hdr = c.request("GET", key, "", {{"X-Consul-Namespace", "team-a"}});
    EXPECT_EQ(hdr.status, 400u);
    EXPECT_NE(hdr.body.find(R"(header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise)"),
              std::string::npos)
        << hdr.body;
    // An empty ns is no namespace; status endpoints do not read one.
    EXPECT_EQ(c.get(key + "?ns=").status, 404u);
    EXPECT_EQ(c.get("/v1/status/leader?ns=b").status, 200u);
}

TEST(http, keep_alive_serves_many_requests_on_one_connection) {
    consul_target target;
    LAKEMESH_NEEDS_DEV(target);
    auto c = target.client();
    auto before = target.dev()->requests_served();
    for (int i = 0; i < 50; ++i) {
        auto r = c.get("/v1/status/leader");
        ASSERT_EQ(r.status, 200u);
        EXPECT_NE(r.header("connection"), "close");
    }
    EXPECT_EQ(target.dev()->requests_served() - before, 50u);
}

TEST(http, oversized_body_is_413_and_nothing_is_stored) {
    testing::dev_consul_options o;
    o.max_request_body = 1024;
    consul_target target(o);
    LAKEMESH_NEEDS_DEV(target);
    auto c = target.client();
    auto r = c.put("/v1/kv/big", std::string(4096, 'x'));
    EXPECT_EQ(r.status, 413u);
    EXPECT_EQ(c.get("/v1/kv/big").status, 404u);
}

TEST(http, malformed_request_line_does_not_crash_the_server) {
    consul_target target;
    LAKEMESH_NEEDS_DEV(target);
    {
        auto c = target.client();
        EXPECT_THROW(c.raw("THIS IS NOT HTTP\r\n\r\n"), std::exception);
    }
    {
        auto c = target.client();
        EXPECT_THROW(c.raw("GET /v1/kv/a HTTP/1.1\r\nContent-Length: nope\r\n\r\n"),
                     std::exception);
    }
    auto c = target.client();
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
}

}  // namespace
}  // namespace lakemesh::test
