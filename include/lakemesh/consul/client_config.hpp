// Configuration of the Consul HTTP client: plain aggregates with documented defaults.
#pragma once

#include <lakemesh/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::consul {

/// Consistency mode for reads. https://developer.hashicorp.com/consul/api-docs/features/consistency
enum class consistency_mode {
    default_mode,  ///< Leader-leased read; what Consul does without a query parameter.
    stale,         ///< Any server may answer (?stale); fastest, possibly behind.
    consistent,    ///< Leader confirms leadership first (?consistent); slowest.
};

/// TLS settings; used when `client_config::use_tls` is true.
struct tls_config {
    /// PEM file with the CA certificate(s) that signed the agent's certificate
    /// (CONSUL_CACERT). Empty: the system's default verify paths.
    std::string ca_file;
    /// Directory of PEM CA certificates (CONSUL_CAPATH). Empty: none.
    std::string ca_path;
    /// Client certificate for mutual TLS (CONSUL_CLIENT_CERT). Empty: no client certificate.
    std::string cert_file;
    /// Private key of the client certificate (CONSUL_CLIENT_KEY).
    std::string key_file;
    /// Name to send as SNI and to verify the certificate against (CONSUL_TLS_SERVER_NAME).
    /// Empty: the host part of the address.
    std::string server_name;
    /// Verify the agent's certificate (CONSUL_HTTP_SSL_VERIFY). Turning it off is logged
    /// loudly at warn level on every connection pool start.
    bool verify = true;
};

/// One Consul agent address as host and port.
struct agent_address {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8500;

    std::string to_string() const;
    friend bool operator==(const agent_address&, const agent_address&) = default;
};

/// Looks an environment variable up; returns nullopt when unset. Injectable for tests.
using env_lookup = std::function<std::optional<std::string>(std::string_view name)>;

/// Everything the client needs to reach Consul.
struct client_config {
    /// Agents to talk to, in order of preference; the client fails over to the next one on
    /// connection errors. Default: the local agent on 127.0.0.1:8500.
    std::vector<agent_address> addresses{agent_address{}};
    /// Use HTTPS (CONSUL_HTTP_SSL, or an https:// CONSUL_HTTP_ADDR).
    bool use_tls = false;
    tls_config tls;
    /// ACL token sent as X-Consul-Token (CONSUL_HTTP_TOKEN). Empty: no token.
    /// Never logged, never put in a URL. CONSUL_HTTP_TOKEN_FILE, when it names a non-empty file,
    /// wins over CONSUL_HTTP_TOKEN, as in Consul's own clients.
    std::string token;
    /// HTTP basic authentication as "user:password" (CONSUL_HTTP_AUTH), for agents behind a proxy
    /// that asks for it; sent as an Authorization header. Empty: none. Never logged.
    std::string http_auth;
    /// Datacenter for requests (?dc=). Empty: the agent's own datacenter.
    std::string datacenter;
    /// Consul Enterprise namespace (?ns=, CONSUL_NAMESPACE), for reads and writes alike. Empty:
    /// the default namespace. Consul CE refuses any namespace with a 400.
    std::string namespace_name;
    /// Consistency mode of reads unless a query overrides it.
    consistency_mode consistency = consistency_mode::default_mode;
    /// Time allowed to establish a connection (TCP + TLS). Zero: no limit.
    std::chrono::milliseconds connect_timeout{5000};
    /// Time allowed for one non-blocking request. Blocking queries get their wait time plus
    /// this on top. Zero: no limit.
    std::chrono::milliseconds request_timeout{30000};
    /// Largest response body accepted; larger bodies fail with decode_errc::body_too_large.
    std::size_t max_response_body = 64u * 1024u * 1024u;
    /// Keep-alive connections kept per agent address.
    std::size_t pool_size_per_address = 16;

    /// Reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_AUTH,
    /// CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,
    /// CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY and CONSUL_NAMESPACE on top of the
    /// defaults. A malformed value, or a token file that cannot be read, sets
    /// validation_errc::invalid_environment and names the variable in `diag`.
    static client_config from_env(error_code& ec, diagnostics& diag);
    /// Same, reading variables through `lookup`.
    static client_config from_env(const env_lookup& lookup, error_code& ec, diagnostics& diag);
    /// Same, throwing lakemesh::error on a malformed value.
    static client_config from_env();

    /// Checks consistency (at least one address, non-zero pool size, ...).
    error_code validate(diagnostics& diag) const;
};

/// Parses "host:port", "http://host:port", "https://host:port" or "[::1]:port".
/// `tls` is set to true for https and left alone otherwise. The default port is 8500.
std::optional<agent_address> parse_agent_address(std::string_view text, bool* tls = nullptr);

}  // namespace lakemesh::consul
