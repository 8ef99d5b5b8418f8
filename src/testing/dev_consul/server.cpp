// HTTP/1.1 connections of the dev agent: parse, apply ACLs and injected faults, route, hold
// blocking queries until their data changes, answer with Consul's headers.
#include "core.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include <array>
#include <charconv>
#include <random>

namespace lakemesh::testing::detail {
namespace {

namespace beast = boost::beast;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

constexpr auto default_wait = std::chrono::minutes(5);
constexpr auto max_wait = std::chrono::minutes(10);

struct parsed_target {
    std::string path;  // after /v1/
    std::multimap<std::string, std::string> query;
};

std::optional<parsed_target> parse_target(std::string_view target) {
    auto u = boost::urls::parse_origin_form(target);
    if (!u) {
        return std::nullopt;
    }
    parsed_target out;
    out.path = u->path();
    for (auto p : u->params()) {
        out.query.emplace(std::string(p.key), p.has_value ? std::string(p.value) : std::string{});
    }
    return out;
}

/// The endpoints (below /v1/) on which Consul reads a namespace: KV, sessions, health, catalog
/// services, and the agent's services and checks.
bool takes_namespace(std::string_view path) {
    for (std::string_view prefix :
         {"kv/", "session/", "health/", "catalog/service", "agent/service", "agent/check"}) {
        if (path.starts_with(prefix)) {
            return true;
        }
    }
    return false;
}

std::string request_token(const http::request<http::string_body>& req, const parsed_target& t) {
    if (auto it = req.find("X-Consul-Token"); it != req.end()) {
        return std::string(it->value());
    }
    if (auto it = req.find(http::field::authorization); it != req.end()) {
        std::string_view v = it->value();
        if (v.starts_with("Bearer ")) {
            return std::string(v.substr(7));
        }
    }
    if (auto it = t.query.find("token"); it != t.query.end()) {
        return it->second;
    }
    return {};
}

template <class Stream>
class connection final : public closable, public std::enable_shared_from_this<connection<Stream>> {
  public:
    template <class... Args>
    connection(std::shared_ptr<dev_agent> agent, Args&&... args)
        : agent_(std::move(agent)), stream_(std::forward<Args>(args)...) {}

    void close() override {
        closed_ = true;
        beast::error_code ec;
        beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
        beast::get_lowest_layer(stream_).socket().close(ec);
        if (waiting_ != nullptr) {
            waiting_->cancel();
        }
    }

    awaitable<void> run() {
        auto self = this->shared_from_this();
        agent_->track(self);
        try {
            co_await serve();
        } catch (const std::exception& e) {
            agent_->opts.log.debug(std::string("connection ended: ") + e.what());
        }
        close();
        agent_->untrack(self);
    }

  private:
    awaitable<void> serve() {
        if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
            beast::error_code ec;
            co_await stream_.async_handshake(asio::ssl::stream_base::server,
                                             asio::redirect_error(use_awaitable, ec));
            if (ec) {
                co_return;
            }
            const char* sni =
                SSL_get_servername(stream_.native_handle(), TLSEXT_NAMETYPE_host_name);
            std::lock_guard lock(agent_->sni_mutex);
            agent_->last_sni = sni != nullptr ? sni : "";
        }
        beast::flat_buffer buffer;
        while (!closed_) {
            http::request_parser<http::string_body> parser;
            parser.body_limit(agent_->opts.max_request_body);
            parser.header_limit(64 * 1024);
            beast::error_code ec;
            co_await http::async_read(stream_, buffer, parser,
                                      asio::redirect_error(use_awaitable, ec));
            if (ec == http::error::body_limit) {
                response r = error_response(413, "Request body too large, max size: " +
                                                     std::to_string(agent_->opts.max_request_body) +
                                                     " bytes");
                co_await write(r, 11, false, false);
                co_return;
            }
            if (ec) {
                co_return;
            }
            auto req = parser.release();
            ++agent_->served;

            if (std::size_t n = agent_->fail_count.load(); n > 0) {
                if (agent_->fail_count.compare_exchange_strong(n, n - 1)) {
                    if (agent_->fail_kind.load() == static_cast<int>(dev_fault::drop_connection)) {
                        co_return;
                    }
                    response r = error_response(500, "rpc error making call: injected fault");
                    co_await write(r, req.version(), req.keep_alive(), false);
                    continue;
                }
            }
            while (agent_->paused && !closed_) {
                co_await park(0, std::chrono::steady_clock::time_point::max());
            }
            if (auto ms = agent_->latency_ms.load(); ms > 0) {
                asio::steady_timer t(stream_.get_executor());
                t.expires_after(std::chrono::milliseconds(ms));
                waiting_ = &t;
                co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
                waiting_ = nullptr;
            }
            if (closed_) {
                co_return;
            }
            bool stale = false;
            response r = co_await handle(req, stale);
            if (closed_) {
                co_return;
            }
            co_await write(r, req.version(), req.keep_alive(), stale);
            if (!req.keep_alive()) {
                co_return;
            }
        }
    }

    /// Waits until notified, the deadline passes, or the connection closes.
    /// Returns true when notified by a write.
    awaitable<bool> park(unsigned tables, std::chrono::steady_clock::time_point deadline) {
        asio::steady_timer t(stream_.get_executor());
        t.expires_at(deadline);
        parked_waiter w{&t, tables, false};
        auto& core = agent_->core;
        core.park(&w);
        waiting_ = &t;
        // A client that gives up (cancels, times out, is evicted) closes its connection; like
        // Consul's HTTP server, notice that and drop the query instead of holding it to the end
        // of its wait. Readable-while-parked means EOF, a reset, or pipelined bytes (left alone).
        auto& socket = beast::get_lowest_layer(stream_).socket();
        auto watching = std::make_shared<bool>(true);
        socket.async_wait(tcp::socket::wait_read, [this, self = this->shared_from_this(), watching,
                                                   &t](const boost::system::error_code& wec) {
            if (!*watching || wec) {
                return;
            }
            char byte = 0;
            boost::system::error_code pec;
            auto& s = beast::get_lowest_layer(stream_).socket();
            const auto n = s.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, pec);
            if (pec || n == 0) {
                closed_ = true;
                t.cancel();
            }
        });
        beast::error_code ec;
        co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        *watching = false;
        waiting_ = nullptr;
        core.unpark(&w);
        if (!closed_) {
            // Cancels the readiness wait above (nothing else is pending on the socket here).
            socket.cancel(ec);
        }
        co_return w.notified;
    }

    /// What identifies a shared answer: the route, the path below it and the query, less the
    /// blocking parameters (they choose when to answer, not what). Each part is prefixed by its
    /// length: decoded parameters may hold any byte, so no separator is safe.
    static std::string shared_answer_key(const route& rt, const request& rq,
                                         const std::string& rest) {
        std::string key;
        const auto add = [&key](std::string_view part) {
            key += std::to_string(part.size());
            key += ':';
            key += part;
        };
        add(rt.path);
        add(rest);
        for (const auto& [k, v] : rq.query) {
            if (k != "index" && k != "wait") {
                add(k);
                add(v);
            }
        }
        return key;
    }

    response run_route(const route& rt, const request& rq, std::string rest) {
        auto& core = agent_->core;
        std::string key;
        if (rt.shared_answer) {
            key = shared_answer_key(rt, rq, rest);
            if (const response* kept = core.shared_answer(key)) {
                return *kept;
            }
        }
        const std::uint64_t index_before = core.state().index;
        bool threw = false;
        route_context ctx{core.state(),
                          agent_->info,
                          core.members(),
                          rq,
                          std::move(rest),
                          core.io().get_executor(),
                          agent_->opts.kv_max_value_size};
        response r;
        try {
            r = rt.fn(ctx);
        } catch (const std::exception& e) {
            r = error_response(500, std::string("internal error: ") + e.what());
            threw = true;
        }
        if (rt.blocking_tables != 0 && !r.index) {
            r.index = core.state().table_index(rt.blocking_tables);
        }
        if (r.index && *r.index == 0) {
            r.index = 1;
        }
        if (rt.shared_answer && !threw && core.state().index == index_before) {
            core.keep_shared_answer(std::move(key), r);
        }
        core.after_write();
        return r;
    }

    awaitable<response> handle(const http::request<http::string_body>& msg, bool& stale) {
        auto target = parse_target(msg.target());
        if (!target) {
            co_return error_response(400, "Invalid request URL");
        }
        if (!target->path.starts_with("/v1/")) {
            co_return error_response(404, "404 page not found");
        }
        const auto token = request_token(msg, *target);
        request rq;
        rq.method = msg.method();
        rq.path = target->path.substr(4);
        rq.query = std::move(target->query);
        rq.body = msg.body();
        stale = rq.has("stale");

        // Consul CE parses a namespace on these endpoints before anything else and refuses one:
        // namespaces are an Enterprise feature. dev_consul behaves as CE does.
        if (takes_namespace(rq.path)) {
            if (msg.find("X-Consul-Namespace") != msg.end()) {
                co_return error_response(400,
                                         "Invalid header: \"X-Consul-Namespace\" - Namespaces "
                                         "are a Consul Enterprise feature");
            }
            if (auto ns = rq.param("ns"); ns && !ns->empty()) {
                co_return error_response(400,
                                         "Invalid query parameter: \"ns\" - Namespaces are a "
                                         "Consul Enterprise feature");
            }
        }

        const auto& acl = agent_->opts.acl_token;
        if (!acl.empty() && !rq.path.starts_with("status/")) {
            if (token.empty()) {
                co_return error_response(403,
                                         "Permission denied: anonymous token lacks permission");
            }
            if (token != acl) {
                co_return error_response(403, "ACL not found");
            }
        }

        std::string rest;
        bool path_exists = false;
        const route* rt = agent_->core.routes().match(rq.method, rq.path, rest, path_exists);
        if (rt == nullptr) {
            if (path_exists) {
                co_return error_response(
                    405, "method " + std::string(msg.method_string()) + " not allowed");
            }
            co_return error_response(404, "Invalid URL path: not a recognized HTTP API endpoint");
        }

        std::uint64_t min_index = 0;
        auto wait = std::chrono::nanoseconds(default_wait);
        if (rt->blocking_tables != 0) {
            if (auto v = rq.param("index"); v && !v->empty()) {
                auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), min_index);
                if (ec != std::errc{} || p != v->data() + v->size()) {
                    co_return error_response(400, "Invalid index");
                }
            }
            if (auto v = rq.param("wait"); v && !v->empty()) {
                auto d = parse_go_duration(*v);
                if (!d || d->count() < 0) {
                    co_return error_response(400, "Invalid wait time");
                }
                wait = *d;
            }
            if (wait > max_wait || wait.count() == 0) {
                wait = wait.count() == 0 ? std::chrono::nanoseconds(default_wait)
                                         : std::chrono::nanoseconds(max_wait);
            }
        }

        response r = run_route(*rt, rq, rest);
        if (rt->blocking_tables == 0 || min_index == 0 || !r.index || *r.index > min_index) {
            co_return r;
        }
        // Blocking query: hold until this endpoint's answer changes or the wait (plus up to
        // wait/16 of jitter, as Consul adds) runs out.
        thread_local std::mt19937_64 rng{std::random_device{}()};
        auto jitter = std::chrono::nanoseconds(
            std::uniform_int_distribution<std::int64_t>(0, wait.count() / 16)(rng));
        auto deadline =
            std::chrono::steady_clock::now() +
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait + jitter);
        for (;;) {
            bool notified = co_await park(rt->blocking_tables, deadline);
            if (closed_) {
                co_return r;
            }
            response again = run_route(*rt, rq, rest);
            if (!notified || again.status != r.status || again.body != r.body) {
                co_return again;
            }
        }
    }

    /// Sends `r`, whose body it takes.
    awaitable<void> write(response& r, unsigned version, bool keep_alive, bool stale) {
        http::response<http::string_body> res{static_cast<http::status>(r.status), version};
        res.set(http::field::server, "lakemesh-dev-consul");
        res.set(http::field::content_type, r.content_type);
        res.set(http::field::vary, "Accept-Encoding");
        if (r.index) {
            res.set("X-Consul-Index", std::to_string(*r.index));
            res.set("X-Consul-KnownLeader", "true");
            res.set("X-Consul-LastContact", "0");
            res.set("X-Consul-Effective-Consistency", stale ? "stale" : "leader");
        } else if (r.leader_meta) {
            res.set("X-Consul-KnownLeader", "true");
            res.set("X-Consul-LastContact", "0");
        }
        res.body() = std::move(r.body);
        res.keep_alive(keep_alive);
        res.prepare_payload();
        // The header as Beast's serializer writes it (start line, then the fields in order), in
        // one buffer: http::async_write walks its buffer views at a cost that, with a watch
        // answer per waiter, was a third of this thread's time.
        std::string head = "HTTP/";
        head += static_cast<char>('0' + res.version() / 10);
        head += '.';
        head += static_cast<char>('0' + res.version() % 10);
        head += ' ';
        head += std::to_string(res.result_int());
        head += ' ';
        head += res.reason();
        head += "\r\n";
        for (const auto& f : res) {
            head += f.name_string();
            head += ": ";
            head += f.value();
            head += "\r\n";
        }
        head += "\r\n";
        const std::array<asio::const_buffer, 2> bytes{asio::buffer(head), asio::buffer(res.body())};
        beast::error_code ec;
        co_await asio::async_write(stream_, bytes, asio::redirect_error(use_awaitable, ec));
        if (ec) {
            closed_ = true;
        }
    }

    std::shared_ptr<dev_agent> agent_;
    Stream stream_;
    bool closed_ = false;
    asio::steady_timer* waiting_ = nullptr;
};

}  // namespace

void serve_connection(const std::shared_ptr<dev_agent>& agent, tcp::socket socket) {
    socket.set_option(tcp::no_delay(true));
    if (agent->tls) {
        using tls_stream = asio::ssl::stream<beast::tcp_stream>;
        auto c = std::make_shared<connection<tls_stream>>(agent, std::move(socket), *agent->tls);
        asio::co_spawn(agent->core.io(), c->run(), asio::detached);
    } else {
        auto c = std::make_shared<connection<beast::tcp_stream>>(agent, std::move(socket));
        asio::co_spawn(agent->core.io(), c->run(), asio::detached);
    }
}

}  // namespace lakemesh::testing::detail
