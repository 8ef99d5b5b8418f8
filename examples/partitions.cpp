// Two nodes of a cluster share 32 partitions through the partition registry, against an
// embedded dev Consul agent (or the agent named by CONSUL_HTTP_ADDR): each acquires its share,
// a key is routed to its owner, then one node leaves gracefully and the other takes everything
// over by hand-off. The README's partition snippet is the marked block of this file.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/partition/partition_registry.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>

namespace asio = boost::asio;
using namespace lakemesh;
using namespace std::chrono_literals;

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
    std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
    failures += ok ? 0 : 1;
}

/// One node: its client, cache, health scheduler and registry, on the shared io_context.
struct node {
    consul::client client;
    discovery::service_cache cache;
    health::health_scheduler health;
    std::set<std::uint32_t> serving;  // what the application serves
    std::optional<partition::partition_registry> registry;

    node(asio::io_context& io, const consul::client_config& cfg)
        : client(io, cfg),
          cache(io.get_executor(), client, discovery::service_cache_config{}),
          health(io, client, health::scheduler_config{}) {}

    void join(asio::io_context& io, const std::string& cluster, const std::string& id,
              std::uint16_t port) {
        // [snippet:partitions]
        // Fast failover: a dead node's partitions move within about 2-3 s (see BENCHMARKS.md).
        auto cfg = partition::registry_config::fast_failover(cluster, id);
        cfg.partitions = 32;
        cfg.address = "127.0.0.1";
        cfg.port = port;  // where this node serves; callers find it through route(key)
        // Callbacks run on the io_context, one at a time; a partition's next term starts only
        // after its previous one ended, with a larger fencing token.
        cfg.callbacks.on_acquired = [this](std::uint32_t p, partition::fencing_token) {
            serving.insert(p);  // load p's data; send the token with every write to storage
        };
        cfg.callbacks.on_releasing = [this](std::uint32_t p, partition::fencing_token,
                                            partition::drain_done done) {
            serving.erase(p);  // finish in-flight work on p, flush, then:
            done();
        };
        cfg.callbacks.on_lost = [this](std::uint32_t p, partition::fencing_token) {
            serving.erase(p);  // stop acting on p at once: someone else may own it soon
        };
        registry.emplace(io, client, cache, health, cfg);
        registry->async_start([id](error_code ec) {
            if (ec) {
                std::cerr << id << " could not join: " << ec.message() << "\n";
            }
        });
        // [/snippet]
    }
};

bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::seconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        io.run_for(20ms);
        io.restart();
    }
    return true;
}

}  // namespace

int main() {
    std::optional<testing::dev_consul> agent;
    consul::client_config cfg;
    if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
        cfg = consul::client_config::from_env();
    } else {
        agent.emplace();
        cfg.addresses = {consul::agent_address{"127.0.0.1", agent->port()}};
    }
    const std::string cluster = "example-" + std::to_string(std::random_device{}() % 1000000);
    asio::io_context io;
    node a(io, cfg);
    node b(io, cfg);
    a.join(io, cluster, "a", 7001);
    b.join(io, cluster, "b", 7002);

    const bool settled = run_until(io, [&] {
        return a.registry->settled() && b.registry->settled() &&
               a.serving.size() + b.serving.size() == 32 && a.registry->members().size() == 2;
    });
    expect(settled, "every partition is owned once: a " + std::to_string(a.serving.size()) +
                        ", b " + std::to_string(b.serving.size()));

    // [snippet:route]
    // Any thread: the key's partition and its owner, lock-free.
    if (auto v = a.registry->table().route("user:42"); v.has_owner()) {
        std::cout << "user:42 is partition " << v.partition() << ", owned by " << v->node << " at "
                  << v->address << ":" << v->port << " (token " << v->token << ")\n";
    }
    // [/snippet]
    expect(run_until(io,
                     [&] {
                         auto v = a.registry->table().route("user:42");
                         return v.has_owner() &&
                                (v->node == "a" ? a : b).serving.count(v.partition()) == 1;
                     }),
           "route(key) names the partition's owner");

    std::optional<error_code> stopped;
    b.registry->async_stop([&](error_code ec) { stopped = ec; });
    expect(run_until(io, [&] { return stopped.has_value(); }) && !*stopped, "b leaves gracefully");
    expect(run_until(io, [&] { return a.serving.size() == 32 && a.registry->settled(); }),
           "a took every partition over by hand-off");

    std::optional<error_code> a_stopped;
    a.registry->async_stop([&](error_code ec) { a_stopped = ec; });
    run_until(io, [&] { return a_stopped.has_value(); });
    std::cout << (failures == 0 ? "all ok\n" : "FAILED\n");
    return failures == 0 ? 0 : 1;
}
