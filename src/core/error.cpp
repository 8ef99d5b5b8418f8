#include <lakemesh/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/http/error.hpp>

namespace lakemesh {
namespace {

class transport_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.transport"; }
    std::string message(int ev) const override {
        switch (static_cast<transport_errc>(ev)) {
            case transport_errc::connect_failed:
                return "could not connect to the server (the Consul agent, or the instance "
                       "called); check that it runs and that its address (for Consul, "
                       "CONSUL_HTTP_ADDR) is right";
            case transport_errc::connection_closed:
                return "the server closed the connection during a request; it is retried when "
                       "safe";
            case transport_errc::timeout:
                return "the request timed out; raise the timeout or check the server's load";
            case transport_errc::resolve_failed:
                return "the server's host name did not resolve; check the address";
            case transport_errc::tls_handshake_failed:
                return "TLS handshake with the Consul agent failed; check CONSUL_HTTP_SSL and that "
                       "the agent serves HTTPS on that port";
            case transport_errc::tls_verify_failed:
                return "the Consul agent's certificate is not trusted; set CONSUL_CACERT to the CA "
                       "that signed it, or CONSUL_TLS_SERVER_NAME to the name in it";
            case transport_errc::all_addresses_failed:
                return "every configured Consul agent address failed; see the log for each one";
            case transport_errc::protocol_error:
                return "the peer did not answer with valid HTTP/1.1; is it the server meant (a "
                       "Consul agent, an HTTP service)?";
        }
        return "unknown transport error";
    }
};

class consul_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.consul"; }
    std::string message(int ev) const override {
        switch (static_cast<consul_errc>(ev)) {
            case consul_errc::bad_request:
                return "Consul rejected the request (400); the diagnostics carry its reason";
            case consul_errc::permission_denied:
                return "Consul denied permission (403); set an ACL token (CONSUL_HTTP_TOKEN) with "
                       "the needed policy";
            case consul_errc::not_found:
                return "Consul found no such resource (404)";
            case consul_errc::method_not_allowed:
                return "Consul does not allow this method on this endpoint (405)";
            case consul_errc::conflict:
                return "Consul reported a conflict (409)";
            case consul_errc::request_entity_too_large:
                return "Consul refused the request body as too large (413); KV values are limited "
                       "to 512 KiB";
            case consul_errc::too_many_requests:
                return "Consul rate-limited the request (429); slow down and retry";
            case consul_errc::internal_error:
                return "Consul failed internally (500); the diagnostics carry its reason";
            case consul_errc::bad_gateway:
                return "Consul answered 502 Bad Gateway; retry later";
            case consul_errc::unavailable:
                return "Consul is unavailable (503); retry later";
            case consul_errc::gateway_timeout:
                return "Consul answered 504 Gateway Timeout; retry later";
            case consul_errc::other_client_error:
                return "Consul rejected the request with a 4xx status";
            case consul_errc::other_server_error:
                return "Consul failed with a 5xx status; retry later";
            case consul_errc::unexpected_status:
                return "Consul answered with an unexpected non-final status";
        }
        return "unknown Consul error";
    }
};

class decode_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.decode"; }
    std::string message(int ev) const override {
        switch (static_cast<decode_errc>(ev)) {
            case decode_errc::malformed_json:
                return "the response is not valid JSON";
            case decode_errc::missing_field:
                return "a required field is missing from the response (named in the diagnostics)";
            case decode_errc::wrong_type:
                return "a field in the response has an unexpected type (named in the diagnostics)";
            case decode_errc::invalid_base64:
                return "a KV value in the response is not valid base64";
            case decode_errc::body_too_large:
                return "the response body exceeds the configured limit; raise "
                       "max_response_body if this is expected";
            case decode_errc::invalid_header:
                return "a response header is malformed (named in the diagnostics)";
        }
        return "unknown decode error";
    }
};

class validation_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.validation"; }
    std::string message(int ev) const override {
        switch (static_cast<validation_errc>(ev)) {
            case validation_errc::invalid_argument:
                return "invalid argument (see the diagnostics); nothing was sent";
            case validation_errc::invalid_name:
                return "invalid name or ID: it must be non-empty printable text; nothing was sent";
            case validation_errc::invalid_key:
                return "invalid KV key: it must not be empty or start with '/'; nothing was sent";
            case validation_errc::control_character:
                return "a name, key or value contains a control character; nothing was sent";
            case validation_errc::header_injection:
                return "a CR or LF would reach an HTTP header; nothing was sent";
            case validation_errc::invalid_duration:
                return "invalid duration: use a non-negative value such as 10s or 500ms";
            case validation_errc::invalid_address:
                return "invalid agent address: use host:port or http(s)://host:port";
            case validation_errc::invalid_environment:
                return "an environment variable has a malformed value (named in the diagnostics)";
            case validation_errc::invalid_configuration:
                return "the configuration is inconsistent (see the diagnostics)";
            case validation_errc::unclean_path:
                return "a key or ID has a '.', '..' or empty path segment, which a server would "
                       "resolve to another path; nothing was sent";
        }
        return "unknown validation error";
    }
};

class policy_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.policy"; }
    std::string message(int ev) const override {
        switch (static_cast<policy_errc>(ev)) {
            case policy_errc::circuit_open:
                return "the circuit breaker is open; the call was not attempted and will be "
                       "allowed again after the open period";
            case policy_errc::bulkhead_full:
                return "too many concurrent calls to this target and its wait queue is full";
            case policy_errc::bulkhead_wait_timeout:
                return "waited too long for a free slot in the bulkhead";
            case policy_errc::retry_budget_exhausted:
                return "the retry budget is spent; the failure is returned without retrying";
            case policy_errc::retries_exhausted:
                return "every attempt failed; the last error is in the diagnostics";
            case policy_errc::deadline_exceeded:
                return "the call's deadline passed";
            case policy_errc::no_endpoints:
                return "no healthy endpoint is available for this service";
        }
        return "unknown policy error";
    }
};

class discovery_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.discovery"; }
    std::string message(int ev) const override {
        switch (static_cast<discovery_errc>(ev)) {
            case discovery_errc::stale_beyond_limit:
                return "Consul has been unreachable for longer than the cache's max staleness; "
                       "the cached instances are too old to serve (raise max_staleness or "
                       "restore the agent)";
            case discovery_errc::cache_stopped:
                return "the service cache was stopped before the resolve completed";
            case discovery_errc::invalidated:
                return "the cache entry was invalidated or evicted while the resolve was pending; "
                       "resolve again";
        }
        return "unknown discovery error";
    }
};

}  // namespace

const boost::system::error_category& transport_category() noexcept {
    static const transport_category_impl c;
    return c;
}
const boost::system::error_category& consul_category() noexcept {
    static const consul_category_impl c;
    return c;
}
const boost::system::error_category& decode_category() noexcept {
    static const decode_category_impl c;
    return c;
}
const boost::system::error_category& validation_category() noexcept {
    static const validation_category_impl c;
    return c;
}
const boost::system::error_category& policy_category() noexcept {
    static const policy_category_impl c;
    return c;
}
class partition_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.partition"; }
    std::string message(int ev) const override {
        switch (static_cast<partition_errc>(ev)) {
            case partition_errc::config_mismatch:
                return "the cluster's config in Consul KV (partition count or cluster name under "
                       "this prefix) disagrees with this node's settings; fix the settings or "
                       "use another prefix";
            case partition_errc::registry_stopped:
                return "the partition registry was stopped before the operation completed";
            case partition_errc::not_owner:
                return "this node does not own the partition; refresh the table and send the "
                       "request to the owner named in the diagnostics";
            case partition_errc::handoff_incomplete:
                return "the stop could not release every partition (Consul unreachable); their "
                       "terms were ended locally and Consul frees them when the session expires";
        }
        return "unknown partition error";
    }
};

const boost::system::error_category& partition_category() noexcept {
    static const partition_category_impl c;
    return c;
}

namespace {
class call_category_impl final : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "lakemesh.call"; }
    std::string message(int ev) const override {
        switch (static_cast<call_errc>(ev)) {
            case call_errc::no_instances:
                return "no passing instance of the service is registered in Consul (for a "
                       "partition call: the partition has no owner)";
            case call_errc::all_endpoints_ejected:
                return "every instance of the service is ejected as an outlier";
            case call_errc::circuit_open:
                return "the service's circuit breaker is open: the call was not sent";
            case call_errc::bulkhead_full:
                return "the service's concurrency limit is reached: the call was not sent";
            case call_errc::deadline_exceeded:
                return "the call's deadline passed";
            case call_errc::retry_budget_exhausted:
                return "a retry was wanted but the service's retry budget is spent";
            case call_errc::upstream_status:
                return "the service answered with a server error or 429 (status in the "
                       "diagnostics)";
            case call_errc::not_owner:
                return "the partition's owner refused the call as not its owner, also after a "
                       "refresh of the ownership table";
            case call_errc::mesh_stopped:
                return "the mesh is stopping or stopped and accepts no new calls";
        }
        return "unknown call error";
    }
};
}  // namespace

const boost::system::error_category& call_category() noexcept {
    static const call_category_impl c;
    return c;
}

const boost::system::error_category& discovery_category() noexcept {
    static const discovery_category_impl c;
    return c;
}

error_code error_from_consul_answer(unsigned status, std::string_view body) noexcept {
    if (status != 500) {
        return error_from_http_status(status);
    }
    // Consul 1.10's texts for client mistakes it answers with 500 (see the header).
    const auto has = [body](std::string_view text) { return body.find(text) != body.npos; };
    if (has("Failed to create boolean expression evaluator") || has("strconv.Parse") ||
        has("Invalid Session TTL")) {
        return consul_errc::bad_request;
    }
    if (has("does not have associated TTL") ||
        (body.starts_with("ServiceID \"") && has("\" does not exist"))) {
        return consul_errc::not_found;
    }
    return consul_errc::internal_error;
}

error_code error_from_http_status(unsigned status) noexcept {
    if (status >= 200 && status < 300) {
        return {};
    }
    switch (status) {
        case 400:
            return consul_errc::bad_request;
        case 403:
            return consul_errc::permission_denied;
        case 404:
            return consul_errc::not_found;
        case 405:
            return consul_errc::method_not_allowed;
        case 409:
            return consul_errc::conflict;
        case 413:
            return consul_errc::request_entity_too_large;
        case 429:
            return consul_errc::too_many_requests;
        case 500:
            return consul_errc::internal_error;
        case 502:
            return consul_errc::bad_gateway;
        case 503:
            return consul_errc::unavailable;
        case 504:
            return consul_errc::gateway_timeout;
        default:
            break;
    }
    if (status >= 400 && status < 500) {
        return consul_errc::other_client_error;
    }
    if (status >= 500 && status < 600) {
        return consul_errc::other_server_error;
    }
    return consul_errc::unexpected_status;
}

std::string diagnostics::to_string() const {
    std::string out = client_message_;
    if (http_status_ != 0 || !server_message_.empty()) {
        if (!out.empty()) {
            out += "; ";
        }
        out += "consul said";
        if (http_status_ != 0) {
            out += " (HTTP " + std::to_string(http_status_) + ")";
        }
        out += ": ";
        out += server_message_;
    }
    return out;
}

bool is_retryable(const error_code& ec) noexcept {
    if (!ec) {
        return false;
    }
    const auto& cat = ec.category();
    if (cat == transport_category()) {
        switch (static_cast<transport_errc>(ec.value())) {
            case transport_errc::tls_verify_failed:
            case transport_errc::protocol_error:
                return false;
            default:
                return true;
        }
    }
    if (cat == consul_category()) {
        switch (static_cast<consul_errc>(ec.value())) {
            case consul_errc::too_many_requests:
            case consul_errc::internal_error:
            case consul_errc::bad_gateway:
            case consul_errc::unavailable:
            case consul_errc::gateway_timeout:
            case consul_errc::other_server_error:
                return true;
            default:
                return false;
        }
    }
    if (cat == discovery_category()) {
        // Staleness passes when Consul comes back; the other two call for a new resolve.
        return ec == make_error_code(discovery_errc::stale_beyond_limit) ||
               ec == make_error_code(discovery_errc::invalidated);
    }
    if (cat == partition_category()) {
        // The owner moved: the same request at the new owner may succeed.
        return ec == make_error_code(partition_errc::not_owner);
    }
    if (cat == call_category()) {
        // A 5xx or 429 may pass; an empty or ejected set waits for discovery, not for a retry.
        return ec == make_error_code(call_errc::upstream_status);
    }
    if (cat == decode_category() || cat == validation_category() || cat == policy_category()) {
        return false;
    }
    // Raw Asio / Beast errors that escaped translation.
    namespace aerr = boost::asio::error;
    if (ec == aerr::operation_aborted) {
        return false;
    }
    if (ec == aerr::connection_refused || ec == aerr::connection_reset ||
        ec == aerr::connection_aborted || ec == aerr::broken_pipe || ec == aerr::timed_out ||
        ec == aerr::host_unreachable || ec == aerr::network_unreachable || ec == aerr::eof ||
        ec == aerr::try_again || ec == boost::beast::http::error::end_of_stream ||
        ec == boost::asio::ssl::error::stream_truncated) {
        return true;
    }
    return false;
}

error::error(const error_code& ec, const diagnostics& diag)
    : boost::system::system_error(ec, diag.to_string()), diag_(diag) {}

}  // namespace lakemesh
