// lakemesh-bench-call: what mesh_integrator::async_call costs over a hand-written Boost.Beast
// keep-alive client, both calling the same local HTTP server in the same run.
//
//   BENCH_CALL_SECONDS  measured seconds per round (default 2), after 0.5 s of warm-up
//   BENCH_CALL_ROUNDS   rounds per concurrency (default 5); a round measures both clients
//                       back to back, which one goes first alternating from round to round
//   CONSUL_HTTP_ADDR    a real agent to use instead of the embedded dev_consul
//   BENCH_CALL_ONLY     "baseline" or "lakemesh": run one client only (for profiling; the
//                       summary lines then need both and are not printed)
//   BENCH_CALL_BASELINE_TRACE=0  the baseline leaves out its traceparent header (below)
//
// The server (Beast parser in, a prebuilt 64-byte 200 out, keep-alive) runs on its own thread
// and io_context, with the provider mesh that registers it in Consul, so neither counts in the
// client's CPU. Both clients run on one io_context on the main thread: C closed-loop workers,
// each sending its next GET as soon as the previous answer arrived.
//
// Baseline: one beast::tcp_stream per worker (TCP_NODELAY, like the mesh's pool), the request
// built once, one flat_buffer per worker, the response object reset per call. Its request
// carries a fixed traceparent of the same size as the one lakemesh generates per call, so both
// put the same bytes on the wire and the server works alike for both: the comparison is of the
// clients. (Parsing that header is ~18% of this server's work per request; without it in the
// baseline, C=16, where the server thread is as busy as the client's, shows it as ~4% of
// throughput.)
// lakemesh: mesh.async_call(service, {.method = "GET", .target = "/x"}, {}, handler) with the
// default call settings: peak-EWMA balancer with outlier detection, 3 attempts with a retry
// budget, circuit breaker, bulkhead of 64 (above C, so it never queues), no timeout (so no
// deadline header and no deadline timer), 32 idle connections per instance (above C, so every
// worker's connection stays pooled).
//
// Output, per concurrency C (rps, p50 and CPU: medians over the rounds; ratio, p50_ratio and
// overhead_us: the median over the rounds of each round's own comparison):
//   call concurrency=C baseline_rps=... lakemesh_rps=... ratio=... baseline_p50_us=...
//        lakemesh_p50_us=... p50_ratio=...
//   cpu concurrency=C baseline_cpu_us_per_call=... lakemesh_cpu_us_per_call=... overhead_us=...
// (each on one line). Per-round figures go to stderr, with the client thread's CPU split into
// user and system time (getrusage, tick resolution) and its operator new calls per call.
// Exits 1 when a call failed, printing the error and its diagnostics.
#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// Counts operator new on each thread, so a round can report allocations per call of the client.
namespace {
thread_local std::uint64_t allocations = 0;
}
void* operator new(std::size_t n) {
    ++allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t body_size = 64;
constexpr auto warm_up = 500ms;

double env_number(const char* name, double fallback) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
        return fallback;
    }
    char* end = nullptr;
    const double d = std::strtod(v, &end);
    return (end != v && d > 0) ? d : fallback;
}

/// BENCH_CALL_BASELINE_TRACE=0: the baseline sends no traceparent (shows what parsing that
/// header costs the server).
bool baseline_sends_trace() {
    const char* v = std::getenv("BENCH_CALL_BASELINE_TRACE");
    return v == nullptr || std::string_view(v) != "0";
}

/// CPU time of the calling thread.
std::chrono::nanoseconds thread_cpu() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

/// User and system CPU time of the calling thread (resolution: the kernel's tick accounting).
std::pair<double, double> thread_user_sys_us() {
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    auto us = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) * 1e6 + tv.tv_usec; };
    return {us(ru.ru_utime), us(ru.ru_stime)};
}

// ------------------------------------------------------------------ the server

/// Answers every GET with the same prebuilt 200, keep-alive, on its own thread. The provider
/// mesh that registers it lives on the same thread.
class http_server {
  public:
    http_server() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
        http::response<http::string_body> res{http::status::ok, 11};
        res.set(http::field::server, "lakemesh-bench");
        res.set(http::field::content_type, "text/plain");
        res.body() = std::string(body_size, 'x');
        res.keep_alive(true);
        res.prepare_payload();
        std::ostringstream os;
        os << res;
        reply_ = os.str();
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~http_server() {
        io_.stop();
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    /// Registers this server as `service` through a provider mesh on the server's thread.
    lakemesh::error_code register_as(const std::string& service,
                                     const lakemesh::consul::client_config& consul) {
        std::promise<lakemesh::error_code> started;
        asio::post(io_, [&] {
            lakemesh::mesh_config cfg;
            cfg.consul = consul;
            cfg.service_name = service;
            cfg.port = port();
            cfg.start = lakemesh::start_mode::wait_for_consul;
            provider_.emplace(io_, cfg);
            provider_->async_start([&](lakemesh::error_code ec) { started.set_value(ec); });
        });
        auto f = started.get_future();
        if (f.wait_for(15s) != std::future_status::ready) {
            return make_error_code(asio::error::timed_out);
        }
        return f.get();
    }

    /// Deregisters the service and stops accepting.
    void stop() {
        std::promise<void> stopped;
        asio::post(io_, [&] {
            error_code ignored;
            acceptor_.close(ignored);
            if (!provider_) {
                stopped.set_value();
                return;
            }
            provider_->async_stop([&](lakemesh::error_code) { stopped.set_value(); });
        });
        stopped.get_future().wait_for(10s);
    }

  private:
    using error_code = boost::system::error_code;

    struct session : std::enable_shared_from_this<session> {
        session(tcp::socket s, const std::string& r) : sock(std::move(s)), reply(r) {}

        tcp::socket sock;
        const std::string& reply;
        beast::flat_buffer buffer;
        std::optional<http::request_parser<http::empty_body>> parser;

        void read() {
            parser.emplace();
            http::async_read(sock, buffer, *parser,
                             [self = shared_from_this()](error_code ec, std::size_t) {
                                 if (!ec) {
                                     self->respond();
                                 }
                             });
        }
        void respond() {
            const bool keep_alive = parser->keep_alive();
            asio::async_write(sock, asio::buffer(reply),
                              [self = shared_from_this(), keep_alive](error_code ec, std::size_t) {
                                  if (ec || !keep_alive) {
                                      error_code ignored;
                                      self->sock.shutdown(tcp::socket::shutdown_send, ignored);
                                      return;
                                  }
                                  self->read();
                              });
        }
    };

    void accept() {
        acceptor_.async_accept([this](error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            error_code ignored;
            s.set_option(tcp::no_delay(true), ignored);
            std::make_shared<session>(std::move(s), reply_)->read();
            accept();
        });
    }

    asio::io_context io_{1};
    tcp::acceptor acceptor_;
    std::string reply_;
    std::optional<lakemesh::mesh_integrator> provider_;
    std::thread thread_;
};

// ------------------------------------------------------------------ one round

/// What the workers of one round share: the phase, the counts and the first failure.
struct round_state {
    bool measuring = false;
    bool stopping = false;
    int active = 0;  // workers with a request in flight or about to send one
    std::uint64_t calls = 0;
    std::vector<std::uint32_t> latency_ns;
    std::string failure;
    asio::steady_timer* phase = nullptr;

    void reset(int workers) {
        measuring = false;
        stopping = false;
        active = workers;
        calls = 0;
        latency_ns.clear();
        failure.clear();
    }
    void completed(steady::time_point started) {
        if (measuring) {
            ++calls;
            const auto d =
                std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - started);
            latency_ns.push_back(static_cast<std::uint32_t>(
                std::min<std::int64_t>(d.count(), std::numeric_limits<std::uint32_t>::max())));
        }
    }
    /// Records the first failure and ends the round.
    void fail(std::string what) {
        if (failure.empty()) {
            failure = std::move(what);
        }
        stopping = true;
        phase->cancel();
        --active;
    }
    /// Whether the worker sends another request; false retires it.
    bool next() {
        if (stopping) {
            --active;
            return false;
        }
        return true;
    }
};

/// The baseline: a keep-alive connection per worker and plain http::async_write / async_read.
struct beast_worker {
    beast_worker(asio::io_context& io, round_state& st, const std::string& host)
        : stream(io), st(st) {
        req.method(http::verb::get);
        req.target("/x");
        req.set(http::field::host, host);
        req.set(http::field::user_agent, "bench-beast");
        // The same bytes on the wire as lakemesh's request (which carries a W3C traceparent),
        // prebuilt: the server's work per request is then the same for both clients.
        if (baseline_sends_trace()) {
            req.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        }
        req.keep_alive(true);
    }

    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::empty_body> req{};
    http::response<http::string_body> res;
    round_state& st;
    steady::time_point started;

    void start(const tcp::endpoint& to) {
        stream.async_connect(to, [this](beast::error_code ec) {
            if (ec) {
                return st.fail("baseline: connect: " + ec.message());
            }
            stream.socket().set_option(tcp::no_delay(true), ec);
            send();
        });
    }
    void send() {
        if (!st.next()) {
            return;
        }
        started = steady::now();
        http::async_write(stream, req, [this](beast::error_code ec, std::size_t) {
            if (ec) {
                return st.fail("baseline: write: " + ec.message());
            }
            res = {};
            http::async_read(stream, buffer, res, [this](beast::error_code ec, std::size_t) {
                if (ec) {
                    return st.fail("baseline: read: " + ec.message());
                }
                if (res.result_int() != 200 || res.body().size() != body_size) {
                    return st.fail("baseline: unexpected answer " +
                                   std::to_string(res.result_int()) + " with " +
                                   std::to_string(res.body().size()) + " bytes");
                }
                st.completed(started);
                send();
            });
        });
    }
};

/// lakemesh: one async_call after the other.
struct mesh_worker {
    lakemesh::mesh_integrator& mesh;
    const std::string& service;
    round_state& st;
    steady::time_point started{};

    void send() {
        if (!st.next()) {
            return;
        }
        started = steady::now();
        mesh.async_call(
            service, {.method = "GET", .target = "/x"}, {},
            [this](lakemesh::error_code ec, lakemesh::call_result r) {
                if (ec) {
                    return st.fail("lakemesh: " + ec.message() + ": " + r.diag.to_string());
                }
                if (r.response.status != 200 || r.response.body.size() != body_size) {
                    return st.fail("lakemesh: unexpected answer " +
                                   std::to_string(r.response.status) + " with " +
                                   std::to_string(r.response.body.size()) + " bytes from " +
                                   r.endpoint);
                }
                st.completed(started);
                send();
            });
    }
};

struct round_result {
    double rps = 0;
    double p50_us = 0;
    double cpu_us_per_call = 0;
    double allocs_per_call = 0;
    double user_us_per_call = 0;
    double sys_us_per_call = 0;
};

/// Starts the workers (through `start`), warms up, measures for `seconds`, then lets every
/// worker finish its request in flight.
template <class Start>
std::optional<round_result> run_round(asio::io_context& io, round_state& st, int workers,
                                      std::chrono::duration<double> seconds, Start start) {
    asio::steady_timer phase(io);
    st.reset(workers);
    st.phase = &phase;
    bool phase_done = false;
    steady::time_point t0;
    steady::time_point t1;
    std::chrono::nanoseconds cpu0{};
    std::chrono::nanoseconds cpu1{};
    std::uint64_t allocs0 = 0;
    std::uint64_t allocs1 = 0;
    std::pair<double, double> ru0{};
    std::pair<double, double> ru1{};
    phase.expires_after(warm_up);
    phase.async_wait([&](lakemesh::error_code ec) {
        if (ec) {
            phase_done = true;
            return;
        }
        st.measuring = true;
        t0 = steady::now();
        cpu0 = thread_cpu();
        allocs0 = allocations;
        ru0 = thread_user_sys_us();
        phase.expires_at(t0 + std::chrono::duration_cast<steady::duration>(seconds));
        phase.async_wait([&](lakemesh::error_code) {
            cpu1 = thread_cpu();
            allocs1 = allocations;
            ru1 = thread_user_sys_us();
            t1 = steady::now();
            st.measuring = false;
            st.stopping = true;
            phase_done = true;
        });
    });
    start();
    while (!phase_done || st.active > 0) {
        io.run_one();
    }
    if (!st.failure.empty() || st.calls == 0) {
        return std::nullopt;
    }
    auto& lat = st.latency_ns;
    std::nth_element(lat.begin(), lat.begin() + static_cast<std::ptrdiff_t>(lat.size() / 2),
                     lat.end());
    round_result r;
    const auto calls = static_cast<double>(st.calls);
    r.rps = calls / std::chrono::duration<double>(t1 - t0).count();
    r.p50_us = static_cast<double>(lat[lat.size() / 2]) / 1000.0;
    r.cpu_us_per_call = std::chrono::duration<double, std::micro>(cpu1 - cpu0).count() / calls;
    r.allocs_per_call = static_cast<double>(allocs1 - allocs0) / calls;
    r.user_us_per_call = (ru1.first - ru0.first) / calls;
    r.sys_us_per_call = (ru1.second - ru0.second) / calls;
    return r;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const auto n = v.size();
    return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main() {
    const double seconds = env_number("BENCH_CALL_SECONDS", 2);
    const int rounds = static_cast<int>(env_number("BENCH_CALL_ROUNDS", 5));

    lakemesh::error_code ec;
    lakemesh::diagnostics diag;
    auto consul = lakemesh::consul::client_config::from_env(ec, diag);
    if (ec) {
        std::fprintf(stderr, "consul settings: %s: %s\n", ec.message().c_str(),
                     diag.to_string().c_str());
        return 2;
    }
    std::optional<lakemesh::testing::dev_consul> dev;
    if (std::getenv("CONSUL_HTTP_ADDR") == nullptr) {
        dev.emplace();
        consul.addresses = {lakemesh::consul::agent_address{"127.0.0.1", dev->port()}};
    }

    http_server server;
    const std::string service =
        "bench-call-" + std::to_string(::getpid()) + "-" +
        std::to_string(steady::now().time_since_epoch().count() % 1000000007);
    if (auto rec = server.register_as(service, consul)) {
        std::fprintf(stderr, "registering %s: %s\n", service.c_str(), rec.message().c_str());
        return 2;
    }

    asio::io_context io(1);
    lakemesh::mesh_config cfg;
    cfg.consul = consul;
    lakemesh::mesh_integrator mesh(io, cfg);

    // Until the caller's cache holds the instance: every measured call then skips discovery.
    bool resolved = false;
    const auto resolve_deadline = steady::now() + 15s;
    while (!resolved && steady::now() < resolve_deadline) {
        std::optional<lakemesh::error_code> done;
        mesh.cache().async_resolve(
            service, [&](lakemesh::error_code rec, lakemesh::discovery::resolve_result r) {
                done = rec;
                resolved = !rec && r.snapshot && !r.snapshot->instances.empty();
            });
        while (!done) {
            io.run_one();
        }
        if (!resolved) {
            io.run_for(50ms);
        }
    }
    if (!resolved) {
        std::fprintf(stderr, "the caller never resolved %s\n", service.c_str());
        return 2;
    }

    const tcp::endpoint to(asio::ip::make_address("127.0.0.1"), server.port());
    const std::string host = "127.0.0.1:" + std::to_string(server.port());
    std::fprintf(stderr,
                 "call bench: service %s on %s, %g s per round after %lld ms warm-up, %d "
                 "rounds, consul %s\n",
                 service.c_str(), host.c_str(), seconds, static_cast<long long>(warm_up.count()),
                 rounds, consul.addresses.front().to_string().c_str());

    const char* only_env = std::getenv("BENCH_CALL_ONLY");
    const std::string only = only_env != nullptr ? only_env : "";
    round_state st;
    st.latency_ns.reserve(1u << 23);
    std::string failure;
    for (const int c : {1, 16}) {
        std::vector<double> rps[2], p50[2], cpu[2];
        for (int r = 0; r < rounds && failure.empty(); ++r) {
            // Each round measures both clients back to back, the first one alternating, so
            // that a drift of the machine's speed lands on both alike.
            for (int step = 0; step < 2 && failure.empty(); ++step) {
                const int mode = (r % 2 == 0) ? step : 1 - step;
                if ((only == "baseline" && mode == 1) || (only == "lakemesh" && mode == 0)) {
                    continue;
                }
                std::optional<round_result> res;
                if (mode == 0) {
                    std::vector<std::unique_ptr<beast_worker>> workers;
                    for (int i = 0; i < c; ++i) {
                        workers.push_back(std::make_unique<beast_worker>(io, st, host));
                    }
                    res = run_round(io, st, c, std::chrono::duration<double>(seconds), [&] {
                        for (auto& w : workers) {
                            w->start(to);
                        }
                    });
                } else {
                    std::vector<mesh_worker> workers(static_cast<std::size_t>(c),
                                                     mesh_worker{mesh, service, st});
                    res = run_round(io, st, c, std::chrono::duration<double>(seconds), [&] {
                        for (auto& w : workers) {
                            w.send();
                        }
                    });
                }
                if (!res) {
                    failure = st.failure.empty() ? "no call completed" : st.failure;
                    break;
                }
                std::fprintf(
                    stderr,
                    "  c=%d round=%d %-8s rps=%.0f p50_us=%.1f cpu_us=%.2f (user %.2f sys %.2f) "
                    "allocs=%.1f\n",
                    c, r, mode == 0 ? "baseline" : "lakemesh", res->rps, res->p50_us,
                    res->cpu_us_per_call, res->user_us_per_call, res->sys_us_per_call,
                    res->allocs_per_call);
                rps[mode].push_back(res->rps);
                p50[mode].push_back(res->p50_us);
                cpu[mode].push_back(res->cpu_us_per_call);
            }
        }
        if (!failure.empty()) {
            break;
        }
        if (rps[0].empty() || rps[1].empty()) {
            continue;
        }
        // Ratios and the overhead: the median over rounds of each round's own comparison.
        std::vector<double> rps_ratio, p50_ratio, overhead;
        for (std::size_t i = 0; i < rps[0].size() && i < rps[1].size(); ++i) {
            rps_ratio.push_back(rps[1][i] / rps[0][i]);
            p50_ratio.push_back(p50[1][i] / p50[0][i]);
            overhead.push_back(cpu[1][i] - cpu[0][i]);
        }
        std::printf(
            "call concurrency=%d baseline_rps=%.0f lakemesh_rps=%.0f ratio=%.3f "
            "baseline_p50_us=%.1f lakemesh_p50_us=%.1f p50_ratio=%.3f\n",
            c, median(rps[0]), median(rps[1]), median(rps_ratio), median(p50[0]), median(p50[1]),
            median(p50_ratio));
        std::printf(
            "cpu concurrency=%d baseline_cpu_us_per_call=%.2f lakemesh_cpu_us_per_call=%.2f "
            "overhead_us=%.2f\n",
            c, median(cpu[0]), median(cpu[1]), median(overhead));
        std::fflush(stdout);
    }

    std::optional<lakemesh::error_code> stopped;
    mesh.async_stop([&](lakemesh::error_code sec) { stopped = sec; });
    const auto stop_deadline = steady::now() + 10s;
    while (!stopped && steady::now() < stop_deadline) {
        io.run_for(10ms);
    }
    server.stop();

    if (!failure.empty()) {
        std::fprintf(stderr, "call failed: %s\n", failure.c_str());
        return 1;
    }
    return 0;
}
