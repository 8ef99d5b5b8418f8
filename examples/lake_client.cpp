// A Lake client: writes and reads keys through mesh_integrator::async_call_partition, which
// routes each request to the owner of the key's partition (as the cluster's ownership table in
// Consul names it), follows a "not owner" answer once and waits out a failover with back-off.
// The client owns no partitions: it only follows the table (mesh_config::partition_table).
//
//   example_lake_client
//       Self-contained: an embedded dev Consul agent, the Lake store and three Lake nodes in this
//       process; about 2 s of writes and reads, then every acknowledged write is read back.
//       Exit 0 when none was lost.
//   example_lake_client --cluster NAME [--consul HOST:PORT] [--prefix P] [--partitions N]
//                       [--seconds S] [--rate R]
//       Against a running Lake cluster (e.g. the demo's, cluster "lake" with 64 partitions):
//       Consul from --consul, else CONSUL_HTTP_ADDR (and its token and TLS variables); the
//       ownership table under --prefix (default lakemesh/NAME/). Runs S seconds (default 10) at
//       R calls per second (default 100), then reads every acknowledged write back.
//
// Prints one line per second (calls/s, errors by kind, p50/p99 latency) and a summary.
#include "lake/lake_load.hpp"
#include "lake/lake_store.hpp"

#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <csignal>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct settings {
    lakemesh::consul::client_config consul;
    std::string prefix;  ///< the cluster's KV prefix, "lakemesh/<cluster>/"
    std::uint32_t partitions = 256;
    std::chrono::seconds duration{10};
    double rate = 100;
};

/// True when every partition of the table has a live owner.
bool all_owned(const lakemesh::mesh_integrator& mesh) {
    const auto* table = mesh.partition_table();
    auto snap = table ? table->snapshot() : nullptr;
    return snap && !snap->owners.empty() &&
           std::all_of(snap->owners.begin(), snap->owners.end(),
                       [](const lakemesh::partition::partition_owner& o) { return o.owned; });
}

/// The client: one mesh_integrator on its own io_context and thread, the load on top of it.
int run_client(const settings& s) {
    // --- the mesh: a pure client (no service name) that follows the Lake's ownership table
    lakemesh::mesh_config cfg;
    cfg.consul = s.consul;
    lakemesh::partition::table_config table;
    table.prefix = s.prefix;
    table.partitions = s.partitions;
    cfg.partition_table = table;

    asio::io_context io;
    auto work = asio::make_work_guard(io);
    lakemesh::mesh_integrator mesh(io, cfg);
    mesh.async_start([](lakemesh::error_code ec) {
        if (ec) {
            std::cerr << "mesh start: " << ec.message() << "\n";
        }
    });
    std::thread io_thread([&io] { io.run(); });

    // Routing needs the table: wait (bounded) until it was read and names an owner for every
    // partition. Calls made earlier would only wait inside the mesh's retries.
    if (!lake::poll_until([&] { return all_owned(mesh); }, 15s)) {
        std::cout << "warning: not every partition of " << s.prefix
                  << " has an owner yet; starting anyway\n";
    }

    // --- the load: half writes of new keys, half reads of acknowledged ones
    lake::lake_load::options lo;
    lo.rate = s.rate;
    lo.key_prefix = "client-" + std::to_string(std::random_device{}() % 1000000) + "-";
    lake::lake_load load(mesh, lo);
    load.start();
    const auto end = std::chrono::steady_clock::now() + s.duration;
    for (int second = 1; std::chrono::steady_clock::now() < end; ++second) {
        std::this_thread::sleep_until(std::min(end, std::chrono::steady_clock::now() + 1s));
        std::cout << "[" << std::setw(3) << second << "s] " << load.take_window().line() << "\n";
    }
    load.stop();
    load.take_window();

    // --- every acknowledged write must read back with the value that was sent
    auto verified = load.verify().get();
    const auto t = load.totals();

    std::promise<void> stop_done;
    asio::post(io, [&] { mesh.async_stop([&](lakemesh::error_code) { stop_done.set_value(); }); });
    stop_done.get_future().wait();
    work.reset();
    io_thread.join();

    std::cout << std::fixed << std::setprecision(1) << "summary: calls " << t.calls << " in "
              << t.length.count() << " s (" << static_cast<double>(t.calls) / t.length.count()
              << "/s), ok " << t.ok << ", failed " << t.failed() << ", p50 " << t.percentile(0.5)
              << " ms, p99 " << t.percentile(0.99) << " ms\n";
    for (const auto& [kind, n] : t.errors) {
        std::cout << "  error " << kind << " x" << n << ": " << t.messages.at(kind) << "\n";
    }
    std::cout << "read back " << verified.checked << " acknowledged writes in "
              << verified.took.count() << " ms: " << verified.matched << " match, " << verified.lost
              << " lost, " << verified.unverified << " unreadable\n";
    for (const auto& e : verified.examples) {
        std::cout << "  " << e << "\n";
    }
    const bool ok = verified.passed() && verified.checked > 0 &&
                    t.errors.count("read: missing") == 0 &&
                    t.errors.count("read: wrong value") == 0;
    std::cout << (ok ? "ok\n" : "FAILED\n");
    return ok ? 0 : 1;
}

/// No arguments: a whole Lake in this process (dev Consul, store, three nodes), 2 s of load.
int run_self_contained() {
    constexpr std::uint32_t P = 32;
    lakemesh::testing::dev_consul agent;
    const std::string cluster = "lake-client-" + std::to_string(std::random_device{}() % 1000000);
    lake::shared_store store(P);

    asio::io_context nodes_io;
    auto nodes_work = asio::make_work_guard(nodes_io);
    std::deque<lake::lake_node> nodes;
    for (const char* id : {"n1", "n2", "n3"}) {
        lake::node_options o;
        o.cluster = cluster;
        o.node_id = id;
        o.store_port = store.port();
        o.partitions = P;
        o.consul.addresses = {lakemesh::consul::agent_address{"127.0.0.1", agent.port()}};
        nodes.emplace_back(nodes_io, o);
    }
    for (auto& n : nodes) {
        n.start([id = n.id()](lakemesh::error_code ec) {
            if (ec) {
                std::cerr << id << " could not join: " << ec.message() << "\n";
            }
        });
    }
    std::thread nodes_thread([&] { nodes_io.run(); });
    std::cout << "dev Consul at " << agent.address() << ", three Lake nodes of cluster " << cluster
              << ", " << P << " partitions\n";

    settings s;
    s.consul.addresses = {lakemesh::consul::agent_address{"127.0.0.1", agent.port()}};
    s.prefix = "lakemesh/" + cluster + "/";
    s.partitions = P;
    s.duration = 2s;
    const int rc = run_client(s);

    const auto stats = store.stats();
    std::cout << "store: writes " << stats.writes << ", fence rejections " << stats.fence_rejections
              << ", fence violations " << stats.fence_violations << "\n";

    std::atomic<int> left{0};
    asio::post(nodes_io, [&] {
        for (auto& n : nodes) {
            n.stop([&](lakemesh::error_code) { ++left; });
        }
    });
    lake::poll_until([&] { return left == 3; }, 20s);
    nodes_work.reset();
    nodes_io.stop();
    nodes_thread.join();
    return rc != 0 || stats.fence_violations != 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    try {
        if (argc == 1) {
            return run_self_contained();
        }
        std::map<std::string, std::string> args;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (i + 1 >= argc || a.rfind("--", 0) != 0) {
                throw std::runtime_error("expected --flag value pairs, got " + a);
            }
            args[a] = argv[++i];
        }
        auto arg = [&](const std::string& name, const std::string& fallback) {
            auto it = args.find(name);
            return it == args.end() ? fallback : it->second;
        };
        settings s;
        if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
            s.consul = lakemesh::consul::client_config::from_env();
        }
        if (args.count("--consul")) {
            auto a = lakemesh::consul::parse_agent_address(args["--consul"]);
            if (!a) {
                throw std::runtime_error("bad --consul address " + args["--consul"]);
            }
            s.consul.addresses = {*a};
        }
        const std::string cluster = arg("--cluster", "");
        s.prefix = arg("--prefix", cluster.empty() ? "" : "lakemesh/" + cluster + "/");
        if (s.prefix.empty()) {
            throw std::runtime_error("give --cluster NAME or --prefix lakemesh/NAME/");
        }
        s.partitions = static_cast<std::uint32_t>(std::stoul(arg("--partitions", "256")));
        s.duration = std::chrono::seconds(std::stoul(arg("--seconds", "10")));
        s.rate = std::stod(arg("--rate", "100"));
        return run_client(s);
    } catch (const std::exception& e) {
        std::cerr << "example_lake_client: " << e.what() << "\n";
        return 2;
    }
}
