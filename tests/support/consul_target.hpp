// Test support: a raw, synchronous HTTP/1.1 client (so dev_consul is tested without the library's
// own client) and the target that tests talk to: an embedded dev_consul, or a real agent when
// CONSUL_HTTP_ADDR is set. Tests that need fault injection skip against a real agent.
#pragma once

#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace lakemesh::test {

using json = nlohmann::json;

struct http_reply {
    unsigned status = 0;
    std::string body;
    std::map<std::string, std::string> headers;  // lower-case names

    std::optional<std::string> header(const std::string& lower_name) const;
    /// X-Consul-Index, or 0 when absent.
    std::uint64_t index() const;
    json json_body() const { return json::parse(body); }
};

/// One keep-alive connection; reconnects transparently when the server closed it.
class raw_http {
  public:
    raw_http(std::string host, std::uint16_t port, std::string token = {});
    ~raw_http();
    raw_http(raw_http&&) noexcept;
    raw_http& operator=(raw_http&&) noexcept;

    http_reply request(const std::string& method, const std::string& target,
                       const std::string& body = {},
                       const std::map<std::string, std::string>& headers = {});
    http_reply get(const std::string& target) { return request("GET", target); }
    http_reply put(const std::string& target, const std::string& body = {}) {
        return request("PUT", target, body);
    }
    http_reply del(const std::string& target) { return request("DELETE", target); }
    /// Sends raw bytes and reads one response (for malformed-request tests).
    http_reply raw(const std::string& bytes);
    void set_token(std::string token) { token_ = std::move(token); }
    /// Closes the connection (the next request reconnects).
    void disconnect();

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
    std::string token_;
};

/// dev_consul, or the real agent named by CONSUL_HTTP_ADDR.
class consul_target {
  public:
    explicit consul_target(testing::dev_consul_options opts = {});
    /// True when tests run against a real agent.
    static bool real_agent();

    raw_http client() const { return raw_http(host_, port_, token_); }
    /// The ACL token requests need: the real agent's (CONSUL_HTTP_TOKEN or its file) or the
    /// dev agent's acl_token.
    const std::string& token() const { return token_; }
    /// A consul::client configuration for this target: its address, and the real agent's token.
    consul::client_config client_config() const {
        consul::client_config cfg;
        cfg.addresses = {consul::agent_address{host_, port_}};
        if (real_agent()) {
            cfg.token = token_;
        }
        return cfg;
    }
    const std::string& host() const { return host_; }
    std::uint16_t port() const { return port_; }
    std::string address() const { return host_ + ":" + std::to_string(port_); }
    /// The embedded dev agent, or nullptr against a real agent.
    testing::dev_consul* dev() const { return dev_.get(); }
    /// Node name of the agent (from agent/self).
    std::string node_name() const;

    // ---- Stopping and restarting the agent. dev_consul does it itself; a real agent is
    // driven through the command in LAKEMESH_CONSUL_CONTROL, called with one argument (stop,
    // start, restart or restart-clean) and expected to return once the agent is down or ready.
    // The real-agent CI leg sets it only for the suites whose names end in "_agent_restart" or
    // "_exclusive", which it runs one test at a time (they disrupt every other test using the
    // agent).

    /// The test can stop and restart the agent.
    bool can_control() const;
    /// Stops the agent: connections are refused, its state is kept.
    void stop_agent();
    /// Starts it again after stop_agent().
    void start_agent();
    /// Restarts it; keep_state=false loses its catalog, KV and sessions (a fresh data dir), and
    /// the raft index starts over.
    void restart_agent(bool keep_state);

  private:
    std::unique_ptr<testing::dev_consul> dev_;
    std::string host_;
    std::uint16_t port_ = 0;
    std::string token_;
};

/// The error text of a Consul answer, without the "rpc error making call: " that a server adds
/// when it forwarded the request to the leader (a follower of a cluster answers so).
inline std::string server_text(const http_reply& r) {
    constexpr std::string_view forwarded = "rpc error making call: ";
    return r.body.rfind(forwarded, 0) == 0 ? r.body.substr(forwarded.size()) : r.body;
}

/// A KV prefix / name unique to the running test, so tests can share a real agent.
std::string unique_name(const std::string& stem = "t");

/// Polls `pred` every 5 ms until true or `limit` passes. For waiting on server-side timers
/// that the test cannot drive (real agents); returns whether pred became true.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = std::chrono::seconds(5));

}  // namespace lakemesh::test

#define LAKEMESH_NEEDS_DEV(target)                                                   \
    if ((target).dev() == nullptr) {                                                 \
        GTEST_SKIP() << "needs dev_consul fault injection; skipped on a real agent"; \
    }

/// For tests that stop or restart the agent (suites named *_agent_restart).
#define LAKEMESH_NEEDS_CONTROL(target)                                                      \
    if (!(target).can_control()) {                                                          \
        GTEST_SKIP()                                                                        \
            << "stops or restarts the agent: needs dev_consul, or LAKEMESH_CONSUL_CONTROL " \
               "(set by the real-agent leg, which runs these tests one at a time)";         \
    }
