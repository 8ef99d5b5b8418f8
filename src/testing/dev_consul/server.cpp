// HTTP/1.1 connections of the dev agent: parse, apply ACLs and injected faults, route, hold
// blocking queries until their data changes, answer with Consul's headers.
#include "core.hpp"
#include "go_json.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <random>

namespace lakemesh::testing::detail {
namespace {

namespace beast = boost::beast;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

constexpr auto default_wait = std::chrono::minutes(5);
constexpr auto max_wait = std::chrono::minutes(10);

bool hex_digit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    return (c | 0x20) - 'a' + 10;
}

/// Go's url.PathUnescape / QueryUnescape: false on a malformed escape.
bool go_unescape(std::string_view in, bool query, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size() || !hex_digit(in[i + 1]) || !hex_digit(in[i + 2])) {
                return false;
            }
            out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
            i += 2;
        } else if (c == '+' && query) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return true;
}

/// The request target as Go's server and Consul see it.
struct parsed_target {
    bool valid = true;                              // else Go answers 400 itself
    std::string path;                               // decoded, e.g. "/v1/kv/a"
    std::string raw_query;                          // as sent
    std::multimap<std::string, std::string> query;  // decoded, as url.ParseQuery reads it
    bool query_error = false;                       // url.ParseQuery failed: Consul answers 500
};

parsed_target parse_target(std::string_view target) {
    parsed_target out;
    // Absolute form (a proxy's request): keep the path and query only.
    for (std::string_view scheme : {"http://", "https://"}) {
        if (target.size() > scheme.size() && target.substr(0, scheme.size()) == scheme) {
            const auto slash = target.find('/', scheme.size());
            target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
        }
    }
    if (target.empty() || target.front() != '/') {
        out.valid = false;
        return out;
    }
    const auto q = target.find('?');
    const auto raw_path = target.substr(0, q);
    if (!go_unescape(raw_path, false, out.path)) {
        out.valid = false;
        return out;
    }
    if (q == std::string_view::npos) {
        return out;
    }
    out.raw_query = std::string(target.substr(q + 1));
    std::string_view rest = out.raw_query;
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        auto part = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (part.find(';') != std::string_view::npos) {
            out.query_error = true;  // Go >= 1.17: "invalid semicolon separator in query"
            continue;
        }
        if (part.empty()) {
            continue;
        }
        const auto eq = part.find('=');
        std::string key;
        std::string value;
        if (!go_unescape(part.substr(0, eq), true, key) ||
            (eq != std::string_view::npos && !go_unescape(part.substr(eq + 1), true, value))) {
            out.query_error = true;
            continue;
        }
        out.query.emplace(std::move(key), std::move(value));
    }
    return out;
}

/// Go's path.Clean, keeping a trailing slash as ServeMux does (cleanPath).
std::string clean_path(const std::string& p) {
    if (p.empty()) {
        return "/";
    }
    std::vector<std::string_view> parts;
    std::string_view rest = p;
    while (!rest.empty()) {
        const auto slash = rest.find('/');
        auto part = rest.substr(0, slash);
        rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
        if (part.empty() || part == ".") {
            continue;
        }
        if (part == "..") {
            if (!parts.empty()) {
                parts.pop_back();
            }
            continue;
        }
        parts.push_back(part);
    }
    std::string out;
    for (auto part : parts) {
        out += '/';
        out += part;
    }
    if (out.empty()) {
        out = "/";
    }
    if (p.back() == '/' && out != "/") {
        out += '/';
    }
    return out;
}

/// url.URL{Path: p}.EscapedPath(): what Go puts in a redirect's Location.
std::string escape_path(std::string_view p) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : p) {
        const bool keep = std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' ||
                          c == '$' || c == '&' || c == '+' || c == ',' || c == '/' || c == ':' ||
                          c == ';' || c == '=' || c == '@';
        if (keep && c < 0x80) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string html_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '&':
                out += "&amp;";
                break;
            case '\'':
                out += "&#39;";
                break;
            case '"':
                out += "&#34;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

/// http.StatusText of Go 1.19 for the statuses the agent answers with.
std::string_view status_text(unsigned status) {
    switch (status) {
        case 200:
            return "OK";
        case 301:
            return "Moved Permanently";
        case 400:
            return "Bad Request";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 413:
            return "Request Entity Too Large";
        case 429:
            return "Too Many Requests";
        case 500:
            return "Internal Server Error";
        case 503:
            return "Service Unavailable";
        default:
            return http::obsolete_reason(static_cast<http::status>(status));
    }
}

/// http.TimeFormat of the wall clock.
std::string http_date() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return buf;
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

/// The endpoints whose handlers call Consul's parse(): ?stale with ?consistent is refused there.
bool parses_consistency(std::string_view path) {
    for (std::string_view prefix : {"kv/", "session/", "health/", "catalog/", "status/", "txn"}) {
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
    /// What one request gets back, before framing.
    struct answer {
        response r;
        /// Consul's wrapper adds Vary and X-Consul-Default-Acl-Policy; Go's own answers
        /// (redirects, the index handler's 404, malformed requests) have neither.
        bool wrapped = true;
        bool stale = false;
        bool consistent = false;
        bool consistency_header = false;
        /// Go's server refusing a request it cannot read: "HTTP/1.1 <text>", a body of <text>,
        /// no Date or length, and the connection closed.
        std::string go_refusal;
    };

    static answer refuse_as_go(std::string text) {
        answer a;
        a.go_refusal = std::move(text);
        a.r.close = true;
        return a;
    }

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
                answer a;
                a.r = error_response(413, "Request body too large, max size: " +
                                              std::to_string(agent_->opts.max_request_body) +
                                              " bytes");
                a.r.close = true;
                co_await write(a, parser.get(), false);
                co_return;
            }
            if (ec) {
                if (ec != http::error::end_of_stream && ec != asio::error::eof &&
                    ec != asio::error::operation_aborted && !closed_) {
                    // Go's server answers what it cannot parse with a bare 400 and hangs up.
                    answer a = refuse_as_go("400 Bad Request");
                    http::request<http::string_body> none;
                    co_await write(a, none, false);
                }
                co_return;
            }
            auto req = parser.release();
            ++agent_->served;

            if (std::size_t n = agent_->fail_count.load(); n > 0) {
                if (agent_->fail_count.compare_exchange_strong(n, n - 1)) {
                    if (agent_->fail_kind.load() == static_cast<int>(dev_fault::drop_connection)) {
                        co_return;
                    }
                    answer a;
                    a.r = error_response(500, "rpc error making call: injected fault");
                    co_await write(a, req, req.keep_alive());
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
            answer a = co_await handle(req);
            if (closed_) {
                co_return;
            }
            const bool keep = req.keep_alive() && !a.r.close;
            co_await write(a, req, keep);
            if (!keep) {
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

    /// What identifies a shared answer: the route, the path below it, the query less the
    /// blocking parameters (they choose when to answer, not what) and the JSON layout. Each
    /// part is prefixed by its length: decoded parameters may hold any byte, so no separator is
    /// safe.
    static std::string shared_answer_key(const route& rt, const request& rq,
                                         const std::string& rest, bool indent, bool anonymous) {
        std::string key = indent ? "i" : "c";
        key += anonymous ? "a" : "t";
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

    /// Runs a route. `anonymous`: a read by the anonymous token of default-deny ACLs, which
    /// Consul answers as if nothing were there (its results are filtered, not refused).
    response run_route(const route& rt, const request& rq, std::string rest,
                       bool anonymous = false) {
        auto& core = agent_->core;
        const bool indent = agent_->opts.pretty_json || rq.has("pretty");
        std::string key;
        if (rt.shared_answer) {
            key = shared_answer_key(rt, rq, rest, indent, anonymous);
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
        if (anonymous && r.status == 200) {
            if (rt.path == "kv/" && rq.has("recurse") && !rq.has("keys")) {
                r.status = 404;
                r.value.reset();
                r.content_type.clear();
            } else if (r.value) {
                *r.value = rt.path == "catalog/node/" ? json(nullptr)
                           : r.value->is_object()     ? json::object()
                                                      : json::array();
            }
        }
        if (r.value) {
            r.body = go_marshal(*r.value, indent);
            r.value.reset();
        }
        if (rt.blocking_tables != 0 && !r.index && !r.no_index) {
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

    /// A redirect as Go's http.Redirect writes it (ServeMux's path cleaning, Consul's UI).
    static answer redirect(const std::string& location, http::verb method) {
        answer a;
        a.wrapped = false;
        a.r.status = 301;
        a.r.headers.emplace_back("Location", location);
        if (method == http::verb::get || method == http::verb::head) {
            a.r.content_type = "text/html; charset=utf-8";
        }
        if (method == http::verb::get) {
            a.r.body = "<a href=\"" + html_escape(location) + "\">Moved Permanently</a>.\n\n";
        }
        return a;
    }

    /// What default-deny ACLs answer the anonymous token: nullopt for the reads Consul filters
    /// (listings come back empty), else the refusal.
    std::optional<response> anonymous_refusal(const request& rq, const std::string& rest) {
        const auto& path = rq.path;
        const auto& s = agent_->core.state();
        const auto& node = agent_->info.node_name;
        const auto denied = [] { return error_response(403, "Permission denied"); };
        if (rq.method == http::verb::get) {
            for (std::string_view filtered :
                 {"agent/members", "agent/services", "agent/checks", "catalog/services",
                  "catalog/nodes", "catalog/service/", "catalog/node/", "health/", "session/list",
                  "session/node/", "session/info/"}) {
                if (path.starts_with(filtered)) {
                    return std::nullopt;
                }
            }
            if (path.starts_with("kv/") && (rq.has("recurse") || rq.has("keys"))) {
                return std::nullopt;
            }
            return denied();
        }
        const auto has_service = [&](const std::string& id) {
            auto n = s.services.find(node);
            return n != s.services.end() && n->second.count(id) != 0;
        };
        const auto has_check = [&](const std::string& id) {
            auto n = s.checks.find(node);
            return n != s.checks.end() && n->second.count(id) != 0;
        };
        const auto unknown = [](const char* what, const std::string& id) {
            std::string quoted;
            append_go_string(quoted, id);
            return error_response(500, std::string("Unknown ") + what + " " + quoted);
        };
        if (path.starts_with("agent/service/deregister/")) {
            return has_service(rest) ? denied() : unknown("service", rest);
        }
        for (std::string_view check_op :
             {"agent/check/deregister/", "agent/check/pass/", "agent/check/warn/",
              "agent/check/fail/", "agent/check/update/"}) {
            if (path.starts_with(check_op)) {
                return has_check(rest) ? denied() : unknown("check", rest);
            }
        }
        if (path.starts_with("session/destroy/") && !s.sessions.count(rest)) {
            return std::nullopt;  // nothing to destroy: true, as for anyone
        }
        if (path == "txn") {
            response r = json_response(json{
                {"Results", nullptr},
                {"Errors", json::array({json{{"OpIndex", 0}, {"What", "Permission denied"}}})}});
            r.status = 409;
            r.body = go_marshal(*r.value, agent_->opts.pretty_json || rq.has("pretty"));
            r.value.reset();
            return r;
        }
        return denied();
    }

    awaitable<answer> handle(const http::request<http::string_body>& msg) {
        answer a;
        if (msg.version() >= 11 && msg.find(http::field::host) == msg.end()) {
            co_return refuse_as_go("400 Bad Request: missing required Host header");
        }
        auto target = parse_target(msg.target());
        if (!target.valid) {
            co_return refuse_as_go("400 Bad Request");
        }
        // Go's ServeMux: redirect to the cleaned path, then to "/tree/" for "/tree".
        if (const auto cleaned = clean_path(target.path); cleaned != target.path) {
            co_return redirect(
                escape_path(cleaned) + (target.raw_query.empty() ? "" : "?" + target.raw_query),
                msg.method());
        }
        const auto& routes = agent_->core.routes();
        std::string pattern;
        if (target.path.starts_with("/v1/")) {
            pattern = routes.pattern_for(std::string_view(target.path).substr(4));
            if (pattern.empty()) {
                const auto slashed = target.path.substr(4) + "/";
                if (routes.pattern_for(slashed) == slashed) {
                    co_return redirect(escape_path(target.path + "/") +
                                           (target.raw_query.empty() ? "" : "?" + target.raw_query),
                                       msg.method());
                }
            }
        }
        if (pattern.empty()) {
            // Consul's index handler: the UI for "/", a bare 404 for anything else.
            if (target.path == "/") {
                co_return redirect("/ui/", msg.method());
            }
            a.wrapped = false;
            a.r.status = 404;
            co_return a;
        }

        const auto token = request_token(msg, target);
        request rq;
        rq.method = msg.method();
        rq.path = target.path.substr(4);
        rq.query = std::move(target.query);
        rq.body = msg.body();
        a.stale = rq.has("stale");
        a.consistent = rq.has("consistent");

        if (target.query_error) {
            a.r.status = 500;  // Consul's wrapper refuses a query url.ParseQuery rejects
            co_return a;
        }
        const route* rt = routes.find(pattern, rq.method);
        if (rt == nullptr) {
            a.r.headers.emplace_back("Allow", routes.allow(pattern));
            if (rq.method != http::verb::options) {
                a.r.status = 405;
                a.r.body = "method " + std::string(msg.method_string()) + " not allowed";
            }
            co_return a;
        }
        std::string rest = rq.path.substr(std::min(pattern.size(), rq.path.size()));
        a.consistency_header = rt->consistency_header;

        // Consul CE parses a namespace on these endpoints before anything else and refuses one:
        // namespaces are an Enterprise feature. dev_consul behaves as CE does.
        if (takes_namespace(rq.path)) {
            if (msg.find("X-Consul-Namespace") != msg.end()) {
                a.r = error_response(400,
                                     "Bad request: Invalid header: \"X-Consul-Namespace\" - "
                                     "Namespaces are a Consul Enterprise feature");
                co_return a;
            }
            if (auto ns = rq.param("ns"); ns && !ns->empty()) {
                a.r = error_response(400,
                                     "Bad request: Invalid query parameter: \"ns\" - Namespaces "
                                     "are a Consul Enterprise feature");
                co_return a;
            }
        }
        if (a.stale && a.consistent && parses_consistency(rq.path)) {
            a.r = error_response(400,
                                 "Cannot specify ?stale with ?consistent, conflicting semantics.");
            co_return a;
        }

        std::uint64_t min_index = 0;
        auto wait = std::chrono::nanoseconds(default_wait);
        if (rt->blocking_tables != 0) {
            if (auto v = rq.param("index"); v && !v->empty()) {
                auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), min_index);
                if (ec != std::errc{} || p != v->data() + v->size()) {
                    a.r = error_response(400, "Invalid index");
                    co_return a;
                }
            }
            if (auto v = rq.param("wait"); v && !v->empty()) {
                auto d = parse_go_duration(*v);
                if (!d) {
                    a.r = error_response(400, "Invalid wait time");
                    co_return a;
                }
                wait = *d;
            }
            if (wait > max_wait) {
                wait = max_wait;
            }
            if (wait.count() <= 0) {
                wait = default_wait;
            }
        }

        const auto& acl = agent_->opts.acl_token;
        bool anonymous = false;
        if (!acl.empty() && !rq.path.starts_with("status/") && rq.path != "catalog/datacenters") {
            if (!token.empty() && token != acl) {
                a.r = error_response(403, "ACL not found");
                co_return a;
            }
            if (token.empty()) {
                if (auto refused = anonymous_refusal(rq, rest)) {
                    a.r = std::move(*refused);
                    co_return a;
                }
                anonymous = true;
            }
        }

        a.r = run_route(*rt, rq, rest, anonymous);
        if (rt->blocking_tables == 0 || min_index == 0 || !a.r.index || *a.r.index > min_index) {
            co_return a;
        }
        // Blocking query, as Consul's blockingQuery: run again after every change of the tables
        // it reads, answer once the index passes the client's or the wait (plus up to wait/16 of
        // jitter, as Consul adds) runs out.
        thread_local std::mt19937_64 rng{std::random_device{}()};
        auto jitter = std::chrono::nanoseconds(
            std::uniform_int_distribution<std::int64_t>(0, wait.count() / 16)(rng));
        auto deadline =
            std::chrono::steady_clock::now() +
            std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait + jitter);
        for (;;) {
            bool notified = co_await park(rt->blocking_tables, deadline);
            if (closed_) {
                co_return a;
            }
            response again = run_route(*rt, rq, rest, anonymous);
            if (!notified || !again.index || *again.index > min_index) {
                a.r = std::move(again);
                co_return a;
            }
        }
    }

    /// Sends `a` framed as Go's net/http server frames it: the headers the handler set sorted
    /// by name, then Date, Content-Length (or chunked above 2048 bytes), a sniffed
    /// Content-Type and Connection.
    awaitable<void> write(answer& a, const http::request<http::string_body>& req, bool keep_alive) {
        if (!a.go_refusal.empty()) {
            const std::string bytes = "HTTP/1.1 " + a.go_refusal +
                                      "\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                      "Connection: close\r\n\r\n" +
                                      a.go_refusal;
            beast::error_code ec;
            co_await asio::async_write(stream_, asio::buffer(bytes),
                                       asio::redirect_error(use_awaitable, ec));
            closed_ = true;
            co_return;
        }
        response& r = a.r;
        std::vector<std::pair<std::string, std::string>> fields = std::move(r.headers);
        if (!r.content_type.empty()) {
            fields.emplace_back("Content-Type", r.content_type);
        }
        if (a.wrapped) {
            fields.emplace_back("Vary", "Accept-Encoding");
            fields.emplace_back("X-Consul-Default-Acl-Policy",
                                agent_->opts.acl_token.empty() ? "allow" : "deny");
        }
        if (r.index) {
            fields.emplace_back("X-Consul-Index", std::to_string(*r.index));
            fields.emplace_back("X-Consul-Knownleader", r.known_leader ? "true" : "false");
            fields.emplace_back("X-Consul-Lastcontact", "0");
            fields.emplace_back("X-Consul-Query-Backend", "blocking-query");
            if (a.consistency_header && r.known_leader) {
                fields.emplace_back("X-Consul-Effective-Consistency",
                                    a.stale ? "stale" : (a.consistent ? "consistent" : "leader"));
            }
        } else if (r.leader_meta) {
            fields.emplace_back("X-Consul-Knownleader", "true");
            fields.emplace_back("X-Consul-Lastcontact", "0");
        }
        if (r.explicit_length) {
            fields.emplace_back("Content-Length", std::to_string(r.body.size()));
        }
        std::stable_sort(fields.begin(), fields.end(),
                         [](const auto& x, const auto& y) { return x.first < y.first; });

        const bool http11 = req.version() != 10;
        const bool chunked = http11 && !r.explicit_length && r.body.size() > 2048;
        std::string head = http11 ? "HTTP/1.1 " : "HTTP/1.0 ";
        head += std::to_string(r.status);
        head += ' ';
        head += status_text(r.status);
        head += "\r\n";
        for (const auto& [name, value] : fields) {
            head += name;
            head += ": ";
            head += value;
            head += "\r\n";
        }
        head += "Date: " + http_date() + "\r\n";
        if (!r.explicit_length && !chunked) {
            head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
        }
        if (r.content_type.empty() && !r.body.empty()) {
            head += "Content-Type: text/plain; charset=utf-8\r\n";
        }
        if (!keep_alive && (http11 || req.keep_alive())) {
            head += "Connection: close\r\n";
        } else if (keep_alive && !http11) {
            head += "Connection: keep-alive\r\n";
        }
        if (chunked) {
            head += "Transfer-Encoding: chunked\r\n";
        }
        head += "\r\n";
        std::string chunk_head;
        std::string_view body = r.body;
        if (req.method() == http::verb::head) {
            body = {};
        }
        std::array<asio::const_buffer, 4> bytes{asio::buffer(head), asio::buffer(body),
                                                asio::const_buffer{}, asio::const_buffer{}};
        if (chunked) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "%zx\r\n", body.size());
            chunk_head = buf;
            bytes[1] = asio::buffer(chunk_head);
            bytes[2] = asio::buffer(body);
            bytes[3] = asio::buffer("\r\n0\r\n\r\n", 7);
        }
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
