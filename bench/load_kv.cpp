// lakemesh-bench-kv: KV GET throughput of consul::client against any Consul-shaped server.
//   lakemesh-bench-kv --addr HOST:PORT --key K [--concurrency N] [--duration S] [--warmup S]
// Runs N loops, each doing async_kv_get(K) again as soon as the previous one completes, all on
// one io_context thread, for S seconds after an uncounted warm-up. Prints one line:
//   kv-get concurrency=N duration=Ss requests=R rps=X errors=E
// A missing key counts as an error: the figure is meant to measure successful reads.
// Exit codes: 0 run without errors (or --help), 1 run with errors, 2 bad arguments.
#include <lakemesh/consul/client.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace asio = boost::asio;
namespace consul = lakemesh::consul;
using steady = std::chrono::steady_clock;

namespace {

struct options {
    consul::agent_address addr;
    bool tls = false;  // an https:// address
    std::string key;
    int concurrency = 1;
    double duration = 10;
    double warmup = 1;
};

int usage(const char* argv0, std::string_view problem) {
    if (!problem.empty()) {
        std::cerr << argv0 << ": " << problem << "\n";
    }
    std::cerr << "usage: " << argv0
              << " --addr HOST:PORT --key K [--concurrency N] [--duration S] [--warmup S]\n"
                 "  HOST:PORT: the agent, as in CONSUL_HTTP_ADDR (https:// for TLS)\n"
                 "  CONSUL_HTTP_TOKEN, CONSUL_CACERT and the other CONSUL_* variables apply\n"
                 "  N: concurrent request loops, 1..4096 (default 1)\n"
                 "  S: seconds, > 0 (duration default 10, warm-up default 1, warm-up may be 0)\n";
    return 2;
}

template <class T>
bool parse_number(std::string_view text, T& out) {
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && p == text.data() + text.size() && !text.empty();
}

/// Parses argv into `o`; returns an empty string or what was wrong.
std::string parse_args(int argc, char** argv, options& o) {
    bool have_addr = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view name = argv[i];
        if (name == "--help" || name == "-h") {
            return "help";
        }
        if (i + 1 >= argc) {
            return "missing value after " + std::string(name);
        }
        std::string_view value = argv[++i];
        if (name == "--addr") {
            auto a = consul::parse_agent_address(value, &o.tls);
            if (!a || a->port == 0) {
                return "--addr wants HOST:PORT, got '" + std::string(value) + "'";
            }
            o.addr = *a;
            have_addr = true;
        } else if (name == "--key") {
            if (value.empty()) {
                return "--key must not be empty";
            }
            o.key = value;
        } else if (name == "--concurrency") {
            if (!parse_number(value, o.concurrency) || o.concurrency < 1 || o.concurrency > 4096) {
                return "--concurrency wants an integer in 1..4096, got '" + std::string(value) +
                       "'";
            }
        } else if (name == "--duration") {
            if (!parse_number(value, o.duration) || !(o.duration > 0) || o.duration > 86400) {
                return "--duration wants seconds > 0, got '" + std::string(value) + "'";
            }
        } else if (name == "--warmup") {
            if (!parse_number(value, o.warmup) || !(o.warmup >= 0) || o.warmup > 3600) {
                return "--warmup wants seconds >= 0, got '" + std::string(value) + "'";
            }
        } else {
            return "unknown option " + std::string(name);
        }
    }
    if (!have_addr) {
        return "--addr is required";
    }
    if (o.key.empty()) {
        return "--key is required";
    }
    return {};
}

/// Shared by every loop; lives on main's stack for the whole io_context::run.
struct run_state {
    consul::client& client;
    std::string key;
    bool counting = false;
    bool stopping = false;
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    bool reported_error = false;

    void report(const lakemesh::error_code& ec, const lakemesh::diagnostics& diag) {
        if (!reported_error) {
            reported_error = true;
            std::cerr << "first error: " << ec.message() << " (" << diag.client_message() << ")\n";
        }
    }

    /// One loop: the next GET starts from the completion of the previous one.
    void next() {
        if (stopping) {
            return;
        }
        client.async_kv_get(
            key, [this](lakemesh::error_code ec, consul::result<std::optional<consul::kv_pair>> r) {
                if (!ec && !r.value) {
                    ec = lakemesh::consul_errc::not_found;
                    r.diag.set_client_message("key '" + key + "' does not exist");
                }
                if (counting && !stopping) {
                    ++(ec ? errors : requests);
                }
                if (ec) {
                    report(ec, r.diag);
                }
                next();
            });
    }
};

std::chrono::steady_clock::duration seconds(double s) {
    return std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(s));
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    if (auto problem = parse_args(argc, argv, o); problem == "help") {
        usage(argv[0], {});
        return 0;
    } else if (!problem.empty()) {
        return usage(argv[0], problem);
    }
    try {
        asio::io_context io(1);
        // The environment supplies what a real agent may need (CONSUL_HTTP_TOKEN, CONSUL_CACERT,
        // CONSUL_HTTP_SSL, ...); --addr decides where to go.
        lakemesh::error_code ec;
        lakemesh::diagnostics diag;
        auto cfg = consul::client_config::from_env(ec, diag);
        if (ec) {
            return usage(argv[0], diag.client_message());
        }
        cfg.addresses = {o.addr};
        cfg.use_tls = cfg.use_tls || o.tls;
        // One connection per loop, all kept alive and reused.
        cfg.pool_size_per_address = static_cast<std::size_t>(o.concurrency);
        consul::client client(io, cfg);

        run_state st{client, o.key};
        steady::time_point start;
        steady::time_point end;
        asio::steady_timer phase(io);
        phase.expires_after(seconds(o.warmup));
        phase.async_wait([&](lakemesh::error_code) {
            st.counting = true;
            start = steady::now();
            phase.expires_at(start + seconds(o.duration));
            phase.async_wait([&](lakemesh::error_code) {
                end = steady::now();
                st.stopping = true;
            });
        });
        for (int i = 0; i < o.concurrency; ++i) {
            st.next();
        }
        io.run();

        const double secs = std::chrono::duration<double>(end - start).count();
        std::printf("kv-get concurrency=%d duration=%.1fs requests=%llu rps=%.0f errors=%llu\n",
                    o.concurrency, secs, static_cast<unsigned long long>(st.requests),
                    static_cast<double>(st.requests) / secs,
                    static_cast<unsigned long long>(st.errors));
        return st.errors == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::cerr << argv[0] << ": " << e.what() << "\n";
        return 1;
    }
}
