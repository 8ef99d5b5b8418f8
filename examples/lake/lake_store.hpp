// Lake: a small partitioned key-value storage node built on partition_registry, used by the
// lake_node example, the multi-process failover test and the partition failover bench.
//
// Data lives in the shared store, the durable storage every node writes through: a node only
// routes and fences, and at most caches. A node that dies therefore loses nothing it
// acknowledged: it answers 200 only after the store accepted the write. What keeps a replaced
// owner from overwriting its successor's writes is the fence in the store: each write carries
// the writer's fencing token, and the store refuses one older than the newest it accepted for
// the partition.
//
// Pieces (header-only, so the example, the test and the bench include the same code):
//   http_server    a minimal HTTP/1.1 server (one coroutine per connection, keep-alive)
//   shared_store   the durable store, on its own io_context and thread
//   store_link     a node's keep-alive connections to the store
//   lake_node      consul::client + service_cache + health_scheduler + partition_registry +
//                  the node's KV server (PUT/GET /kv/<key>, GET /status)
//   blocking_http  a synchronous client with timeouts, for drivers and checkers
#pragma once

#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/partition/assignment.hpp>
#include <lakemesh/partition/fence.hpp>
#include <lakemesh/partition/partition_registry.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lake {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;
using lakemesh::partition::fencing_token;
using namespace std::chrono_literals;

inline constexpr const char* token_header = "X-Lake-Token";
inline constexpr const char* owner_header = "X-Lake-Owner";

inline response make_response(http::status s, std::string body = {}) {
    response r{s, 11};
    r.set(http::field::content_type, "text/plain");
    r.body() = std::move(body);
    return r;
}

/// "host:port" -> (host, port); nullopt when malformed.
inline std::optional<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view s) {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == s.size()) {
        return std::nullopt;
    }
    try {
        const auto port = std::stoul(std::string(s.substr(colon + 1)));
        if (port > 65535) {
            return std::nullopt;
        }
        return std::pair{std::string(s.substr(0, colon)), static_cast<std::uint16_t>(port)};
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1: one coroutine per connection, requests of a
/// connection answered in order. Stopping closes the acceptor; open connections end with the
/// io_context (the owner stops it before destroying the server).
class http_server {
  public:
    using handler = std::function<asio::awaitable<response>(request&)>;

    http_server(asio::any_io_executor ex, std::uint16_t port, handler h)
        : acceptor_(ex, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)),
          handler_(std::move(h)) {}

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    void start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }
    void stop() {
        beast::error_code ec;
        acceptor_.close(ec);
    }

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                if (!acceptor_.is_open()) {
                    co_return;
                }
                continue;
            }
            asio::co_spawn(acceptor_.get_executor(), session(std::move(sock)), asio::detached);
        }
    }

    asio::awaitable<void> session(tcp::socket sock) {
        beast::tcp_stream stream(std::move(sock));
        beast::flat_buffer buffer;
        for (;;) {
            request req;
            auto [rec, rn] =
                co_await http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
            if (rec) {
                break;
            }
            response res;
            try {
                res = co_await handler_(req);
            } catch (const std::exception& e) {
                res = make_response(http::status::internal_server_error, e.what());
            }
            res.version(req.version());
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] =
                co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
            if (wec || !res.keep_alive()) {
                break;
            }
        }
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    }

    tcp::acceptor acceptor_;
    handler handler_;
};

/// The shared, durable store: key -> (value, token) per partition, behind a fence.
///   PUT /p/<p>/<key>  with X-Lake-Token: <token>: 200 when fence.admit(p, token), else 409
///   GET /p/<p>/<key>  200 with the value (and its token in X-Lake-Token), or 404
///   GET /stats        JSON counts
/// Runs on its own io_context and thread. Every node writes through it, so the data survives
/// any node: a lost node loses nothing it acknowledged.
class shared_store {
  public:
    struct counts {
        std::uint64_t writes = 0;
        std::uint64_t reads = 0;
        std::uint64_t fence_rejections = 0;
        /// Admitted writes whose token was older than one admitted before for the same
        /// partition, found by replaying the admission log (not by asking the fence).
        std::uint64_t fence_violations = 0;
        std::uint64_t keys = 0;
    };

    explicit shared_store(std::uint32_t partitions, std::uint16_t port = 0)
        : fence_(partitions),
          parts_(partitions),
          server_(io_.get_executor(), port,
                  [this](request& r) -> asio::awaitable<response> { co_return handle(r); }) {
        server_.start();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~shared_store() {
        work_.reset();
        io_.stop();
        thread_.join();
    }
    shared_store(const shared_store&) = delete;
    shared_store& operator=(const shared_store&) = delete;

    std::uint16_t port() const { return server_.port(); }
    std::uint32_t partitions() const { return fence_.partitions(); }

    /// The stored value of `key` (nullopt: never written). Any thread.
    std::optional<std::string> value(const std::string& key) const {
        const auto p = lakemesh::partition::partition_of(key, fence_.partitions());
        std::lock_guard lock(mu_);
        const auto& kv = parts_[p].data;
        auto it = kv.find(key);
        if (it == kv.end()) {
            return std::nullopt;
        }
        return it->second.value;
    }

    /// Counts, with fence_violations computed now from the admission log. Any thread.
    counts stats() const {
        std::lock_guard lock(mu_);
        counts c = counts_;
        c.fence_rejections = fence_.rejections();
        for (const auto& part : parts_) {
            c.keys += part.data.size();
            fencing_token newest = 0;
            for (const auto& [token, n] : part.admitted) {
                if (token < newest) {
                    c.fence_violations += n;
                }
                newest = std::max(newest, token);
            }
        }
        return c;
    }

    std::string stats_json() const {
        const auto c = stats();
        std::ostringstream os;
        os << R"({"writes":)" << c.writes << R"(,"reads":)" << c.reads << R"(,"fence_rejections":)"
           << c.fence_rejections << R"(,"fence_violations":)" << c.fence_violations << R"(,"keys":)"
           << c.keys << "}";
        return os.str();
    }

  private:
    struct entry {
        std::string value;
        fencing_token token = 0;
    };
    struct partition_data {
        std::unordered_map<std::string, entry> data;
        /// Admitted tokens in admission order, run-length encoded (token, count).
        std::vector<std::pair<fencing_token, std::uint64_t>> admitted;
    };

    response handle(request& req) {
        const std::string target(req.target());
        if (req.method() == http::verb::get && target == "/stats") {
            auto r = make_response(http::status::ok, stats_json());
            r.set(http::field::content_type, "application/json");
            return r;
        }
        constexpr std::string_view prefix = "/p/";
        if (target.rfind(prefix, 0) != 0) {
            return make_response(http::status::not_found, "no such path\n");
        }
        const auto slash = target.find('/', prefix.size());
        if (slash == std::string::npos || slash + 1 == target.size()) {
            return make_response(http::status::bad_request, "expected /p/<p>/<key>\n");
        }
        std::uint32_t p = 0;
        std::string key = target.substr(slash + 1);
        try {
            p = static_cast<std::uint32_t>(
                std::stoul(target.substr(prefix.size(), slash - prefix.size())));
        } catch (const std::exception&) {
            return make_response(http::status::bad_request, "bad partition\n");
        }
        if (p >= fence_.partitions() ||
            lakemesh::partition::partition_of(key, fence_.partitions()) != p) {
            return make_response(http::status::bad_request, "key not in partition\n");
        }
        if (req.method() == http::verb::get) {
            std::lock_guard lock(mu_);
            ++counts_.reads;
            auto& kv = parts_[p].data;
            auto it = kv.find(key);
            if (it == kv.end()) {
                return make_response(http::status::not_found, "");
            }
            auto r = make_response(http::status::ok, it->second.value);
            r.set(token_header, std::to_string(it->second.token));
            return r;
        }
        if (req.method() != http::verb::put) {
            return make_response(http::status::method_not_allowed, "");
        }
        fencing_token token = 0;
        try {
            token = std::stoull(std::string(req[token_header]));
        } catch (const std::exception&) {
            return make_response(http::status::bad_request, "missing X-Lake-Token\n");
        }
        std::lock_guard lock(mu_);
        // Admission and logging under one lock, so the log's order is the admission order.
        if (!fence_.admit(p, token)) {
            return make_response(http::status::conflict, "stale token\n");
        }
        auto& part = parts_[p];
        if (part.admitted.empty() || part.admitted.back().first != token) {
            part.admitted.emplace_back(token, 0);
        }
        ++part.admitted.back().second;
        part.data[key] = entry{req.body(), token};
        ++counts_.writes;
        return make_response(http::status::ok, "ok\n");
    }

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    lakemesh::partition::fence fence_;
    mutable std::mutex mu_;
    std::vector<partition_data> parts_;
    counts counts_;
    http_server server_;
    std::thread thread_;
};

/// A node's connections to the store: keep-alive, reused, each request bounded by a timeout.
class store_link {
  public:
    store_link(asio::any_io_executor ex, std::string host, std::uint16_t port)
        : ex_(std::move(ex)), endpoint_(asio::ip::make_address(host), port) {}

    /// Sends one request; nullopt when the store could not be reached or did not answer in
    /// time. Requests are idempotent (a PUT repeats the same value and token), so a reused
    /// connection that fails is retried once on a fresh one.
    asio::awaitable<std::optional<response>> call(http::verb verb, std::string target,
                                                  std::string body, fencing_token token) {
        for (int attempt = 0; attempt < 2; ++attempt) {
            std::unique_ptr<beast::tcp_stream> s;
            const bool reused = !idle_.empty();
            if (reused) {
                s = std::move(idle_.back());
                idle_.pop_back();
            } else {
                s = std::make_unique<beast::tcp_stream>(ex_);
                s->expires_after(2s);
                auto [cec] =
                    co_await s->async_connect(endpoint_, asio::as_tuple(asio::use_awaitable));
                if (cec) {
                    co_return std::nullopt;
                }
            }
            request req{verb, target, 11};
            req.set(http::field::host, "lake-store");
            if (token != 0) {
                req.set(token_header, std::to_string(token));
            }
            req.body() = body;
            req.keep_alive(true);
            req.prepare_payload();
            s->expires_after(3s);
            auto [wec, wn] =
                co_await http::async_write(*s, req, asio::as_tuple(asio::use_awaitable));
            beast::flat_buffer buffer;
            response res;
            beast::error_code rec = wec;
            if (!wec) {
                auto [ec, n] =
                    co_await http::async_read(*s, buffer, res, asio::as_tuple(asio::use_awaitable));
                rec = ec;
            }
            if (rec) {
                if (reused) {
                    continue;
                }
                co_return std::nullopt;
            }
            if (res.keep_alive() && idle_.size() < 16) {
                s->expires_never();
                idle_.push_back(std::move(s));
            }
            co_return res;
        }
        co_return std::nullopt;
    }

  private:
    asio::any_io_executor ex_;
    tcp::endpoint endpoint_;
    std::vector<std::unique_ptr<beast::tcp_stream>> idle_;
};

struct node_options {
    std::string cluster;
    std::string node_id;
    /// Port of the node's KV server on 127.0.0.1 (0: any free one).
    std::uint16_t port = 0;
    std::string store_host = "127.0.0.1";
    std::uint16_t store_port = 0;
    std::uint32_t partitions = 256;
    lakemesh::consul::client_config consul;
    lakemesh::observe::logger log;
    /// fast_failover's lease leaves 750 ms between a renewal and self-fencing; a loaded machine
    /// (debug builds, two shared cores, hundreds of partitions changing hands at once) can stall
    /// a renewal that long. Relaxed: member check 500 ms / TTL 3 s, lock-delay 2 s, margin
    /// 500 ms, renew every 250 ms (the registry's own integration tests use the same).
    bool relaxed_lease = false;
};

/// One Lake node: a partition_registry (fast_failover settings) and the node's KV server.
///   PUT /kv/<key>  forwarded to the store with this node's token of the key's partition;
///                  200 once the store acknowledged it
///   GET /kv/<key>  read through from the store
///   GET /status    "settled 0|1\nowned p p ...\n"
/// A key whose partition this node does not own (or is handing off) answers 421 Misdirected
/// Request, with X-Lake-Owner: <address:port> when the ownership table knows the owner.
/// Everything runs on the io_context it is given; the io_context must outlive it.
class lake_node {
  public:
    lake_node(asio::io_context& io, node_options opts)
        : opts_(std::move(opts)),
          client_(io, opts_.consul),
          cache_(io.get_executor(), client_, cache_config(), opts_.log),
          sched_(io, client_, scheduler_config()),
          store_(io.get_executor(), opts_.store_host, opts_.store_port),
          server_(io.get_executor(), opts_.port, [this](request& r) { return handle(r); }) {
        auto cfg =
            lakemesh::partition::registry_config::fast_failover(opts_.cluster, opts_.node_id);
        cfg.partitions = opts_.partitions;
        if (opts_.relaxed_lease) {
            cfg.member_check_interval = 500ms;
            cfg.member_check_ttl = 3s;
            cfg.lease.lock_delay = 2s;
            cfg.lease.margin = 500ms;
            cfg.lease.renew_interval = 250ms;
        }
        cfg.address = "127.0.0.1";
        cfg.port = server_.port();
        // Clients route through the ownership table in KV, so the per-partition catalog
        // services (a registration and a TTL check per owned partition) would only add load on
        // the agent.
        cfg.register_partition_services = false;
        cfg.callbacks.on_acquired = [this](std::uint32_t p, fencing_token) { draining_.erase(p); };
        cfg.callbacks.on_releasing = [this](std::uint32_t p, fencing_token,
                                            lakemesh::partition::drain_done done) {
            // New writes of p are turned away from now on; the hand-off completes once the
            // ones in flight were acknowledged by the store (or failed).
            draining_.insert(p);
            if (inflight_[p] == 0) {
                done();
            } else {
                pending_drains_[p].push_back(std::move(done));
            }
        };
        cfg.callbacks.on_lost = [this](std::uint32_t p, fencing_token) {
            // Writes still in flight carry the old token: the store's fence refuses them once
            // the next owner wrote.
            draining_.erase(p);
            pending_drains_.erase(p);
        };
        registry_ = std::make_unique<lakemesh::partition::partition_registry>(
            io, client_, cache_, sched_, std::move(cfg), opts_.log);
        server_.start();
    }
    lake_node(const lake_node&) = delete;
    lake_node& operator=(const lake_node&) = delete;

    std::uint16_t port() const { return server_.port(); }
    const std::string& id() const { return opts_.node_id; }
    lakemesh::partition::partition_registry& registry() { return *registry_; }

    /// Joins the cluster. On the io_context's thread.
    void start(std::function<void(lakemesh::error_code)> done) {
        registry_->async_start(std::move(done));
    }
    /// Hands every partition off, leaves the cluster, then stops accepting connections.
    void stop(std::function<void(lakemesh::error_code)> done) {
        stopping_ = true;
        registry_->async_stop([this, done = std::move(done)](lakemesh::error_code ec) {
            server_.stop();
            done(ec);
        });
    }

  private:
    static lakemesh::discovery::service_cache_config cache_config() {
        lakemesh::discovery::service_cache_config cc;
        cc.watch_settings.min_unchanged_interval = 50ms;
        return cc;
    }
    static lakemesh::health::scheduler_config scheduler_config() {
        lakemesh::health::scheduler_config sc;
        sc.backoff_base = 50ms;
        sc.backoff_cap = 500ms;
        return sc;
    }

    response not_owner(std::uint32_t p) {
        auto r = make_response(http::status::misdirected_request, "not the owner\n");
        auto view = registry_->table().at(p);
        if (view.has_owner() && view->node != opts_.node_id && view->port != 0) {
            r.set(owner_header, view->address + ":" + std::to_string(view->port));
        }
        return r;
    }

    std::string status_text() const {
        std::ostringstream os;
        os << "settled " << (registry_->settled() ? 1 : 0) << "\nowned";
        for (auto p : registry_->owned()) {
            if (registry_->token_of(p) != 0 && draining_.count(p) == 0) {
                os << ' ' << p;
            }
        }
        os << "\n";
        return os.str();
    }

    void finish_write(std::uint32_t p) {
        if (--inflight_[p] > 0) {
            return;
        }
        auto it = pending_drains_.find(p);
        if (it != pending_drains_.end()) {
            auto drains = std::move(it->second);
            pending_drains_.erase(it);
            for (auto& d : drains) {
                d();
            }
        }
    }

    asio::awaitable<response> handle(request& req) {
        const std::string target(req.target());
        if (target == "/status" && req.method() == http::verb::get) {
            co_return make_response(http::status::ok, status_text());
        }
        constexpr std::string_view prefix = "/kv/";
        if (target.rfind(prefix, 0) != 0) {
            co_return make_response(http::status::not_found, "no such path\n");
        }
        const std::string key = target.substr(prefix.size());
        if (key.empty() || key.find('/') != std::string::npos) {
            co_return make_response(http::status::bad_request, "bad key\n");
        }
        if (req.method() != http::verb::put && req.method() != http::verb::get) {
            co_return make_response(http::status::method_not_allowed, "");
        }
        const auto p = lakemesh::partition::partition_of(key, opts_.partitions);
        const fencing_token token = registry_->token_of(p);
        if (token == 0 || stopping_ || draining_.count(p) != 0) {
            co_return not_owner(p);
        }
        ++inflight_[p];
        struct release {
            lake_node* n;
            std::uint32_t p;
            ~release() { n->finish_write(p); }
        } guard{this, p};
        const std::string store_target = "/p/" + std::to_string(p) + "/" + key;
        // A named argument: GCC 12 destroys a conditional-expression temporary passed to a
        // coroutine twice.
        std::string body;
        if (req.method() == http::verb::put) {
            body = req.body();
        }
        auto res = co_await store_.call(req.method(), store_target, std::move(body), token);
        if (!res) {
            co_return make_response(http::status::service_unavailable, "store unreachable\n");
        }
        if (res->result() == http::status::conflict) {
            // A newer owner of p has written: this node's term is over, it just did not hear.
            registry_->table().refresh();
            co_return not_owner(p);
        }
        auto out = make_response(res->result(), res->body());
        out.set(token_header, std::to_string(token));
        co_return out;
    }

    node_options opts_;
    lakemesh::consul::client client_;
    lakemesh::discovery::service_cache cache_;
    lakemesh::health::health_scheduler sched_;
    store_link store_;
    http_server server_;
    std::unique_ptr<lakemesh::partition::partition_registry> registry_;
    std::map<std::uint32_t, int> inflight_;
    std::set<std::uint32_t> draining_;
    std::map<std::uint32_t, std::vector<lakemesh::partition::drain_done>> pending_drains_;
    bool stopping_ = false;
};

/// A synchronous HTTP/1.1 client with one keep-alive connection and a timeout on every step
/// (it runs its own io_context for each call). For drivers and checkers, not for nodes.
class blocking_http {
  public:
    struct answer {
        unsigned status = 0;
        std::string body;
        std::string owner;  ///< X-Lake-Owner, when present
    };

    blocking_http(std::string host, std::uint16_t port,
                  std::chrono::milliseconds timeout = std::chrono::seconds(3))
        : endpoint_(asio::ip::make_address(host), port), timeout_(timeout) {}

    /// nullopt on a connection error or timeout (the connection is then dropped).
    std::optional<answer> call(http::verb verb, const std::string& target,
                               const std::string& body = {}) {
        std::optional<answer> out;
        asio::co_spawn(io_, exchange(verb, target, body, out), asio::detached);
        io_.restart();
        io_.run();
        if (!out) {
            stream_.reset();
        }
        return out;
    }

  private:
    asio::awaitable<void> exchange(http::verb verb, std::string target, std::string body,
                                   std::optional<answer>& out) {
        if (!stream_) {
            stream_ = std::make_unique<beast::tcp_stream>(io_);
            stream_->expires_after(timeout_);
            auto [ec] =
                co_await stream_->async_connect(endpoint_, asio::as_tuple(asio::use_awaitable));
            if (ec) {
                co_return;
            }
        }
        request req{verb, target, 11};
        req.set(http::field::host, "lake");
        req.body() = std::move(body);
        req.keep_alive(true);
        req.prepare_payload();
        stream_->expires_after(timeout_);
        auto [wec, wn] =
            co_await http::async_write(*stream_, req, asio::as_tuple(asio::use_awaitable));
        if (wec) {
            co_return;
        }
        beast::flat_buffer buffer;
        response res;
        auto [rec, rn] =
            co_await http::async_read(*stream_, buffer, res, asio::as_tuple(asio::use_awaitable));
        if (rec) {
            co_return;
        }
        stream_->expires_never();
        out = answer{res.result_int(), res.body(), std::string(res[owner_header])};
        if (!res.keep_alive()) {
            stream_.reset();
        }
    }

    asio::io_context io_;
    tcp::endpoint endpoint_;
    std::chrono::milliseconds timeout_;
    std::unique_ptr<beast::tcp_stream> stream_;
};

/// Polls until `pred` holds or `limit` passes (every 20 ms); whether it held.
inline bool poll_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return pred();
        }
        std::this_thread::sleep_for(20ms);
    }
    return true;
}

/// Parses a node's GET /status answer: (settled, owned partitions).
inline std::pair<bool, std::vector<std::uint32_t>> parse_status(const std::string& text) {
    std::istringstream is(text);
    std::string word;
    int settled = 0;
    std::vector<std::uint32_t> owned;
    is >> word >> settled >> word;
    std::uint32_t p = 0;
    while (is >> p) {
        owned.push_back(p);
    }
    return {settled == 1, owned};
}

}  // namespace lake
