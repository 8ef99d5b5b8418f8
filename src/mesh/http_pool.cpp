#include "http_pool.hpp"

#include "core/ascii.hpp"
#include "core/tls_client.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

namespace lakemesh::mesh {

// ------------------------------------------------------------------ http.hpp

namespace {

using lakemesh::detail::iequals;

using header_list = std::vector<std::pair<std::string, std::string>>;

std::string_view find_header(const header_list& headers, std::string_view name) noexcept {
    for (const auto& [n, v] : headers) {
        if (iequals(n, name)) {
            return v;
        }
    }
    return {};
}

}  // namespace

std::string_view http_request::header(std::string_view name) const noexcept {
    return find_header(headers, name);
}

void http_request::set_header(std::string name, std::string value) {
    auto first = std::find_if(headers.begin(), headers.end(),
                              [&](const auto& h) { return iequals(h.first, name); });
    if (first == headers.end()) {
        headers.emplace_back(std::move(name), std::move(value));
        return;
    }
    first->first = std::move(name);
    first->second = std::move(value);
    headers.erase(std::remove_if(std::next(first), headers.end(),
                                 [&](const auto& h) { return iequals(h.first, first->first); }),
                  headers.end());
}

std::string_view http_response::header(std::string_view name) const noexcept {
    return find_header(headers, name);
}

bool is_idempotent_method(std::string_view method) noexcept {
    return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" ||
           method == "OPTIONS" || method == "TRACE";
}

// ------------------------------------------------------------------ http_pool

namespace detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using steady = std::chrono::steady_clock;

struct connection {
    explicit connection(const asio::any_io_executor& ex) : stream(ex) {}

    /// The TCP layer; under `tls` when the connection is TLS.
    beast::tcp_stream stream;
    std::optional<asio::ssl::stream<beast::tcp_stream&>> tls;
    /// Bytes read past the last response; a pooled connection has none.
    beast::flat_buffer buffer;
    steady::time_point idle_since;

    /// Calls `f` with the stream requests and responses go through.
    template <class F>
    void io(F&& f) {
        if (tls) {
            f(*tls);
        } else {
            f(stream);
        }
    }

    /// Pending operations complete with operation_aborted. No TLS close_notify: the pool
    /// closes a connection only when it is done with it or gives up on it.
    void close() {
        error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
    }
};

struct endpoint_key {
    std::string host;
    std::uint16_t port = 0;
    bool tls = false;
};
struct endpoint_ref {
    std::string_view host;
    std::uint16_t port = 0;
    bool tls = false;
};
/// Orders endpoint_key and endpoint_ref alike, so a lookup needs no key string.
struct endpoint_less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
        return std::tuple<std::string_view, std::uint16_t, bool>(a.host, a.port, a.tls) <
               std::tuple<std::string_view, std::uint16_t, bool>(b.host, b.port, b.tls);
    }
};

struct endpoint_pool {
    /// Oldest first: the newest is reused, the oldest expire.
    std::vector<std::unique_ptr<connection>> idle;
    /// Exchanges with this endpoint in flight; the entry stays while there are any.
    std::size_t active = 0;
};

using endpoint_map = std::map<endpoint_key, endpoint_pool, endpoint_less>;

/// "[::1]" and "::1" name the same endpoint; the bare form is the key and what resolves.
std::string_view bare_host(std::string_view host) noexcept {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        return host.substr(1, host.size() - 2);
    }
    return host;
}

/// host:port as in a URL, an IPv6 literal in brackets.
std::string authority(std::string_view host, std::uint16_t port, bool omit_port_80) {
    std::string out;
    const bool v6 = host.find(':') != std::string_view::npos;
    out.reserve(host.size() + 8);
    if (v6) {
        out += '[';
    }
    out += host;
    if (v6) {
        out += ']';
    }
    if (!omit_port_80 || port != 80) {
        char digits[8];
        auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), port);
        out += ':';
        out.append(digits, end);
    }
    return out;
}

/// RFC 9110 tchar, as a table: this runs over every header name of every call.
constexpr auto tchar_table = [] {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c) {
        t[static_cast<std::size_t>(c)] = true;
    }
    for (int c = 'A'; c <= 'Z'; ++c) {
        t[static_cast<std::size_t>(c)] = true;
    }
    for (int c = '0'; c <= '9'; ++c) {
        t[static_cast<std::size_t>(c)] = true;
    }
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
        t[static_cast<unsigned char>(c)] = true;
    }
    return t;
}();
bool is_tchar(char c) noexcept {
    return tchar_table[static_cast<unsigned char>(c)];
}
bool is_token(std::string_view s) noexcept {
    return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}
bool has_cr_or_lf(std::string_view s) noexcept {
    // A plain loop: find_first_of calls memchr once per character here.
    return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n'; });
}
bool is_ctl(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
}
/// Field values may hold obs-text and HTAB, nothing else below 0x20, nor DEL.
bool is_field_value(std::string_view s) noexcept {
    return std::none_of(s.begin(), s.end(), [](char c) { return c != '\t' && is_ctl(c); });
}
bool is_visible(std::string_view s) noexcept {
    return std::none_of(s.begin(), s.end(), [](char c) { return c == ' ' || is_ctl(c); });
}

/// Checks what async_send puts on the wire. CR or LF anywhere is header_injection (the usual
/// attack through unchecked input); any other malformed part is invalid_argument.
error_code validate(std::string_view host, const http_request& req, diagnostics& diag) {
    auto fail = [&](validation_errc e, std::string msg) {
        diag.set_client_message(std::move(msg));
        return error_code(e);
    };
    if (has_cr_or_lf(req.method)) {
        return fail(validation_errc::header_injection, "the HTTP method contains CR or LF");
    }
    if (has_cr_or_lf(req.target)) {
        return fail(validation_errc::header_injection, "the request target contains CR or LF");
    }
    if (has_cr_or_lf(host)) {
        return fail(validation_errc::header_injection, "the host name contains CR or LF");
    }
    for (const auto& [name, value] : req.headers) {
        if (has_cr_or_lf(name) || has_cr_or_lf(value)) {
            return fail(validation_errc::header_injection,
                        "header '" + std::string(name.substr(0, name.find_first_of("\r\n"))) +
                            "' contains CR or LF in its name or value");
        }
    }
    if (!is_token(req.method)) {
        return fail(validation_errc::invalid_argument,
                    "HTTP method '" + req.method + "' is not an RFC 9110 token");
    }
    if (req.target.empty() || !is_visible(req.target)) {
        return fail(validation_errc::invalid_argument,
                    "request target '" + req.target +
                        "' is empty or holds a space or control character (encode it first)");
    }
    if (host.empty() || !is_visible(host)) {
        return fail(
            validation_errc::invalid_argument,
            "host '" + std::string(host) + "' is empty or holds a space or control character");
    }
    for (const auto& [name, value] : req.headers) {
        if (!is_token(name)) {
            return fail(validation_errc::invalid_argument,
                        "header name '" + name + "' is not an RFC 9110 token");
        }
        if (!is_field_value(value)) {
            return fail(validation_errc::invalid_argument,
                        "header '" + name + "' has a control character in its value");
        }
    }
    return {};
}

/// Whether `name` is a header lakemesh sets itself (the framing and the connection's fate).
bool is_reserved_header(std::string_view name) noexcept {
    return iequals(name, "Host") || iequals(name, "Content-Length") ||
           iequals(name, "Connection") || iequals(name, "Transfer-Encoding");
}

/// The request head as it goes on the wire (the body follows it as a second buffer): one
/// string, written with the body in one gather write. validate() has checked every part.
void build_head(std::string& out, const http_request& req, std::span<const header_ref> extra,
                std::string_view host, std::uint16_t port, bool close_after) {
    std::size_t size = req.method.size() + req.target.size() + host.size() + 96;
    for (const auto& [name, value] : req.headers) {
        size += name.size() + value.size() + 4;
    }
    for (const auto& [name, value] : extra) {
        size += name.size() + value.size() + 4;
    }
    out.clear();
    out.reserve(size);
    out += req.method;
    out += ' ';
    out += req.target;
    out += " HTTP/1.1\r\nHost: ";
    out += authority(host, port, true);
    out += "\r\n";
    bool user_agent = false;
    for (const auto& [name, value] : req.headers) {
        if (is_reserved_header(name)) {
            continue;
        }
        user_agent = user_agent || iequals(name, "User-Agent");
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
    }
    for (const auto& [name, value] : extra) {
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
    }
    if (!user_agent) {
        out += "User-Agent: lakemesh/0.1\r\n";
    }
    if (close_after) {
        out += "Connection: close\r\n";
    }
    // As http::message::prepare_payload: a length for any body, and for methods that expect one.
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
        char digits[24];
        auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), req.body.size());
        out += "Content-Length: ";
        out.append(digits, end);
        out += "\r\n";
    }
    out += "\r\n";
}

/// Parses a response straight into an http_response: header fields go to its vector and the
/// body to its string as they arrive, with no intermediate http::fields (which allocates a node
/// per field) to copy out of afterwards.
class response_reader final : public http::basic_parser<false> {
  public:
    http_response response;

  private:
    void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                         error_code&) override {}
    void on_response_impl(int code, beast::string_view, int, error_code&) override {
        response.status = static_cast<unsigned>(code);
        response.headers.reserve(8);  // one allocation for a typical head
    }
    void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                       error_code&) override {
        response.headers.emplace_back(std::piecewise_construct,
                                      std::forward_as_tuple(name.data(), name.size()),
                                      std::forward_as_tuple(value.data(), value.size()));
    }
    void on_header_impl(error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
        // basic_parser has already refused a length above body_limit.
        if (length) {
            response.body.reserve(static_cast<std::size_t>(*length));
        }
    }
    std::size_t on_body_impl(beast::string_view part, error_code&) override {
        response.body.append(part.data(), part.size());
        return part.size();
    }
    void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view part, error_code&) override {
        response.body.append(part.data(), part.size());
        return part.size();
    }
    void on_finish_impl(error_code&) override {}
};

/// The peer closed or reset the connection (rather than sending something wrong).
bool is_closed_connection(const error_code& ec) noexcept {
    return ec == http::error::end_of_stream || ec == http::error::partial_message ||
           ec == asio::error::eof || ec == asio::error::connection_reset ||
           ec == asio::error::broken_pipe || ec == asio::error::connection_aborted ||
           ec == asio::error::not_connected || ec == asio::ssl::error::stream_truncated;
}

bool is_http_error(const error_code& ec) noexcept {
    return ec.category() == make_error_code(http::error::end_of_stream).category();
}

/// Closes the idle connections past `idle_timeout` (zero: none expire).
void drop_expired(std::vector<std::unique_ptr<connection>>& idle, steady::time_point now,
                  std::chrono::milliseconds idle_timeout) {
    if (idle_timeout.count() <= 0) {
        return;
    }
    auto fresh = std::find_if(idle.begin(), idle.end(),
                              [&](const auto& c) { return now - c->idle_since < idle_timeout; });
    for (auto it = idle.begin(); it != fresh; ++it) {
        (*it)->close();
    }
    idle.erase(idle.begin(), fresh);
}

}  // namespace

struct http_pool::state {
    endpoint_map endpoints;
    /// Made on the first TLS send; `tls_error` says why it cannot be used.
    std::unique_ptr<asio::ssl::context> tls;
    std::string tls_error;
    std::uint64_t opened = 0;
    steady::time_point last_sweep = steady::now();
    bool shut_down = false;
    /// Request head buffers of finished exchanges, reused (their capacity) by the next ones.
    std::vector<std::string> spare_heads;
    static constexpr std::size_t max_spare_heads = 64;
    static constexpr std::size_t max_spare_head_capacity = 4096;

    std::string take_head() {
        if (spare_heads.empty()) {
            return {};
        }
        std::string h = std::move(spare_heads.back());
        spare_heads.pop_back();
        return h;
    }
    void give_head(std::string&& h) {
        if (spare_heads.size() < max_spare_heads && h.capacity() <= max_spare_head_capacity) {
            spare_heads.push_back(std::move(h));
        }
    }

    /// An endpoint with nothing idle and nothing in flight is forgotten: instances come and go.
    void forget_if_unused(endpoint_map::iterator it) {
        if (it->second.idle.empty() && it->second.active == 0) {
            endpoints.erase(it);
        }
    }
    /// Expires idle connections of every endpoint, also those no longer called.
    void sweep(steady::time_point now, std::chrono::milliseconds idle_timeout) {
        last_sweep = now;
        for (auto it = endpoints.begin(); it != endpoints.end();) {
            drop_expired(it->second.idle, now, idle_timeout);
            auto next = std::next(it);
            forget_if_unused(it);
            it = next;
        }
    }
};

/// One exchange, each step a callback: take an idle connection or open one (resolve, then each
/// address in turn under one connect deadline), write, read until a final response, then pool
/// or close the connection and complete. Cancellation closes the socket (or cancels the
/// resolver); each step looks at `cancelled` first, so whatever the aborted operation reports,
/// the outcome is operation_aborted.
struct http_pool::exchange : std::enable_shared_from_this<http_pool::exchange> {
    exchange(std::shared_ptr<http_pool> pool, endpoint_map::iterator ep, bool idempotent,
             diagnostics& diag)
        : pool(std::move(pool)), ep(ep), idempotent(idempotent), diag(diag) {}

    std::shared_ptr<http_pool> pool;
    endpoint_map::iterator ep;  // stable: the entry stays while ep->second.active > 0
    bool idempotent;
    diagnostics& diag;
    /// Where the outcome goes: the handler of async_send, or the sink of send().
    std::optional<handler_type> handler;  // emplaced: Boost 1.81's move assignment recurses
    std::shared_ptr<exchange_sink> sink;
    asio::cancellation_slot slot;
    std::string head;  // the serialized request head
    std::string body;
    bool head_request = false;  // HEAD: the answer has no body
    std::unique_ptr<connection> conn;
    std::optional<response_reader> parser;
    std::optional<tcp::resolver> resolver;
    std::vector<tcp::endpoint> addresses;
    std::size_t next_address = 0;
    /// `conn` came from the pool rather than being opened for this exchange.
    bool reused = false;
    /// The request already went out once on a pooled connection found dead.
    bool retried = false;
    bool cancelled = false;
    steady::time_point started;

    const std::string& host() const noexcept { return ep->first.host; }
    std::uint16_t port() const noexcept { return ep->first.port; }
    bool tls() const noexcept { return ep->first.tls; }
    std::string where() const {
        return (tls() ? "https://" : "") + authority(host(), port(), false);
    }
    std::string what() const {
        // "METHOD target", the head's request line.
        return head.substr(0, head.find(" HTTP/1.1\r\n"));
    }

    void start(steady::time_point now) {
        if (handler) {
            slot = asio::get_associated_cancellation_slot(*handler);
        }
        if (slot.is_connected()) {
            // Weak: an exchange destroyed unfinished (its io_context gone) leaves the slot
            // holding this handler.
            slot.assign([weak = weak_from_this()](asio::cancellation_type type) {
                if (type == asio::cancellation_type::none) {
                    return;
                }
                if (auto self = weak.lock()) {
                    self->cancel();
                }
            });
        }
        auto& idle = ep->second.idle;
        drop_expired(idle, now, pool->cfg_.idle_timeout);
        if (idle.empty()) {
            open();
            return;
        }
        conn = std::move(idle.back());
        idle.pop_back();
        reused = true;
        write();
    }

    void cancel() {
        if (cancelled) {
            return;
        }
        cancelled = true;
        if (resolver) {
            resolver->cancel();
        }
        if (conn) {
            conn->close();
        }
    }

    // -------------------------------------------------------------- connect

    void open() {
        reused = false;
        conn = std::make_unique<connection>(pool->ex_);
        if (!addresses.empty()) {  // a retry: the addresses are known
            next_address = 0;
            connect_next();
            return;
        }
        error_code not_ip;
        const auto ip = asio::ip::make_address(host(), not_ip);
        if (!not_ip) {
            addresses.emplace_back(ip, port());
            connect_next();
            return;
        }
        char digits[8];
        auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), port());
        resolver.emplace(pool->ex_);
        resolver->async_resolve(
            host(), std::string_view(digits, static_cast<std::size_t>(end - digits)),
            tcp::resolver::numeric_service,
            [self = shared_from_this()](error_code ec, tcp::resolver::results_type results) {
                self->resolved(ec, results);
            });
    }

    void resolved(error_code ec, const tcp::resolver::results_type& results) {
        if (cancelled) {
            return finish(asio::error::operation_aborted);
        }
        if (!ec && results.empty()) {
            ec = asio::error::host_not_found;
        }
        if (ec) {
            return fail(transport_errc::resolve_failed,
                        "resolving " + host() + " (for " + where() + "): " + ec.message());
        }
        for (const auto& r : results) {
            addresses.push_back(r.endpoint());
        }
        connect_next();
    }

    void connect_next() {
        if (next_address == 0 && pool->cfg_.connect_timeout.count() > 0) {
            // One deadline for every address.
            conn->stream.expires_after(pool->cfg_.connect_timeout);
        }
        const tcp::endpoint to = addresses[next_address++];
        conn->stream.async_connect(
            to, [self = shared_from_this()](error_code ec) { self->connected(ec); });
    }

    void connected(error_code ec) {
        if (cancelled) {
            return finish(asio::error::operation_aborted);
        }
        if (ec == beast::error::timeout) {
            return fail(transport_errc::connect_failed,
                        "connecting to " + where() + ": no connection within " +
                            std::to_string(pool->cfg_.connect_timeout.count()) +
                            " ms (connect_timeout)");
        }
        if (ec) {
            if (next_address < addresses.size()) {
                error_code ignored;
                conn->stream.socket().close(ignored);
                connect_next();
                return;
            }
            return fail(transport_errc::connect_failed,
                        "connecting to " + where() + ": " + ec.message());
        }
        error_code ignored;
        conn->stream.socket().set_option(tcp::no_delay(true), ignored);
        ++pool->st_->opened;
        if (tls()) {
            return handshake();
        }
        conn->stream.expires_never();
        write();
    }

    /// The name the instance's certificate must carry: the configured one, else the host.
    const std::string& tls_name() const noexcept {
        const auto& configured = pool->cfg_.tls.server_name;
        return configured.empty() ? host() : configured;
    }

    /// Under the connect deadline still running.
    void handshake() {
        conn->tls.emplace(conn->stream, *pool->st_->tls);
        if (auto ec = lakemesh::detail::set_tls_server_name(*conn->tls, tls_name(),
                                                            pool->cfg_.tls.verify, diag)) {
            return finish(ec);
        }
        conn->tls->async_handshake(
            asio::ssl::stream_base::client,
            [self = shared_from_this()](error_code ec) { self->handshaken(ec); });
    }

    void handshaken(error_code ec) {
        if (cancelled) {
            return finish(asio::error::operation_aborted);
        }
        if (ec == beast::error::timeout) {
            return fail(transport_errc::connect_failed,
                        "TLS handshake with " + where() + ": not done within " +
                            std::to_string(pool->cfg_.connect_timeout.count()) +
                            " ms (connect_timeout)");
        }
        if (ec) {
            std::string why = "TLS handshake with " + where() + ": " + ec.message();
            if (!lakemesh::detail::is_tls_verify_failure(ec)) {
                return fail(transport_errc::tls_handshake_failed, why + "; nothing was sent");
            }
            return fail(transport_errc::tls_verify_failed,
                        why + " (the certificate is not trusted or does not name '" + tls_name() +
                            "'); nothing was sent");
        }
        conn->stream.expires_never();
        write();
    }

    // -------------------------------------------------------------- exchange

    void write() {
        const std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(body)};
        conn->io([&](auto& stream) {
            asio::async_write(
                stream, bufs,
                [self = shared_from_this()](error_code ec, std::size_t) { self->written(ec); });
        });
    }

    void written(error_code ec) {
        if (cancelled) {
            return finish(asio::error::operation_aborted);
        }
        if (ec) {
            return io_failed(ec, false, "while sending the request");
        }
        read();
    }

    void read() {
        const auto& cfg = pool->cfg_;
        parser.emplace();
        parser->body_limit(cfg.max_response_body);
        parser->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
            cfg.max_response_header, std::numeric_limits<std::uint32_t>::max())));
        // An answer to HEAD has no body, whatever its Content-Length says.
        parser->skip(head_request);
        conn->io([&](auto& stream) {
            http::async_read(stream, conn->buffer, *parser,
                             [self = shared_from_this()](error_code ec, std::size_t) {
                                 self->got_response(ec);
                             });
        });
    }

    void got_response(error_code ec) {
        if (cancelled) {
            return finish(asio::error::operation_aborted);
        }
        if (ec) {
            return io_failed(ec, parser->got_some() || conn->buffer.size() != 0,
                             "before the response was complete");
        }
        const unsigned status = parser->response.status;
        if (status == 101) {
            return fail(transport_errc::protocol_error,
                        where() + " switched protocols (101) without being asked to");
        }
        if (status >= 100 && status < 200) {
            read();  // interim (100 Continue, 103 Early Hints): the final response follows
            return;
        }
        // Bytes beyond the response would be taken for the start of the next one.
        const bool keep_alive = parser->keep_alive() && conn->buffer.size() == 0;
        release(keep_alive);
        finish({}, std::move(parser->response));
    }

    /// A write or read failed; `got_bytes`: some of a response had come back.
    void io_failed(error_code ec, bool got_bytes, const char* when) {
        const auto& cfg = pool->cfg_;
        if (ec == http::error::body_limit) {
            return fail(decode_errc::body_too_large,
                        "response from " + where() + " to " + what() +
                            " has a body larger than max_response_body (" +
                            std::to_string(cfg.max_response_body) + " bytes)");
        }
        if (ec == http::error::header_limit) {
            return fail(transport_errc::protocol_error,
                        "response from " + where() + " to " + what() +
                            " has a head larger than max_response_header (" +
                            std::to_string(cfg.max_response_header) + " bytes)");
        }
        if (reused && !got_bytes && is_closed_connection(ec)) {
            // The peer had closed the pooled connection (its idle timeout, a restart) before
            // this request reached it, or so it looks: nothing came back.
            conn->close();
            conn.reset();
            if (idempotent && !retried) {
                retried = true;
                open();
                return;
            }
            return fail(
                transport_errc::connection_closed,
                where() + " closed the pooled keep-alive connection without answering " + what() +
                    " (" + ec.message() + "); not sent again" +
                    (retried ? " (it was a retry already)" : " since it is not idempotent"));
        }
        if (is_http_error(ec) && !is_closed_connection(ec)) {
            return fail(transport_errc::protocol_error, "bad HTTP response from " + where() +
                                                            " to " + what() + ": " + ec.message());
        }
        return fail(transport_errc::connection_closed, where() + " closed the connection " + when +
                                                           " (" + what() + "): " + ec.message());
    }

    // -------------------------------------------------------------- outcome

    /// Pools the connection after a complete response, or closes it.
    void release(bool keep_alive) {
        auto& st = *pool->st_;
        auto& idle = ep->second.idle;
        const std::size_t cap = pool->cfg_.max_idle_per_endpoint;
        if (!keep_alive || st.shut_down || cap == 0) {
            return;  // finish closes it
        }
        if (idle.size() >= cap) {
            idle.front()->close();  // the oldest is the likeliest to be closed by the peer
            idle.erase(idle.begin());
        }
        conn->idle_since = steady::now();
        idle.push_back(std::move(conn));
    }

    void fail(error_code ec, std::string message) {
        diag.set_client_message(std::move(message));
        finish(ec);
    }

    void finish(error_code ec, http_response response = {}) {
        if (ec == asio::error::operation_aborted) {
            diag.set_client_message(what() + " to " + where() + " was cancelled");
        }
        if (slot.is_connected()) {
            slot.clear();
        }
        if (conn) {
            conn->close();
            conn.reset();
        }
        auto& st = *pool->st_;
        --ep->second.active;
        st.forget_if_unused(ep);
        st.give_head(std::move(head));
        // Always from a completion of this exchange's own operations, never from async_send.
        if (sink) {
            auto s = std::move(sink);
            s->on_exchange_done(ec, response);
            return;
        }
        auto hex = asio::get_associated_executor(*handler, pool->ex_);
        asio::dispatch(hex, [h = std::move(*handler), ec, r = std::move(response)]() mutable {
            std::move(h)(ec, std::move(r));
        });
    }
};

http_pool::http_pool(asio::any_io_executor ex, http_pool_config cfg)
    : ex_(std::move(ex)), cfg_(cfg), st_(std::make_unique<state>()) {}

http_pool::~http_pool() {
    shutdown();
}

std::shared_ptr<http_pool::exchange> http_pool::begin(std::string& host, std::uint16_t port,
                                                      bool tls, const http_request& req,
                                                      std::span<const header_ref> extra,
                                                      bool idempotent, diagnostics& diag,
                                                      error_code& early) {
    auto& st = *st_;
    const std::string_view bare = bare_host(host);
    if (st.shut_down) {
        diag.set_client_message("the HTTP pool is shut down; nothing sent to " +
                                authority(bare, port, false));
        early = asio::error::operation_aborted;
        return nullptr;
    }
    if (auto ec = validate(bare, req, diag)) {
        early = ec;
        return nullptr;
    }
    if (tls && !st.tls) {
        st.tls = lakemesh::detail::make_tls_client_context(cfg_.tls, st.tls_error);
    }
    if (tls && !st.tls_error.empty()) {
        diag.set_client_message("TLS to https://" + authority(bare, port, false) +
                                " cannot be set up: " + st.tls_error + "; nothing was sent");
        early = transport_errc::tls_handshake_failed;
        return nullptr;
    }

    const auto now = steady::now();
    if (cfg_.idle_timeout.count() > 0 && now - st.last_sweep >= cfg_.idle_timeout) {
        st.sweep(now, cfg_.idle_timeout);
    }
    auto ep = st.endpoints.find(endpoint_ref{bare, port, tls});
    if (ep == st.endpoints.end()) {
        if (bare.size() != host.size()) {
            host = std::string(bare);
        }
        ep = st.endpoints.emplace(endpoint_key{std::move(host), port, tls}, endpoint_pool{}).first;
    }
    ++ep->second.active;
    auto op = std::make_shared<exchange>(shared_from_this(), ep, idempotent, diag);
    op->head = st.take_head();
    build_head(op->head, req, extra, ep->first.host, port, cfg_.max_idle_per_endpoint == 0);
    op->body = req.body;
    op->head_request = req.method == "HEAD";
    op->started = now;
    return op;
}

void http_pool::async_send(std::string host, std::uint16_t port, bool tls, const http_request& req,
                           bool idempotent, diagnostics& diag, handler_type handler) {
    async_send(std::move(host), port, tls, req, {}, idempotent, diag, std::move(handler));
}

void http_pool::async_send(std::string host, std::uint16_t port, bool tls, const http_request& req,
                           std::span<const header_ref> extra, bool idempotent, diagnostics& diag,
                           handler_type handler) {
    error_code early;
    auto op = begin(host, port, tls, req, extra, idempotent, diag, early);
    if (!op) {
        auto hex = asio::get_associated_executor(handler, ex_);
        asio::post(ex_, asio::bind_executor(hex, [h = std::move(handler), early]() mutable {
                       std::move(h)(early, http_response{});
                   }));
        return;
    }
    op->handler.emplace(std::move(handler));
    op->start(op->started);
}

http_pool::exchange* http_pool::send(std::string host, std::uint16_t port, bool tls,
                                     const http_request& req, std::span<const header_ref> extra,
                                     bool idempotent, diagnostics& diag,
                                     std::shared_ptr<exchange_sink> sink) {
    error_code early;
    auto op = begin(host, port, tls, req, extra, idempotent, diag, early);
    if (!op) {
        asio::post(ex_, [s = std::move(sink), early] {
            http_response none;
            s->on_exchange_done(early, none);
        });
        return nullptr;
    }
    op->sink = std::move(sink);
    op->start(op->started);
    return op.get();
}

void http_pool::cancel(exchange& x) {
    x.cancel();
}

void http_pool::shutdown() {
    auto& st = *st_;
    st.shut_down = true;
    for (auto it = st.endpoints.begin(); it != st.endpoints.end();) {
        for (auto& c : it->second.idle) {
            c->close();
        }
        it->second.idle.clear();
        auto next = std::next(it);
        st.forget_if_unused(it);
        it = next;
    }
}

std::size_t http_pool::idle_connections(std::string_view host, std::uint16_t port, bool tls) const {
    auto it = st_->endpoints.find(endpoint_ref{bare_host(host), port, tls});
    return it == st_->endpoints.end() ? 0 : it->second.idle.size();
}

std::uint64_t http_pool::connections_opened() const noexcept {
    return st_->opened;
}

}  // namespace detail
}  // namespace lakemesh::mesh
