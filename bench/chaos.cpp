// lakemesh-bench-chaos: a bounded chaos soak of a Lake cluster.
//   lakemesh-bench-chaos [--minutes M] [--seed S] [--nodes N] [--partitions P] [--rate CALLS_PER_S]
//                        [--lease relaxed|fast] [--node-bin PATH]
// A dev Consul agent in this process (or the agent named by CONSUL_HTTP_ADDR), the Lake shared
// store, N example_lake_node processes, each reaching Consul only through a loopback relay of its
// own, and a client (a mesh_integrator here) writing and reading keys through
// async_call_partition. For M minutes (fractional allowed) a fault scheduler driven by
// std::mt19937_64(S) injects one fault at a time, holds it, heals it, lets the cluster settle and
// waits a little before the next:
//   kill9  SIGKILL a node, restart it after a while (failover, then rebalance)
//   stop   SIGTERM a node (hand-off of every partition), restart it after a while
//   cut    cut a node's connection to Consul for longer than its member check TTL, up to beyond
//          its session TTL (the node must fence itself), then restore it
//   stall  SIGSTOP a node for less than its lease's trust window (a callee answering late),
//          then SIGCONT
// Everything else is on loopback; the program stops by itself. Progress goes to stderr; stdout
// gets exactly one line:
//   chaos seed=S minutes=M faults=F calls=C failed_calls=X fence_violations=V lost_writes=L
//         orphan_max_ms=O crashes=K
//   fence_violations  writes the store admitted with a token older than one it admitted before for
//                     the partition, plus moments when two nodes both served a partition
//   lost_writes       acknowledged writes not read back with their value once the cluster settled
//                     (or a read of an acknowledged key that came back without it during the run)
//   orphan_max_ms     the longest time any partition had no node serving it (polled every 100 ms)
//   crashes           node processes that exited without being told to (or uncleanly when told),
//                     nodes that failed to start, and the client's own unexpected errors
// Exit status 1 when any of fence_violations, lost_writes or crashes is not zero.
#include "lake/lake_load.hpp"
#include "lake/lake_process.hpp"
#include "tcp_forwarder.hpp"

#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <iomanip>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct options {
    std::string minutes_text = "1";
    double minutes = 1;
    std::string seed_text = "1";
    std::uint64_t seed = 1;
    std::size_t nodes = 3;
    std::uint32_t partitions = 64;
    double rate = 100;
    /// relaxed by default: a loaded machine (debug build, two shared cores) can stall a renewal
    /// beyond fast_failover's trust window, which churns ownership without any fault injected.
    std::string lease = "relaxed";
    std::string node_bin;
};

/// Where example_lake_node is: where CMake built it, else beside this program's build tree.
std::string default_node_binary() {
#ifdef LAKE_NODE_BIN
    if (std::filesystem::exists(LAKE_NODE_BIN)) {
        return LAKE_NODE_BIN;
    }
#endif
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? "example_lake_node"
              : (self.parent_path() / ".." / "examples" / "example_lake_node").string();
}

const clock_type::time_point program_start = clock_type::now();

/// One progress line on stderr, stamped with the time since the start.
void note(const std::string& line) {
    const std::chrono::duration<double> t = clock_type::now() - program_start;
    std::cerr << "[" << std::fixed << std::setprecision(1) << std::setw(6) << t.count() << "s] "
              << line << std::endl;
}

std::string describe_status(int st) {
    if (WIFSIGNALED(st)) {
        return "killed by signal " + std::to_string(WTERMSIG(st));
    }
    if (WIFEXITED(st)) {
        return "exit status " + std::to_string(WEXITSTATUS(st));
    }
    return "status " + std::to_string(st);
}

bool clean_exit(int st) {
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/// A Lake node process with its own relay to Consul (the relay outlives restarts: same port).
struct chaos_node {
    std::string id;
    std::unique_ptr<lakemesh::test::tcp_forwarder> relay;
    lake::node_process proc;
    bool cut = false;
    bool stalled = false;
    /// Sent SIGTERM: its exit is expected (and checked by whoever sent it).
    bool stopping = false;

    bool up() const { return proc.proc && proc.proc->pid() > 0; }
};

/// The lease timings the nodes run with (see lake::node_options::relaxed_lease).
struct lease_timings {
    milliseconds member_check_ttl;
    milliseconds session_ttl;
    milliseconds trust_window;
};

lease_timings timings_of(const std::string& lease) {
    auto c = lakemesh::partition::registry_config::fast_failover("x", "x");
    if (lease == "relaxed") {
        c.member_check_ttl = 3s;
        c.lease.lock_delay = 2s;
        c.lease.margin = 500ms;
    }
    return {std::chrono::duration_cast<milliseconds>(c.member_check_ttl),
            std::chrono::duration_cast<milliseconds>(c.lease.session_ttl),
            std::chrono::duration_cast<milliseconds>(lakemesh::partition::trust_window(c.lease))};
}

class chaos {
  public:
    explicit chaos(options o)
        : opts_(std::move(o)), rng_(opts_.seed), timings_(timings_of(opts_.lease)) {}

    int run() {
        try {
            start_infrastructure();
            soak();
        } catch (const std::exception& e) {
            ++client_errors_;
            note("error: " + std::string(e.what()));
        }
        finish();

        const auto crashes = node_crashes_ + client_errors_;
        const auto fence_violations = store_fence_violations_ + double_owners_;
        std::cout << "chaos seed=" << opts_.seed_text << " minutes=" << opts_.minutes_text
                  << " faults=" << faults_ << " calls=" << calls_ << " failed_calls=" << failed_
                  << " fence_violations=" << fence_violations << " lost_writes=" << lost_writes_
                  << " orphan_max_ms=" << orphan_max_.count() << " crashes=" << crashes
                  << std::endl;
        return fence_violations != 0 || lost_writes_ != 0 || crashes != 0 ? 1 : 0;
    }

  private:
    // ---------------------------------------------------------------- setting up

    void start_infrastructure() {
        if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
            consul_ = lakemesh::consul::client_config::from_env().addresses.front();
        } else {
            agent_.emplace();
            consul_ = {"127.0.0.1", agent_->port()};
        }
        store_.emplace(opts_.partitions);
        cluster_ = "lake-chaos-" + std::to_string(std::random_device{}() % 1000000);
        note("consul " + consul_.to_string() + ", store 127.0.0.1:" +
             std::to_string(store_->port()) + ", cluster " + cluster_ + ", " + opts_.lease +
             " lease (member check TTL " + std::to_string(timings_.member_check_ttl.count()) +
             " ms, session TTL " + std::to_string(timings_.session_ttl.count()) +
             " ms, trust window " + std::to_string(timings_.trust_window.count()) + " ms)");

        lakemesh::mesh_config cfg;
        cfg.consul = std::getenv("CONSUL_HTTP_ADDR") != nullptr
                         ? lakemesh::consul::client_config::from_env()
                         : lakemesh::consul::client_config{};
        cfg.consul.addresses = {consul_};
        lakemesh::partition::table_config table;
        table.prefix = "lakemesh/" + cluster_ + "/";
        table.partitions = opts_.partitions;
        cfg.partition_table = table;
        mesh_.emplace(io_, cfg);
        std::promise<lakemesh::error_code> started;
        mesh_->async_start([&started](lakemesh::error_code ec) { started.set_value(ec); });
        io_thread_ = std::thread([this] { io_.run(); });
        auto f = started.get_future();
        if (f.wait_for(30s) != std::future_status::ready) {
            throw std::runtime_error("the client's mesh did not start within 30 s");
        }
        if (auto ec = f.get()) {
            throw std::runtime_error("the client's mesh did not start: " + ec.message());
        }

        for (std::size_t i = 0; i < opts_.nodes; ++i) {
            chaos_node n;
            n.id = "n" + std::to_string(i + 1);
            n.relay = std::make_unique<lakemesh::test::tcp_forwarder>(consul_.host, consul_.port);
            nodes_.push_back(std::move(n));
        }
    }

    void start_node(chaos_node& n) {
        lake::cluster_settings s{opts_.node_bin,   "127.0.0.1:" + std::to_string(n.relay->port()),
                                 cluster_,         "127.0.0.1:" + std::to_string(store_->port()),
                                 opts_.partitions, opts_.lease};
        try {
            n.proc = lake::start_node(s, n.id);
        } catch (const std::exception& e) {
            ++node_crashes_;
            note("CRASH: " + std::string(e.what()));
            n.proc = {};
        }
    }

    // ---------------------------------------------------------------- watching

    /// A node's GET /status: (settled, owned), or nullopt when it did not answer within 1 s.
    static std::optional<std::pair<bool, std::vector<std::uint32_t>>> status_of(
        const chaos_node& n) {
        lake::blocking_http c("127.0.0.1", n.proc.port, 1s);
        auto a = c.call(lake::http::verb::get, "/status");
        if (!a || a->status != 200) {
            return std::nullopt;
        }
        return lake::parse_status(a->body);
    }

    /// Reaps nodes that exited although nobody told them to.
    void check_children() {
        for (auto& n : nodes_) {
            if (!n.up() || n.stopping) {
                continue;
            }
            if (auto st = n.proc.proc->wait(0ms)) {
                ++node_crashes_;
                note("CRASH: node " + n.id + " exited on its own: " + describe_status(*st));
            }
        }
    }

    /// One round: who serves what (orphans, double owners), and whether the cluster settled.
    void observe() {
        check_children();
        const auto now = clock_type::now();
        const auto P = opts_.partitions;
        std::vector<std::vector<std::size_t>> claims(P);
        bool settled = true;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            auto& n = nodes_[i];
            if (!n.up() || n.stalled || n.cut) {
                settled = false;
                if (!n.up() || n.stalled) {
                    continue;  // a stopped process serves nothing (and would not answer)
                }
            }
            auto st = status_of(n);
            if (!st) {
                settled = false;
                continue;
            }
            settled = settled && st->first;
            for (auto p : st->second) {
                if (p < P) {
                    claims[p].push_back(i);
                }
            }
        }
        for (std::uint32_t p = 0; p < P; ++p) {
            settled = settled && claims[p].size() == 1;
            if (claims[p].size() > 1) {
                confirm_double_owner(p, claims[p]);
            } else {
                doubly_owned_[p] = false;
            }
            if (!tracking_orphans_) {
                continue;
            }
            if (claims[p].empty()) {
                if (!orphan_since_[p]) {
                    orphan_since_[p] = now;
                }
            } else if (orphan_since_[p]) {
                end_orphan(p, now);
            }
        }
        settled_ = settled;
    }

    /// The nodes were asked one after another, so two claims of one partition may be a hand-off
    /// that happened between the two questions. It is a double owner only when the node asked
    /// first still claims the partition after the second one did.
    void confirm_double_owner(std::uint32_t p, const std::vector<std::size_t>& claimants) {
        auto again = status_of(nodes_[claimants.front()]);
        const bool still = again && std::find(again->second.begin(), again->second.end(), p) !=
                                        again->second.end();
        if (still && !doubly_owned_[p]) {
            ++double_owners_;
            std::string who;
            for (auto i : claimants) {
                who += " " + nodes_[i].id;
            }
            note("FENCE VIOLATION: partition " + std::to_string(p) + " served by" + who);
        }
        doubly_owned_[p] = still;
    }

    void end_orphan(std::uint32_t p, clock_type::time_point now) {
        const auto d = std::chrono::duration_cast<milliseconds>(now - *orphan_since_[p]);
        if (d > orphan_note_) {
            const std::chrono::duration<double> since = *orphan_since_[p] - program_start;
            std::ostringstream os;
            os << std::fixed << std::setprecision(1) << "partition " << p
               << " had no serving node for " << d.count() << " ms (from " << since.count()
               << " s)";
            note(os.str());
            orphan_note_ = d;
        }
        if (d > orphan_max_) {
            orphan_max_ = d;
            orphan_max_partition_ = p;
        }
        orphan_since_[p].reset();
    }

    /// Observes every 100 ms until `done` holds or `limit` passed; whether `done` held.
    bool observe_until(const std::function<bool()>& done, milliseconds limit) {
        const auto until = clock_type::now() + limit;
        for (;;) {
            const auto round = clock_type::now();
            observe();
            if (done()) {
                return true;
            }
            if (clock_type::now() >= until) {
                return false;
            }
            std::this_thread::sleep_until(std::min(until, round + 100ms));
        }
    }
    void observe_for(milliseconds d) {
        observe_until([] { return false; }, d);
    }

    // ---------------------------------------------------------------- faults

    milliseconds uniform_ms(milliseconds lo, milliseconds hi) {
        std::uniform_int_distribution<long> d(lo.count(), std::max(lo.count(), hi.count()));
        return milliseconds(d(rng_));
    }

    /// Starts the nodes that are down (a start that failed before is tried again).
    void heal_all() {
        for (auto& n : nodes_) {
            if (n.stalled && n.up()) {
                n.proc.proc->signal(SIGCONT);
            }
            n.stalled = false;
            if (n.cut) {
                n.relay->restore();
                n.cut = false;
            }
            if (!n.up()) {
                start_node(n);
            }
        }
    }

    /// SIGTERM and wait (observing) for the node to hand off and exit; an unclean exit counts
    /// as a crash, a node that does not exit within 20 s is killed.
    void stop_node(chaos_node& n) {
        n.stopping = true;
        n.proc.proc->signal(SIGTERM);
        std::optional<int> st;
        observe_until(
            [&] {
                st = n.proc.proc->wait(0ms);
                return st.has_value();
            },
            20s);
        if (!st) {
            ++stop_timeouts_;
            note("node " + n.id + " did not stop within 20 s of SIGTERM: killed");
            n.proc.proc->kill_now();
        } else if (!clean_exit(*st)) {
            ++node_crashes_;
            note("CRASH: node " + n.id + " stopped uncleanly: " + describe_status(*st));
        }
        n.stopping = false;
    }

    void inject_one() {
        std::vector<std::size_t> up;
        for (std::size_t i = 0; i < nodes_.size(); ++i) {
            if (nodes_[i].up()) {
                up.push_back(i);
            }
        }
        if (up.empty()) {
            return;
        }
        auto& n = nodes_[up[std::uniform_int_distribution<std::size_t>(0, up.size() - 1)(rng_)]];
        const int kind = std::uniform_int_distribution<int>(0, 3)(rng_);
        ++faults_;
        const std::string tag = "fault " + std::to_string(faults_) + ": ";
        switch (kind) {
            case 0: {
                const auto hold = uniform_ms(500ms, 4s);
                note(tag + "kill -9 " + n.id + ", restart after " + std::to_string(hold.count()) +
                     " ms");
                n.proc.proc->kill_now();
                observe_for(hold);
                start_node(n);
                break;
            }
            case 1: {
                const auto hold = uniform_ms(500ms, 3s);
                note(tag + "SIGTERM " + n.id + ", restart " + std::to_string(hold.count()) +
                     " ms after it left");
                stop_node(n);
                observe_for(hold);
                start_node(n);
                break;
            }
            case 2: {
                const auto hold =
                    uniform_ms(timings_.member_check_ttl + 1s, timings_.session_ttl + 2s);
                note(tag + "cut " + n.id + " from Consul for " + std::to_string(hold.count()) +
                     " ms");
                n.relay->cut();
                n.cut = true;
                observe_for(hold);
                n.relay->restore();
                n.cut = false;
                break;
            }
            default: {
                const auto hold = uniform_ms(100ms, timings_.trust_window * 4 / 5);
                note(tag + "stall " + n.id + " (SIGSTOP) for " + std::to_string(hold.count()) +
                     " ms");
                n.proc.proc->signal(SIGSTOP);
                n.stalled = true;
                observe_for(hold);
                n.proc.proc->signal(SIGCONT);
                n.stalled = false;
                break;
            }
        }
    }

    // ---------------------------------------------------------------- the soak

    void soak() {
        for (auto& n : nodes_) {
            start_node(n);
        }
        if (!observe_until([&] { return settled_; }, 60s)) {
            throw std::runtime_error("the cluster did not settle within 60 s of its start");
        }
        note("cluster settled: " + std::to_string(opts_.partitions) + " partitions on " +
             std::to_string(opts_.nodes) + " nodes");

        lake::lake_load::options lo;
        lo.rate = opts_.rate;
        lo.key_prefix = "chaos-";
        load_.emplace(*mesh_, lo);
        load_->start();
        tracking_orphans_ = true;

        const auto end = clock_type::now() + std::chrono::duration_cast<milliseconds>(
                                                 std::chrono::duration<double>(opts_.minutes * 60));
        while (clock_type::now() < end) {
            heal_all();
            const auto left = [&] {
                return std::chrono::duration_cast<milliseconds>(end - clock_type::now());
            };
            if (!observe_until([&] { return settled_ || clock_type::now() >= end; }, 30s)) {
                note("not settled 30 s after the last fault; injecting the next one anyway");
            }
            observe_for(std::min(left(), uniform_ms(500ms, 2500ms)));
            if (clock_type::now() >= end) {
                break;
            }
            inject_one();
            note("client: " + load_->take_window().line());
        }
    }

    void finish() {
        heal_all();
        note("soak over after " + std::to_string(faults_) + " faults; letting the cluster settle");
        if (!observe_until([&] { return settled_; }, 60s)) {
            note("the cluster did not settle within 60 s after the soak");
        }
        const auto now = clock_type::now();
        for (std::uint32_t p = 0; p < opts_.partitions; ++p) {
            if (orphan_since_[p]) {
                end_orphan(p, now);
            }
        }
        tracking_orphans_ = false;

        if (load_) {
            load_->stop();
            load_->take_window();  // the calls since the last fault count too
            const auto all = load_->totals();
            calls_ = all.calls;
            failed_ = all.failed();
            std::string errors;
            for (const auto& [kind, n] : all.errors) {
                errors += (errors.empty() ? "" : ", ") + kind + " " + std::to_string(n);
                if (kind == "read: missing" || kind == "read: wrong value") {
                    bad_reads_ += n;
                    note("LOST WRITE seen during the run: " + all.messages.at(kind));
                }
            }
            note("client: " + std::to_string(calls_) + " calls, " + std::to_string(failed_) +
                 " failed (" + (errors.empty() ? "none" : errors) + "), " +
                 std::to_string(load_->acknowledged()) + " writes acknowledged");
            verify();
        } else {
            ++client_errors_;  // the soak never got to its load
        }
        if (!store_) {
            return;
        }
        const auto s = store_->stats();
        store_fence_violations_ = s.fence_violations;
        note("store: " + std::to_string(s.writes) + " writes admitted, " +
             std::to_string(s.fence_rejections) + " refused as stale, " +
             std::to_string(s.fence_violations) + " admitted out of token order; " +
             std::to_string(double_owners_) + " double owners seen; orphan max " +
             std::to_string(orphan_max_.count()) + " ms (partition " +
             std::to_string(orphan_max_partition_) + "); " + std::to_string(stop_timeouts_) +
             " stop timeouts");
        shut_down();
    }

    /// Reads every acknowledged write back through the client and compares it with the store.
    void verify() {
        auto f = load_->verify(8);
        if (f.wait_for(180s) != std::future_status::ready) {
            ++client_errors_;
            note("the read-back did not finish within 180 s");
            return;
        }
        const auto v = f.get();
        std::uint64_t store_mismatch = 0;
        for (const auto& [key, value] : v.writes) {
            store_mismatch += store_->value(key) == value ? 0 : 1;
        }
        lost_writes_ = std::max<std::uint64_t>(v.lost + v.unverified, store_mismatch) + bad_reads_;
        note("read-back: " + std::to_string(v.matched) + " of " + std::to_string(v.writes.size()) +
             " acknowledged writes read back, " + std::to_string(v.lost) + " lost, " +
             std::to_string(v.unverified) + " unreadable, " + std::to_string(store_mismatch) +
             " not in the store (" + std::to_string(v.took.count()) + " ms)");
        for (const auto& e : v.examples) {
            note("  " + e);
        }
        if (v.writes.empty()) {
            ++client_errors_;
            note("no write was acknowledged");
        }
    }

    void shut_down() {
        if (mesh_) {
            std::promise<void> stopped;
            asio::post(io_, [this, &stopped] {
                mesh_->async_stop([&stopped](lakemesh::error_code) { stopped.set_value(); });
            });
            if (stopped.get_future().wait_for(15s) != std::future_status::ready) {
                note("the client's mesh did not stop within 15 s");
            }
        }
        work_.reset();
        io_.stop();
        if (io_thread_.joinable()) {
            io_thread_.join();
        }
        load_.reset();
        mesh_.reset();
        for (auto& n : nodes_) {
            if (n.up()) {
                n.proc.proc->signal(SIGTERM);
            }
        }
        for (auto& n : nodes_) {
            if (!n.up()) {
                continue;
            }
            auto st = n.proc.proc->wait(20s);
            if (!st) {
                ++stop_timeouts_;
                note("node " + n.id + " did not stop within 20 s of SIGTERM: killed");
                n.proc.proc->kill_now();
            } else if (!clean_exit(*st)) {
                ++node_crashes_;
                note("CRASH: node " + n.id + " stopped uncleanly: " + describe_status(*st));
            }
        }
        nodes_.clear();
    }

    options opts_;
    std::mt19937_64 rng_;
    lease_timings timings_;

    std::optional<lakemesh::testing::dev_consul> agent_;
    lakemesh::consul::agent_address consul_;
    std::optional<lake::shared_store> store_;
    std::string cluster_;
    std::vector<chaos_node> nodes_;

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    std::optional<lakemesh::mesh_integrator> mesh_;
    std::thread io_thread_;
    std::optional<lake::lake_load> load_;

    bool settled_ = false;
    bool tracking_orphans_ = false;
    std::vector<std::optional<clock_type::time_point>> orphan_since_ =
        std::vector<std::optional<clock_type::time_point>>(opts_.partitions);
    std::vector<bool> doubly_owned_ = std::vector<bool>(opts_.partitions, false);

    std::uint64_t faults_ = 0;
    std::uint64_t calls_ = 0;
    std::uint64_t failed_ = 0;
    std::uint64_t store_fence_violations_ = 0;
    std::uint64_t double_owners_ = 0;
    std::uint64_t lost_writes_ = 0;
    std::uint64_t bad_reads_ = 0;
    milliseconds orphan_max_{0};
    /// Orphan episodes longer than every one before (and than 3 s) are noted.
    milliseconds orphan_note_{3000};
    std::uint32_t orphan_max_partition_ = 0;
    std::uint64_t node_crashes_ = 0;
    std::uint64_t client_errors_ = 0;
    std::uint64_t stop_timeouts_ = 0;
};

int usage() {
    std::cerr
        << "usage: lakemesh-bench-chaos [--minutes M] [--seed S] [--nodes N] [--partitions P] "
           "[--rate CALLS_PER_S] [--lease relaxed|fast] [--node-bin PATH]\n";
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    options o;
    o.node_bin = default_node_binary();
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (i + 1 >= argc) {
                return usage();
            }
            const std::string v = argv[++i];
            if (a == "--minutes") {
                o.minutes_text = v;
                o.minutes = std::stod(v);
            } else if (a == "--seed") {
                o.seed_text = v;
                o.seed = std::stoull(v);
            } else if (a == "--nodes") {
                o.nodes = std::stoul(v);
            } else if (a == "--partitions") {
                o.partitions = static_cast<std::uint32_t>(std::stoul(v));
            } else if (a == "--rate") {
                o.rate = std::stod(v);
            } else if (a == "--lease") {
                o.lease = v;
            } else if (a == "--node-bin") {
                o.node_bin = v;
            } else {
                return usage();
            }
        }
    } catch (const std::exception&) {
        return usage();
    }
    if (o.minutes <= 0 || o.nodes < 2 || o.partitions == 0 ||
        (o.lease != "relaxed" && o.lease != "fast")) {
        return usage();
    }
    try {
        return chaos(o).run();
    } catch (const std::exception& e) {
        std::cerr << "lakemesh-bench-chaos: " << e.what() << "\n";
        return 2;
    }
}
