// HTTP/1.1 client for calls to service instances: keep-alive connections pooled per host:port,
// and the rule that a request goes out a second time only when that is safe.
#pragma once

#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/mesh/http.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace lakemesh::mesh::detail {

/// Settings of one http_pool.
struct http_pool_config {
    /// Idle keep-alive connections kept per host:port; more are closed when they go idle. Zero:
    /// no connection is reused (each request says `Connection: close`).
    std::size_t max_idle_per_endpoint = 32;
    /// Longest time to open a connection, over every address the host resolves to. Zero: the
    /// operating system's limit.
    std::chrono::milliseconds connect_timeout{1000};
    /// Idle connections older than this are closed, not reused: servers close theirs after a
    /// while, and reusing one just closed fails the request. Zero: no age limit.
    std::chrono::milliseconds idle_timeout{30000};
    /// Largest response body accepted; a larger one fails with decode_errc::body_too_large.
    std::size_t max_response_body = 16 * 1024 * 1024;
    /// Largest response head (status line and header fields) accepted; a larger one fails with
    /// transport_errc::protocol_error.
    std::size_t max_response_header = 64 * 1024;
    /// For the connections a send asks to be TLS: CA, client certificate, verification (on by
    /// default) and the name to verify (empty: the host the call goes to). The OpenSSL context
    /// is made on the first TLS send.
    consul::tls_config tls{};
};

/// A header the caller adds to a request as it goes out, without copying it into the request
/// first. The caller vouches for it (a token name, a value with no CR, LF or control character).
using header_ref = std::pair<std::string_view, std::string_view>;

/// Where the sink form of http_pool::send delivers the outcome of an exchange.
class exchange_sink {
  public:
    /// The exchange ended: as async_send's handler, with `response` to move from.
    virtual void on_exchange_done(error_code ec, http_response& response) = 0;

  protected:
    ~exchange_sink() = default;
};

/// Keep-alive HTTP/1.1 connections to service instances, pooled per host:port (plain and TLS
/// apart).
///
/// Thread safety: none. Use it, and emit the cancellation signals bound to its operations, on
/// its executor only (one thread, or a strand).
///
/// Lifetime: create it with std::make_shared; every operation holds a reference until it
/// completes.
class http_pool : public std::enable_shared_from_this<http_pool> {
  public:
    using handler_type = boost::asio::any_completion_handler<void(error_code, http_response)>;

    explicit http_pool(boost::asio::any_io_executor ex, http_pool_config cfg = {});
    ~http_pool();
    http_pool(const http_pool&) = delete;
    http_pool& operator=(const http_pool&) = delete;

    /// One request/response exchange with host:port over a pooled keep-alive connection (or a
    /// new one when none is idle). `host` is an IP literal (IPv6 with or without brackets) or a
    /// name to resolve. `tls`: over TLS (http_pool_config::tls), the certificate verified before
    /// the request goes out.
    ///
    /// Handler: void(error_code, http_response), invoked through its associated executor (by
    /// default the pool's), never from within async_send. Any status is a success here; the
    /// caller maps non-2xx statuses.
    ///
    /// Retry: when a reused idle connection turns out dead (the write fails, or the peer closed
    /// it before any byte of a response), the request goes out once more on a fresh connection
    /// if `idempotent`; otherwise it fails with transport_errc::connection_closed, since the
    /// peer may have acted on it.
    ///
    /// Cancellation: the handler's associated cancellation slot; terminal, partial and total
    /// all cancel the exchange (the request may have been sent). The handler then gets
    /// asio::error::operation_aborted and the connection is closed, never pooled.
    ///
    /// Errors: validation_errc::header_injection (CR or LF in method, target, host or a header)
    /// and validation_errc::invalid_argument (another malformed part) before anything is sent;
    /// transport_errc::resolve_failed; transport_errc::connect_failed (nothing was sent;
    /// connect_timeout passing is one cause); transport_errc::connection_closed;
    /// transport_errc::protocol_error (not HTTP/1.1 as expected); decode_errc::body_too_large;
    /// transport_errc::tls_verify_failed (the certificate is not trusted or names another host)
    /// and transport_errc::tls_handshake_failed (no TLS, or CA or certificate files that do not
    /// load), in both cases before anything was sent;
    /// asio::error::operation_aborted when cancelled or after shutdown(). No request timeout:
    /// the caller cancels. `diag` gets a message naming host:port and what failed, and must
    /// stay alive until the handler runs.
    ///
    /// A response with `Connection: close`, or HTTP/1.0 without keep-alive, or a body that
    /// ends with the connection, closes the connection after it is read.
    void async_send(std::string host, std::uint16_t port, bool tls, const http_request& req,
                    bool idempotent, diagnostics& diag, handler_type handler);
    /// As above, with headers `extra` written after the request's own.
    void async_send(std::string host, std::uint16_t port, bool tls, const http_request& req,
                    std::span<const header_ref> extra, bool idempotent, diagnostics& diag,
                    handler_type handler);

    struct exchange;

    /// async_send for a caller with per-call state of its own: no handler to allocate, the
    /// outcome goes to `sink->on_exchange_done` (always from a completion, never from inside
    /// send), and `sink` is held until then. Returns the exchange, for cancel(), or null when it
    /// ended before it began (the outcome is then posted to the sink). The pointer stays valid
    /// until on_exchange_done runs.
    /// `extra` as in async_send.
    exchange* send(std::string host, std::uint16_t port, bool tls, const http_request& req,
                   std::span<const header_ref> extra, bool idempotent, diagnostics& diag,
                   std::shared_ptr<exchange_sink> sink);
    /// Cancels an exchange of send() that has not reported yet, as async_send's cancellation.
    static void cancel(exchange& x);

    /// Closes the idle connections; later sends fail with operation_aborted. Exchanges in
    /// flight finish or fail, and then close their connections.
    void shutdown();

    /// Idle connections pooled for host:port (plain or TLS), for tests.
    std::size_t idle_connections(std::string_view host, std::uint16_t port, bool tls = false) const;
    /// Connections opened so far, for tests and metrics.
    std::uint64_t connections_opened() const noexcept;

    const boost::asio::any_io_executor& get_executor() const noexcept { return ex_; }
    const http_pool_config& config() const noexcept { return cfg_; }

  private:
    struct state;

    /// Checks and prepares a send; null (and `early` set) when it ends at once.
    std::shared_ptr<exchange> begin(std::string& host, std::uint16_t port, bool tls,
                                    const http_request& req, std::span<const header_ref> extra,
                                    bool idempotent, diagnostics& diag, error_code& early);

    boost::asio::any_io_executor ex_;
    http_pool_config cfg_;
    std::unique_ptr<state> st_;
};

}  // namespace lakemesh::mesh::detail
