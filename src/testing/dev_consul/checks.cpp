// Check state shared by every endpoint group: status changes, TTL expiry,
// DeregisterCriticalServiceAfter, and the HTTP/TCP checks the agent runs itself.
// https://developer.hashicorp.com/consul/docs/services/usage/checks
#include "router.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

#include <openssl/ssl.h>

namespace lakemesh::testing::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using tcp = asio::ip::tcp;

/// Consul keeps at most this much check output (checks.DefaultBufSize).
constexpr std::size_t max_output = 4096;
constexpr auto default_check_timeout = std::chrono::seconds(10);

check_entry* find_check(store& s, const std::string& node, const std::string& id) {
    auto n = s.checks.find(node);
    if (n == s.checks.end()) {
        return nullptr;
    }
    auto c = n->second.find(id);
    return c == n->second.end() ? nullptr : &c->second;
}

std::string truncate_output(std::string out) {
    if (out.size() > max_output) {
        out.resize(max_output);
    }
    return out;
}

/// Go's net/http names the method in title case inside its errors ("Get", "Post").
std::string go_method_name(const std::string& method) {
    std::string out;
    for (std::size_t i = 0; i < method.size(); ++i) {
        auto ch = static_cast<unsigned char>(method[i]);
        out += static_cast<char>(i == 0 ? std::toupper(ch) : std::tolower(ch));
    }
    return out;
}

std::chrono::nanoseconds check_timeout(const check_entry& def) {
    if (auto t = parse_go_duration(def.timeout); t && t->count() > 0) {
        return *t;
    }
    return default_check_timeout;
}

struct check_result {
    std::string status;
    std::string output;
};

template <class Stream>
awaitable<check_result> http_exchange(Stream& stream, const check_entry& def,
                                      const std::string& method, const std::string& target,
                                      const std::string& host_header) {
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    if (req.method() == http::verb::unknown) {
        req.method_string(method);
    }
    req.set(http::field::host, host_header);
    req.set(http::field::user_agent, "Consul Health Check");
    req.set(http::field::accept, "text/plain, text/*, */*");
    for (const auto& [name, values] : def.header) {
        for (const auto& v : values) {
            req.insert(name, v);
        }
    }
    req.body() = def.body;
    req.keep_alive(false);
    req.prepare_payload();
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1024 * 1024);
    beast::error_code ec;
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec && ec != http::error::body_limit) {
        throw boost::system::system_error(ec);
    }
    auto& res = parser.get();
    unsigned code = res.result_int();
    std::string reason(res.reason());
    if (reason.empty()) {
        reason = std::string(http::obsolete_reason(res.result()));
    }
    std::string out = "HTTP " + method + " " + def.http + ": " + std::to_string(code) + " " +
                      reason + " Output: " + res.body();
    if (code >= 200 && code <= 299) {
        co_return check_result{"passing", truncate_output(out)};
    }
    if (code == 429) {
        co_return check_result{"warning", truncate_output(out)};
    }
    co_return check_result{"critical", truncate_output(out)};
}

awaitable<check_result> run_http_check(check_entry def) {
    const std::string method = def.method.empty() ? "GET" : def.method;
    const std::string err_prefix = go_method_name(method) + " \"" + def.http + "\": ";
    auto url = boost::urls::parse_uri(def.http);
    if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty()) {
        co_return check_result{"critical", err_prefix + "unsupported protocol scheme"};
    }
    const bool https = url->scheme() == "https";
    const std::string host =
        url->host_name().empty() ? std::string(url->host_address()) : std::string(url->host_name());
    const std::string port = url->has_port() ? std::string(url->port()) : (https ? "443" : "80");
    std::string target = std::string(url->encoded_path());
    if (target.empty()) {
        target = "/";
    }
    if (url->has_query()) {
        target += "?" + std::string(url->encoded_query());
    }
    const std::string host_header = std::string(url->encoded_host_and_port());
    auto timeout = check_timeout(def);
    auto ex = co_await asio::this_coro::executor;
    try {
        tcp::resolver resolver(ex);
        auto endpoints = co_await resolver.async_resolve(host, port, asio::use_awaitable);
        beast::tcp_stream stream(ex);
        stream.expires_after(timeout);
        co_await stream.async_connect(endpoints, asio::use_awaitable);
        if (!https) {
            co_return co_await http_exchange(stream, def, method, target, host_header);
        }
        asio::ssl::context tls(asio::ssl::context::tls_client);
        if (def.tls_skip_verify) {
            tls.set_verify_mode(asio::ssl::verify_none);
        } else {
            tls.set_default_verify_paths();
            tls.set_verify_mode(asio::ssl::verify_peer);
        }
        beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), tls);
        if (!def.tls_skip_verify) {
            secure.set_verify_callback(asio::ssl::host_name_verification(host));
        }
        SSL_set_tlsext_host_name(secure.native_handle(), host.c_str());
        co_await secure.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
        co_return co_await http_exchange(secure, def, method, target, host_header);
    } catch (const boost::system::system_error& e) {
        co_return check_result{"critical", err_prefix + e.code().message()};
    } catch (const std::exception& e) {
        co_return check_result{"critical", err_prefix + e.what()};
    }
}

awaitable<check_result> run_tcp_check(check_entry def) {
    const auto colon = def.tcp.rfind(':');
    const std::string failure = "dial tcp " + def.tcp + ": ";
    if (colon == std::string::npos) {
        co_return check_result{"critical", failure + "missing port in address"};
    }
    std::string host = def.tcp.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string port = def.tcp.substr(colon + 1);
    auto ex = co_await asio::this_coro::executor;
    try {
        tcp::resolver resolver(ex);
        auto endpoints = co_await resolver.async_resolve(host, port, asio::use_awaitable);
        beast::tcp_stream stream(ex);
        stream.expires_after(check_timeout(def));
        co_await stream.async_connect(endpoints, asio::use_awaitable);
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return check_result{"passing", "TCP connect " + def.tcp + ": Success"};
    } catch (const boost::system::system_error& e) {
        co_return check_result{"critical", failure + "connect: " + e.code().message()};
    }
}

}  // namespace

bool set_check_status(store& s, const std::string& node, const std::string& check_id,
                      const std::string& status, const std::string& output) {
    check_entry* c = find_check(s, node, check_id);
    if (c == nullptr) {
        return false;
    }
    if (c->status == status && c->output == output) {
        return true;  // Consul skips the catalog update, so blocking queries stay asleep.
    }
    const bool became_critical = status == "critical" && c->status != "critical";
    c->modify_index = s.write(table_catalog);
    if (became_critical) {
        c->critical_since = s.now();
    } else if (status != "critical") {
        c->critical_since.reset();
    }
    c->status = status;
    c->output = output;
    if (became_critical) {
        sessions_on_check_critical(s, node, check_id);
    }
    return true;
}

void checks_tick(store& s) {
    const auto now = s.now();
    std::vector<std::pair<std::string, std::string>> expired;
    for (auto& [node, by_id] : s.checks) {
        for (auto& [id, c] : by_id) {
            if (c.ttl_deadline && now >= *c.ttl_deadline) {
                expired.emplace_back(node, id);
            }
        }
    }
    for (const auto& [node, id] : expired) {
        check_entry* c = find_check(s, node, id);
        if (c == nullptr) {
            continue;
        }
        const auto deadline = *c->ttl_deadline;
        c->ttl_deadline.reset();  // the TTL timer fires once; the next update re-arms it
        const bool was_critical = c->status == "critical";
        std::string out = c->output.empty()
                              ? std::string("TTL expired")
                              : "TTL expired (last output before timeout follows): " + c->output;
        set_check_status(s, node, id, "critical", truncate_output(out));
        // The clock may have jumped past the deadline: the check has been critical since then.
        if (!was_critical && (c = find_check(s, node, id)) != nullptr) {
            c->critical_since = deadline;
        }
    }
    std::vector<std::pair<std::string, std::string>> reaped;
    for (auto& [node, by_id] : s.checks) {
        for (auto& [id, c] : by_id) {
            if (!c.critical_since || c.service_id.empty() ||
                c.deregister_critical_service_after.empty()) {
                continue;
            }
            auto after = parse_go_duration(c.deregister_critical_service_after);
            if (after && now - *c.critical_since >= *after) {
                reaped.emplace_back(node, c.service_id);
            }
        }
    }
    for (const auto& [node, service_id] : reaped) {
        remove_service(s, node, service_id);
    }
}

bool remove_service(store& s, const std::string& node, const std::string& service_id) {
    auto n = s.services.find(node);
    if (n == s.services.end() || n->second.erase(service_id) == 0) {
        return false;
    }
    s.write(table_catalog);
    if (n->second.empty()) {
        s.services.erase(n);
    }
    std::vector<std::string> removed;
    if (auto cn = s.checks.find(node); cn != s.checks.end()) {
        for (auto it = cn->second.begin(); it != cn->second.end();) {
            if (it->second.service_id == service_id) {
                removed.push_back(it->first);
                it = cn->second.erase(it);
            } else {
                ++it;
            }
        }
    }
    // Consul invalidates sessions whose linked check was deregistered.
    for (const auto& id : removed) {
        sessions_on_check_critical(s, node, id);
    }
    return true;
}

std::vector<std::pair<std::string, std::string>> checks_due(store& s) {
    std::vector<std::pair<std::string, std::string>> due;
    const auto now = s.now();
    for (auto& [node, by_id] : s.checks) {
        for (auto& [id, c] : by_id) {
            if ((c.type != "http" && c.type != "tcp") || c.run_in_flight || !c.next_run ||
                now < *c.next_run) {
                continue;
            }
            c.run_in_flight = true;
            due.emplace_back(node, id);
        }
    }
    return due;
}

void run_check_async(boost::asio::any_io_executor ex, const check_entry& def,
                     std::function<void(std::string status, std::string output)> done) {
    auto run = [](check_entry d) -> awaitable<check_result> {
        if (d.type == "http") {
            co_return co_await run_http_check(std::move(d));
        }
        co_return co_await run_tcp_check(std::move(d));
    };
    asio::co_spawn(ex, run(def), [done = std::move(done)](std::exception_ptr e, check_result r) {
        if (e) {
            done("critical", "check failed to run");
            return;
        }
        done(std::move(r.status), std::move(r.output));
    });
}

void check_run_finished(store& s, const std::string& node, const std::string& check_id,
                        const std::string& status, const std::string& output) {
    check_entry* c = find_check(s, node, check_id);
    if (c == nullptr || !c->run_in_flight) {
        return;  // deregistered or re-registered while running
    }
    c->run_in_flight = false;
    auto interval = parse_go_duration(c->interval).value_or(std::chrono::seconds(10));
    c->next_run = s.now() + std::chrono::duration_cast<clock::duration>(interval);
    set_check_status(s, node, check_id, status, output);
}

}  // namespace lakemesh::testing::detail
