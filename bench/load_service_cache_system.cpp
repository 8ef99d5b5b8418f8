// lakemesh-bench-service-cache-system: the service cache's propagation and memory (issue 5).
//   lakemesh-bench-service-cache-system propagation [--caches N] [--rounds R]
//     N service_cache objects (each with its own consul::client, one io_context thread) watch one
//     service of an embedded dev_consul; each round registers or deregisters an instance and
//     times until the last cache has seen it. Baseline: one plain KV PUT round trip.
//   lakemesh-bench-service-cache-system memory [--updates U]
//     10,000 services x 10 instances through an in-memory source: RSS and malloc'd bytes before
//     and after populating; then U churn updates (instance sets cycling, plus new names that
//     force LRU evictions at max_services=10,000) with RSS every U/4.
#include <lakemesh/consul/agent.hpp>
#include <lakemesh/consul/client.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include "fake_service_source.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using namespace lakemesh;
using steady = std::chrono::steady_clock;

namespace {

double ms(steady::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

/// The 1-minute load average: on a shared machine, how much the run competed for the cores.
double load_average() {
    std::ifstream f("/proc/loadavg");
    double one = -1;
    f >> one;
    return one;
}

double pct(std::vector<double> v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

// ------------------------------------------------------------------ propagation

struct propagation {
    int caches = 100;
    int rounds = 50;
    testing::dev_consul agent;
    asio::io_context io;
    std::vector<std::unique_ptr<consul::client>> clients;
    std::vector<std::unique_ptr<discovery::service_cache>> cache;
    std::vector<discovery::subscription> subs;
    std::vector<int> seen_round;
    int round = -1;
    std::string want_id;
    bool want_present = false;
    int seen = 0;
    steady::time_point last_seen;
    asio::steady_timer all_seen{io};
    std::vector<double> times, puts;
    int failures = 0;
    double load_before = -1, load_after = -1;

    consul::client_config config() const {
        consul::client_config c;
        c.addresses = {consul::agent_address{"127.0.0.1", agent.port()}};
        return c;
    }

    asio::awaitable<void> drive() {
        const auto tok = asio::as_tuple(asio::use_awaitable);
        consul::client admin(io, config());
        consul::service_registration base;
        base.id = "web-base";
        base.name = "web";
        base.port = 9000;
        if (auto [ec, r] = co_await admin.agent().async_service_register(base, tok); ec) {
            std::fprintf(stderr, "register: %s\n", ec.message().c_str());
            co_return;
        }
        for (int i = 0; i < caches; ++i) {
            clients.push_back(std::make_unique<consul::client>(io, config()));
            cache.push_back(
                std::make_unique<discovery::service_cache>(io.get_executor(), *clients.back()));
            seen_round.push_back(-1);
            subs.push_back(cache.back()->subscribe("web", [this, i](const std::string&, const auto&,
                                                                    const auto& after) {
                const bool present = std::any_of(after->instances.begin(), after->instances.end(),
                                                 [&](const auto& in) { return in.id == want_id; });
                if (present == want_present && seen_round[i] != round) {
                    seen_round[i] = round;
                    last_seen = steady::now();
                    if (++seen == caches) {
                        all_seen.cancel();
                    }
                }
            }));
        }
        for (auto& c : cache) {
            if (auto [ec, r] = co_await c->async_resolve("web", tok); ec) {
                std::fprintf(stderr, "resolve: %s\n", ec.message().c_str());
                co_return;
            }
        }
        // Let every watch park its blocking query.
        asio::steady_timer settle(io, std::chrono::milliseconds(300));
        co_await settle.async_wait(tok);

        for (int i = 0; i < 20 + rounds; ++i) {  // 20 warm-up PUTs, then the timed ones
            const auto t0 = steady::now();
            auto [ec, r] = co_await admin.async_kv_put("bench/key", "value", tok);
            if (!ec && i >= 20) {
                puts.push_back(ms(steady::now() - t0));
            }
        }
        load_before = load_average();
        for (round = 0; round < rounds; ++round) {
            const int k = round / 2;
            want_id = "web-" + std::to_string(k);
            want_present = round % 2 == 0;
            seen = 0;
            const auto t0 = steady::now();
            error_code ec;
            if (want_present) {
                consul::service_registration reg;
                reg.id = want_id;
                reg.name = "web";
                reg.port = 9100 + k;
                std::tie(ec, std::ignore) = co_await admin.agent().async_service_register(reg, tok);
            } else {
                std::tie(ec, std::ignore) =
                    co_await admin.agent().async_service_deregister(want_id, tok);
            }
            if (ec) {
                std::fprintf(stderr, "round %d: %s\n", round, ec.message().c_str());
                ++failures;
                continue;
            }
            if (seen < caches) {
                all_seen.expires_after(std::chrono::seconds(5));
                co_await all_seen.async_wait(tok);
            }
            if (seen < caches) {
                std::fprintf(stderr, "round %d: only %d of %d caches saw the change\n", round, seen,
                             caches);
                ++failures;
                continue;
            }
            times.push_back(ms(last_seen - t0));
        }
        load_after = load_average();
        for (auto& c : cache) {
            c->stop();
        }
        subs.clear();
    }

    int run() {
        asio::co_spawn(io, drive(), asio::detached);
        io.run();
        std::printf(
            "propagation: caches=%d rounds=%zu failures=%d last-cache-saw-it p50=%.2f ms "
            "p99=%.2f ms max=%.2f ms | baseline KV PUT round trip p50=%.3f ms p99=%.3f ms "
            "| ratio p50 %.1fx | load average %.2f -> %.2f\n",
            caches, times.size(), failures, pct(times, 0.5), pct(times, 0.99), pct(times, 1.0),
            pct(puts, 0.5), pct(puts, 0.99), pct(times, 0.5) / std::max(pct(puts, 0.5), 1e-9),
            load_before, load_after);
        return failures == 0 ? 0 : 1;
    }
};

// ------------------------------------------------------------------ memory

std::size_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    f >> size >> resident;
    return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}
std::size_t heap_bytes() {
    return mallinfo2().uordblks;
}

int memory(std::size_t updates) {
    constexpr std::size_t services = 10'000, instances = 10;
    asio::io_context io;
    auto work = asio::make_work_guard(io);  // poll() must not leave it stopped
    bench::fake_service_source fake(io, instances);
    discovery::service_cache_config cfg;
    cfg.max_services = services;
    cfg.first_resolve.bulkhead.reset();  // 10,000 first resolves at once: no concurrency cap
    discovery::service_cache cache(io.get_executor(), fake.source(), cfg);
    std::vector<std::string> names;
    for (std::size_t i = 0; i < 2 * services; ++i) {
        names.push_back("service-" + std::to_string(i));
    }
    malloc_trim(0);
    const auto rss0 = rss_bytes();
    const auto heap0 = heap_bytes();
    std::size_t done = 0;
    auto count = [&done](error_code ec, const discovery::resolve_result&) { done += !ec; };
    for (std::size_t i = 0; i < services; ++i) {
        cache.async_resolve(names[i], count);
    }
    while (done < services) {
        io.run_one();
    }
    io.poll();
    const auto rss1 = rss_bytes();
    const auto heap1 = heap_bytes();
    const double n = static_cast<double>(services * instances);
    std::printf(
        "memory: %zu services x %zu instances: RSS +%.1f MiB (%.0f B/instance), heap "
        "+%.1f MiB (%.0f B/instance)\n",
        services, instances, static_cast<double>(rss1 - rss0) / 1048576.0,
        static_cast<double>(rss1 - rss0) / n, static_cast<double>(heap1 - heap0) / 1048576.0,
        static_cast<double>(heap1 - heap0) / n);
    std::fflush(stdout);

    // Churn: bump live services; every 100th update resolves the next name of a 20,000-name
    // cycle, so the cache (bound 10,000) evicts its least recently used entry each time.
    std::size_t next_new = services;
    std::uint64_t rng = 88172645463325252ull;
    const auto t0 = steady::now();
    std::size_t peak = rss1;
    for (std::size_t u = 0; u <= updates; ++u) {
        if (u % (updates / 4) == 0) {
            io.poll();
            const auto r = rss_bytes();
            const auto st = cache.stats();
            std::printf(
                "churn: updates=%zu RSS=%.1f MiB heap=%.1f MiB services=%zu evictions=%lu "
                "elapsed=%.1f s\n",
                u, static_cast<double>(r) / 1048576.0,
                static_cast<double>(heap_bytes()) / 1048576.0, st.services,
                static_cast<unsigned long>(st.evictions),
                std::chrono::duration<double>(steady::now() - t0).count());
            std::fflush(stdout);
        }
        if (u == updates) {
            break;
        }
        if (u % 100 == 99) {
            cache.async_resolve(names[next_new],
                                [](error_code, const discovery::resolve_result&) {});
            next_new = (next_new + 1) % names.size();
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // A cached one: the cache holds the last 10,000 names of the cycle.
            fake.bump(names[(next_new + services + rng % services) % names.size()]);
        }
        io.poll();
        peak = std::max(peak, u % 4096 == 0 ? rss_bytes() : peak);
    }
    // Let the 20 ms collection timer free what is still retired.
    asio::steady_timer t(io, std::chrono::milliseconds(100));
    t.wait();
    io.poll();
    std::printf("churn: done, peak RSS seen=%.1f MiB, updates published=%lu\n",
                static_cast<double>(peak) / 1048576.0,
                static_cast<unsigned long>(cache.stats().updates));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "propagation";
    int caches = 100, rounds = 50;
    std::size_t updates = 1'000'000;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (std::strcmp(argv[i], "--caches") == 0) {
            caches = std::atoi(argv[i + 1]);
        } else if (std::strcmp(argv[i], "--rounds") == 0) {
            rounds = std::atoi(argv[i + 1]);
        } else if (std::strcmp(argv[i], "--updates") == 0) {
            updates = std::strtoull(argv[i + 1], nullptr, 10);
        }
    }
    if (mode == "memory") {
        return memory(updates);
    }
    propagation p;
    p.caches = caches;
    p.rounds = rounds;
    return p.run();
}
