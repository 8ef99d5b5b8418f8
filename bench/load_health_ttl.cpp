// lakemesh-bench-health-ttl: what keeping many TTL checks fed costs this process.
//   lakemesh-bench-health-ttl [--checks N] [--services S] [--interval SEC] [--ttl SEC]
//                             [--duration SEC] [--warmup SEC] [--baseline SEC]
//                             [--dev-consul PATH] [--port P] [--addr HOST:PORT]
//                             [--refresh-fraction F] [--slack-fraction F] [--max-in-flight N]
//                             [--per-batch N]
// Starts `lakemesh-dev-consul -http-port P` as a separate process (unless --addr names a running
// agent), registers S services carrying N TTL checks in all, each fed by a trivial sync probe
// every --interval seconds, lets it settle for --warmup seconds, then measures this process's
// own CPU time (getrusage RUSAGE_SELF, user + system) over --duration seconds. The baseline is
// the same process idle (io_context, client and an empty scheduler) for --baseline seconds.
// --refresh-fraction, --slack-fraction and --max-in-flight override scheduler_config's
// refresh_fraction, timer_slack_fraction and max_updates_in_flight, and --per-batch overrides
// max_updates_per_batch (1: no pipelining) (default: the library's defaults), to compare policies
// in one build.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/health/health_scheduler.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace asio = boost::asio;
using namespace std::chrono_literals;
using lakemesh::health::status;

namespace {

double cpu_seconds(int who) {
    rusage ru{};
    getrusage(who, &ru);
    auto secs = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) / 1e6; };
    return secs(ru.ru_utime) + secs(ru.ru_stime);
}

struct cpu_sample {
    double cpu = 0;
    std::chrono::steady_clock::time_point wall;
    static cpu_sample now() { return {cpu_seconds(RUSAGE_SELF), std::chrono::steady_clock::now()}; }
};

/// CPU seconds per wall second since `start`, as a percentage of one core.
double percent_of_core(const cpu_sample& start, const cpu_sample& end) {
    const double wall = std::chrono::duration<double>(end.wall - start.wall).count();
    return 100.0 * (end.cpu - start.cpu) / wall;
}

bool wait_for_port(const std::string& host, unsigned short port, std::chrono::seconds limit) {
    asio::io_context io;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        asio::ip::tcp::socket s(io);
        boost::system::error_code ec;
        s.connect({asio::ip::make_address(host), port}, ec);
        if (!ec) {
            return true;
        }
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t checks = 10000;
    std::size_t services = 1000;
    double interval_s = 10;
    double ttl_s = 30;
    double duration_s = 60;
    double warmup_s = 20;
    double baseline_s = 60;
    unsigned short port = 18511;
    std::string addr;
    std::optional<double> refresh_fraction;
    std::optional<double> slack_fraction;
    std::optional<std::size_t> max_in_flight;
    std::optional<std::size_t> per_batch;
    std::string dev_consul =
        (std::filesystem::path(argv[0]).parent_path() / ".." / "lakemesh-dev-consul").string();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const std::string v = argv[i + 1];
        if (a == "--checks") {
            checks = std::stoul(v);
        } else if (a == "--services") {
            services = std::stoul(v);
        } else if (a == "--interval") {
            interval_s = std::stod(v);
        } else if (a == "--ttl") {
            ttl_s = std::stod(v);
        } else if (a == "--duration") {
            duration_s = std::stod(v);
        } else if (a == "--warmup") {
            warmup_s = std::stod(v);
        } else if (a == "--baseline") {
            baseline_s = std::stod(v);
        } else if (a == "--port") {
            port = static_cast<unsigned short>(std::stoul(v));
        } else if (a == "--addr") {
            addr = v;
        } else if (a == "--refresh-fraction") {
            refresh_fraction = std::stod(v);
        } else if (a == "--slack-fraction") {
            slack_fraction = std::stod(v);
        } else if (a == "--max-in-flight") {
            max_in_flight = std::stoul(v);
        } else if (a == "--per-batch") {
            per_batch = std::stoul(v);
        } else if (a == "--dev-consul") {
            dev_consul = v;
        } else {
            std::cerr << "unknown flag " << a << "\n";
            return 2;
        }
    }
    services = std::max<std::size_t>(1, std::min(services, checks));

    pid_t child = -1;
    std::string host = "127.0.0.1";
    if (addr.empty()) {
        const std::string port_text = std::to_string(port);
        std::vector<std::string> args = {dev_consul, "-http-port", port_text, "-log-level",
                                         "error"};
        std::vector<char*> cargs;
        for (auto& s : args) {
            cargs.push_back(s.data());
        }
        cargs.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        if (int rc = posix_spawn(&child, dev_consul.c_str(), &fa, nullptr, cargs.data(), environ);
            rc != 0) {
            std::cerr << "cannot start " << dev_consul << ": " << std::strerror(rc) << "\n";
            return 1;
        }
        posix_spawn_file_actions_destroy(&fa);
    } else {
        const auto colon = addr.rfind(':');
        host = addr.substr(0, colon);
        port = static_cast<unsigned short>(std::stoul(addr.substr(colon + 1)));
    }
    auto kill_child = [&] {
        if (child > 0) {
            kill(child, SIGTERM);
            int st = 0;
            waitpid(child, &st, 0);
            child = -1;
        }
    };
    if (!wait_for_port(host, port, 10s)) {
        std::cerr << "agent at " << host << ":" << port << " does not answer\n";
        kill_child();
        return 1;
    }

    asio::io_context io;
    lakemesh::consul::client_config ccfg;
    ccfg.addresses = {lakemesh::consul::agent_address{host, port}};
    lakemesh::consul::client client(io, ccfg);
    lakemesh::health::scheduler_config hcfg;
    hcfg.seed = 7;
    if (refresh_fraction) {
        hcfg.refresh_fraction = *refresh_fraction;
    }
    if (slack_fraction) {
        hcfg.timer_slack_fraction = *slack_fraction;
    }
    if (per_batch) {
        hcfg.max_updates_per_batch = *per_batch;
    }
    if (max_in_flight) {
        hcfg.max_updates_in_flight = *max_in_flight;
    }
    lakemesh::health::health_scheduler hs(io, client, hcfg);
    auto guard = asio::make_work_guard(io);
    auto run_for = [&](double secs) {
        io.restart();
        io.run_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(secs)));
    };

    // Baseline: the same process, scheduler empty.
    double baseline_pct = 0;
    if (baseline_s > 0) {
        const auto b0 = cpu_sample::now();
        run_for(baseline_s);
        baseline_pct = percent_of_core(b0, cpu_sample::now());
    }

    const auto interval = std::chrono::duration_cast<lakemesh::health::duration>(
        std::chrono::duration<double>(interval_s));
    const auto ttl = std::chrono::duration_cast<lakemesh::health::duration>(
        std::chrono::duration<double>(ttl_s));
    std::size_t made = 0;
    for (std::size_t s = 0; s < services; ++s) {
        lakemesh::health::service_definition def;
        def.registration.id = "bench-" + std::to_string(s);
        def.registration.name = "bench";
        def.registration.port = 10000 + static_cast<int>(s);
        const std::size_t here = checks / services + (s < checks % services ? 1 : 0);
        for (std::size_t k = 0; k < here; ++k, ++made) {
            lakemesh::health::probe_check p;
            p.id = def.registration.id + ":" + std::to_string(k);
            p.interval = interval;
            p.ttl = ttl;
            p.probe = lakemesh::health::sync_probe([] {
                return lakemesh::health::probe_result{status::passing, "ok"};
            });
            def.checks.emplace_back(std::move(p));
        }
        if (auto ec = hs.register_service(std::move(def))) {
            std::cerr << "register: " << ec.message() << "\n";
            kill_child();
            return 1;
        }
    }
    // Settle: every service registered and every check probed once.
    const auto settle_start = std::chrono::steady_clock::now();
    for (;;) {
        run_for(0.5);
        std::size_t ready = 0;
        for (const auto& h : hs.statuses()) {
            ready += h.registered && h.aggregate == status::passing ? 1 : 0;
        }
        if (ready == services) {
            break;
        }
        if (std::chrono::steady_clock::now() - settle_start > 120s) {
            std::cerr << "only " << ready << " of " << services << " services settled\n";
            kill_child();
            return 1;
        }
    }
    const double settle_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - settle_start).count();
    run_for(warmup_s);

    const auto updates0 = hs.updates_sent();
    const auto batches0 = hs.update_batches_sent();
    const auto m0 = cpu_sample::now();
    run_for(duration_s);
    const auto m1 = cpu_sample::now();
    const auto updates = hs.updates_sent() - updates0;
    const auto batches = hs.update_batches_sent() - batches0;
    double load1 = -1;
    if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf", &load1) != 1) {
            load1 = -1;
        }
        std::fclose(f);
    }
    const double load_pct = percent_of_core(m0, m1);

    // Validity: the agent holds every check, passing (none expired during the run).
    std::size_t passing = 0;
    std::size_t held = 0;
    bool listed = false;
    client.agent().async_checks(
        [&](lakemesh::error_code ec,
            lakemesh::consul::result<std::map<std::string, lakemesh::consul::agent_check>> r) {
            listed = true;
            if (ec) {
                std::cerr << "agent/checks: " << ec.message() << "\n";
                return;
            }
            for (const auto& [id, c] : r.value) {
                if (id.starts_with("bench-")) {
                    ++held;
                    passing += c.status == lakemesh::consul::check_status::passing ? 1 : 0;
                }
            }
        });
    while (!listed) {
        run_for(0.1);
    }

    bool stopped = false;
    hs.async_stop([&](lakemesh::error_code) { stopped = true; });
    while (!stopped) {
        run_for(0.1);
    }
    kill_child();
    const double agent_cpu = cpu_seconds(RUSAGE_CHILDREN);

    std::printf(
        "health ttl load: checks=%zu services=%zu interval=%gs ttl=%gs refresh_fraction=%g "
        "slack_fraction=%g max_in_flight=%zu per_batch=%zu settle=%.1fs warmup=%gs\n"
        "  measured %gs: process cpu %.3f s = %.3f%% of one core, %llu TTL updates (%.0f/s), "
        "%llu pipelined batches\n"
        "  machine load average (1 min) at the end of the measurement: %.2f\n"
        "  baseline %gs (same process, empty scheduler): %.3f%% of one core\n"
        "  net cost of the checks: %.3f%% of one core\n"
        "  agent after the run: %zu checks held, %zu passing\n"
        "  dev agent process total cpu (whole run, informative): %.1f s\n",
        checks, services, interval_s, ttl_s, hcfg.refresh_fraction, hcfg.timer_slack_fraction,
        hcfg.max_updates_in_flight, hcfg.max_updates_per_batch, settle_s, warmup_s, duration_s,
        m1.cpu - m0.cpu, load_pct, static_cast<unsigned long long>(updates),
        double(updates) / duration_s, static_cast<unsigned long long>(batches), load1, baseline_s,
        baseline_pct, load_pct - baseline_pct, held, passing, agent_cpu);
    return held == checks && passing == checks ? 0 : 1;
}
