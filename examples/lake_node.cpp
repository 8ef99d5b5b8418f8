// A Lake storage node: partition_registry deciding which node serves which keys, a shared store
// holding the data behind a fence (see lake/lake_store.hpp).
//
//   example_lake_node
//       In-process demo and test: a dev Consul agent (or CONSUL_HTTP_ADDR), the store and three
//       nodes on one io_context; writes 200 keys through the nodes, stops one node gracefully,
//       checks every key is still readable and every partition owned again. Exit 0 on success.
//   example_lake_node --consul HOST:PORT --cluster NAME --node ID --port N --store HOST:PORT
//                     [--partitions P] [--lease fast|relaxed]
//       One node process (fast_failover settings; relaxed: wider lease margins), serving until
//       SIGTERM or SIGINT (then it hands its partitions off). Prints "listening 127.0.0.1:<port>"
//       once its KV server is bound.
//   example_lake_node --store-only --port N [--partitions P]
//       Just the shared store, until SIGTERM or SIGINT. Prints "store 127.0.0.1:<port>".
// Set LAKE_LOG=1 to see the registry's log on stderr.
#include "lake/lake_store.hpp"

#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <csignal>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <random>

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace http = boost::beast::http;

lakemesh::observe::logger node_log(const std::string& id) {
    if (std::getenv("LAKE_LOG") == nullptr) {
        return {};
    }
    return lakemesh::observe::logger(
        lakemesh::observe::make_spdlog_sink("lake", lakemesh::observe::log_level::info),
        "node " + id);
}

/// The agent's settings: CONSUL_HTTP_ADDR and friends (token, TLS), with `address` overriding
/// the address when given.
lakemesh::consul::client_config consul_config(const std::string& address) {
    auto cfg = std::getenv("CONSUL_HTTP_ADDR") != nullptr
                   ? lakemesh::consul::client_config::from_env()
                   : lakemesh::consul::client_config{};
    if (!address.empty()) {
        auto a = lakemesh::consul::parse_agent_address(address);
        if (!a) {
            throw std::runtime_error("bad --consul address " + address);
        }
        cfg.addresses = {*a};
    }
    return cfg;
}

/// Runs `io` until SIGTERM/SIGINT, then `on_signal(done)`; `done` (or 30 s) ends the run.
void serve_until_signal(asio::io_context& io,
                        const std::function<void(std::function<void()>)>& on_signal) {
    asio::signal_set signals(io, SIGTERM, SIGINT);
    asio::steady_timer limit(io);
    signals.async_wait([&](const boost::system::error_code& ec, int) {
        if (ec) {
            return;
        }
        limit.expires_after(30s);
        limit.async_wait([&](const boost::system::error_code& lec) {
            if (!lec) {
                io.stop();
            }
        });
        on_signal([&io] { io.stop(); });
    });
    io.run();
}

int run_store(std::uint16_t port, std::uint32_t partitions) {
    lake::shared_store store(partitions, port);
    std::cout << "store 127.0.0.1:" << store.port() << std::endl;
    asio::io_context io;
    serve_until_signal(io, [](std::function<void()> done) { done(); });
    std::cerr << "store stats " << store.stats_json() << "\n";
    return 0;
}

int run_node(const std::map<std::string, std::string>& args) {
    auto get = [&](const std::string& name) {
        auto it = args.find(name);
        if (it == args.end()) {
            throw std::runtime_error("missing " + name);
        }
        return it->second;
    };
    lake::node_options o;
    o.cluster = get("--cluster");
    o.node_id = get("--node");
    o.port = static_cast<std::uint16_t>(std::stoul(get("--port")));
    auto store = lake::split_host_port(get("--store"));
    if (!store) {
        throw std::runtime_error("bad --store");
    }
    o.store_host = store->first;
    o.store_port = store->second;
    o.partitions = args.count("--partitions")
                       ? static_cast<std::uint32_t>(std::stoul(args.at("--partitions")))
                       : 256;
    o.consul = consul_config(get("--consul"));
    o.log = node_log(o.node_id);
    o.relaxed_lease = args.count("--lease") != 0 && args.at("--lease") == "relaxed";

    asio::io_context io;
    lake::lake_node node(io, o);
    std::cout << "listening 127.0.0.1:" << node.port() << std::endl;
    int rc = 0;
    node.start([&](lakemesh::error_code ec) {
        if (ec) {
            std::cerr << "node " << o.node_id << ": start failed: " << ec.message() << "\n";
            rc = 1;
            io.stop();
        }
    });
    serve_until_signal(io, [&](std::function<void()> done) {
        node.stop([&, done](lakemesh::error_code ec) {
            if (ec) {
                std::cerr << "node " << o.node_id << ": stop: " << ec.message() << "\n";
            }
            done();
        });
    });
    return rc;
}

// ------------------------------------------------------------------------- the in-process demo

int failures = 0;

void expect(bool ok, const std::string& what) {
    std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
    failures += ok ? 0 : 1;
}

int run_demo() {
    constexpr std::uint32_t P = 32;
    std::optional<lakemesh::testing::dev_consul> agent;
    std::string consul_address;
    if (std::getenv("CONSUL_HTTP_ADDR") == nullptr) {
        agent.emplace();
        consul_address = agent->address();
    }
    const std::string cluster = "lake-demo-" + std::to_string(std::random_device{}() % 1000000);
    lake::shared_store store(P);

    asio::io_context io;
    auto work = asio::make_work_guard(io);
    std::deque<lake::lake_node> nodes;
    std::atomic<int> started{0};
    std::atomic<int> start_errors{0};
    for (const char* id : {"n1", "n2", "n3"}) {
        lake::node_options o;
        o.cluster = cluster;
        o.node_id = id;
        o.store_port = store.port();
        o.partitions = P;
        o.consul = consul_config(consul_address);
        o.log = node_log(id);
        nodes.emplace_back(io, o);
    }
    for (auto& n : nodes) {
        n.start([&](lakemesh::error_code ec) { (ec ? start_errors : started)++; });
    }
    std::thread io_thread([&io] { io.run(); });

    // Ownership as the nodes serve it (the same view a remote client gets from /status).
    auto owned_by = [&](const std::vector<lake::lake_node*>& live) {
        std::vector<int> claims(P, 0);
        bool settled = true;
        for (auto* n : live) {
            lake::blocking_http c("127.0.0.1", n->port(), 1s);
            auto a = c.call(http::verb::get, "/status");
            if (!a) {
                return false;
            }
            auto [s, owned] = lake::parse_status(a->body);
            settled = settled && s;
            for (auto p : owned) {
                ++claims[p];
            }
        }
        return settled && std::all_of(claims.begin(), claims.end(), [](int c) { return c == 1; });
    };
    std::vector<lake::lake_node*> all{&nodes[0], &nodes[1], &nodes[2]};
    expect(lake::poll_until([&] { return started + start_errors == 3; }, 15s) && start_errors == 0,
           "three nodes joined the cluster");
    expect(lake::poll_until([&] { return owned_by(all); }, 30s),
           "every partition owned by exactly one node");

    // Writes through the nodes, each to a node picked round-robin, following one redirect.
    auto put = [&](const std::vector<lake::lake_node*>& live, const std::string& key,
                   const std::string& value, std::size_t i, unsigned& redirects) {
        std::optional<lake::blocking_http::answer> a;
        // A node's ownership table follows Consul a moment behind: a 421 that names no owner
        // is retried shortly (bounded).
        for (int attempt = 0; attempt < 50; ++attempt) {
            lake::blocking_http c("127.0.0.1", live[(i + attempt) % live.size()]->port());
            a = c.call(http::verb::put, "/kv/" + key, value);
            if (a && a->status == 421 && !a->owner.empty()) {
                ++redirects;
                auto hp = lake::split_host_port(a->owner);
                lake::blocking_http o(hp->first, hp->second);
                a = o.call(http::verb::put, "/kv/" + key, value);
            }
            if (a && a->status == 200) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        std::cout << "put " << key << ": "
                  << (a ? std::to_string(a->status) + " owner=" + a->owner : "no answer") << "\n";
        return false;
    };
    unsigned redirects = 0;
    std::size_t written = 0;
    for (std::size_t i = 0; i < 200; ++i) {
        written += put(all, "key-" + std::to_string(i), "value-" + std::to_string(i), i, redirects)
                       ? 1
                       : 0;
    }
    expect(written == 200,
           "200 writes acknowledged (" + std::to_string(redirects) + " followed a redirect)");

    std::atomic<bool> stopped{false};
    asio::post(io, [&] { nodes[2].stop([&](lakemesh::error_code) { stopped = true; }); });
    expect(lake::poll_until([&] { return stopped.load(); }, 20s), "n3 stopped gracefully");
    std::vector<lake::lake_node*> live{&nodes[0], &nodes[1]};
    expect(lake::poll_until([&] { return owned_by(live); }, 30s),
           "every partition owned again by n1 and n2");

    std::size_t readable = 0;
    for (std::size_t i = 0; i < 200; ++i) {
        const auto key = "key-" + std::to_string(i);
        const auto expected = "value-" + std::to_string(i);
        // Through the owner: ask any live node, follow the redirect.
        lake::blocking_http c("127.0.0.1", live[i % 2]->port());
        auto a = c.call(http::verb::get, "/kv/" + key);
        if (a && a->status == 421 && !a->owner.empty()) {
            auto hp = lake::split_host_port(a->owner);
            lake::blocking_http o(hp->first, hp->second);
            a = o.call(http::verb::get, "/kv/" + key);
        }
        readable += (a && a->status == 200 && a->body == expected) ? 1 : 0;
    }
    expect(readable == 200,
           "all 200 keys readable after the stop (" + std::to_string(readable) + ")");
    const auto s = store.stats();
    expect(s.fence_violations == 0, "no fence violations in the store");

    std::atomic<int> left{0};
    asio::post(io, [&] {
        for (int i = 0; i < 2; ++i) {
            nodes[i].stop([&](lakemesh::error_code) { ++left; });
        }
    });
    lake::poll_until([&] { return left == 2; }, 20s);
    work.reset();
    io.stop();
    io_thread.join();

    std::cout << "lake demo: partitions=" << P << " nodes=3 writes=" << written
              << " redirects=" << redirects << " store_writes=" << s.writes
              << " fence_rejections=" << s.fence_rejections
              << " fence_violations=" << s.fence_violations << " failures=" << failures << "\n";
    return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    try {
        if (argc == 1) {
            return run_demo();
        }
        std::map<std::string, std::string> args;
        bool store_only = false;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (a == "--store-only") {
                store_only = true;
            } else if (i + 1 < argc) {
                args[a] = argv[++i];
            } else {
                throw std::runtime_error("missing value for " + a);
            }
        }
        if (store_only) {
            const auto port = args.count("--port") ? std::stoul(args["--port"]) : 0UL;
            const auto parts =
                args.count("--partitions") ? std::stoul(args["--partitions"]) : 256UL;
            return run_store(static_cast<std::uint16_t>(port), static_cast<std::uint32_t>(parts));
        }
        return run_node(args);
    } catch (const std::exception& e) {
        std::cerr << "example_lake_node: " << e.what() << "\n";
        return 2;
    }
}
