// lakemesh-bench-partition-handoff: the latency of a planned move of a partition. Two nodes own
// 256 partitions; a third joins (about a third of the partitions move to it by drain, release,
// acquire), then leaves gracefully (they move back). For every moved partition the time from
// the old owner's drain being done (the application calls done() at once) to the new owner's
// on_acquired is recorded. All nodes share one io_context with an embedded dev_consul (or the
// agent named by --addr host:port); fast-failover settings. Prints one line:
//   handoff partitions=P runs=R moves=M p50_ms=… p99_ms=… max_ms=…
#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/partition/partition_registry.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace lakemesh;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

struct bench_node {
    consul::client client;
    discovery::service_cache cache;
    health::health_scheduler health;
    std::optional<partition::partition_registry> registry;
    std::optional<error_code> stopped;

    bench_node(asio::io_context& io, const consul::client_config& cfg)
        : client(io, cfg),
          cache(io.get_executor(), client, discovery::service_cache_config{}),
          health(io, client, health::scheduler_config{}) {}
};

struct run_state {
    std::uint32_t partitions = 256;
    /// partition -> when its old owner's drain was done
    std::map<std::uint32_t, steady::time_point> released;
    std::vector<double> samples_ms;
    std::size_t owned_total = 0;
};

bool run_until(asio::io_context& io, const std::function<bool()>& done, steady::duration limit) {
    const auto deadline = steady::now() + limit;
    while (!done()) {
        if (steady::now() > deadline) {
            return false;
        }
        io.run_for(5ms);
        io.restart();
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string addr;
    int runs = 3;
    std::uint32_t partitions = 256;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = std::atoi(argv[++i]);
        } else if (std::strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
            partitions = static_cast<std::uint32_t>(std::atoi(argv[++i]));
        } else {
            std::fprintf(stderr, "usage: %s [--addr host:port] [--runs N] [--partitions P]\n",
                         argv[0]);
            return 2;
        }
    }
    if (runs < 1 || partitions < 3 || partitions > 65536) {
        std::fprintf(stderr, "runs must be >= 1 and partitions in [3, 65536]\n");
        return 2;
    }
    std::optional<testing::dev_consul> agent;
    consul::client_config ccfg;
    if (addr.empty()) {
        agent.emplace();
        ccfg.addresses = {consul::agent_address{"127.0.0.1", agent->port()}};
    } else {
        const auto colon = addr.rfind(':');
        ccfg.addresses = {
            consul::agent_address{addr.substr(0, colon),
                                  static_cast<std::uint16_t>(std::atoi(addr.c_str() + colon + 1))}};
    }
    asio::io_context io;
    run_state st;
    st.partitions = partitions;
    const std::string cluster = "handoff-" + std::to_string(std::random_device{}() % 1000000);
    std::vector<std::unique_ptr<bench_node>> nodes;

    auto join = [&](const std::string& id) -> bench_node& {
        auto n = std::make_unique<bench_node>(io, ccfg);
        auto cfg = partition::registry_config::fast_failover(cluster, id);
        cfg.partitions = partitions;
        cfg.register_partition_services = false;  // the move, not the health registrations
        cfg.max_concurrent_moves = 8;
        cfg.callbacks.on_acquired = [&st](std::uint32_t p, partition::fencing_token) {
            ++st.owned_total;
            auto it = st.released.find(p);
            if (it != st.released.end()) {
                st.samples_ms.push_back(
                    std::chrono::duration<double, std::milli>(steady::now() - it->second).count());
                st.released.erase(it);
            }
        };
        cfg.callbacks.on_releasing = [&st](std::uint32_t p, partition::fencing_token,
                                           partition::drain_done done) {
            --st.owned_total;
            st.released[p] = steady::now();
            done();
        };
        cfg.callbacks.on_lost = [&st](std::uint32_t, partition::fencing_token) {
            --st.owned_total;
        };
        observe::logger log;
        if (std::getenv("LAKEMESH_BENCH_LOG") != nullptr) {
            log = observe::logger(observe::make_spdlog_sink("bench", observe::log_level::debug),
                                  "partition " + id);
        }
        n->registry.emplace(io, n->client, n->cache, n->health, cfg, log);
        n->registry->async_start([id](error_code ec) {
            if (ec) {
                std::fprintf(stderr, "%s could not join: %s\n", id.c_str(), ec.message().c_str());
            }
        });
        nodes.push_back(std::move(n));
        return *nodes.back();
    };
    auto settled = [&] {
        for (auto& n : nodes) {
            if (n->registry && !n->stopped && !n->registry->settled()) {
                return false;
            }
        }
        return st.owned_total == partitions && st.released.empty();
    };

    join("n1");
    join("n2");
    if (!run_until(io, settled, 60s)) {
        std::fprintf(stderr, "the first two nodes did not settle\n");
        for (auto& n : nodes) {
            const auto x = n->registry->stats();
            std::fprintf(stderr,
                         "  owned=%zu members=%zu sessions=%llu self_fencings=%llu "
                         "renew_failures=%llu lost=%llu renew_latency_us=%lld\n",
                         x.owned, x.members, (unsigned long long)x.sessions_created,
                         (unsigned long long)x.self_fencings, (unsigned long long)x.renew_failures,
                         (unsigned long long)x.terms_lost, (long long)x.last_renew_latency.count());
        }
        return 1;
    }
    for (int r = 0; r < runs; ++r) {
        auto& third = join("n3-" + std::to_string(r));
        if (!run_until(
                io, [&] { return settled() && third.registry->owned_count() > 0; }, 60s)) {
            std::fprintf(stderr, "run %d: the join did not settle\n", r);
            return 1;
        }
        third.registry->async_stop([&third](error_code ec) { third.stopped = ec; });
        if (!run_until(
                io, [&] { return third.stopped.has_value() && settled(); }, 60s)) {
            std::fprintf(stderr, "run %d: the leave did not settle\n", r);
            return 1;
        }
    }
    for (auto& n : nodes) {
        if (!n->stopped) {
            n->registry->async_stop([&n](error_code ec) { n->stopped = ec; });
        }
    }
    run_until(
        io,
        [&] { return std::all_of(nodes.begin(), nodes.end(), [](auto& n) { return n->stopped; }); },
        30s);
    auto& s = st.samples_ms;
    if (s.empty()) {
        std::fprintf(stderr, "no moves measured\n");
        return 1;
    }
    std::sort(s.begin(), s.end());
    auto pct = [&](double q) {
        return s[std::min(s.size() - 1,
                          static_cast<std::size_t>(q * static_cast<double>(s.size())))];
    };
    std::printf("handoff partitions=%u runs=%d moves=%zu p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
                partitions, runs, s.size(), pct(0.5), pct(0.99), s.back());
    return 0;
}
