// lakemesh error model: one enum per domain, categories whose messages say what to do,
// a diagnostics object carrying the server's own words, and one retryability classifier.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <string>
#include <string_view>
#include <type_traits>

namespace lakemesh {

using error_code = boost::system::error_code;

/// Failures to reach or talk to an agent. Mostly transient.
enum class transport_errc {
    connect_failed = 1,    ///< TCP connect failed (agent down, wrong address, port closed).
    connection_closed,     ///< The peer closed the connection in the middle of an exchange.
    timeout,               ///< Connect or request timed out.
    resolve_failed,        ///< Host name did not resolve.
    tls_handshake_failed,  ///< TLS handshake failed for a reason other than verification.
    tls_verify_failed,     ///< The server certificate was not trusted.
    all_addresses_failed,  ///< Every configured agent address failed.
    protocol_error,        ///< The peer did not speak HTTP/1.1 correctly.
};

/// Non-2xx HTTP statuses from Consul. The numeric HTTP status is kept in `diagnostics`.
enum class consul_errc {
    bad_request = 1,           ///< 400: Consul rejected the request's parameters or body.
    permission_denied,         ///< 403: ACL token missing or lacking a permission.
    not_found,                 ///< 404: no such key, service, check, session or endpoint.
    method_not_allowed,        ///< 405
    conflict,                  ///< 409
    request_entity_too_large,  ///< 413: body over Consul's limit (KV values: 512 KiB).
    too_many_requests,         ///< 429: rate limited by the agent.
    internal_error,            ///< 500: often "No cluster leader" or a lost session/check.
    bad_gateway,               ///< 502
    unavailable,               ///< 503
    gateway_timeout,           ///< 504
    other_client_error,        ///< any other 4xx
    other_server_error,        ///< any other 5xx
    unexpected_status,         ///< 1xx/3xx where a final 2xx answer was expected
};

/// Bytes from the network that could not be understood.
enum class decode_errc {
    malformed_json = 1,  ///< Body is not valid JSON.
    missing_field,       ///< A required field is absent (the field is named in diagnostics).
    wrong_type,          ///< A field has another JSON type than expected (named in diagnostics).
    invalid_base64,      ///< A KV value is not valid base64.
    body_too_large,      ///< The response body exceeds the configured limit.
    invalid_header,      ///< A response header (e.g. X-Consul-Index) is malformed.
};

/// Input rejected before anything was sent.
enum class validation_errc {
    invalid_argument = 1,  ///< Generic bad argument (details in diagnostics).
    invalid_name,          ///< Empty or malformed service/check/node name or ID.
    invalid_key,           ///< KV key empty where a key is required, or with a leading '/'.
    control_character,     ///< A name, key or value headed for the URL contains a control char.
    header_injection,      ///< CR or LF would reach an HTTP header.
    invalid_duration,      ///< A duration is negative or not in Consul's format.
    invalid_address,       ///< An agent address is not host:port or a URL.
    invalid_environment,  ///< An environment variable has a malformed value (named in diagnostics).
    invalid_configuration,  ///< A configuration aggregate is inconsistent.
    unclean_path,           ///< A key or ID headed for a URL path has a ".", ".." or empty segment.
};

/// Rejections by the resilience layer.
enum class policy_errc {
    circuit_open = 1,        ///< The circuit breaker is open: the call was not attempted.
    bulkhead_full,           ///< Concurrency limit reached and the wait queue is full.
    bulkhead_wait_timeout,   ///< Waited in the bulkhead queue past the wait timeout.
    retry_budget_exhausted,  ///< A retry was wanted but the retry budget is spent.
    retries_exhausted,       ///< All attempts failed; the last error is in diagnostics.
    deadline_exceeded,       ///< The call's deadline passed.
    no_endpoints,            ///< No healthy endpoint to send the call to.
};

/// Failures of service discovery (lakemesh::discovery::service_cache).
enum class discovery_errc {
    stale_beyond_limit = 1,  ///< Consul has been unreachable longer than the cache's max staleness.
    cache_stopped,           ///< The cache was stopped or destroyed before the resolve completed.
    invalidated,  ///< The entry was invalidated or evicted while the resolve was pending.
};

/// Failures of the partition registry (lakemesh::partition).
enum class partition_errc {
    config_mismatch = 1,  ///< The cluster's config in KV disagrees with this node's settings.
    registry_stopped,     ///< The registry was stopped before the operation completed.
    not_owner,            ///< The partition is not this node's (its owner is in diagnostics).
    handoff_incomplete,   ///< A stop could not release every partition (Consul unreachable).
};

/// Failures of a call to another service through lakemesh::mesh_integrator.
enum class call_errc {
    no_instances = 1,       ///< Discovery knows no passing instance of the service.
    all_endpoints_ejected,  ///< Every instance is ejected as an outlier (and panic mode is off).
    circuit_open,           ///< The service's circuit breaker is open: nothing was sent.
    bulkhead_full,      ///< The service's concurrency limit is reached (or its queue wait ran out).
    deadline_exceeded,  ///< The call's deadline (its own or the inherited one) passed.
    retry_budget_exhausted,  ///< A retry was wanted but the service's retry budget is spent.
    upstream_status,         ///< The instance answered 5xx or 429 (the status is in diagnostics).
    not_owner,               ///< The partition's owner refused the call twice ("not owner").
    mesh_stopped,            ///< The mesh is stopping or stopped: no new calls.
};

const boost::system::error_category& transport_category() noexcept;
const boost::system::error_category& consul_category() noexcept;
const boost::system::error_category& decode_category() noexcept;
const boost::system::error_category& validation_category() noexcept;
const boost::system::error_category& policy_category() noexcept;
const boost::system::error_category& discovery_category() noexcept;
const boost::system::error_category& partition_category() noexcept;
const boost::system::error_category& call_category() noexcept;

inline error_code make_error_code(transport_errc e) noexcept {
    return {static_cast<int>(e), transport_category()};
}
inline error_code make_error_code(consul_errc e) noexcept {
    return {static_cast<int>(e), consul_category()};
}
inline error_code make_error_code(decode_errc e) noexcept {
    return {static_cast<int>(e), decode_category()};
}
inline error_code make_error_code(validation_errc e) noexcept {
    return {static_cast<int>(e), validation_category()};
}
inline error_code make_error_code(policy_errc e) noexcept {
    return {static_cast<int>(e), policy_category()};
}
inline error_code make_error_code(discovery_errc e) noexcept {
    return {static_cast<int>(e), discovery_category()};
}
inline error_code make_error_code(partition_errc e) noexcept {
    return {static_cast<int>(e), partition_category()};
}
inline error_code make_error_code(call_errc e) noexcept {
    return {static_cast<int>(e), call_category()};
}

/// Maps an HTTP status from Consul to its error; 2xx maps to success.
error_code error_from_http_status(unsigned status) noexcept;

/// Maps Consul's answer (status and error text) to its error, as error_from_http_status does,
/// except for the errors that Consul versions answer differently: before 1.11 Consul answers
/// 500 for several client mistakes that later versions answer with 400 or 404, and a 500 is
/// retryable. So a 500 whose text says
/// - "Failed to create boolean expression evaluator" (an invalid ?filter), "strconv.Parse"
///   (a malformed query parameter) or "Invalid Session TTL" is bad_request;
/// - "does not have associated TTL" (a TTL update of a check the agent does not have as a TTL
///   check; 1.11+ answers 404 "Unknown check ID" when it has no such check) or
///   `ServiceID "..." does not exist` (a check registered for an unknown service) is not_found.
/// The HTTP status itself stays in diagnostics.
error_code error_from_consul_answer(unsigned status, std::string_view body) noexcept;

/// Extra, human-readable context for an error: Consul's own error body, the HTTP status,
/// the offending field or environment variable. Never contains the ACL token.
class diagnostics {
  public:
    diagnostics() = default;

    /// Consul's error body text as received (e.g. "Permission denied", "Missing node
    /// registration").
    const std::string& server_message() const noexcept { return server_message_; }
    /// What the client itself adds: the field, variable or argument at fault.
    const std::string& client_message() const noexcept { return client_message_; }
    /// HTTP status of the response, 0 when there was none.
    unsigned http_status() const noexcept { return http_status_; }

    void set_server_message(std::string msg) { server_message_ = std::move(msg); }
    void set_client_message(std::string msg) { client_message_ = std::move(msg); }
    void set_http_status(unsigned status) noexcept { http_status_ = status; }
    void clear() noexcept {
        server_message_.clear();
        client_message_.clear();
        http_status_ = 0;
    }
    /// One line for logs: "<client message>; consul said (HTTP 403): Permission denied".
    std::string to_string() const;

    friend bool operator==(const diagnostics&, const diagnostics&) = default;

  private:
    std::string server_message_;
    std::string client_message_;
    unsigned http_status_ = 0;
};

/// True when repeating the same request later may succeed: connection failures, timeouts,
/// 429 and 5xx from Consul. False for validation, decode, 4xx, policy rejections and
/// cancellation. Idempotency is the caller's to decide on top of this.
bool is_retryable(const error_code& ec) noexcept;

/// Thrown only by the few synchronous conveniences (e.g. from_env() without an error_code).
class error : public boost::system::system_error {
  public:
    error(const error_code& ec, const diagnostics& diag);
    const diagnostics& diag() const noexcept { return diag_; }

  private:
    diagnostics diag_;
};

}  // namespace lakemesh

namespace boost::system {
template <>
struct is_error_code_enum<lakemesh::transport_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::consul_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::decode_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::validation_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::policy_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::discovery_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::partition_errc> : std::true_type {};
template <>
struct is_error_code_enum<lakemesh::call_errc> : std::true_type {};
}  // namespace boost::system
