// Driving Lake node processes from a test or a bench: starting and killing them, asking them
// who owns what, and a writer that remembers which writes were acknowledged.
#pragma once

#include "lake_store.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace lake {

/// A child process whose stdout is a pipe. It is killed (SIGKILL) and reaped when the object
/// goes, and dies with the thread that started it (PR_SET_PDEATHSIG), so a crashed driver
/// leaves no orphans either.
class child_process {
  public:
    child_process(const std::string& path, const std::vector<std::string>& args) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe2 failed");
        }
        std::vector<std::string> argv_store{path};
        argv_store.insert(argv_store.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_store) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) {
            throw std::runtime_error("fork failed");
        }
        if (pid_ == 0) {
            // Only async-signal-safe calls between fork and exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(126);
            }
            ::dup2(fds[1], STDOUT_FILENO);
            // The parent's sockets (its dev agent, its store) must not live on in the child.
            if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
                for (int fd = 3; fd < 4096; ++fd) {
                    ::close(fd);
                }
            }
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        out_ = fds[0];
    }
    ~child_process() {
        kill_now();
        if (out_ >= 0) {
            ::close(out_);
        }
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    pid_t pid() const { return pid_; }

    /// The next line the child writes to stdout, or nullopt after `limit` or at EOF.
    std::optional<std::string> read_line(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            const auto nl = buffer_.find('\n');
            if (nl != std::string::npos) {
                auto line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            pollfd pfd{out_, POLLIN, 0};
            if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
                continue;
            }
            char chunk[256];
            const auto n = ::read(out_, chunk, sizeof chunk);
            if (n <= 0) {
                return std::nullopt;
            }
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

    void signal(int sig) {
        if (pid_ > 0) {
            ::kill(pid_, sig);
        }
    }
    /// Waits up to `limit` for the child to exit; its exit status, or nullopt.
    std::optional<int> wait(std::chrono::milliseconds limit) {
        if (pid_ <= 0) {
            return status_;
        }
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            int st = 0;
            const auto r = ::waitpid(pid_, &st, WNOHANG);
            if (r == pid_ || (r < 0 && errno == ECHILD)) {
                pid_ = -1;
                status_ = st;
                return status_;
            }
            if (std::chrono::steady_clock::now() > deadline) {
                return std::nullopt;
            }
            std::this_thread::sleep_for(10ms);
        }
    }
    /// SIGKILL and reap.
    void kill_now() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
            pid_ = -1;
            status_ = st;
        }
    }
    /// SIGTERM, then SIGKILL when it has not exited within `grace`. True: it exited by itself.
    bool terminate(std::chrono::milliseconds grace) {
        signal(SIGTERM);
        if (wait(grace)) {
            return true;
        }
        kill_now();
        return false;
    }

  private:
    pid_t pid_ = -1;
    int out_ = -1;
    std::string buffer_;
    std::optional<int> status_;
};

/// A node process (example_lake_node in node mode) and its address.
struct node_process {
    std::string id;
    std::unique_ptr<child_process> proc;
    std::uint16_t port = 0;
    std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

struct cluster_settings {
    std::string node_binary;
    std::string consul;  ///< host:port of the agent
    std::string cluster;
    std::string store;  ///< host:port of the shared store
    std::uint32_t partitions = 256;
    std::string lease = "fast";  ///< fast (fast_failover) or relaxed, see node_options
};

/// Starts a node process and waits for it to say where it listens. Throws when it does not
/// within 10 s.
inline node_process start_node(const cluster_settings& s, const std::string& id) {
    node_process n;
    n.id = id;
    n.proc = std::make_unique<child_process>(
        s.node_binary,
        std::vector<std::string>{"--consul", s.consul, "--cluster", s.cluster, "--node", id,
                                 "--port", "0", "--store", s.store, "--partitions",
                                 std::to_string(s.partitions), "--lease", s.lease});
    // The node prints "listening 127.0.0.1:<port>" once its KV server is bound.
    auto line = n.proc->read_line(10s);
    if (!line || line->rfind("listening ", 0) != 0) {
        throw std::runtime_error("node " + id + " did not start: " + line.value_or("(no output)"));
    }
    auto hp = split_host_port(line->substr(std::string_view("listening ").size()));
    if (!hp) {
        throw std::runtime_error("node " + id + " printed " + *line);
    }
    n.port = hp->second;
    return n;
}

/// What the live nodes say they own.
struct ownership_view {
    bool all_answered = true;
    bool all_settled = true;
    std::size_t distinct = 0;    ///< partitions owned by some node
    std::size_t duplicates = 0;  ///< partitions claimed by more than one node
};

inline ownership_view ask_nodes(const std::vector<const node_process*>& nodes,
                                std::uint32_t partitions) {
    ownership_view v;
    std::vector<int> claims(partitions, 0);
    for (const auto* n : nodes) {
        blocking_http c("127.0.0.1", n->port, 1s);
        auto a = c.call(http::verb::get, "/status");
        if (!a || a->status != 200) {
            v.all_answered = false;
            v.all_settled = false;
            continue;
        }
        auto [settled, owned] = parse_status(a->body);
        v.all_settled = v.all_settled && settled;
        for (auto p : owned) {
            if (p < partitions) {
                ++claims[p];
            }
        }
    }
    for (auto c : claims) {
        v.distinct += c > 0 ? 1 : 0;
        v.duplicates += c > 1 ? 1 : 0;
    }
    return v;
}

/// Writes keys through whichever nodes it is given (following a 421 to the owner it names),
/// one write at a time, each retried with the same value until acknowledged. Remembers the
/// last acknowledged value of every key, and the values in doubt (sent, never acknowledged).
class lake_writer {
  public:
    explicit lake_writer(std::size_t key_space = 500) : key_space_(key_space) {}
    ~lake_writer() { stop(); }

    void set_nodes(std::vector<std::string> addresses) {
        std::lock_guard lock(mu_);
        nodes_ = std::move(addresses);
    }
    void start() {
        thread_ = std::thread([this] { run(); });
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    std::uint64_t acknowledged() const { return acks_.load(); }
    std::uint64_t redirects() const { return redirects_.load(); }

    /// Acknowledged writes whose value the store does not hold (call after stop()).
    std::uint64_t lost_writes(const shared_store& store) const {
        std::uint64_t lost = 0;
        for (const auto& [key, value] : acked_) {
            const auto stored = store.value(key);
            if (stored == value) {
                continue;
            }
            auto doubt = in_doubt_.find(key);
            if (stored && doubt != in_doubt_.end() && doubt->second.count(*stored) > 0) {
                continue;  // a later write that landed without its acknowledgement arriving
            }
            ++lost;
        }
        return lost;
    }

  private:
    std::string pick(std::size_t i) {
        std::lock_guard lock(mu_);
        return nodes_.empty() ? std::string() : nodes_[i % nodes_.size()];
    }

    blocking_http& client_for(const std::string& address) {
        auto it = clients_.find(address);
        if (it == clients_.end()) {
            auto hp = split_host_port(address);
            it = clients_
                     .emplace(address, std::make_unique<blocking_http>(hp ? hp->first : "127.0.0.1",
                                                                       hp ? hp->second : 0, 2s))
                     .first;
        }
        return *it->second;
    }

    void run() {
        std::uint64_t seq = 0;
        std::size_t rr = 0;
        while (!stop_) {
            const std::string key = "key-" + std::to_string(seq % key_space_);
            const std::string value = "v" + std::to_string(seq);
            ++seq;
            bool acked = false;
            std::string target = pick(rr++);
            const auto give_up = std::chrono::steady_clock::now() + 20s;
            while (!acked && !stop_ && std::chrono::steady_clock::now() < give_up) {
                if (target.empty()) {
                    std::this_thread::sleep_for(20ms);
                    target = pick(rr++);
                    continue;
                }
                auto a = client_for(target).call(http::verb::put, "/kv/" + key, value);
                in_doubt_[key].insert(value);
                if (a && a->status == 200) {
                    acked = true;
                } else if (a && a->status == 421 && !a->owner.empty()) {
                    ++redirects_;
                    target = a->owner;
                    auto b = client_for(target).call(http::verb::put, "/kv/" + key, value);
                    if (b && b->status == 200) {
                        acked = true;
                    } else {
                        std::this_thread::sleep_for(10ms);
                        target = pick(rr++);
                    }
                } else {
                    // No owner known yet, the node is gone, or the store refused: try another.
                    std::this_thread::sleep_for(10ms);
                    target = pick(rr++);
                }
            }
            if (acked) {
                acked_[key] = value;
                in_doubt_.erase(key);
                ++acks_;
            }
        }
    }

    std::size_t key_space_;
    std::mutex mu_;
    std::vector<std::string> nodes_;
    std::map<std::string, std::unique_ptr<blocking_http>> clients_;
    std::map<std::string, std::string> acked_;
    std::map<std::string, std::set<std::string>> in_doubt_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> acks_{0};
    std::atomic<std::uint64_t> redirects_{0};
    std::thread thread_;
};

}  // namespace lake
