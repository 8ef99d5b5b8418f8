// Check state shared by every endpoint group: status changes (the catalog's, and the agent's
// own with its deferred output sync), TTL expiry, DeregisterCriticalServiceAfter, and the HTTP,
// TCP and script checks the agent runs itself.
// https://developer.hashicorp.com/consul/docs/services/usage/checks
#include "router.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
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

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

namespace lakemesh::testing::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::awaitable;
using tcp = asio::ip::tcp;

/// Consul keeps at most this much check output (checks.DefaultBufSize, OutputMaxSize).
constexpr std::size_t max_output = 4096;
/// Consul's check_update_interval: output that changed without the status reaches the catalog
/// after between half and one and a half of it.
constexpr auto check_update_interval = std::chrono::minutes(5);
constexpr auto default_http_timeout = std::chrono::seconds(10);
constexpr auto default_script_timeout = std::chrono::seconds(30);

check_entry* find_check(store& s, const std::string& node, const std::string& id) {
    auto n = s.checks.find(node);
    if (n == s.checks.end()) {
        return nullptr;
    }
    auto c = n->second.find(id);
    return c == n->second.end() ? nullptr : &c->second;
}

/// The last `max_output` bytes, as Consul's circular output buffer keeps them.
std::string tail_output(std::string out) {
    if (out.size() > max_output) {
        out.erase(0, out.size() - max_output);
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

/// The text Go's syscall package gives an errno, as dial errors end with it.
std::string go_errno_text(const boost::system::error_code& ec) {
    if (ec == asio::error::connection_refused) {
        return "connection refused";
    }
    if (ec == asio::error::connection_reset) {
        return "connection reset by peer";
    }
    if (ec == asio::error::network_unreachable) {
        return "network is unreachable";
    }
    if (ec == asio::error::host_unreachable) {
        return "no route to host";
    }
    if (ec == asio::error::timed_out || ec == beast::error::timeout) {
        return "i/o timeout";
    }
    std::string m = ec.message();
    if (!m.empty()) {
        m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
    }
    return m;
}

std::chrono::nanoseconds check_timeout(const check_entry& def, std::chrono::nanoseconds fallback) {
    if (auto t = parse_go_duration(def.timeout); t && t->count() > 0) {
        return *t;
    }
    return fallback;
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
    parser.body_limit(16 * 1024 * 1024);
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
                      reason + " Output: " + tail_output(res.body());
    if (code >= 200 && code <= 299) {
        co_return check_result{"passing", out};
    }
    if (code == 429) {
        co_return check_result{"warning", out};
    }
    co_return check_result{"critical", out};
}

awaitable<check_result> run_http_check(check_entry def) {
    const std::string method = def.method.empty() ? "GET" : def.method;
    const std::string err_prefix = go_method_name(method) + " \"" + def.http + "\": ";
    auto url = boost::urls::parse_uri(def.http);
    if (!url) {
        co_return check_result{"critical", err_prefix + "unsupported protocol scheme \"\""};
    }
    if (url->scheme() != "http" && url->scheme() != "https") {
        co_return check_result{"critical", err_prefix + "unsupported protocol scheme \"" +
                                               std::string(url->scheme()) + "\""};
    }
    if (url->host().empty()) {
        co_return check_result{"critical", err_prefix + "http: no Host in request URL"};
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
    const auto timeout = check_timeout(def, default_http_timeout);
    auto ex = co_await asio::this_coro::executor;
    std::string dialed = host + ":" + port;
    try {
        tcp::resolver resolver(ex);
        boost::system::error_code rec;
        auto endpoints = co_await resolver.async_resolve(
            host, port, asio::redirect_error(asio::use_awaitable, rec));
        if (rec) {
            co_return check_result{"critical",
                                   err_prefix + "dial tcp: lookup " + host + ": no such host"};
        }
        if (!endpoints.empty()) {
            const auto ep = endpoints.begin()->endpoint();
            dialed = (ep.address().is_v6() ? "[" + ep.address().to_string() + "]"
                                           : ep.address().to_string()) +
                     ":" + std::to_string(ep.port());
        }
        beast::tcp_stream stream(ex);
        stream.expires_after(timeout);
        boost::system::error_code cec;
        co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, cec));
        if (cec) {
            if (cec == beast::error::timeout) {
                co_return check_result{
                    "critical",
                    err_prefix +
                        "context deadline exceeded (Client.Timeout exceeded while awaiting "
                        "headers)"};
            }
            co_return check_result{
                "critical", err_prefix + "dial tcp " + dialed + ": connect: " + go_errno_text(cec)};
        }
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
        boost::system::error_code hec;
        co_await secure.async_handshake(asio::ssl::stream_base::client,
                                        asio::redirect_error(asio::use_awaitable, hec));
        if (hec) {
            co_return check_result{"critical",
                                   err_prefix + "x509: certificate signed by unknown authority"};
        }
        co_return co_await http_exchange(secure, def, method, target, host_header);
    } catch (const boost::system::system_error& e) {
        if (e.code() == beast::error::timeout) {
            co_return check_result{
                "critical",
                err_prefix +
                    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"};
        }
        if (e.code() == asio::error::eof || e.code() == http::error::end_of_stream ||
            e.code() == http::error::partial_message) {
            co_return check_result{"critical", err_prefix + "EOF"};
        }
        co_return check_result{"critical",
                               err_prefix + "read tcp " + dialed + ": " + go_errno_text(e.code())};
    } catch (const std::exception& e) {
        co_return check_result{"critical", err_prefix + e.what()};
    }
}

awaitable<check_result> run_tcp_check(check_entry def) {
    const auto colon = def.tcp.rfind(':');
    if (colon == std::string::npos) {
        co_return check_result{"critical",
                               "dial tcp: address " + def.tcp + ": missing port in address"};
    }
    std::string host = def.tcp.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    const std::string port = def.tcp.substr(colon + 1);
    auto ex = co_await asio::this_coro::executor;
    tcp::resolver resolver(ex);
    boost::system::error_code ec;
    auto endpoints =
        co_await resolver.async_resolve(host, port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        co_return check_result{"critical", "dial tcp: lookup " + host + ": no such host"};
    }
    beast::tcp_stream stream(ex);
    stream.expires_after(check_timeout(def, default_http_timeout));
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        co_return check_result{"critical",
                               "dial tcp " + def.tcp + ": connect: " + go_errno_text(ec)};
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return check_result{"passing", "TCP connect " + def.tcp + ": Success"};
}

/// exec.LookPath: the program a script check runs, or Go's error.
std::variant<std::string, std::string> look_path(const std::string& file) {
    const auto executable = [](const std::string& p) {
        struct stat st {};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
    };
    if (file.find('/') != std::string::npos) {
        if (executable(file)) {
            return std::variant<std::string, std::string>(std::in_place_index<0>, file);
        }
        return std::variant<std::string, std::string>(
            std::in_place_index<1>,
            "fork/exec " + file + ": " +
                (::access(file.c_str(), F_OK) == 0 ? "permission denied"
                                                   : "no such file or directory"));
    }
    const char* path = std::getenv("PATH");
    std::string_view dirs = path != nullptr ? path : "";
    while (true) {
        const auto colon = dirs.find(':');
        std::string dir(dirs.substr(0, colon));
        if (dir.empty()) {
            dir = ".";
        }
        const std::string candidate = dir + "/" + file;
        if (executable(candidate)) {
            return std::variant<std::string, std::string>(std::in_place_index<0>, candidate);
        }
        if (colon == std::string_view::npos) {
            break;
        }
        dirs.remove_prefix(colon + 1);
    }
    return std::variant<std::string, std::string>(
        std::in_place_index<1>, "exec: \"" + file + "\": executable file not found in $PATH");
}

/// Runs a script check as Consul's CheckMonitor does: the arguments as a process (in its own
/// process group), stdout and stderr captured together, killed after its timeout (default
/// 30 s); exit 0 is passing, 1 warning, anything else critical.
awaitable<check_result> run_script_check(check_entry def) {
    auto ex = co_await asio::this_coro::executor;
    if (def.script_args.empty()) {
        co_return check_result{"critical", "no script arguments"};
    }
    auto program = look_path(def.script_args.front());
    if (program.index() == 1) {
        co_return check_result{"critical", std::get<1>(program)};
    }
    std::vector<std::string> args = def.script_args;
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const std::string& file = std::get<0>(program);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        co_return check_result{"critical", std::string("pipe: ") + std::strerror(errno)};
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out[0]);
        ::close(out[1]);
        co_return check_result{"critical", std::string("fork: ") + std::strerror(errno)};
    }
    if (pid == 0) {
        // Child: only async-signal-safe calls until exec.
        ::setpgid(0, 0);
        const int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            ::dup2(devnull, 0);
        }
        ::dup2(out[1], 1);
        ::dup2(out[1], 2);
        ::execv(file.c_str(), argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    // Should the agent go away first, the frame's end takes the process group with it.
    struct reaper {
        pid_t pid;
        bool done = false;
        ~reaper() {
            if (!done) {
                ::kill(-pid, SIGKILL);
                int ignored = 0;
                ::waitpid(pid, &ignored, 0);
            }
        }
    } child{pid};
    asio::posix::stream_descriptor pipe(ex, out[0]);
    const auto timeout = check_timeout(def, default_script_timeout);
    asio::steady_timer deadline(ex);
    deadline.expires_after(timeout);
    bool timed_out = false;
    deadline.async_wait([&timed_out, pid](const boost::system::error_code& ec) {
        if (!ec) {
            timed_out = true;
            ::kill(-pid, SIGKILL);
        }
    });
    std::string captured;
    std::size_t total = 0;
    std::array<char, 4096> buf{};
    for (;;) {
        boost::system::error_code ec;
        const auto n = co_await pipe.async_read_some(asio::buffer(buf),
                                                     asio::redirect_error(asio::use_awaitable, ec));
        total += n;
        captured.append(buf.data(), n);
        if (captured.size() > max_output) {
            captured.erase(0, captured.size() - max_output);
        }
        if (ec) {
            break;
        }
    }
    // The output is closed: the process has ended or is about to; reap it.
    int status = 0;
    asio::steady_timer poll(ex);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        poll.expires_after(std::chrono::milliseconds(5));
        boost::system::error_code ec;
        co_await poll.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    child.done = true;
    deadline.cancel();
    std::string output = captured;
    if (total > max_output) {
        output = "Captured " + std::to_string(max_output) + " of " + std::to_string(total) +
                 " bytes\n...\n" + captured;
    }
    if (timed_out) {
        std::string msg = "Timed out (" + format_go_duration(timeout) + ") running check";
        if (!output.empty()) {
            msg += "\n\n" + output;
        }
        co_return check_result{"critical", msg};
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        co_return check_result{"passing", output};
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
        co_return check_result{"warning", output};
    }
    co_return check_result{"critical", output};
}

}  // namespace

void catalog_service_changed(store& s, const std::string& name, std::uint64_t idx) {
    std::string lower;
    for (char ch : name) {
        lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
    s.services_index = idx;
    s.service_name_index[lower] = idx;
}

void catalog_check_changed(store& s, const check_entry& c, std::uint64_t idx) {
    s.checks_index = idx;
    auto n = s.services.find(c.node);
    if (n == s.services.end()) {
        return;
    }
    for (const auto& [id, svc] : n->second) {
        if (c.service_id.empty() || c.service_id == id) {
            std::string lower;
            for (char ch : svc.name) {
                lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            }
            s.service_name_index[lower] = idx;
        }
    }
}

bool set_check_status(store& s, const std::string& node, const std::string& check_id,
                      const std::string& status, const std::string& output) {
    check_entry* c = find_check(s, node, check_id);
    if (c == nullptr) {
        return false;
    }
    c->agent_output = output;
    if (c->status == status && c->output == output) {
        return true;  // Consul skips the catalog update, so blocking queries stay asleep.
    }
    const bool became_critical = status == "critical" && c->status != "critical";
    c->modify_index = s.write(table_catalog);
    catalog_check_changed(s, *c, c->modify_index);
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

bool agent_update_check(store& s, const std::string& node, const std::string& check_id,
                        const std::string& status, const std::string& output) {
    check_entry* c = find_check(s, node, check_id);
    if (c == nullptr) {
        return false;
    }
    if (c->status == status && c->agent_output == output) {
        return true;
    }
    if (c->status == status) {
        // Output alone: the agent keeps it and syncs it to the catalog later (local.State).
        c->agent_output = output;
        if (!c->output_sync_at) {
            thread_local std::mt19937_64 rng{std::random_device{}()};
            const auto d = std::chrono::duration_cast<clock::duration>(check_update_interval);
            const auto stagger =
                clock::duration(std::uniform_int_distribution<clock::rep>(0, d.count() - 1)(rng));
            c->output_sync_at = s.now() + d / 2 + stagger;
        }
        return true;
    }
    return set_check_status(s, node, check_id, status, output);
}

void checks_tick(store& s) {
    const auto now = s.now();
    std::vector<std::pair<std::string, std::string>> expired;
    for (auto& [node, by_id] : s.checks) {
        for (auto& [id, c] : by_id) {
            if (c.ttl_deadline && now >= *c.ttl_deadline) {
                expired.emplace_back(node, id);
            }
            if (c.output_sync_at && now >= *c.output_sync_at) {
                c.output_sync_at.reset();
                if (c.output != c.agent_output) {
                    c.output = c.agent_output;
                    c.modify_index = s.write(table_catalog);
                    catalog_check_changed(s, c, c.modify_index);
                }
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
        std::string out =
            c->agent_output.empty()
                ? std::string("TTL expired")
                : "TTL expired (last output before timeout follows): " + c->agent_output;
        agent_update_check(s, node, id, "critical", out);
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
    if (n == s.services.end()) {
        return false;
    }
    auto it = n->second.find(service_id);
    if (it == n->second.end()) {
        return false;
    }
    const std::string name = it->second.name;
    n->second.erase(it);
    const auto idx = s.write(table_catalog);
    catalog_service_changed(s, name, idx);
    if (n->second.empty()) {
        s.services.erase(n);
    }
    // The last instance of a name gone: Consul's service_last_extinction index.
    bool left = false;
    for (const auto& [nd, by_id] : s.services) {
        for (const auto& [id, svc] : by_id) {
            left = left ||
                   (svc.name.size() == name.size() &&
                    std::equal(svc.name.begin(), svc.name.end(), name.begin(), [](char a, char b) {
                        return std::tolower(static_cast<unsigned char>(a)) ==
                               std::tolower(static_cast<unsigned char>(b));
                    }));
        }
    }
    if (!left) {
        s.service_extinction_index = idx;
    }
    std::vector<std::string> removed;
    if (auto cn = s.checks.find(node); cn != s.checks.end()) {
        for (auto it = cn->second.begin(); it != cn->second.end();) {
            if (it->second.service_id == service_id) {
                removed.push_back(it->first);
                s.checks_index = idx;
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
            if ((c.type != "http" && c.type != "tcp" && c.type != "script") || c.run_in_flight ||
                !c.next_run || now < *c.next_run) {
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
        if (d.type == "script") {
            co_return co_await run_script_check(std::move(d));
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
    agent_update_check(s, node, check_id, status, output);
}

}  // namespace lakemesh::testing::detail
