#include <lakemesh/observe/admin_server.hpp>

#include "core/ascii.hpp"
#include "observe/admin_page.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

namespace lakemesh::observe {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

constexpr std::string_view text_plain = "text/plain; charset=utf-8";

bool is_loopback(const asio::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
    }
    return a.is_loopback();
}

std::array<unsigned char, 32> sha256(std::string_view s) {
    std::array<unsigned char, 32> out{};
    unsigned int n = 0;
    EVP_Digest(s.data(), s.size(), out.data(), &n, EVP_sha256(), nullptr);
    return out;
}

/// Compares digests, so the time taken depends on neither the token's length nor where the
/// first difference is.
bool same_secret(std::string_view expected, std::string_view given) {
    const auto a = sha256(expected);
    const auto b = sha256(given);
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

using lakemesh::detail::iequals;

/// "Bearer <token>" (the scheme is case-insensitive); empty when the header is not one.
std::string_view bearer_of(std::string_view header) {
    constexpr std::string_view scheme = "bearer";
    if (header.size() <= scheme.size() || !iequals(header.substr(0, scheme.size()), scheme) ||
        header[scheme.size()] != ' ') {
        return {};
    }
    header.remove_prefix(scheme.size());
    while (!header.empty() && header.front() == ' ') {
        header.remove_prefix(1);
    }
    while (!header.empty() && header.back() == ' ') {
        header.remove_suffix(1);
    }
    return header;
}

bool is_json_object(const std::string& s) {
    const auto first = s.find_first_not_of(" \t\r\n");
    return first != std::string::npos && s[first] == '{' && nlohmann::json::accept(s);
}

void add_common_headers(response& res, std::string_view content_type) {
    res.set(http::field::content_type, content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
}

response plain(http::status status, unsigned version, std::string body) {
    response res{status, version};
    add_common_headers(res, text_plain);
    res.body() = std::move(body);
    return res;
}

/// An answer to a request that could not be read; the connection closes after it.
response refusal(http::status status, std::string body) {
    auto res = plain(status, 11, std::move(body));
    res.keep_alive(false);
    res.prepare_payload();
    return res;
}

std::string endpoint_text(const tcp::endpoint& ep) {
    std::ostringstream os;
    os << ep;
    return os.str();
}

}  // namespace

struct admin_server::state : std::enable_shared_from_this<state> {
    struct connection {
        explicit connection(tcp::socket s) : stream(std::move(s)) {}
        beast::tcp_stream stream;
    };

    state(asio::any_io_executor ex, const admin_config& c, const admin_source& s, const logger& l)
        : acceptor(ex), cfg(c), src(s), log(l) {}

    tcp::acceptor acceptor;
    admin_config cfg;
    admin_source src;
    logger log;
    bool stopped = false;
    std::uint64_t next_id = 0;
    std::map<std::uint64_t, std::weak_ptr<connection>> connections;

    void stop() {
        if (stopped) {
            return;
        }
        stopped = true;
        error_code ignored;
        acceptor.close(ignored);
        auto open = std::move(connections);
        connections.clear();
        for (auto& [id, weak] : open) {
            if (auto c = weak.lock()) {
                c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
                c->stream.close();
            }
        }
    }

    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        while (!stopped) {
            error_code ec;
            tcp::socket socket(acceptor.get_executor());
            co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
            if (stopped || ec == asio::error::operation_aborted) {
                co_return;
            }
            if (ec) {
                // Out of descriptors and the like: back off a little rather than spin.
                log.warn("admin: accept failed: " + ec.message());
                asio::steady_timer backoff(acceptor.get_executor(), 100ms);
                co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                continue;
            }
            if (connections.size() >= cfg.max_connections) {
                log.debug("admin: connection refused, " + std::to_string(connections.size()) +
                          " already open");
                socket.close(ec);
                continue;
            }
            socket.set_option(tcp::no_delay(true), ec);
            auto c = std::make_shared<connection>(std::move(socket));
            const auto id = next_id++;
            connections.emplace(id, c);
            asio::co_spawn(
                acceptor.get_executor(), [self, c, id]() { return self->serve(*c, id); },
                asio::detached);
        }
    }

    asio::awaitable<void> serve(connection& c, std::uint64_t id) {
        try {
            co_await serve_requests(c);
        } catch (const std::exception& e) {
            log.warn(std::string("admin: connection ended: ") + e.what());
        }
        connections.erase(id);
        error_code ignored;
        c.stream.socket().close(ignored);
    }

    asio::awaitable<void> serve_requests(connection& c) {
        const std::size_t limit = cfg.max_request_bytes;
        beast::flat_buffer buffer;
        while (!stopped) {
            http::request_parser<http::string_body> parser;
            parser.header_limit(static_cast<std::uint32_t>(
                std::min<std::size_t>(limit, std::numeric_limits<std::uint32_t>::max())));
            parser.body_limit(limit);
            error_code ec;
            c.stream.expires_after(cfg.read_timeout);
            const std::size_t head = co_await http::async_read_header(
                c.stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
            if (!ec && !parser.is_done()) {
                // The limit covers head and body together. The parser checked a Content-Length
                // against the whole limit when the head ended; chunks count against the new one.
                const std::size_t left = limit - std::min(head, limit);
                if (parser.content_length() && *parser.content_length() > left) {
                    ec = http::error::body_limit;
                } else {
                    parser.body_limit(left);
                    co_await http::async_read(c.stream, buffer, parser,
                                              asio::redirect_error(asio::use_awaitable, ec));
                }
            }
            if (stopped) {
                co_return;
            }
            if (ec) {
                co_await refuse(c, ec);
                co_return;
            }
            const request& req = parser.get();
            response res = answer(req);
            const bool keep = res.keep_alive();
            c.stream.expires_after(cfg.read_timeout);
            co_await http::async_write(c.stream, res,
                                       asio::redirect_error(asio::use_awaitable, ec));
            if (ec || stopped) {
                co_return;
            }
            if (!keep) {
                co_await linger_close(c);
                co_return;
            }
        }
    }

    /// Answers a request that could not be read, when it deserves an answer.
    asio::awaitable<void> refuse(connection& c, const error_code& read_error) {
        std::optional<response> res;
        if (read_error == http::error::header_limit || read_error == http::error::body_limit ||
            read_error == http::error::buffer_overflow) {
            res = refusal(
                http::status::payload_too_large,
                "request larger than " + std::to_string(cfg.max_request_bytes) + " bytes\n");
        } else if (read_error.category() ==
                       http::make_error_code(http::error::bad_target).category() &&
                   read_error != http::error::end_of_stream &&
                   read_error != http::error::partial_message) {
            res = refusal(http::status::bad_request, "malformed request\n");
        }
        // Timeouts, resets and a client that closed: nobody to answer.
        if (!res) {
            if (read_error == beast::error::timeout) {
                log.debug("admin: client too slow, connection dropped");
            }
            co_return;
        }
        log.debug("admin: request refused (" + read_error.message() + ")");
        error_code ec;
        c.stream.expires_after(cfg.read_timeout);
        co_await http::async_write(c.stream, *res, asio::redirect_error(asio::use_awaitable, ec));
        if (!ec) {
            co_await linger_close(c);
        }
    }

    /// Closes after an answer without losing it: closing a socket with unread input makes the
    /// kernel send a reset, which can discard the answer before the client reads it. So shut
    /// the sending side and read what is still coming for a moment.
    asio::awaitable<void> linger_close(connection& c) {
        error_code ec;
        c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        c.stream.expires_after(std::min<std::chrono::milliseconds>(cfg.read_timeout, 1s));
        std::array<char, 4096> sink;
        std::size_t drained = 0;
        while (!ec && !stopped && drained < 1024 * 1024) {
            drained += co_await c.stream.async_read_some(
                asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
        }
        c.stream.close();
    }

    bool authorized(const request& req) const {
        if (cfg.token.empty()) {
            return true;
        }
        const auto it = req.find(http::field::authorization);
        const std::string_view given =
            it == req.end() ? std::string_view{} : bearer_of(it->value());
        // Even a missing header costs a comparison, so absence and a wrong token look alike.
        const bool same = same_secret(cfg.token, given);
        return same && !given.empty();
    }

    /// Calls a source callback; false (with a 500 in `res`) when it throws.
    template <class F>
    bool call(std::string_view path, response& res, F&& f) {
        try {
            f();
            return true;
        } catch (const std::exception& e) {
            log.warn("admin: " + std::string(path) + " failed: " + e.what());
        } catch (...) {
            log.warn("admin: " + std::string(path) + " failed with an unknown exception");
        }
        res = plain(http::status::internal_server_error, res.version(), "internal error\n");
        return false;
    }

    response answer(const request& req) {
        const unsigned version = req.version();
        std::string_view target = req.target();
        response res = route(req, target, version);
        res.keep_alive(req.keep_alive());
        const bool head = req.method() == http::verb::head;
        const auto length = res.body().size();
        if (head) {
            res.body().clear();
        }
        res.content_length(length);
        if (log.enabled(log_level::debug)) {
            log.debug("admin: " + std::string(req.method_string()) + " " +
                      std::string(target.substr(0, target.find('?'))) + " -> " +
                      std::to_string(res.result_int()));
        }
        return res;
    }

    response route(const request& req, std::string_view target, unsigned version) {
        if (target.empty() || target.front() != '/') {
            auto res = plain(http::status::bad_request, version, "request target must be a path\n");
            return res;
        }
        const std::string_view path = target.substr(0, target.find_first_of("?#"));
        if (path != "/healthz" && !authorized(req)) {
            auto res = plain(http::status::unauthorized, version, "unauthorized\n");
            res.set(http::field::www_authenticate, "Bearer realm=\"lakemesh-admin\"");
            return res;
        }
        const bool known = path == "/" || path == "/metrics" || path == "/healthz" ||
                           path == "/readyz" || path == "/status";
        if (!known) {
            return plain(http::status::not_found, version, "not found\n");
        }
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            auto res = plain(http::status::method_not_allowed, version,
                             "only GET and HEAD: this endpoint changes nothing\n");
            res.set(http::field::allow, "GET, HEAD");
            return res;
        }
        response res{http::status::ok, version};
        if (path == "/healthz") {
            add_common_headers(res, text_plain);
            res.body() = "ok\n";
        } else if (path == "/") {
            const auto& page = detail::the_admin_page();
            add_common_headers(res, "text/html; charset=utf-8");
            res.set("Content-Security-Policy", page.content_security_policy);
            res.set("X-Frame-Options", "DENY");
            res.set("Referrer-Policy", "no-referrer");
            res.body() = page.html;
        } else if (path == "/metrics") {
            if (!src.metrics) {
                return plain(http::status::not_found, version, "no metrics here\n");
            }
            add_common_headers(res, "text/plain; version=0.0.4; charset=utf-8");
            call(path, res, [&] { res.body() = src.metrics(); });
        } else if (path == "/readyz") {
            if (!src.ready) {
                return plain(http::status::not_found, version, "no readiness here\n");
            }
            add_common_headers(res, text_plain);
            call(path, res, [&] {
                std::string reason;
                if (src.ready(reason)) {
                    res.body() = "ready\n";
                } else {
                    res.result(http::status::service_unavailable);
                    res.body() = "not ready: " + reason + "\n";
                }
            });
        } else {
            if (!src.status_json) {
                return plain(http::status::not_found, version, "no status here\n");
            }
            add_common_headers(res, "application/json");
            if (call(path, res, [&] { res.body() = src.status_json(); }) &&
                !is_json_object(res.body())) {
                log.warn("admin: /status is not a JSON object");
                res = plain(http::status::internal_server_error, version, "internal error\n");
            }
        }
        return res;
    }
};

admin_server::admin_server(boost::asio::any_io_executor ex, admin_config cfg, admin_source src,
                           logger log)
    : ex_(std::move(ex)),
      cfg_(std::move(cfg)),
      src_(std::move(src)),
      log_(log.with_component("admin")) {
    if (!cfg_.token.empty()) {
        log_.add_secret(cfg_.token);
    }
}

admin_server::~admin_server() {
    stop();
}

boost::asio::any_io_executor admin_server::get_executor() const noexcept {
    return ex_;
}

std::uint16_t admin_server::port() const noexcept {
    return port_;
}

void admin_server::stop() {
    if (state_) {
        state_->stop();
        state_.reset();
        port_ = 0;
        log_.info("admin endpoint stopped");
    }
}

error_code admin_server::start(diagnostics& diag) {
    diag.clear();
    auto invalid = [&](std::string msg) {
        diag.set_client_message(std::move(msg));
        return make_error_code(validation_errc::invalid_configuration);
    };
    if (state_) {
        diag.set_client_message("admin: already started");
        return validation_errc::invalid_argument;
    }
    error_code ec;
    const auto address = asio::ip::make_address(cfg_.address, ec);
    if (ec) {
        return invalid("admin.address: '" + cfg_.address + "' is not an IP address");
    }
    if (!is_loopback(address) && cfg_.token.empty()) {
        return invalid("admin.token: required when admin.address (" + cfg_.address +
                       ") is not a loopback address");
    }
    if (!std::all_of(cfg_.token.begin(), cfg_.token.end(),
                     [](char ch) { return ch > 0x20 && ch < 0x7f; })) {
        // The token itself is never put into a message.
        return invalid("admin.token: only visible ASCII characters are allowed");
    }
    if (cfg_.max_request_bytes == 0) {
        return invalid("admin.max_request_bytes: must be positive");
    }
    if (cfg_.max_connections == 0) {
        return invalid("admin.max_connections: must be positive");
    }
    if (cfg_.read_timeout <= std::chrono::milliseconds::zero()) {
        return invalid("admin.read_timeout: must be positive");
    }

    auto st = std::make_shared<state>(ex_, cfg_, src_, log_);
    const tcp::endpoint ep(address, cfg_.port);
    auto failed = [&](std::string_view what) {
        diag.set_client_message("admin: cannot " + std::string(what) + " " + endpoint_text(ep) +
                                ": " + ec.message());
        return ec;
    };
    st->acceptor.open(ep.protocol(), ec);
    if (ec) {
        return failed("open a socket for");
    }
    st->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (ec) {
        return failed("set SO_REUSEADDR on");
    }
    st->acceptor.bind(ep, ec);
    if (ec) {
        return failed("bind");
    }
    st->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        return failed("listen on");
    }
    port_ = st->acceptor.local_endpoint(ec).port();
    state_ = st;
    asio::co_spawn(
        ex_, [st]() { return st->accept_loop(); }, asio::detached);
    log_.info("admin endpoint on http://" + endpoint_text(tcp::endpoint(address, port_)) + "/" +
              (cfg_.token.empty() ? "" : " (bearer token required)"));
    return {};
}

}  // namespace lakemesh::observe
