// lakemesh-demo: a Lake cluster on one machine, narrated. An embedded dev Consul agent, the Lake
// store, three Lake node processes (example_lake_node) sharing 64 partitions through the
// partition registry, and a client (a mesh_integrator in this process) writing and reading keys
// through async_call_partition. The scripted part, under a minute:
//   1. the nodes start and register; the partitions are shared out (a count and a map per node)
//   2. steady traffic, with calls/s, errors by kind and p50/p99 latency every second
//   3. one node is killed with SIGKILL: time until every partition has a live owner again, and
//      proof that no acknowledged write was lost (every one is read back and compared)
//   4. the node comes back: time until it owns its share again (planned hand-offs)
// Then it keeps running, with addresses and curl commands to poke at it, until Ctrl-C.
//
//   lakemesh-demo [--ci] [--lease fast|relaxed] [--rate CALLS_PER_S] [--node-bin PATH]
//     --ci     run the scripted part only, exit 0 when every check passed (a ctest test)
//     --lease  the nodes' lease settings. fast (the default): failover in about 2-3 s. relaxed
//              (the default with --ci): wider margins, failover in about 5-6 s, for a CI
//              machine where a stalled node would otherwise lose its lease and churn
//     With --ci every wait also shares one deadline, so the run ends within about 100 s.
// The agent listens on 127.0.0.1:$LAKEMESH_DEMO_PORT (default 8500; with --ci a free port),
// or on a free port when that one is taken.
#include "../lake/lake_load.hpp"
#include "../lake/lake_process.hpp"

#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using lakemesh::partition::table_snapshot;

constexpr std::uint32_t P = 64;
const std::string cluster = "lake";
const std::vector<std::string> node_ids{"n1", "n2", "n3"};

// ------------------------------------------------------------------------------ narration

const clock_type::time_point demo_start = clock_type::now();
std::mutex say_mu;

/// One line on the terminal, stamped with the time since the demo started. Any thread.
void say(const std::string& line) {
    const std::chrono::duration<double> t = clock_type::now() - demo_start;
    std::lock_guard lock(say_mu);
    std::cout << "[" << std::fixed << std::setprecision(1) << std::setw(5) << t.count() << "s] "
              << line << std::endl;
}

std::string seconds(std::chrono::milliseconds d) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << static_cast<double>(d.count()) / 1000.0 << " s";
    return os.str();
}

/// Set by SIGINT/SIGTERM; every wait of the demo gives up when it is.
std::atomic<bool> interrupted{false};

struct options {
    bool ci = false;
    std::string lease;  ///< empty: fast, or relaxed with --ci
    double rate = 100;
    std::string node_bin;
};

/// Where example_lake_node is: beside this program (both are built into build/<preset>/examples),
/// else where CMake built it.
std::string default_node_binary() {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const auto beside = self.parent_path() / "example_lake_node";
        if (std::filesystem::exists(beside)) {
            return beside.string();
        }
    }
#ifdef LAKE_NODE_BIN
    return LAKE_NODE_BIN;
#else
    return "example_lake_node";
#endif
}

/// The embedded Consul agent on `port`, or on a free port when that one is taken.
std::unique_ptr<lakemesh::testing::dev_consul> start_agent(std::uint16_t port) {
    lakemesh::testing::dev_consul_options o;
    o.port = port;
    try {
        return std::make_unique<lakemesh::testing::dev_consul>(o);
    } catch (const boost::system::system_error& e) {
        if (port == 0) {
            throw;
        }
        o.port = 0;
        auto agent = std::make_unique<lakemesh::testing::dev_consul>(o);
        say("port " + std::to_string(port) + " is not available (" + e.code().message() +
            "): the agent listens on " + std::to_string(agent->port()) + " instead");
        return agent;
    }
}

// ------------------------------------------------------------------------------ the demo

class demo {
  public:
    explicit demo(options o) : opts_(std::move(o)) {}

    /// The scripted part; then, unless --ci, serves until Ctrl-C. The exit status.
    int run() {
        const char* port_env = std::getenv("LAKEMESH_DEMO_PORT");
        const auto port =
            static_cast<std::uint16_t>(port_env ? std::stoul(port_env) : (opts_.ci ? 0UL : 8500UL));
        agent_ = start_agent(port);
        say("dev Consul agent on " + agent_->url() + " (embedded, Consul's HTTP API)");
        store_.emplace(P);
        say("Lake store on 127.0.0.1:" + std::to_string(store_->port()) +
            ": the durable storage every node writes through; it refuses writes carrying an "
            "outdated fencing token");
        settings_ = {opts_.node_bin,
                     agent_->address(),
                     cluster,
                     "127.0.0.1:" + std::to_string(store_->port()),
                     P,
                     opts_.lease};
        start_client();

        const auto scripted_start = clock_type::now();
        if (opts_.ci) {
            deadline_ = scripted_start + 100s;
        }
        bool completed = false;
        try {
            completed = scripted();
        } catch (const std::exception& e) {
            say("error: " + std::string(e.what()));
            failures_.push_back(e.what());
        }
        scripted_took_ = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() -
                                                                               scripted_start);
        if (completed) {
            report();
        }
        const bool passed = completed && failures_.empty();
        if (!opts_.ci && !interrupted && completed) {
            serve();
        }
        shut_down();
        if (interrupted && !completed) {
            say("interrupted");
            return 130;
        }
        say(passed ? "demo passed" : "demo FAILED");
        return passed ? 0 : 1;
    }

  private:
    // ---------------------------------------------------------------- the client

    void start_client() {
        lakemesh::mesh_config cfg;
        cfg.consul.addresses = {lakemesh::consul::agent_address{"127.0.0.1", agent_->port()}};
        lakemesh::partition::table_config table;
        table.prefix = "lakemesh/" + cluster + "/";
        table.partitions = P;
        cfg.partition_table = table;
        mesh_.emplace(io_, cfg);
        mesh_->async_start([](lakemesh::error_code ec) {
            if (ec) {
                say("client: mesh start failed: " + ec.message());
            }
        });
        signals_.async_wait([](const boost::system::error_code& ec, int) {
            if (!ec) {
                interrupted = true;
            }
        });
        // Narrates the cluster's members as Consul reports them (passing instances of the
        // member service, which is named after the cluster).
        asio::post(io_, [this] {
            members_sub_ = mesh_->cache().subscribe(
                cluster,
                [this](const std::string&,
                       const std::shared_ptr<const lakemesh::discovery::service_snapshot>& before,
                       const std::shared_ptr<const lakemesh::discovery::service_snapshot>& after) {
                    members_changed(before.get(), after.get());
                });
            mesh_->cache().async_resolve(
                cluster, [](lakemesh::error_code, lakemesh::discovery::resolve_result) {});
        });
        io_thread_ = std::thread([this] { io_.run(); });
    }

    void members_changed(const lakemesh::discovery::service_snapshot* before,
                         const lakemesh::discovery::service_snapshot* after) {
        auto by_node = [](const lakemesh::discovery::service_snapshot* s) {
            std::map<std::string, std::string> out;
            if (s != nullptr) {
                for (const auto& i : s->instances) {
                    auto it = i.meta.find("lakemesh-node");
                    out[it == i.meta.end() ? i.id : it->second] =
                        i.address + ":" + std::to_string(i.port);
                }
            }
            return out;
        };
        const auto was = by_node(before);
        const auto now = by_node(after);
        for (const auto& [node, addr] : now) {
            if (was.count(node) == 0) {
                say("consul: " + node + " registered, member check passing (" + addr + ")");
                std::lock_guard lock(members_mu_);
                registered_.insert(node);
            }
        }
        for (const auto& [node, addr] : was) {
            if (now.count(node) == 0) {
                say("consul: " + node + " is no longer passing: its member check expired");
            }
        }
    }

    std::shared_ptr<const table_snapshot> table() const {
        const auto* t = mesh_->partition_table();
        return t ? t->snapshot() : nullptr;
    }

    // ---------------------------------------------------------------- waiting and showing

    /// Waits until `done` holds (checked every `poll`) or `limit` passes, printing the client's
    /// call statistics once a second when the load runs. How long it took, or nullopt.
    std::optional<std::chrono::milliseconds> narrate_until(const std::function<bool()>& done,
                                                           std::chrono::milliseconds limit,
                                                           std::chrono::milliseconds poll = 20ms) {
        const auto start = clock_type::now();
        while (!interrupted) {
            const auto now = clock_type::now();
            if (done()) {
                return std::chrono::duration_cast<std::chrono::milliseconds>(now - start);
            }
            if (now - start > limit || now > deadline_) {
                return std::nullopt;
            }
            // One line a second, on one cadence across the phases of the script.
            if (load_ && now >= next_line_) {
                say("client: " + load_->take_window().line());
                next_line_ = std::max(next_line_ + 1s, now + 500ms);
            }
            std::this_thread::sleep_for(poll);
        }
        return std::nullopt;
    }
    void narrate_for(std::chrono::milliseconds d) {
        narrate_until([] { return false; }, d);
    }

    std::vector<const lake::node_process*> live_nodes() const {
        std::vector<const lake::node_process*> out;
        for (const auto& n : nodes_) {
            if (n.proc && n.proc->pid() > 0) {
                out.push_back(&n);
            }
        }
        return out;
    }
    std::set<std::string> live_ids() const {
        std::set<std::string> out;
        for (const auto* n : live_nodes()) {
            out.insert(n->id);
        }
        return out;
    }

    /// Every partition owned by a live node in the client's table.
    bool owned_by_live(const table_snapshot* t) const {
        if (t == nullptr || t->owners.size() != P) {
            return false;
        }
        const auto live = live_ids();
        return std::all_of(t->owners.begin(), t->owners.end(),
                           [&](const auto& o) { return o.owned && live.count(o.node) != 0; });
    }
    /// The nodes agree (each settled, every partition claimed exactly once) and the client's
    /// table names a live owner for each.
    bool settled() const {
        auto v = lake::ask_nodes(live_nodes(), P);
        return v.all_answered && v.all_settled && v.distinct == P && v.duplicates == 0 &&
               owned_by_live(table().get());
    }

    static std::map<std::string, int> counts(const table_snapshot& t) {
        std::map<std::string, int> c;
        for (const auto& o : t.owners) {
            if (o.owned) {
                ++c[o.node];
            }
        }
        return c;
    }
    /// "n1 21, n2 22, n3 21"
    static std::string distribution(const table_snapshot& t) {
        std::string out;
        for (const auto& [node, n] : counts(t)) {
            out += (out.empty() ? "" : ", ") + node + " " + std::to_string(n);
        }
        return out.empty() ? "nobody" : out;
    }
    /// One character per partition: the owner's number (n2 -> '2'), '.' when free.
    static std::string map(const table_snapshot& t) {
        std::string out;
        for (std::size_t p = 0; p < t.owners.size(); ++p) {
            const auto& o = t.owners[p];
            out += !o.owned || o.node.empty() ? '.' : o.node.back();
            if (p % 16 == 15 && p + 1 < t.owners.size()) {
                out += ' ';
            }
        }
        return out;
    }
    void show_table(const std::string& heading) {
        auto t = table();
        if (!t) {
            return;
        }
        say(heading + ": " + distribution(*t));
        say("  partition map (0-63, owner per partition): " + map(*t));
    }

    void check(bool ok, const std::string& what) {
        checks_.emplace_back(ok, what);
        if (!ok) {
            failures_.push_back(what);
        }
    }

    /// Reads every acknowledged write back through the client and compares it with the store.
    bool verify_writes(const std::string& when) {
        say("reading back all " + std::to_string(load_->acknowledged()) +
            " acknowledged writes through the client ...");
        auto f = load_->verify(8);
        const bool finished =
            narrate_until([&] { return f.wait_for(0s) == std::future_status::ready; }, 120s)
                .has_value();
        if (interrupted) {
            return false;  // the read-back stops once the load is stopped, at shut-down
        }
        if (!finished) {
            check(false, "the read-back " + when + " finished within 120 s");
            return true;
        }
        const auto v = f.get();
        std::size_t store_mismatch = 0;
        for (const auto& [key, value] : v.writes) {
            store_mismatch += store_->value(key) == value ? 0 : 1;
        }
        say("  " + std::to_string(v.matched) + " of " + std::to_string(v.checked) +
            " read back with the value written, " + std::to_string(v.lost) + " lost, " +
            std::to_string(v.unverified) + " unreadable (" + std::to_string(v.took.count()) +
            " ms); the store agrees on " + std::to_string(v.writes.size() - store_mismatch));
        for (const auto& e : v.examples) {
            say("  " + e);
        }
        check(v.passed() && store_mismatch == 0 && v.checked > 0,
              "no acknowledged write lost " + when + " (" + std::to_string(v.matched) + "/" +
                  std::to_string(v.checked) + " read back)");
        return true;
    }

    // ---------------------------------------------------------------- the script

    bool scripted() {
        say("starting three Lake nodes (" + opts_.lease + " lease, " + std::to_string(P) +
            " partitions) ...");
        for (const auto& id : node_ids) {
            nodes_.push_back(lake::start_node(settings_, id));
            say("node " + id + ": process " + std::to_string(nodes_.back().proc->pid()) +
                ", serving on " + nodes_.back().address());
        }
        const bool all_registered = narrate_until(
                                        [&] {
                                            std::lock_guard lock(members_mu_);
                                            return registered_.size() == node_ids.size();
                                        },
                                        30s)
                                        .has_value();
        check(all_registered, "all three nodes registered in Consul");
        // settled() asks every node over HTTP: every 100 ms is often enough.
        const auto shared_out = narrate_until([&] { return settled(); }, 60s, 100ms);
        if (interrupted) {
            return false;
        }
        check(shared_out.has_value(), "the partitions were shared out among the three nodes");
        if (shared_out) {
            show_table("partitions shared out (" + seconds(*shared_out) + ")");
        }

        lake::lake_load::options lo;
        lo.rate = opts_.rate;
        load_.emplace(*mesh_, lo);
        say("client: writing new keys and reading them back at " +
            std::to_string(static_cast<int>(opts_.rate)) +
            " calls/s through async_call_partition (routed to each key's owner)");
        load_->start();
        next_line_ = clock_type::now() + 1s;
        narrate_for(4s);
        if (interrupted) {
            return false;
        }

        // ---- failover
        auto& victim = nodes_[1];
        const auto victim_pid = victim.proc->pid();
        victim.proc->signal(SIGKILL);
        victim.proc->wait(5s);
        say("killed " + victim.id + " (SIGKILL, pid " + std::to_string(victim_pid) +
            "): no hand-off; its partitions stay locked until its lease runs out");
        bool freed_said = false;
        const auto failover = narrate_until(
            [&] {
                auto t = table();
                if (!freed_said && t &&
                    std::none_of(t->owners.begin(), t->owners.end(),
                                 [&](const auto& o) { return o.owned && o.node == victim.id; })) {
                    freed_said = true;
                    say(victim.id +
                        "'s session is gone: its partitions are free; the survivors "
                        "take them after the lock delay");
                }
                return owned_by_live(t.get());
            },
            30s);
        if (interrupted) {
            return false;
        }
        check(failover.has_value(), "every partition owned by a live node within 30 s of the kill" +
                                        (failover ? " (" + seconds(*failover) + ")" : ""));
        if (failover) {
            failover_ = *failover;
            show_table("failover done " + seconds(*failover) + " after the kill");
        }
        narrate_for(3s);
        if (interrupted || !verify_writes("after the failover")) {
            return false;
        }

        // ---- rebalance
        const auto before = table();
        say("restarting " + victim.id + " ...");
        victim = lake::start_node(settings_, victim.id);
        say("node " + victim.id + ": process " + std::to_string(victim.proc->pid()) +
            ", serving on " + victim.address());
        const auto rebalanced = narrate_until(
            [&] {
                auto t = table();
                return t && counts(*t)[victim.id] > 0 && settled();
            },
            60s, 100ms);
        if (interrupted) {
            return false;
        }
        check(rebalanced.has_value(), victim.id + " owns partitions again after the rebalance" +
                                          (rebalanced ? " (" + seconds(*rebalanced) + ")" : ""));
        if (rebalanced) {
            rebalance_ = *rebalanced;
            show_table("rebalanced " + seconds(*rebalanced) + " after the restart");
            if (auto after = table(); before && after) {
                std::map<std::string, int> moved;
                for (std::uint32_t p = 0; p < P; ++p) {
                    if (before->owners[p].node != after->owners[p].node) {
                        ++moved[before->owners[p].node + " -> " + after->owners[p].node];
                    }
                }
                std::string text;
                for (const auto& [move, n] : moved) {
                    text += (text.empty() ? "" : ", ") + move + " " + std::to_string(n);
                }
                say("  moved by planned hand-offs (the old owner drains, then releases): " +
                    (text.empty() ? "none" : text));
            }
        }
        narrate_for(2s);
        if (interrupted || !verify_writes("after the rebalance")) {
            return false;
        }
        return true;
    }

    void report() {
        load_->take_window();  // the calls since the last line count too
        const auto s = store_->stats();
        check(s.fence_violations == 0, "no fence violations in the store (" +
                                           std::to_string(s.fence_rejections) +
                                           " stale writes refused)");
        auto totals = load_->totals();
        const auto bad_reads =
            (totals.errors.count("read: missing") ? totals.errors.at("read: missing") : 0) +
            (totals.errors.count("read: wrong value") ? totals.errors.at("read: wrong value") : 0);
        check(bad_reads == 0, "every read of an acknowledged key returned its value");

        say("---- summary");
        std::ostringstream os;
        os << std::fixed << std::setprecision(1) << "client: " << totals.calls << " calls, "
           << totals.ok << " ok, " << totals.failed() << " failed, p50 " << totals.percentile(0.5)
           << " ms, p99 " << totals.percentile(0.99) << " ms, " << load_->acknowledged()
           << " writes acknowledged";
        say(os.str());
        for (const auto& [kind, n] : totals.errors) {
            say("  " + kind + " x" + std::to_string(n) + ": " + totals.messages[kind]);
        }
        say("store: " + std::to_string(s.writes) + " writes, " + std::to_string(s.keys) +
            " keys, " + std::to_string(s.fence_rejections) + " refused as stale, " +
            std::to_string(s.fence_violations) + " fence violations");
        for (const auto& [ok, what] : checks_) {
            say(std::string(ok ? "ok   " : "FAIL ") + what);
        }
        say("scripted part took " + seconds(scripted_took_) + " (failover " + seconds(failover_) +
            ", rebalance " + seconds(rebalance_) + ")");
    }

    /// After the script: addresses, curl commands, a statistics line every 10 s until Ctrl-C.
    void serve() {
        say("---- the cluster keeps running; Ctrl-C stops it (nodes, agent, client)");
        say("Consul: " + agent_->url());
        say("  curl '" + agent_->url() + "/v1/health/service/" + cluster +
            "?passing'  # the nodes");
        say("  curl '" + agent_->url() + "/v1/kv/lakemesh/" + cluster +
            "/?keys'  # ownership and status keys");
        for (const auto& n : nodes_) {
            say(n.id + ": http://" + n.address());
        }
        const std::string n1 = "http://" + nodes_.front().address();
        say("  curl " + n1 + "/status  # what n1 owns");
        say("  curl -i -X PUT --data hello " + n1 +
            "/kv/greeting  # 421 and X-Lake-Owner when n1 is not the key's owner");
        say("  curl " + n1 + "/kv/greeting");
        say("  example_lake_client --consul " + agent_->address() + " --cluster " + cluster +
            " --partitions " + std::to_string(P) + " --seconds 5  # another client");
        auto next = clock_type::now() + 10s;
        while (!interrupted) {
            std::this_thread::sleep_for(50ms);
            if (clock_type::now() >= next) {
                auto t = table();
                say("client: " + load_->take_window().line() +
                    (t ? "  | owners " + distribution(*t) : ""));
                next += 10s;
            }
        }
        say("Ctrl-C: stopping");
    }

    void shut_down() {
        if (load_) {
            load_->stop();
        }
        std::promise<void> stopped;
        asio::post(io_, [this, &stopped] {
            members_sub_.reset();
            signals_.cancel();
            mesh_->async_stop([&stopped](lakemesh::error_code) { stopped.set_value(); });
        });
        if (stopped.get_future().wait_for(15s) != std::future_status::ready) {
            say("client: the mesh did not stop within 15 s");
        }
        work_.reset();
        io_.stop();
        io_thread_.join();
        load_.reset();
        mesh_.reset();

        // Every node hands its partitions off and leaves (SIGTERM); SIGKILL after 15 s.
        for (auto& n : nodes_) {
            if (n.proc) {
                n.proc->signal(SIGTERM);
            }
        }
        for (auto& n : nodes_) {
            if (n.proc && n.proc->pid() > 0) {
                const bool clean = n.proc->wait(15s).has_value();
                if (!clean) {
                    n.proc->kill_now();
                }
                say("node " + n.id + (clean ? " stopped" : " killed (did not stop within 15 s)"));
            }
        }
        nodes_.clear();
        store_.reset();
        agent_.reset();
    }

    options opts_;
    std::unique_ptr<lakemesh::testing::dev_consul> agent_;
    std::optional<lake::shared_store> store_;
    lake::cluster_settings settings_;
    std::vector<lake::node_process> nodes_;

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    asio::signal_set signals_{io_, SIGINT, SIGTERM};
    std::optional<lakemesh::mesh_integrator> mesh_;
    lakemesh::discovery::subscription members_sub_;
    std::thread io_thread_;
    std::optional<lake::lake_load> load_;

    std::mutex members_mu_;
    std::set<std::string> registered_;
    std::vector<std::pair<bool, std::string>> checks_;
    std::vector<std::string> failures_;
    std::chrono::milliseconds scripted_took_{0};
    std::chrono::milliseconds failover_{0};
    std::chrono::milliseconds rebalance_{0};
    clock_type::time_point next_line_{};
    /// Every wait ends by then (--ci only).
    clock_type::time_point deadline_ = clock_type::time_point::max();
};

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    options o;
    o.node_bin = default_node_binary();
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--ci" || a == "--once") {
            o.ci = true;
        } else if (a == "--lease" && has_value) {
            o.lease = argv[++i];
        } else if (a == "--rate" && has_value) {
            o.rate = std::stod(argv[++i]);
        } else if (a == "--node-bin" && has_value) {
            o.node_bin = argv[++i];
        } else {
            std::cerr << "usage: lakemesh-demo [--ci] [--lease fast|relaxed] [--rate N] "
                         "[--node-bin PATH]\n";
            return 2;
        }
    }
    if (o.lease.empty()) {
        o.lease = o.ci ? "relaxed" : "fast";
    }
    try {
        return demo(o).run();
    } catch (const std::exception& e) {
        std::cerr << "lakemesh-demo: " << e.what() << "\n";
        return 2;
    }
}
