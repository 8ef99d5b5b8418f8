// Path and header injection refused before sending: every key, ID and name the Consul client
// puts into a URL path (KV keys, service, check and session IDs, service and node names), and
// the tags and datacenter it puts into the query, are checked for CR, LF and NUL, and those in
// the path for ".", ".." and empty segments (Consul's Go server cleans such a path and answers
// 301 to the cleaned one, so "a/../b" or "a//b" would reach another key). A recording server proves
// that nothing reached the wire, not even a connection; keys that merely contain dots still work,
// against dev_consul or a real agent.
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "recording_http_server.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <optional>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::client;

using done_fn = std::function<void(error_code, const diagnostics&)>;

/// One client operation taking one piece of text that goes into the request.
struct api_input {
    const char* operation;
    /// The name the diagnostics must give the field.
    const char* field;
    /// The text goes into the URL path (so dot-segments are refused too).
    bool in_path;
    std::function<void(client&, const std::string&, done_fn)> start;
};

auto reply(done_fn done) {
    return [done = std::move(done)](error_code ec, const auto& r) { done(ec, r.diag); };
}

std::vector<api_input> inputs() {
    return {
        {"kv get", "KV key", true,
         [](client& c, const std::string& v, done_fn d) { c.async_kv_get(v, reply(d)); }},
        {"kv put", "KV key", true,
         [](client& c, const std::string& v, done_fn d) { c.async_kv_put(v, "value", reply(d)); }},
        {"kv delete", "KV key", true,
         [](client& c, const std::string& v, done_fn d) { c.async_kv_delete(v, reply(d)); }},
        {"kv list", "KV key", true,
         [](client& c, const std::string& v, done_fn d) { c.async_kv_list(v, reply(d)); }},
        {"service deregister", "service ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.agent().async_service_deregister(v, reply(d));
         }},
        {"service maintenance", "service ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.agent().async_service_maintenance(v, true, "r", reply(d));
         }},
        {"service register (ID)", "service ID", true,
         [](client& c, const std::string& v, done_fn d) {
             consul::service_registration reg;
             reg.name = "web";
             reg.id = v;
             c.agent().async_service_register(reg, reply(d));
         }},
        {"service register (name)", "service name", true,
         [](client& c, const std::string& v, done_fn d) {
             consul::service_registration reg;
             reg.name = v;
             c.agent().async_service_register(reg, reply(d));
         }},
        {"service register (tag)", "service tag", false,
         [](client& c, const std::string& v, done_fn d) {
             consul::service_registration reg;
             reg.name = "web";
             reg.tags = {"ok", v};
             c.agent().async_service_register(reg, reply(d));
         }},
        {"check deregister", "check ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.agent().async_check_deregister(v, reply(d));
         }},
        {"check pass", "check ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.agent().async_check_pass(v, "note", reply(d));
         }},
        {"check update", "check ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.agent().async_check_update(v, consul::check_status::passing, "out", reply(d));
         }},
        {"session info", "session ID", true,
         [](client& c, const std::string& v, done_fn d) { c.session().async_info(v, reply(d)); }},
        {"session renew", "session ID", true,
         [](client& c, const std::string& v, done_fn d) { c.session().async_renew(v, reply(d)); }},
        {"session destroy", "session ID", true,
         [](client& c, const std::string& v, done_fn d) {
             c.session().async_destroy(v, reply(d));
         }},
        {"sessions of a node", "node name", true,
         [](client& c, const std::string& v, done_fn d) { c.session().async_node(v, reply(d)); }},
        {"catalog service", "service name", true,
         [](client& c, const std::string& v, done_fn d) {
             c.catalog().async_service(v, reply(d));
         }},
        {"catalog service (tag)", "tag", false,
         [](client& c, const std::string& v, done_fn d) {
             c.catalog().async_service("web", v, consul::query_options{}, reply(d));
         }},
        {"catalog node", "node name", true,
         [](client& c, const std::string& v, done_fn d) { c.catalog().async_node(v, reply(d)); }},
        {"health service", "service name", true,
         [](client& c, const std::string& v, done_fn d) { c.health().async_service(v, reply(d)); }},
        {"health service (tag)", "tag", false,
         [](client& c, const std::string& v, done_fn d) {
             consul::health_service_options o;
             o.tags = {v};
             c.health().async_service("web", o, reply(d));
         }},
        {"health checks", "service name", true,
         [](client& c, const std::string& v, done_fn d) { c.health().async_checks(v, reply(d)); }},
        {"health node", "node name", true,
         [](client& c, const std::string& v, done_fn d) { c.health().async_node(v, reply(d)); }},
        {"kv get (datacenter)", "datacenter", false,
         [](client& c, const std::string& v, done_fn d) {
             consul::query_options q;
             q.datacenter = v;
             c.async_kv_get("k", q, reply(d));
         }},
        {"kv get (namespace)", "namespace", false,
         [](client& c, const std::string& v, done_fn d) {
             consul::query_options q;
             q.namespace_name = v;
             c.async_kv_get("k", q, reply(d));
         }},
    };
}

struct bad_text {
    std::string text;
    validation_errc expected;
    bool unclean_path;
};

std::vector<bad_text> bad_texts() {
    return {
        {"a\r\nX-Injected: 1", validation_errc::header_injection, false},
        {"a\nb", validation_errc::header_injection, false},
        {"a\rb", validation_errc::header_injection, false},
        {std::string("a\0b", 3), validation_errc::control_character, false},
        {"a/../b", validation_errc::unclean_path, true},
        {"../x", validation_errc::unclean_path, true},
        {"a/./b", validation_errc::unclean_path, true},
        {"a/..", validation_errc::unclean_path, true},
        {"..", validation_errc::unclean_path, true},
        {".", validation_errc::unclean_path, true},
        // Go cleans "//" too (301 to the path without it): another key or ID.
        {"a//b", validation_errc::unclean_path, true},
    };
}

std::string printable(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (static_cast<unsigned char>(c) < 0x20) {
            out += "\\x" + std::to_string(static_cast<int>(c));
        } else {
            out += c;
        }
    }
    return out;
}

class security_injection : public ::testing::Test {
  protected:
    recording_http_server server;
    asio::io_context io;

    client make_client() {
        consul::client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", server.port()}};
        return client(io, cfg);
    }

    std::pair<error_code, diagnostics> run(const api_input& in, client& c,
                                           const std::string& text) {
        std::optional<std::pair<error_code, diagnostics>> out;
        in.start(c, text, [&](error_code ec, const diagnostics& d) { out.emplace(ec, d); });
        io.restart();
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!out && std::chrono::steady_clock::now() < deadline) {
            io.run_one_for(10ms);
        }
        EXPECT_TRUE(out) << in.operation << " did not complete";
        return out.value_or(std::pair{error_code(asio::error::timed_out), diagnostics{}});
    }
};

TEST_F(security_injection, every_field_refuses_cr_lf_nul_and_unclean_paths_before_sending) {
    auto c = make_client();
    int refused = 0;
    for (const auto& in : inputs()) {
        for (const auto& bad : bad_texts()) {
            if (bad.unclean_path && !in.in_path) {
                continue;
            }
            const auto [ec, diag] = run(in, c, bad.text);
            const auto where = std::string(in.operation) + " with '" + printable(bad.text) + "'";
            EXPECT_EQ(ec, bad.expected) << where << ": " << ec.message();
            EXPECT_EQ(ec.category(), make_error_code(validation_errc::invalid_argument).category())
                << where;
            EXPECT_NE(diag.client_message().find(in.field), std::string::npos)
                << where << ": the diagnostics must name the field '" << in.field
                << "', got: " << diag.client_message();
            EXPECT_NE(ec.message().find("nothing was sent"), std::string::npos) << where;
            ++refused;
        }
    }
    EXPECT_GT(refused, 150);
    EXPECT_EQ(server.accepted.load(), 0) << "a refused request must not even connect";
    EXPECT_EQ(server.hits.load(), 0);
    EXPECT_TRUE(server.requests().empty());

    // The same client still works: the refusals left it usable, and the server is reachable.
    server.set_body("[]");
    const auto [ec, diag] = run(inputs()[3], c, "fine/prefix");
    EXPECT_FALSE(ec) << ec.message() << ": " << diag.to_string();
    EXPECT_EQ(server.hits.load(), 1);
    EXPECT_EQ(server.last_target(), "/v1/kv/fine/prefix?recurse");
}

TEST_F(security_injection, names_and_keys_that_merely_contain_dots_go_out_unchanged) {
    auto c = make_client();
    server.set_body("true");
    const auto put = inputs()[1];
    for (const std::string key :
         {"a..b", "a/.hidden", "v1.2", "a/..b", "a/b.", "...", "a/.../b", "x/.well-known"}) {
        const auto [ec, diag] = run(put, c, key);
        EXPECT_FALSE(ec) << key << ": " << ec.message() << " " << diag.to_string();
        EXPECT_EQ(server.last_target(), "/v1/kv/" + key) << key;
    }
    server.set_body("");
    const auto dereg = inputs()[4];
    for (const std::string id : {"web.1", "..web", "web..", "svc:.v2"}) {
        const auto [ec, diag] = run(dereg, c, id);
        EXPECT_FALSE(ec) << id << ": " << ec.message() << " " << diag.to_string();
    }
    EXPECT_EQ(server.last_target(), "/v1/agent/service/deregister/svc%3A.v2");
}

// Against dev_consul or the real agent: keys with dots round-trip, each to its own key.
TEST(security_injection_e2e, keys_with_dots_round_trip) {
    consul_target target;
    asio::io_context io;
    client c(io, target.client_config());
    const std::string prefix = unique_name("dots");
    const std::vector<std::string> keys = {prefix + "/a..b", prefix + "/.hidden", prefix + "/v1.2",
                                           prefix + "/a/..b", prefix + "/..."};
    for (const auto& k : keys) {
        std::optional<error_code> put;
        c.async_kv_put(k, "value of " + k, [&](error_code ec, auto) { put = ec; });
        io.restart();
        io.run();
        ASSERT_TRUE(put);
        EXPECT_FALSE(*put) << k << ": " << put->message();
    }
    for (const auto& k : keys) {
        std::optional<std::pair<error_code, std::optional<consul::kv_pair>>> got;
        c.async_kv_get(k, [&](error_code ec, auto r) { got.emplace(ec, r.value); });
        io.restart();
        io.run();
        ASSERT_TRUE(got);
        ASSERT_FALSE(got->first) << k << ": " << got->first.message();
        ASSERT_TRUE(got->second) << k << " was not found";
        EXPECT_EQ(got->second->key, k);
        EXPECT_EQ(got->second->value, "value of " + k);
    }
    std::optional<std::pair<error_code, std::vector<std::string>>> listed;
    c.async_kv_keys(prefix + "/", "", [&](error_code ec, auto r) { listed.emplace(ec, r.value); });
    io.restart();
    io.run();
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->second.size(), keys.size()) << "each key is a key of its own";
    std::optional<error_code> del;
    consul::kv_delete_options all;
    all.recurse = true;
    c.async_kv_delete(prefix + "/", all, [&](error_code ec, auto) { del = ec; });
    io.restart();
    io.run();
}

}  // namespace
}  // namespace lakemesh::test
