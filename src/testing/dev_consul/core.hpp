// The dev cluster: one io_context and thread, the shared store and router, and the agents
// (each an HTTP listener with its own node). Blocking queries park here until their data changes.
#pragma once

#include <lakemesh/testing/dev_consul.hpp>

#include "router.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

namespace lakemesh::testing::detail {

namespace asio = boost::asio;

class dev_cluster_core;

/// Something parked on the io thread until notified (blocking query, paused request).
struct parked_waiter {
    asio::steady_timer* timer = nullptr;
    unsigned tables = 0;
    bool notified = false;
};

/// A live connection that stop() can close.
class closable {
  public:
    virtual ~closable() = default;
    virtual void close() = 0;
};

class dev_agent : public std::enable_shared_from_this<dev_agent> {
  public:
    dev_agent(dev_cluster_core& core, dev_consul_options opts);

    // All of these run on the io thread.
    void listen();
    void shutdown();
    void track(const std::shared_ptr<closable>& c) { connections_.insert(c); }
    void untrack(const std::shared_ptr<closable>& c) { connections_.erase(c); }

    dev_cluster_core& core;
    dev_consul_options opts;
    agent_info info;
    std::unique_ptr<asio::ssl::context> tls;
    std::unique_ptr<asio::ip::tcp::acceptor> acceptor;
    std::set<std::shared_ptr<closable>> connections_;

    // Fault injection; read on the io thread, written from any thread.
    std::atomic<std::int64_t> latency_ms{0};
    std::atomic<std::size_t> fail_count{0};
    std::atomic<int> fail_kind{0};
    bool paused = false;  // io thread only
    std::atomic<std::uint64_t> served{0};
    // SNI of the last completed TLS handshake; written on the io thread, read from any.
    mutable std::mutex sni_mutex;
    std::string last_sni;

  private:
    void accept_loop();
};

class dev_cluster_core : public std::enable_shared_from_this<dev_cluster_core> {
  public:
    dev_cluster_core();
    ~dev_cluster_core();

    /// Runs `fn` on the io thread and waits for it (inline when already there).
    template <class F>
    auto run_sync(F&& fn) -> decltype(fn()) {
        if (io_thread_id_ == std::this_thread::get_id()) {
            return fn();
        }
        std::packaged_task<decltype(fn())()> task(std::forward<F>(fn));
        auto fut = task.get_future();
        asio::post(io_, [&task] { task(); });
        return fut.get();
    }

    asio::io_context& io() { return io_; }
    store& state() { return store_; }
    const router& routes() const { return router_; }

    void add_agent(const std::shared_ptr<dev_agent>& a);
    void remove_agent(const std::shared_ptr<dev_agent>& a);
    /// Registers (or re-registers after a wipe) an agent's node and serfHealth check.
    void register_agent_node(dev_agent& a);
    void set_agent_alive(dev_agent& a, bool alive);
    const std::vector<agent_info>& members() const { return members_; }
    void refresh_members();

    /// Wakes blocking queries whose tables were written, and runs due agent checks.
    void after_write();
    /// Periodic evaluation of TTLs and checks.
    void tick();
    void wipe_state();

    /// The answer kept for `key` (route, path and query without index/wait) at the store's
    /// current raft index, or null.
    const response* shared_answer(const std::string& key) const;
    /// Keeps `r` as the answer for `key` at the store's current raft index; answers kept at an
    /// older index are dropped.
    void keep_shared_answer(std::string key, const response& r);

    void park(parked_waiter* w) { waiters_.push_back(w); }
    void unpark(parked_waiter* w) { waiters_.remove(w); }
    std::size_t parked_blocking_queries() const;
    /// Wakes every waiter with tables == 0 (requests held by pause()).
    void wake_paused();

  private:
    void schedule_tick();
    void run_due_checks();

    asio::io_context io_;
    std::thread thread_;
    std::thread::id io_thread_id_;
    store store_;
    router router_;
    std::vector<std::weak_ptr<dev_agent>> agents_;
    std::vector<agent_info> members_;
    std::list<parked_waiter*> waiters_;
    std::map<std::string, response, std::less<>> answers_;
    std::uint64_t answers_index_ = 0;  // raft index answers_ belong to; 0: none
    asio::steady_timer tick_timer_;
    std::chrono::milliseconds tick_interval_{50};
    bool stopping_ = false;
};

/// Serves one HTTP connection until it closes (server.cpp).
void serve_connection(const std::shared_ptr<dev_agent>& agent, asio::ip::tcp::socket socket);

}  // namespace lakemesh::testing::detail
