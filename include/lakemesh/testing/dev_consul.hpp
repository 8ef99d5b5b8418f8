// lakemesh::testing::dev_consul: an in-process, Consul-API-compatible dev agent for tests,
// examples and demos. A real HTTP/1.1 server (Boost.Beast, keep-alive) on one io_context run by
// one background thread per cluster. It behaves like `consul agent -dev` on every endpoint the
// library uses; see the endpoint table in README.md.
//
// Thread safety: every member function may be called from any thread except the dev agent's own
// io thread (they synchronise with it).
#pragma once

#include <lakemesh/observe/log.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lakemesh::testing {

struct dev_consul_options {
    /// Interface to listen on. Tests must stay on loopback.
    std::string bind_address = "127.0.0.1";
    /// Port to listen on; 0 picks a free one (read it back with port()).
    std::uint16_t port = 0;
    /// Datacenter name reported by agent/self and catalog/datacenters.
    std::string datacenter = "dc1";
    /// This agent's node name. Empty: "dev-<port>".
    std::string node_name;
    /// When non-empty, ACLs are on with a default-deny policy and this is the one token that may
    /// do everything (sent as X-Consul-Token, Authorization: Bearer, or ?token=). As Consul
    /// does, a request without a token gets empty catalog, health, agent and session listings
    /// and 403 "Permission denied" for the rest; a wrong token gets 403 "ACL not found";
    /// status/* and catalog/datacenters need none.
    std::string acl_token;
    /// Largest request body accepted (Consul's http_max_request_bytes default is 4 MiB...
    /// KV values are additionally limited to kv_max_value_size).
    std::size_t max_request_body = 4u * 1024u * 1024u;
    /// Largest KV value (Consul's kv_max_value_size default: 512 KiB).
    std::size_t kv_max_value_size = 512u * 1024u;
    /// HTTPS: PEM certificate chain and key. Both empty: plain HTTP.
    std::string tls_cert_file;
    std::string tls_key_file;
    /// HTTPS only: when non-empty, clients must present a certificate that this PEM CA file
    /// verifies, or the handshake fails (Consul's verify_incoming).
    std::string tls_client_ca_file;
    /// Script checks (Args) registered through the HTTP API are accepted and run by the agent,
    /// as with Consul's enable_script_checks. Off by default, as in Consul.
    bool enable_script_checks = false;
    /// Consul's enable_local_script_checks: script checks only from the agent's own
    /// configuration files. dev_consul has none, so API registrations stay refused; kept so
    /// that the program accepts the setting as Consul does.
    bool enable_local_script_checks = false;
    /// JSON layout. Consul in -dev mode indents every JSON answer (four spaces, then a newline);
    /// false answers compact JSON as an agent outside -dev mode does, unless asked ?pretty.
    bool pretty_json = true;
    /// How often TTL checks, session TTLs and DeregisterCriticalServiceAfter are evaluated.
    std::chrono::milliseconds reap_interval{50};
    /// Where the dev agent logs. Default: nowhere.
    observe::logger log;
};

/// Kinds of injected failure for fail_next().
enum class dev_fault {
    http_500,         ///< Answer 500 with a Consul-like error body.
    drop_connection,  ///< Close the connection without answering.
};

namespace detail {
class dev_cluster_core;
class dev_agent;
}  // namespace detail

class dev_consul {
  public:
    /// Starts a new single-agent dev cluster and begins listening before returning.
    explicit dev_consul(dev_consul_options opts = {});
    /// Starts another agent that shares `peer`'s catalog, KV and sessions (a dev cluster):
    /// its own port, node name and serfHealth check.
    dev_consul(dev_consul& peer, dev_consul_options opts);
    ~dev_consul();
    dev_consul(const dev_consul&) = delete;
    dev_consul& operator=(const dev_consul&) = delete;

    /// "127.0.0.1:PORT"
    std::string address() const;
    /// "http://127.0.0.1:PORT" or "https://..."
    std::string url() const;
    std::uint16_t port() const;
    const std::string& node_name() const;
    const std::string& datacenter() const;

    /// Stops listening and closes every connection. The node's serfHealth check turns critical,
    /// which invalidates sessions bound to it (models the loss of a machine).
    void stop();
    /// Listens again on the same port; serfHealth returns to passing.
    void start();
    bool running() const;

    // ---- Fault injection (a C++ API for tests, not part of Consul's HTTP API).

    /// Stop and start again. keep_state=false models a dev agent losing its state: catalog, KV
    /// and sessions are wiped and the raft index starts over (indexes go backwards).
    void restart(bool keep_state);
    /// Adds `delay` before every answer.
    void set_latency(std::chrono::milliseconds delay);
    /// The next `count` requests fail with `kind`.
    void fail_next(std::size_t count, dev_fault kind = dev_fault::http_500);
    /// While paused, requests are read but not answered; resume() answers them.
    void pause();
    void resume();
    /// Moves the cluster's clock forward (TTL checks, session TTLs, lock delays and
    /// DeregisterCriticalServiceAfter all follow it) and evaluates expiries at once.
    void advance_clock(std::chrono::milliseconds d);

    // ---- Introspection for tests.

    /// Blocking queries currently held by this cluster.
    std::size_t blocking_queries() const;
    /// Requests answered by this agent so far.
    std::uint64_t requests_served() const;
    /// HTTPS: the server name (SNI) the last client sent in its TLS handshake; empty when it
    /// sent none or no handshake has completed.
    std::string last_tls_server_name() const;
    /// The cluster's current raft index.
    std::uint64_t current_index() const;

  private:
    std::shared_ptr<detail::dev_cluster_core> core_;
    std::shared_ptr<detail::dev_agent> agent_;
};

}  // namespace lakemesh::testing
