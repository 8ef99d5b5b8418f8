// lakemesh-bench-partition-failover: how long the partitions of a node that dies stay unowned.
//   lakemesh-bench-partition-failover [--nodes N] [--partitions P] [--runs R] [--node-bin PATH]
//                                     [--lease fast|relaxed]
// Starts a dev Consul agent in-process (or uses CONSUL_HTTP_ADDR), the Lake shared store and N
// example_lake_node processes (fast_failover settings), and a writer that keeps writing through
// them. Each run: wait until the cluster settled, SIGKILL one node, measure the time from the
// kill until the last partition is owned again by a live node (as the nodes report it), start a
// replacement node with the same ID. Prints one summary line, then the theoretical bound.
#include "../examples/lake/lake_process.hpp"

#include <lakemesh/testing/dev_consul.hpp>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <random>

namespace {

using namespace std::chrono_literals;

long percentile(std::vector<long> v, double q) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    // Nearest rank.
    auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    std::size_t node_count = 3;
    std::uint32_t partitions = 256;
    std::size_t runs = 5;
    std::string lease = "fast";
    std::string node_bin =
        (std::filesystem::path(argv[0]).parent_path() / ".." / "examples" / "example_lake_node")
            .string();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const std::string v = argv[i + 1];
        if (a == "--nodes") {
            node_count = std::stoul(v);
        } else if (a == "--partitions") {
            partitions = static_cast<std::uint32_t>(std::stoul(v));
        } else if (a == "--runs") {
            runs = std::stoul(v);
        } else if (a == "--lease") {
            lease = v;
        } else if (a == "--node-bin") {
            node_bin = v;
        } else {
            std::cerr << "unknown option " << a << "\n";
            return 2;
        }
    }
    if (node_count < 2) {
        std::cerr << "--nodes must be at least 2\n";
        return 2;
    }

    std::optional<lakemesh::testing::dev_consul> agent;
    std::string consul;
    if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
        consul = lakemesh::consul::client_config::from_env().addresses.front().to_string();
    } else {
        agent.emplace();
        consul = agent->address();
    }
    lake::shared_store store(partitions);
    lake::cluster_settings s{node_bin,
                             consul,
                             "lake-bench-" + std::to_string(std::random_device{}() % 1000000),
                             "127.0.0.1:" + std::to_string(store.port()),
                             partitions,
                             lease};

    std::vector<lake::node_process> nodes;
    auto live = [&] {
        std::vector<const lake::node_process*> out;
        for (const auto& n : nodes) {
            if (n.proc->pid() > 0) {
                out.push_back(&n);
            }
        }
        return out;
    };
    auto addresses = [&] {
        std::vector<std::string> out;
        for (const auto* n : live()) {
            out.push_back(n->address());
        }
        return out;
    };
    auto settled = [&] {
        auto v = lake::ask_nodes(live(), partitions);
        return v.all_settled && v.distinct == partitions && v.duplicates == 0;
    };

    int rc = 0;
    std::vector<long> samples;
    lake::lake_writer writer;
    try {
        for (std::size_t i = 0; i < node_count; ++i) {
            nodes.push_back(lake::start_node(s, "n" + std::to_string(i + 1)));
        }
        writer.set_nodes(addresses());
        writer.start();
        for (std::size_t run = 0; run < runs; ++run) {
            if (!lake::poll_until(settled, 60s)) {
                throw std::runtime_error("the cluster did not settle before run " +
                                         std::to_string(run + 1));
            }
            auto& victim = nodes[run % nodes.size()];
            victim.proc->signal(SIGKILL);
            const auto killed_at = std::chrono::steady_clock::now();
            victim.proc->wait(5s);
            writer.set_nodes(addresses());
            const bool reowned = lake::poll_until(
                [&] {
                    auto v = lake::ask_nodes(live(), partitions);
                    return v.all_answered && v.distinct == partitions;
                },
                60s);
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - killed_at)
                                .count();
            if (!reowned) {
                throw std::runtime_error("partitions not owned again within 60 s");
            }
            samples.push_back(ms);
            std::cerr << "run " << run + 1 << ": " << ms << " ms\n";
            victim = lake::start_node(s, victim.id);
            writer.set_nodes(addresses());
        }
        if (!lake::poll_until(settled, 60s)) {
            throw std::runtime_error("the cluster did not settle after the last run");
        }
    } catch (const std::exception& e) {
        std::cerr << "lakemesh-bench-partition-failover: " << e.what() << "\n";
        rc = 1;
    }
    writer.stop();
    for (auto& n : nodes) {
        n.proc->terminate(15s);
    }
    const auto stats = store.stats();
    const auto lost = writer.lost_writes(store);
    std::cout << "failover nodes=" << node_count << " partitions=" << partitions
              << " runs=" << samples.size() << " p50_ms=" << percentile(samples, 0.50)
              << " p99_ms=" << percentile(samples, 0.99) << " max_ms="
              << (samples.empty() ? 0 : *std::max_element(samples.begin(), samples.end()))
              << " fence_violations=" << stats.fence_violations << " lost_writes=" << lost << "\n";
    // A dead node's member check expires within its TTL, which invalidates its session; its
    // locks stay unacquirable for the lock-delay; then a survivor acquires them after at most
    // one round of the ownership table's watch (its least interval between two calls).
    const auto f = lakemesh::partition::registry_config::fast_failover("x", "x");
    const auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(
        f.member_check_ttl + f.lease.lock_delay + f.table_watch.min_unchanged_interval);
    std::cout << "bound_ms=" << bound.count() << " (member_check_ttl="
              << std::chrono::duration_cast<std::chrono::milliseconds>(f.member_check_ttl).count()
              << " lock_delay=" << f.lease.lock_delay.count() << " watch_round_trip="
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     f.table_watch.min_unchanged_interval)
                     .count()
              << "; acknowledged=" << writer.acknowledged()
              << " fence_rejections=" << stats.fence_rejections << ")\n";
    return rc != 0 || stats.fence_violations != 0 || lost != 0 ? 1 : rc;
}
