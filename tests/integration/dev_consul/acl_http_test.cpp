// ACL enforcement and HTTP-level behaviour of dev_consul: 403s, 404/405, keep-alive, bad requests,
// and the framing of answers as Go's net/http server writes them.
#include "dev_hook.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace lakemesh::test {
namespace {

testing::dev_consul_options with_token(std::string token) {
    testing::dev_consul_options o;
    o.acl_token = std::move(token);
    return o;
}

TEST(acl, requests_without_the_right_token_get_403) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV_HOOK(target, "acl_token option");
    raw_http anon(target.host(), target.port());
    auto r = anon.get("/v1/kv/x");
    EXPECT_EQ(r.status, 403u);
    EXPECT_EQ(r.body, "Permission denied");
    EXPECT_EQ(r.header("x-consul-default-acl-policy"), "deny");
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

// Default-deny ACLs filter what the anonymous token reads (listings come back empty, with their
// index) and refuse its writes, as a Consul 1.10 agent with acl.default_policy = "deny" does.
TEST(acl, anonymous_listings_are_filtered_and_writes_refused) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV_HOOK(target, "acl_token option");
    raw_http root(target.host(), target.port(), "root-token");
    ASSERT_EQ(root.put("/v1/agent/service/register", json{{"Name", "web"}}.dump()).status, 200u);
    ASSERT_EQ(root.put("/v1/kv/k", "v").status, 200u);
    raw_http anon(target.host(), target.port());
    const auto services = anon.get("/v1/catalog/services");
    EXPECT_EQ(services.status, 200u);
    EXPECT_EQ(services.json_body(), json::object());
    EXPECT_GT(services.index(), 0u);
    EXPECT_EQ(anon.get("/v1/health/service/web").json_body(), json::array());
    EXPECT_EQ(anon.get("/v1/agent/services").json_body(), json::object());
    EXPECT_EQ(anon.get("/v1/agent/members").json_body(), json::array());
    EXPECT_TRUE(anon.get("/v1/catalog/node/" + target.dev()->node_name()).json_body().is_null());
    EXPECT_EQ(anon.get("/v1/kv/?recurse").status, 404u);
    EXPECT_EQ(anon.get("/v1/kv/?keys").json_body(), json::array());
    EXPECT_EQ(anon.get("/v1/kv/k").status, 403u);
    EXPECT_EQ(anon.get("/v1/catalog/datacenters").status, 200u);
    auto unknown = anon.put("/v1/agent/service/deregister/none");
    EXPECT_EQ(unknown.status, 500u);
    EXPECT_EQ(unknown.body, "Unknown service \"none\"");
    auto known = anon.put("/v1/agent/service/deregister/web");
    EXPECT_EQ(known.status, 403u);
    EXPECT_EQ(known.body, "Permission denied");
    auto txn = anon.put("/v1/txn", R"([{"KV":{"Verb":"set","Key":"k"}}])");
    EXPECT_EQ(txn.status, 409u);
    EXPECT_EQ(txn.json_body()["Errors"][0]["What"], "Permission denied");
    EXPECT_EQ(root.get("/v1/catalog/services").json_body()["web"], json::array());
}

TEST(acl, token_is_accepted_from_header_bearer_and_query) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV_HOOK(target, "acl_token option");
    raw_http c(target.host(), target.port());
    EXPECT_EQ(c.request("PUT", "/v1/kv/a", "1", {{"X-Consul-Token", "root-token"}}).status, 200u);
    EXPECT_EQ(c.request("GET", "/v1/kv/a", "", {{"Authorization", "Bearer root-token"}}).status,
              200u);
    EXPECT_EQ(c.get("/v1/kv/a?token=root-token").status, 200u);
    EXPECT_EQ(c.get("/v1/kv/a?token=nope").status, 403u);
}

TEST(acl, status_endpoints_need_no_token) {
    consul_target target(with_token("root-token"));
    LAKEMESH_NEEDS_DEV_HOOK(target, "acl_token option");
    raw_http anon(target.host(), target.port());
    auto leader = anon.get("/v1/status/leader");
    EXPECT_EQ(leader.status, 200u);
    EXPECT_EQ(leader.json_body().get<std::string>(), "127.0.0.1:8300");
    EXPECT_EQ(anon.get("/v1/status/peers").json_body(), json::array({"127.0.0.1:8300"}));
}

TEST(http, unknown_paths_404_wrong_methods_405_options_200) {
    consul_target target;
    auto c = target.client();
    // Consul's index handler: an empty 404 with no Content-Type.
    auto none = c.get("/v1/no/such/endpoint");
    EXPECT_EQ(none.status, 404u);
    EXPECT_EQ(none.body, "");
    EXPECT_FALSE(none.header("content-type").has_value());
    EXPECT_FALSE(none.header("vary").has_value());
    EXPECT_EQ(c.get("/v2/kv/a").status, 404u);
    auto post = c.request("POST", "/v1/status/leader");
    EXPECT_EQ(post.status, 405u);
    EXPECT_EQ(post.body, "method POST not allowed");
    EXPECT_EQ(post.header("allow"), "OPTIONS,GET");
    auto options = c.request("OPTIONS", "/v1/kv/a");
    EXPECT_EQ(options.status, 200u);
    EXPECT_EQ(options.header("allow"), "OPTIONS,GET,PUT,DELETE");
    EXPECT_EQ(options.body, "");
}

// Go's ServeMux cleans paths and sends "/tree" to "/tree/" with a 301.
TEST(http, unclean_paths_are_redirected_as_go_serve_mux_does) {
    consul_target target;
    auto c = target.client();
    auto slashes = c.get("/v1/kv//a?raw");
    EXPECT_EQ(slashes.status, 301u);
    EXPECT_EQ(slashes.header("location"), "/v1/kv/a?raw");
    EXPECT_EQ(slashes.header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(slashes.body, "<a href=\"/v1/kv/a?raw\">Moved Permanently</a>.\n\n");
    auto tree = c.get("/v1/kv");
    EXPECT_EQ(tree.status, 301u);
    EXPECT_EQ(tree.header("location"), "/v1/kv/");
    auto root = c.get("/");
    EXPECT_EQ(root.status, 301u);
    EXPECT_EQ(root.header("location"), "/ui/");
}

// A query url.ParseQuery refuses (a bad escape, a semicolon) is a bare 500 from Consul.
TEST(http, a_query_go_cannot_parse_is_an_empty_500) {
    consul_target target;
    auto c = target.client();
    for (const std::string q : {"?x=%zz", "?a;b", "?flags=%"}) {
        auto r = c.get("/v1/kv/" + unique_name("q") + q);
        EXPECT_EQ(r.status, 500u) << q;
        EXPECT_EQ(r.body, "") << q;
    }
    auto stale = c.get("/v1/kv/" + unique_name("q") + "?stale&consistent");
    EXPECT_EQ(stale.status, 400u);
    EXPECT_EQ(stale.body, "Cannot specify ?stale with ?consistent, conflicting semantics.");
}

namespace asio = boost::asio;

/// Sends `request` on a fresh connection and reads until the server closes it.
std::string raw_exchange(const consul_target& target, const std::string& request) {
    asio::io_context io;
    asio::ip::tcp::socket s(io);
    s.connect({asio::ip::make_address(target.host()), target.port()});
    asio::write(s, asio::buffer(request));
    std::string out;
    boost::system::error_code ec;
    asio::read(s, asio::dynamic_buffer(out), ec);
    return out;
}

// Header names as Go canonicalises them, sorted, then Date and the framing.
TEST(http, headers_are_spelled_and_ordered_as_go_writes_them) {
    consul_target target;
    auto c = target.client();
    const auto key = unique_name("hdr");
    ASSERT_EQ(c.put("/v1/kv/" + key, "v").status, 200u);
    const auto raw = raw_exchange(
        target, "GET /v1/kv/" + key + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const auto head = raw.substr(0, raw.find("\r\n\r\n") + 2);
    std::vector<std::string> names;
    for (std::size_t at = head.find("\r\n") + 2; at < head.size();) {
        const auto end = head.find("\r\n", at);
        const auto line = head.substr(at, end - at);
        names.push_back(line.substr(0, line.find(':')));
        at = end + 2;
    }
    EXPECT_EQ(names, (std::vector<std::string>{
                         "Content-Type", "Vary", "X-Consul-Default-Acl-Policy", "X-Consul-Index",
                         "X-Consul-Knownleader", "X-Consul-Lastcontact", "X-Consul-Query-Backend",
                         "Date", "Content-Length", "Connection"}))
        << head;
    EXPECT_NE(head.find("\r\nConnection: close\r\n"), std::string::npos);
    c.del("/v1/kv/" + key);
    // A long answer goes out chunked, as Go sends what does not fit its 2 KiB buffer.
    auto self = c.get("/v1/agent/self");
    EXPECT_EQ(self.header("transfer-encoding"), "chunked");
    EXPECT_FALSE(self.header("content-length").has_value());
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
    LAKEMESH_NEEDS_DEV_HOOK(target, "requests_served()");
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
    LAKEMESH_NEEDS_DEV_HOOK(target, "max_request_body option");
    auto c = target.client();
    auto r = c.put("/v1/kv/big", std::string(4096, 'x'));
    EXPECT_EQ(r.status, 413u);
    EXPECT_EQ(c.get("/v1/kv/big").status, 404u);
}

// Go's server answers what it cannot read with a bare 400 and closes the connection.
TEST(http, malformed_requests_get_gos_bare_400_and_the_server_goes_on) {
    consul_target target;
    const std::string refusal =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: "
        "close\r\n\r\n400 Bad Request";
    EXPECT_EQ(raw_exchange(target, "THIS IS NOT HTTP\r\n\r\n"), refusal);
    EXPECT_EQ(
        raw_exchange(target, "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
        refusal);
    EXPECT_EQ(raw_exchange(target, "GET /v1/kv/%zz HTTP/1.1\r\nHost: x\r\n\r\n"), refusal);
    EXPECT_EQ(raw_exchange(target, "GET /v1/status/leader HTTP/1.1\r\n\r\n"),
              "HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; "
              "charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host "
              "header");
    auto c = target.client();
    EXPECT_EQ(c.get("/v1/status/leader").status, 200u);
}

}  // namespace
}  // namespace lakemesh::test
