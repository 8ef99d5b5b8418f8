#include "transport.hpp"

#include "core/base64.hpp"
#include "core/tls_client.hpp"
#include "meta_codec.hpp"
#include "response_head.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <optional>
#include <type_traits>
#include <vector>

namespace lakemesh::consul::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

using steady = std::chrono::steady_clock;

/// One keep-alive connection. Its timeouts come from one watchdog timer per exchange rather than
/// a timer wait and cancel per socket operation (as beast::tcp_stream does): a later deadline
/// while the watchdog is armed is a field write, and the watchdog re-arms itself when it wakes
/// early. It is cancelled once the connection stays idle (see went_idle), so idle pooled
/// connections hold no pending work and io_context::run can return.
struct connection : std::enable_shared_from_this<connection> {
    explicit connection(const asio::any_io_executor& ex) : watchdog(ex) {
        // Beast reads at most the buffer's spare capacity (512 bytes when empty), which splits a
        // typical Consul answer with its X-Consul-* headers into two receive calls.
        buffer.reserve(8192);
    }

    std::optional<tcp::socket> plain;
    std::optional<asio::ssl::stream<tcp::socket>> tls;
    beast::flat_buffer buffer;
    /// The request head being sent; kept to reuse its storage.
    std::string head;
    asio::steady_timer watchdog;
    steady::time_point deadline = steady::time_point::max();
    /// When the pending watchdog wait expires; max() when none is pending.
    steady::time_point armed_at = steady::time_point::max();
    /// The watchdog closed the socket: the failing operation timed out.
    bool timed_out = false;
    /// went_idle has posted its check.
    bool idle_check_posted = false;
    /// Counts arms and cancels, so a wake-up that was already queued when the watchdog was
    /// cancelled or re-armed is recognised as stale.
    std::uint64_t generation = 0;

    tcp::socket& lowest() { return tls ? tls->next_layer() : *plain; }
    void close() {
        beast::error_code ec;
        lowest().shutdown(tcp::socket::shutdown_both, ec);
        lowest().close(ec);
    }

    /// Operations from now on fail (with timed_out set) once `limit` has passed.
    void expires_after(steady::duration limit) {
        deadline = steady::now() + limit;
        if (deadline < armed_at) {
            arm(deadline);
        }
    }
    /// The connection goes back to the pool. Its watchdog wait is cancelled (so the idle
    /// connection holds no pending work) only once the executor gets back to its queue and the
    /// connection is still idle: a caller that starts its next exchange from the completion, as
    /// a serial loop does, finds the wait still armed for an earlier deadline and only moves the
    /// deadline, instead of a timer cancel, a completion and a new timer wait per exchange.
    void went_idle(const asio::any_io_executor& ex) {
        deadline = steady::time_point::max();
        if (armed_at == steady::time_point::max() || idle_check_posted) {
            return;
        }
        idle_check_posted = true;
        asio::post(ex, [weak = weak_from_this()] {
            auto self = weak.lock();
            if (!self) {
                return;
            }
            self->idle_check_posted = false;
            if (self->deadline == steady::time_point::max()) {
                self->expires_never();
            }
        });
    }
    void expires_never() {
        deadline = steady::time_point::max();
        if (armed_at != steady::time_point::max()) {
            armed_at = steady::time_point::max();
            ++generation;
            watchdog.cancel();
        }
    }

  private:
    void arm(steady::time_point at) {
        armed_at = at;
        watchdog.expires_at(at);  // cancels an earlier wait, whose handler then does nothing
        // A weak reference: an expiry already queued when the connection goes away must not
        // touch it.
        watchdog.async_wait([weak = weak_from_this(), gen = ++generation](error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->generation != gen) {
                return;
            }
            self->armed_at = steady::time_point::max();
            if (self->deadline == steady::time_point::max()) {
                return;  // idle; the next expires_after arms again
            }
            if (steady::now() >= self->deadline) {
                self->timed_out = true;
                self->close();
                return;
            }
            self->arm(self->deadline);
        });
    }
};

struct pool {
    agent_address address;
    /// The request header lines that are the same for every request to this address.
    std::string fixed_headers;
    std::vector<std::shared_ptr<connection>> idle;
    /// Non-blocking exchanges holding a connection from this pool.
    std::size_t busy = 0;
    /// All connections open (idle, busy and blocking).
    std::size_t open = 0;
    std::deque<std::shared_ptr<asio::steady_timer>> waiters;
};

}  // namespace

struct transport::state {
    std::deque<pool> pools;  // deque: pools are neither copied nor moved once made
    std::size_t preferred = 0;
    std::unique_ptr<asio::ssl::context> tls;
    /// Why the TLS settings cannot be used (a CA or certificate file that does not load);
    /// every exchange fails with it rather than with a puzzling handshake error.
    std::string tls_error;
    bool shut_down = false;
};

transport::transport(asio::any_io_executor ex, client_config cfg, observe::logger log)
    : ex_(std::move(ex)),
      cfg_(std::move(cfg)),
      log_(std::move(log)),
      st_(std::make_unique<state>()) {
    log_.add_secret(cfg_.token);
    std::string basic_auth;
    if (!cfg_.http_auth.empty()) {
        basic_auth = lakemesh::detail::base64_encode(cfg_.http_auth);
        log_.add_secret(cfg_.http_auth);
        log_.add_secret(basic_auth);
        if (auto colon = cfg_.http_auth.find(':'); colon != std::string::npos) {
            log_.add_secret(cfg_.http_auth.substr(colon + 1));
        }
    }
    for (const auto& a : cfg_.addresses) {
        auto& p = st_->pools.emplace_back();
        p.address = a;
        // Header values were checked for control characters by client_config::validate.
        p.fixed_headers = "Host: " + a.to_string() + "\r\nUser-Agent: lakemesh/0.1\r\n";
        if (!cfg_.token.empty()) {
            p.fixed_headers += "X-Consul-Token: " + cfg_.token + "\r\n";
        }
        if (!basic_auth.empty()) {
            p.fixed_headers += "Authorization: Basic " + basic_auth + "\r\n";
        }
    }
    if (cfg_.use_tls) {
        auto ctx = lakemesh::detail::make_tls_client_context(cfg_.tls, st_->tls_error);
        if (!cfg_.tls.verify) {
            log_.warn(
                "TLS certificate verification is OFF (CONSUL_HTTP_SSL_VERIFY=false): the Consul "
                "agent's identity is not checked and the ACL token can be stolen by anyone on the "
                "path. Never use this outside a test.");
        }
        st_->tls = std::move(ctx);
        if (!st_->tls_error.empty()) {
            log_.error(st_->tls_error);
        }
    }
}

transport::~transport() {
    shutdown();
}

void transport::shutdown() {
    st_->shut_down = true;
    for (auto& p : st_->pools) {
        for (auto& c : p.idle) {
            c->close();
        }
        p.open -= p.idle.size();
        p.idle.clear();
        for (auto& w : p.waiters) {
            w->cancel();
        }
        p.waiters.clear();
    }
}

std::size_t transport::open_connections(std::size_t i) const {
    return i < st_->pools.size() ? st_->pools[i].open : 0;
}

namespace {

/// Connects (and handshakes) to one agent. On failure returns nullptr with ec and diag set.
awaitable<std::shared_ptr<connection>> connect_to(const agent_address& addr,
                                                  const client_config& cfg, asio::ssl::context* tls,
                                                  error_code& ec, diagnostics& diag) {
    auto ex = co_await asio::this_coro::executor;
    auto c = std::make_shared<connection>(ex);
    if (tls != nullptr) {
        c->tls.emplace(ex, *tls);
    } else {
        c->plain.emplace(ex);
    }
    auto& low = c->lowest();
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(addr.host, std::to_string(addr.port),
                                                     asio::redirect_error(use_awaitable, ec));
    if (ec) {
        diag.set_client_message("resolving " + addr.to_string() + ": " + ec.message());
        ec = ec == asio::error::operation_aborted ? ec : error_code(transport_errc::resolve_failed);
        co_return nullptr;
    }
    if (cfg.connect_timeout.count() > 0) {
        c->expires_after(cfg.connect_timeout);
    }
    // One deadline for all endpoints, connect and TLS handshake together.
    ec = asio::error::host_not_found;
    for (const auto& ep : endpoints) {
        if (low.is_open()) {
            low.close(ec);
        }
        co_await low.async_connect(ep.endpoint(), asio::redirect_error(use_awaitable, ec));
        if (!ec || c->timed_out || ec == asio::error::operation_aborted) {
            break;
        }
    }
    if (c->timed_out) {
        ec = beast::error::timeout;
    }
    if (ec) {
        diag.set_client_message("connecting to " + addr.to_string() + ": " + ec.message());
        if (ec == beast::error::timeout) {
            ec = transport_errc::timeout;
        } else if (ec != asio::error::operation_aborted) {
            ec = transport_errc::connect_failed;
        }
        co_return nullptr;
    }
    low.set_option(tcp::no_delay(true));
    low.non_blocking(true);  // for the immediate send in write_read
    if (c->tls) {
        const std::string& name = cfg.tls.server_name.empty() ? addr.host : cfg.tls.server_name;
        if ((ec = lakemesh::detail::set_tls_server_name(*c->tls, name, cfg.tls.verify, diag))) {
            co_return nullptr;
        }
        co_await c->tls->async_handshake(asio::ssl::stream_base::client,
                                         asio::redirect_error(use_awaitable, ec));
        if (c->timed_out) {
            ec = beast::error::timeout;
        }
        if (ec) {
            diag.set_client_message("TLS handshake with " + addr.to_string() + ": " + ec.message());
            if (ec == beast::error::timeout) {
                ec = transport_errc::timeout;
            } else if (ec != asio::error::operation_aborted) {
                ec = lakemesh::detail::is_tls_verify_failure(ec)
                         ? error_code(transport_errc::tls_verify_failed)
                         : error_code(transport_errc::tls_handshake_failed);
            }
            co_return nullptr;
        }
    }
    c->expires_never();
    co_return c;
}

/// Writes the request head (into c.head, reusing its storage) for `call` on pool `p`.
void build_head(std::string& head, const http_call& call, const std::string& fixed_headers) {
    head.clear();
    head += http::to_string(call.method);
    head += ' ';
    head += call.target;
    head += " HTTP/1.1\r\n";
    head += fixed_headers;
    if (!call.body.empty()) {
        head += "Content-Type: application/json\r\n";
    }
    // As http::message::prepare_payload: a length for any body, and for methods that expect one.
    if (!call.body.empty() || call.method == http::verb::put || call.method == http::verb::post ||
        call.method == http::verb::options) {
        char digits[24];
        auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), call.body.size());
        head += "Content-Length: ";
        head.append(digits, end);
        head += "\r\n";
    }
    head += "\r\n";
}

using request_buffers = std::array<asio::const_buffer, 2>;

/// Sends what fits now of `request` on a plain socket (non-blocking): a request almost always
/// fits the socket's send buffer, and that saves async_write's completion round through the
/// scheduler. Returns the bytes sent; running out of buffer space is no error.
std::size_t send_now(tcp::socket& s, const request_buffers& request, error_code& ec) {
    const std::size_t n = s.write_some(request, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
        ec = {};
    }
    return n;
}

/// Sends c.head followed by `body`.
template <class Stream>
awaitable<void> send_request(Stream& s, connection& c, const std::string& body, error_code& ec) {
    const request_buffers request{asio::buffer(c.head), asio::buffer(body)};
    beast::buffers_suffix<request_buffers> rest(request);
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
        rest.consume(send_now(s, request, ec));
        if (ec) {
            co_return;
        }
    }
    if (beast::buffer_bytes(rest) != 0) {
        co_await asio::async_write(s, rest, asio::redirect_error(use_awaitable, ec));
    }
}

/// Takes the simple `head` parsed at the start of `bytes` (the connection's buffer) into `out`:
/// status, keep-alive, the X-Consul-* values and as much of the body as is buffered, consuming
/// what it took. Returns how many body bytes are still to be read into the end of out.body.
std::size_t accept_head(const response_head& head, std::string_view bytes, connection& c,
                        std::size_t body_limit, received_answer& out, error_code& ec) {
    if (head.content_length > body_limit) {
        ec = http::error::body_limit;
        return 0;
    }
    out.status = head.status;
    out.keep_alive = head.keep_alive;
    // Copied before the head leaves the buffer.
    if (head.index) {
        out.index.emplace(*head.index);
    }
    if (head.known_leader) {
        out.known_leader.emplace(*head.known_leader);
    }
    if (head.last_contact) {
        out.last_contact.emplace(*head.last_contact);
    }
    const auto length = static_cast<std::size_t>(head.content_length);
    const std::size_t buffered = std::min(bytes.size() - head.size, length);
    if (buffered == length) {
        // Bytes after the body belong to the next answer and stay, as Beast leaves them.
        out.body.assign(bytes.data() + head.size, length);
        c.buffer.consume(head.size + length);
        return 0;
    }
    out.body.resize(length);
    std::memcpy(out.body.data(), bytes.data() + head.size, buffered);
    c.buffer.consume(bytes.size());
    return length - buffered;
}

/// A read of the head that failed: got_bytes tells whether the buffer holds part of one, and the
/// end of the stream becomes the error Beast reports for it.
bool head_read_failed(connection& c, error_code& ec) {
    const bool got_bytes = c.buffer.size() != 0;
    if (ec == asio::error::eof) {
        ec = got_bytes ? http::error::partial_message : http::error::end_of_stream;
    }
    return got_bytes;
}

/// Reads one answer into `out`: a simple head with parse_response_head, anything else with
/// Beast's parser. got_bytes tells whether anything at all came back.
template <class Stream>
awaitable<void> read_answer(Stream& s, connection& c, std::size_t body_limit, received_answer& out,
                            bool& got_bytes, error_code& ec) {
    // The head, by parse_response_head while it stays simple. Nothing is consumed from the
    // buffer until it has accepted a head, so Beast can take over from the first byte.
    response_head head;
    std::string_view bytes;
    for (;;) {
        const auto data = c.buffer.data();
        bytes = std::string_view(static_cast<const char*>(data.data()), data.size());
        const auto verdict = parse_response_head(bytes, head);
        if (verdict == head_parse::simple) {
            break;
        }
        if (verdict == head_parse::not_simple) {
            answer_parser parser(out);
            parser.body_limit(body_limit);
            co_await http::async_read(s, c.buffer, parser, asio::redirect_error(use_awaitable, ec));
            got_bytes = parser.got_some() || c.buffer.size() != 0;
            if (!ec) {
                out.keep_alive = parser.keep_alive();
            }
            co_return;
        }
        const auto n =
            co_await s.async_read_some(c.buffer.prepare(beast::read_size(c.buffer, 65536)),
                                       asio::redirect_error(use_awaitable, ec));
        c.buffer.commit(n);
        if (ec) {
            // What Beast reports here: the buffered bytes are the valid start of a head.
            got_bytes = head_read_failed(c, ec);
            co_return;
        }
    }
    got_bytes = true;
    const std::size_t missing = accept_head(head, bytes, c, body_limit, out, ec);
    if (ec || missing == 0) {
        co_return;
    }
    co_await asio::async_read(s, asio::buffer(out.body.data() + out.body.size() - missing, missing),
                              asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::eof) {
        ec = http::error::partial_message;
    }
}

template <class Stream>
awaitable<void> write_read(Stream& s, connection& c, const std::string& body,
                           std::size_t body_limit, received_answer& out, bool& wrote,
                           bool& got_bytes, error_code& ec) {
    co_await send_request(s, c, body, ec);
    if (ec) {
        co_return;
    }
    wrote = true;
    co_await read_answer(s, c, body_limit, out, got_bytes, ec);
}

/// A kept-alive connection the agent had closed meanwhile fails like this with nothing read.
bool is_closed_connection(const error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
}

/// The error an exchange reports for a failure of its connection (after the watchdog and
/// cancellation were accounted for), with the method and address in diag.
error_code exchange_failure(const error_code& ec, http::verb method, const agent_address& address,
                            diagnostics& diag) {
    diag.set_client_message(std::string(http::to_string(method)) + " " + address.to_string() +
                            ": " + ec.message());
    if (ec == beast::error::timeout) {
        return transport_errc::timeout;
    }
    if (ec.category() == error_code(http::error::bad_version).category() &&
        !is_closed_connection(ec)) {
        return transport_errc::protocol_error;
    }
    return transport_errc::connection_closed;
}

/// Moves a received answer into `answer`; a malformed X-Consul-* header is the error.
error_code take_answer(received_answer& got, http_answer& answer, diagnostics& diag) {
    answer.status = got.status;
    answer.body = std::move(got.body);
    auto header = [](const std::optional<std::string>& v) {
        return v ? std::optional<std::string_view>(*v) : std::nullopt;
    };
    const consul_meta_headers headers{header(got.index), header(got.known_leader),
                                      header(got.last_contact)};
    return decode_query_meta(headers, answer.meta, diag);
}

/// Takes an idle connection of `p` or, when none is idle, a slot to open one (nullptr), waiting
/// while non-blocking exchanges hold all `cap` slots (a blocking query never waits: it is not
/// counted). A non-blocking caller's slot is counted busy. Returns false when cancelled or shut
/// down meanwhile (no slot taken).
awaitable<bool> take_connection(pool& p, std::size_t cap, bool blocking, const bool& shut_down,
                                asio::any_io_executor ex, std::shared_ptr<connection>& c) {
    c.reset();
    while (true) {
        if (!p.idle.empty()) {
            c = std::move(p.idle.back());
            p.idle.pop_back();
            break;
        }
        if (blocking || p.busy < cap) {
            break;
        }
        auto t = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
        p.waiters.push_back(t);
        error_code wec;
        co_await t->async_wait(asio::redirect_error(use_awaitable, wec));
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none || shut_down) {
            std::erase(p.waiters, t);
            co_return false;
        }
    }
    if (!blocking) {
        ++p.busy;
    }
    co_return true;
}

/// Gives back a slot taken by take_connection and wakes one waiter.
void release_slot(pool& p, bool blocking) {
    if (!blocking) {
        --p.busy;
    }
    if (!p.waiters.empty()) {
        p.waiters.front()->cancel();
        p.waiters.pop_front();
    }
}

/// Pools a connection whose last answer allowed keep-alive, or closes it.
void put_back(pool& p, std::shared_ptr<connection> c, bool keep_alive, bool shut_down,
              std::size_t cap) {
    if (keep_alive && !c->timed_out && !shut_down && p.idle.size() < cap) {
        c->went_idle(c->watchdog.get_executor());
        p.idle.push_back(std::move(c));
    } else {
        c->expires_never();
        c->close();
        --p.open;
    }
}

/// How long one exchange of `call` may take: a blocking query adds its wait, and Consul's
/// jitter of up to wait/16.
std::chrono::milliseconds exchange_timeout(const http_call& call, const client_config& cfg) {
    auto timeout = cfg.request_timeout;
    if (call.blocking) {
        auto wait =
            call.wait.count() > 0 ? call.wait : std::chrono::milliseconds(std::chrono::minutes(5));
        timeout += wait + wait / 16;
    }
    return timeout;
}

struct attempt_facts {
    /// The connection came from the pool rather than being opened for this attempt.
    bool reused = false;
    /// The whole request was sent.
    bool wrote = false;
    /// Some of an answer came back.
    bool got_bytes = false;
    /// A failure that allows it may be retried (the first attempt on an address).
    bool may_retry = false;
};

/// The end of one attempt of a single-call exchange on connection `c` of pool `p`, its answer
/// read into `got` (ec clear) or the attempt failed: the connection goes back to the pool or is
/// closed, the slot is released, and the answer is moved into `answer` or the failure mapped to
/// the exchange's error. Sets `retry` instead when the call may go again on another connection:
/// a reused connection the agent had closed meanwhile, nothing came back, and sending again is
/// safe.
error_code settle_attempt(pool& p, std::shared_ptr<connection> c, const http_call& call,
                          const attempt_facts& facts, error_code ec, received_answer& got,
                          http_answer& answer, diagnostics& diag, const client_config& cfg,
                          bool shut_down, bool& retry) {
    retry = false;
    if (ec && c->timed_out) {
        ec = beast::error::timeout;
    }
    if (!ec) {
        ec = take_answer(got, answer, diag);
        if (!ec) {
            put_back(p, std::move(c), got.keep_alive, shut_down, cfg.pool_size_per_address);
            release_slot(p, call.blocking);
            return {};
        }
        // A malformed X-Consul-* header: the answer is not trusted, nor the connection.
        c->close();
        --p.open;
        release_slot(p, call.blocking);
        return ec;
    }
    c->close();
    --p.open;
    release_slot(p, call.blocking);
    if (ec == http::error::body_limit) {
        diag.set_client_message("response body larger than max_response_body (" +
                                std::to_string(cfg.max_response_body) + " bytes)");
        return decode_errc::body_too_large;
    }
    if (ec == asio::error::operation_aborted) {
        return ec;
    }
    // A kept-alive connection the agent had already closed: nothing came back. Sending again
    // is safe when the request is idempotent, or when it never left. A blocking query is never
    // resent: a connection lost while the agent held it may mean the agent restarted and lost
    // its state, which the caller (a watch) must hear about to resynchronise instead of
    // blocking on an index from before.
    const bool stale = facts.reused && !facts.got_bytes && is_closed_connection(ec);
    if (stale && facts.may_retry && !call.blocking && (call.idempotent || !facts.wrote)) {
        retry = true;
        return ec;
    }
    return exchange_failure(ec, call.method, p.address, diag);
}

}  // namespace

namespace {

/// "kv" of "/v1/kv/a/b?index=3"; "" outside /v1/.
std::string_view api_group(std::string_view target) noexcept {
    constexpr std::string_view v1 = "/v1/";
    if (target.substr(0, v1.size()) != v1) {
        return {};
    }
    target.remove_prefix(v1.size());
    return target.substr(0, target.find_first_of("/?"));
}

}  // namespace

void transport::report(const http_call& call, const error_code& ec, unsigned status,
                       std::chrono::steady_clock::time_point start) const noexcept {
    if (!observer_) {
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start);
    request_event e;
    e.group = api_group(call.target);
    const auto method = http::to_string(call.method);
    e.method = std::string_view(method.data(), method.size());
    e.blocking = call.blocking;
    e.status = status;
    e.ec = ec;
    e.start = std::chrono::time_point_cast<std::chrono::system_clock::duration>(
        std::chrono::system_clock::now() - elapsed);
    e.elapsed = elapsed;
    observer_->on_request(e);
}

awaitable<std::pair<error_code, http_answer>> transport::exchange(http_call call, diagnostics& diag,
                                                                  bool retrying_stale) {
    if (!observer_) {
        co_return co_await exchange_once(std::move(call), diag, retrying_stale);
    }
    const auto start = std::chrono::steady_clock::now();
    // The target and method outlive the exchange for the report (the call is moved into it).
    http_call facts;
    facts.method = call.method;
    facts.target = call.target;
    facts.blocking = call.blocking;
    auto r = co_await exchange_once(std::move(call), diag, retrying_stale);
    report(facts, r.first, r.second.status, start);
    co_return r;
}

awaitable<std::pair<error_code, http_answer>> transport::exchange_once(http_call call,
                                                                       diagnostics& diag,
                                                                       bool retrying_stale) {
    auto self = shared_from_this();  // keep the pools alive across suspensions
    auto& st = *st_;
    http_answer answer;
    if (st.shut_down) {
        co_return std::pair{error_code(asio::error::operation_aborted), answer};
    }
    if (!st.tls_error.empty()) {
        diag.set_client_message(st.tls_error);
        co_return std::pair{error_code(validation_errc::invalid_configuration), answer};
    }

    const auto timeout = exchange_timeout(call, cfg_);
    error_code last_ec = transport_errc::all_addresses_failed;
    const std::size_t n = st.pools.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t idx = (st.preferred + i) % n;
        auto& p = st.pools[idx];

        for (int attempt = (i == 0 && retrying_stale) ? 1 : 0; attempt < 2; ++attempt) {
            std::shared_ptr<connection> c;
            if (!co_await take_connection(p, cfg_.pool_size_per_address, call.blocking,
                                          st.shut_down, ex_, c)) {
                co_return std::pair{error_code(asio::error::operation_aborted), answer};
            }
            const bool reused = c != nullptr;
            if (!c) {
                error_code cec;
                c = co_await connect_to(p.address, cfg_, st.tls.get(), cec, diag);
                if (!c) {
                    release_slot(p, call.blocking);
                    last_ec = cec;
                    if (cec == asio::error::operation_aborted) {
                        co_return std::pair{cec, answer};
                    }
                    log_.warn("Consul agent " + p.address.to_string() +
                              " unreachable: " + diag.client_message());
                    break;  // fail over to the next address
                }
                ++p.open;
            }

            build_head(c->head, call, p.fixed_headers);
            c->timed_out = false;
            if (timeout.count() > 0) {
                c->expires_after(timeout);
            }
            received_answer got;
            bool wrote = false;
            bool got_bytes = false;
            error_code ec;
            if (c->tls) {
                co_await write_read(*c->tls, *c, call.body, cfg_.max_response_body, got, wrote,
                                    got_bytes, ec);
            } else {
                co_await write_read(*c->plain, *c, call.body, cfg_.max_response_body, got, wrote,
                                    got_bytes, ec);
            }
            bool retry = false;
            const attempt_facts facts{reused, wrote, got_bytes, attempt == 0};
            ec = settle_attempt(p, std::move(c), call, facts, ec, got, answer, diag, cfg_,
                                st.shut_down, retry);
            if (retry) {
                continue;
            }
            if (!ec) {
                st.preferred = idx;
            }
            co_return std::pair{ec, std::move(answer)};
        }
    }
    if (n > 1 && last_ec != asio::error::operation_aborted) {
        diag.set_client_message("all " + std::to_string(n) +
                                " Consul agent addresses failed; last: " + diag.client_message());
        last_ec = transport_errc::all_addresses_failed;
    }
    co_return std::pair{last_ec, answer};
}

awaitable<std::vector<std::pair<error_code, http_answer>>> transport::exchange_pipelined(
    std::vector<http_call> calls, std::vector<diagnostics>& diags) {
    if (!observer_) {
        co_return co_await exchange_pipelined_once(std::move(calls), diags);
    }
    const auto start = std::chrono::steady_clock::now();
    std::vector<http_call> facts(calls.size());
    for (std::size_t i = 0; i < calls.size(); ++i) {
        facts[i].method = calls[i].method;
        facts[i].target = calls[i].target;
        facts[i].blocking = calls[i].blocking;
    }
    auto out = co_await exchange_pipelined_once(std::move(calls), diags);
    for (std::size_t i = 0; i < out.size() && i < facts.size(); ++i) {
        report(facts[i], out[i].first, out[i].second.status, start);
    }
    co_return out;
}

awaitable<std::vector<std::pair<error_code, http_answer>>> transport::exchange_pipelined_once(
    std::vector<http_call> calls, std::vector<diagnostics>& diags) {
    auto self = shared_from_this();
    auto& st = *st_;
    const std::size_t n = calls.size();
    std::vector<std::pair<error_code, http_answer>> out(n);
    diags.clear();
    diags.resize(n);
    const diagnostics none;
    // Calls from `next` on have no outcome yet.
    std::size_t next = 0;
    // Only idempotent, non-blocking calls are pipelined; others go one by one.
    const bool pipelinable = std::all_of(
        calls.begin(), calls.end(), [](const http_call& c) { return c.idempotent && !c.blocking; });
    auto fail_rest = [&](const error_code& ec, const diagnostics& diag) {
        for (; next < n; ++next) {
            out[next].first = ec;
            diags[next] = diag;
        }
    };
    if (st.shut_down) {
        fail_rest(asio::error::operation_aborted, none);
        co_return out;
    }
    if (st.pools.empty() || !st.tls_error.empty()) {
        diagnostics diag;
        diag.set_client_message(st.tls_error);
        fail_rest(validation_errc::invalid_configuration, diag);
        co_return out;
    }
    // One attempt after another on one connection each; an attempt that answers nothing (a
    // reused connection found dead) may be repeated once, and every attempt that answers
    // something earns the rest another.
    bool may_repeat = true;
    while (next < n) {
        if (next + 1 == n || !pipelinable) {
            // A single call left gets the full single-call path: failover, waiting, retries.
            // (exchange_once: the batch reports every call itself.)
            auto [ec, answer] = co_await exchange_once(std::move(calls[next]), diags[next], false);
            out[next].first = ec;
            out[next].second = std::move(answer);
            ++next;
            continue;
        }
        auto& p = st.pools[st.preferred];
        std::shared_ptr<connection> c;
        if (!co_await take_connection(p, cfg_.pool_size_per_address, false, st.shut_down, ex_, c)) {
            fail_rest(asio::error::operation_aborted, none);
            co_return out;
        }
        const bool reused = c != nullptr;
        if (!c) {
            diagnostics diag;
            error_code cec;
            c = co_await connect_to(p.address, cfg_, st.tls.get(), cec, diag);
            if (!c) {
                release_slot(p, false);
                if (cec == asio::error::operation_aborted || st.pools.size() == 1) {
                    fail_rest(cec, diag);
                    co_return out;
                }
                // Several agents: the single-call path fails over (and moves `preferred`).
                auto [ec, answer] = co_await exchange(std::move(calls[next]), diags[next]);
                out[next].first = ec;
                out[next].second = std::move(answer);
                ++next;
                continue;
            }
            ++p.open;
        }
        // Every request of the batch in one write.
        c->head.clear();
        std::string one;
        for (std::size_t i = next; i < n; ++i) {
            build_head(one, calls[i], p.fixed_headers);
            c->head += one;
            c->head += calls[i].body;
        }
        c->timed_out = false;
        if (cfg_.request_timeout.count() > 0) {
            c->expires_after(cfg_.request_timeout);
        }
        const std::string no_body;
        error_code ec;
        if (c->tls) {
            co_await send_request(*c->tls, *c, no_body, ec);
        } else {
            co_await send_request(*c->plain, *c, no_body, ec);
        }
        const std::size_t first = next;
        bool got_bytes = false;
        bool keep_alive = true;
        while (!ec && next < n && keep_alive) {
            received_answer got;
            if (c->tls) {
                co_await read_answer(*c->tls, *c, cfg_.max_response_body, got, got_bytes, ec);
            } else {
                co_await read_answer(*c->plain, *c, cfg_.max_response_body, got, got_bytes, ec);
            }
            if (ec) {
                break;
            }
            keep_alive = got.keep_alive;
            out[next].first = take_answer(got, out[next].second, diags[next]);
            ++next;
            if (cfg_.request_timeout.count() > 0) {
                c->expires_after(cfg_.request_timeout);  // each answer earns the next its time
            }
        }
        if (ec && c->timed_out) {
            ec = beast::error::timeout;
        }
        if (ec) {
            c->close();
            --p.open;
            release_slot(p, false);
            if (ec == asio::error::operation_aborted) {
                fail_rest(ec, none);
                co_return out;
            }
            if (ec == http::error::body_limit) {
                // This answer is lost, the connection with it; the rest go out again.
                diags[next].set_client_message("response body larger than max_response_body (" +
                                               std::to_string(cfg_.max_response_body) + " bytes)");
                out[next].first = decode_errc::body_too_large;
                ++next;
                continue;
            }
            // Pipelined calls are idempotent: the unanswered ones may go out again, on a fresh
            // connection, as long as the attempts make progress.
            const bool stale = reused && !got_bytes && next == first && is_closed_connection(ec);
            if (next > first || (stale && may_repeat)) {
                may_repeat = next > first;
                continue;
            }
            diagnostics diag;
            const auto mapped = exchange_failure(ec, calls[next].method, p.address, diag);
            fail_rest(mapped, diag);
            co_return out;
        }
        // All answered, or the agent closes after the last answer: the rest go out again.
        put_back(p, std::move(c), keep_alive, st.shut_down, cfg_.pool_size_per_address);
        release_slot(p, false);
    }
    co_return out;
}

// ------------------------------------------------------------------ callback-driven exchange

/// One exchange on an idle pooled connection, each step a callback: writes the request (at once
/// when it fits), reads the head with parse_response_head (or the whole answer with Beast's
/// parser), then the rest of the body, and settles the attempt as exchange() does. The
/// operation object is the only allocation of its own; the socket operations use the handlers'
/// recycling allocator.
struct transport::fast_exchange : std::enable_shared_from_this<transport::fast_exchange> {
    fast_exchange(std::shared_ptr<transport> t, pool& p, std::size_t idx, http_call call,
                  diagnostics& diag, asio::cancellation_slot slot,
                  std::shared_ptr<exchange_client> client)
        : t(std::move(t)),
          p(p),
          idx(idx),
          call(std::move(call)),
          diag(diag),
          slot(slot),
          client(std::move(client)) {}

    std::shared_ptr<transport> t;  // keeps the pools alive
    pool& p;
    std::size_t idx;
    http_call call;
    diagnostics& diag;
    asio::cancellation_slot slot;
    std::shared_ptr<exchange_client> client;
    std::shared_ptr<connection> c;
    received_answer got;
    std::optional<answer_parser> parser;
    http_answer answer;
    bool wrote = false;
    bool got_bytes = false;
    /// Inside start(): an outcome known at once is posted, never delivered from start_exchange.
    bool starting = true;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    template <class F>
    void with_stream(F&& f) {
        if (c->tls) {
            f(*c->tls);
        } else {
            f(*c->plain);
        }
    }
    template <class F>
    auto bound(F&& f) {
        return asio::bind_cancellation_slot(slot, std::forward<F>(f));
    }

    void start() {
        c = std::move(p.idle.back());
        p.idle.pop_back();
        ++p.busy;
        build_head(c->head, call, p.fixed_headers);
        c->timed_out = false;
        if (const auto timeout = exchange_timeout(call, t->cfg_); timeout.count() > 0) {
            c->expires_after(timeout);
        }
        const request_buffers request{asio::buffer(c->head), asio::buffer(call.body)};
        std::size_t sent = 0;
        error_code ec;
        if (c->plain) {
            sent = send_now(*c->plain, request, ec);
        }
        if (ec) {
            finish(ec);
        } else if (sent == beast::buffer_bytes(request)) {
            wrote = true;
            read_head();
        } else {
            send_rest(request, sent);
        }
        starting = false;
    }

    void send_rest(const request_buffers& request, std::size_t sent) {
        beast::buffers_suffix<request_buffers> rest(request);
        rest.consume(sent);
        with_stream([&](auto& s) {
            asio::async_write(s, rest,
                              bound([self = shared_from_this()](error_code ec, std::size_t) {
                                  if (ec) {
                                      self->finish(ec);
                                      return;
                                  }
                                  self->wrote = true;
                                  self->read_head();
                              }));
        });
    }

    /// As read_answer: nothing is consumed from the buffer until a simple head is accepted, so
    /// Beast can take over from the first byte.
    void read_head() {
        const auto data = c->buffer.data();
        const std::string_view bytes(static_cast<const char*>(data.data()), data.size());
        response_head head;
        switch (parse_response_head(bytes, head)) {
            case head_parse::simple: {
                got_bytes = true;
                error_code ec;
                const std::size_t missing =
                    accept_head(head, bytes, *c, t->cfg_.max_response_body, got, ec);
                if (ec || missing == 0) {
                    finish(ec);
                } else {
                    read_body(missing);
                }
                return;
            }
            case head_parse::not_simple:
                read_with_beast();
                return;
            case head_parse::need_more:
                break;
        }
        with_stream([&](auto& s) {
            s.async_read_some(c->buffer.prepare(beast::read_size(c->buffer, 65536)),
                              bound([self = shared_from_this()](error_code ec, std::size_t n) {
                                  self->c->buffer.commit(n);
                                  if (ec) {
                                      self->got_bytes = head_read_failed(*self->c, ec);
                                      self->finish(ec);
                                      return;
                                  }
                                  self->read_head();
                              }));
        });
    }

    void read_body(std::size_t missing) {
        with_stream([&](auto& s) {
            asio::async_read(s, asio::buffer(got.body.data() + got.body.size() - missing, missing),
                             bound([self = shared_from_this()](error_code ec, std::size_t) {
                                 if (ec == asio::error::eof) {
                                     ec = http::error::partial_message;
                                 }
                                 self->finish(ec);
                             }));
        });
    }

    void read_with_beast() {
        parser.emplace(got);
        parser->body_limit(t->cfg_.max_response_body);
        with_stream([&](auto& s) {
            http::async_read(s, c->buffer, *parser,
                             bound([self = shared_from_this()](error_code ec, std::size_t) {
                                 self->got_bytes =
                                     self->parser->got_some() || self->c->buffer.size() != 0;
                                 if (!ec) {
                                     self->got.keep_alive = self->parser->keep_alive();
                                 }
                                 self->finish(ec);
                             }));
        });
    }

    void finish(error_code ec) {
        auto& st = *t->st_;
        bool retry = false;
        const attempt_facts facts{true, wrote, got_bytes, true};
        ec = settle_attempt(p, std::move(c), call, facts, ec, got, answer, diag, t->cfg_,
                            st.shut_down, retry);
        if (retry) {
            // The pooled connection was dead: the coroutine carries on, its retry for that used.
            t->continue_in_coroutine(std::move(call), diag, slot, std::move(client), true);
            return;
        }
        if (!ec) {
            st.preferred = idx;
        }
        t->report(call, ec, answer.status, started);
        if (starting) {
            asio::post(t->ex_, [self = shared_from_this(), ec] {
                self->client->exchange_done(ec, self->answer);
            });
            return;
        }
        client->exchange_done(ec, answer);
    }
};

void transport::start_exchange(http_call call, diagnostics& diag, asio::cancellation_slot slot,
                               std::shared_ptr<exchange_client> client) {
    auto& st = *st_;
    if (st.shut_down || !st.tls_error.empty() || call.blocking || st.pools.empty() ||
        st.pools[st.preferred].idle.empty()) {
        continue_in_coroutine(std::move(call), diag, slot, std::move(client), false);
        return;
    }
    std::make_shared<fast_exchange>(shared_from_this(), st.pools[st.preferred], st.preferred,
                                    std::move(call), diag, slot, std::move(client))
        ->start();
}

void transport::continue_in_coroutine(http_call call, diagnostics& diag,
                                      asio::cancellation_slot slot,
                                      std::shared_ptr<exchange_client> client,
                                      bool retrying_stale) {
    asio::co_spawn(
        ex_,
        [self = shared_from_this(), call = std::move(call), &diag, client = std::move(client),
         retrying_stale]() mutable -> awaitable<void> {
            std::pair<error_code, http_answer> r;
            try {
                r = co_await self->exchange(std::move(call), diag, retrying_stale);
            } catch (const std::bad_alloc&) {
                r.first = make_error_code(boost::system::errc::not_enough_memory);
                diag.set_client_message("out of memory");
            } catch (const boost::system::system_error& e) {
                // Cancelled: the coroutine throws operation_aborted at its next co_await.
                r.first = e.code();
            }
            client->exchange_done(r.first, r.second);
        },
        // Only the client's own handler can throw here; that goes out of io_context::run.
        asio::bind_cancellation_slot(slot, [](const std::exception_ptr& e) {
            if (e) {
                std::rethrow_exception(e);
            }
        }));
}

}  // namespace lakemesh::consul::detail
