// The admin HTTP endpoint: a small, read-only HTTP/1.1 server for operators and scrapers.
//
//   GET /         a self-contained HTML page (inline CSS and script, no external resources) that
//                 renders /status as tables and refreshes itself every 2 s
//   GET /metrics  the metrics exposition, `text/plain; version=0.0.4; charset=utf-8`
//   GET /healthz  200 "ok": the process is up and serving (never needs the token)
//   GET /readyz   200 "ready", or 503 "not ready: <reason>"
//   GET /status   the mesh's state as JSON (schema below), `application/json`
//
// Read-only by design: there is no endpoint that changes state, whatever the token. Only GET and
// HEAD are served (any other method: 405 with `Allow: GET, HEAD`); an unknown path is 404; the
// query string is ignored; a request that cannot be parsed is answered 400 and the connection
// closed; a request (head and body) over `max_request_bytes` is answered 413 and the connection
// closed. Keep-alive is supported. Every answer carries `Cache-Control: no-store` and
// `X-Content-Type-Options: nosniff`; the page also a Content-Security-Policy that allows only its
// own inline script and style (by SHA-256 hash) and fetches to 'self'. A callback that throws, or
// a status that is not a JSON object, is answered 500 and the server keeps serving. A path whose
// callback is not set answers 404.
//
// Token: when `admin_config::token` is set, every path except /healthz needs the header
// `Authorization: Bearer <token>` (401 otherwise; compared in constant time). A browser cannot
// add that header by itself, neither to the page nor to the page's own fetch of /status: with a
// token, open the page through a client or proxy that adds the header to every request. The
// token is never logged (it is registered as a secret with the logger).
//
// /status schema (the mesh produces exactly this; "partitions" is null when the service owns and
// routes no partitions; any array may be empty):
//
//   {
//     "service": {"name": "lake", "id": "lake-a", "ready": true, "not_ready_reason": ""},
//     "consul": {"address": "127.0.0.1:8500", "last_error": ""},
//     "members": [{"node": "a", "address": "127.0.0.1:9101", "weight": 1.0}],
//     "partitions": {"cluster": "lake", "count": 16, "owned_here": 5,
//                    "table": [{"partition": 0, "owner": "a", "state": "active", "token":
//                    "12.3"}]},
//     "services": [{"name": "stock", "breaker": "closed", "bulkhead_in_use": 0, "calls": 10,
//                   "failures": 1,
//                   "endpoints": [{"address": "127.0.0.1:9000", "healthy": true,
//                                  "ejected": false, "in_flight": 0}]}],
//     "last_errors": [{"at": "2026-12-05T11:00:00Z", "what": "..."}]
//   }
//
// The page's DOM, for tests and scrapers: a table id="partitions" with one row per partition
// (`data-partition="<n>"`, cells class="owner", "state", "token"), or the text "no partitions";
// tables id="members", id="services" (one row per endpoint), id="breakers" (one row per service)
// and id="errors"; the header's element id="ready" reads "ready" or "not ready: <reason>".
//
// Thread safety: an admin_server is not thread-safe. Call start(), stop() and the destructor
// from the executor's thread, or while the executor runs nothing. Everything runs on the given
// executor; the server starts no thread. The callbacks are called there, one at a time.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/observe/log.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace lakemesh::observe {

/// Settings of the admin endpoint. Off by default.
struct admin_config {
    /// The mesh starts the endpoint only when true (admin_server itself ignores this field).
    bool enabled = false;
    /// IP address to listen on (no host names). Loopback unless configured.
    std::string address = "127.0.0.1";
    /// Port to listen on; 0 picks an ephemeral port (read it back with admin_server::port()).
    std::uint16_t port = 0;
    /// Bearer token. Required (non-empty) when `address` is not a loopback address. When set,
    /// every path except /healthz needs "Authorization: Bearer <token>". Visible ASCII only.
    std::string token;
    /// Largest request accepted, head and body together; larger: 413 and the connection closed.
    std::size_t max_request_bytes = 8192;
    /// Time a client has to send a whole request (and, between requests on a kept-alive
    /// connection, to start the next one; and to take an answer). Past it the connection is
    /// closed without an answer.
    std::chrono::milliseconds read_timeout{5000};
    /// Connections served at once; a connection accepted beyond this is closed at once.
    std::size_t max_connections = 32;
};

/// What the server shows. Each callback is called on the server's executor, one at a time, and
/// may throw (the request is then answered 500). An unset callback makes its path answer 404.
struct admin_source {
    /// /metrics: the exposition in the Prometheus text format 0.0.4.
    std::function<std::string()> metrics;
    /// /readyz: true for 200 "ready"; false for 503 with `reason`.
    std::function<bool(std::string& reason)> ready;
    /// /status (and the page): a JSON object in the schema above.
    std::function<std::string()> status_json;
};

/// The admin HTTP endpoint. See the top of this header for what it serves.
///
/// Lifetime: the destructor closes the acceptor and every connection without waiting; pending
/// operations complete later on the executor with operation_aborted and touch nothing of this
/// object.
class admin_server {
  public:
    admin_server(boost::asio::any_io_executor ex, admin_config cfg, admin_source src,
                 logger log = {});
    ~admin_server();
    admin_server(const admin_server&) = delete;
    admin_server& operator=(const admin_server&) = delete;

    /// Validates the config, then binds and listens. Errors:
    /// - validation_errc::invalid_configuration: an address that is not an IP address, a
    ///   non-loopback address without a token, a token with other than visible ASCII, a zero
    ///   max_request_bytes, max_connections or read_timeout (the field is named in diag);
    /// - validation_errc::invalid_argument: already started;
    /// - the system's error from open/bind/listen (e.g. address_in_use), with the address in diag.
    /// Once stopped, the server may be started again.
    error_code start(diagnostics& diag);

    /// The bound port; 0 before start() and after stop().
    std::uint16_t port() const noexcept;

    /// Closes the acceptor and every connection. Idempotent.
    void stop();

    boost::asio::any_io_executor get_executor() const noexcept;

  private:
    struct state;
    boost::asio::any_io_executor ex_;
    admin_config cfg_;
    admin_source src_;
    logger log_;
    std::shared_ptr<state> state_;
    std::uint16_t port_ = 0;
};

}  // namespace lakemesh::observe
