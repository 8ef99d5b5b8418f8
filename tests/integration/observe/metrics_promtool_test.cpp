// The exposition passes Prometheus' own checker: `promtool check metrics` (Debian's prometheus
// package) parses the text format 0.0.4 and lints names, HELP, units and reserved labels.
#include <lakemesh/observe/metrics.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

namespace lakemesh::observe {
namespace {

std::string find_promtool() {
    if (const char* p = std::getenv("PROMTOOL"))
        return p;
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        const auto end = std::min(dirs.find(':', start), dirs.size());
        const auto candidate = std::filesystem::path(dirs.substr(start, end - start)) / "promtool";
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate.string();
        start = end + 1;
    }
    return {};
}

// A registry with every kind of metric and the awkward cases: escaping, special values, a
// family without labels, several children.
void fill(metrics_registry& reg) {
    diagnostics diag;
    counter_family* calls = nullptr;
    ASSERT_FALSE(reg.add_counter("lakemesh_calls_total", "Calls by service and outcome.",
                                 {"service", "outcome"}, calls, diag))
        << diag.client_message();
    calls->with({"lake", "ok"})->inc(41);
    calls->with({"lake", "error"})->inc();
    calls->with({"quote\"back\\slash\nnewline", "ok"})->inc(2);
    calls->with({"ünïcode", "ok"})->inc();

    counter_family* restarts = nullptr;
    ASSERT_FALSE(reg.add_counter("lakemesh_watch_restarts_total",
                                 "Restarts.\nHELP over two lines with a \\ backslash.", {},
                                 restarts, diag))
        << diag.client_message();

    gauge_family* g = nullptr;
    ASSERT_FALSE(
        reg.add_gauge("lakemesh_cache_entries", "Entries in the service cache.", {"kind"}, g, diag))
        << diag.client_message();
    g->with({"plain"})->set(12);
    g->with({"inf"})->set(std::numeric_limits<double>::infinity());
    g->with({"minus_inf"})->set(-std::numeric_limits<double>::infinity());
    g->with({"nan"})->set(std::numeric_limits<double>::quiet_NaN());
    g->with({"tiny"})->set(1e-9);
    g->with({"empty_value_next"})->set(-0.5);
    g->with({""})->set(1);

    histogram_family* h = nullptr;
    const auto b = histogram_family::default_buckets();
    ASSERT_FALSE(reg.add_histogram("lakemesh_call_duration_seconds", "Call latency.", {"service"},
                                   {b.begin(), b.end()}, h, diag))
        << diag.client_message();
    for (double v : {0.00005, 0.0001, 0.003, 0.2, 7.0, 100.0})
        h->with({"lake"})->observe(v);
    h->with({"idle"});

    histogram_family* plain = nullptr;
    ASSERT_FALSE(reg.add_histogram("lakemesh_consul_request_duration_seconds",
                                   "Consul request latency.", {}, {0.01, 0.1, 1}, plain, diag))
        << diag.client_message();
    plain->with({})->observe(0.05);
}

TEST(metrics_promtool, exposition_passes_promtool_check_metrics) {
    const std::string promtool = find_promtool();
    if (promtool.empty())
        GTEST_SKIP() << "promtool not found (install Debian's 'prometheus' package, or set "
                        "PROMTOOL): the exposition was NOT checked";

    metrics_registry reg;
    fill(reg);
    if (HasFatalFailure())
        return;
    const std::string text = reg.render();

    const auto dir = std::filesystem::temp_directory_path();
    const auto file = dir / ("lakemesh_metrics_" + std::to_string(::getpid()) + ".prom");
    const auto report = dir / ("lakemesh_promtool_" + std::to_string(::getpid()) + ".txt");
    {
        std::ofstream out(file, std::ios::binary);
        out << text;
        ASSERT_TRUE(out.good());
    }
    const std::string cmd = "'" + promtool + "' check metrics < '" + file.string() + "' > '" +
                            report.string() + "' 2>&1";
    const int status = std::system(cmd.c_str());
    std::string output;
    {
        std::ifstream in(report, std::ios::binary);
        output.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::filesystem::remove(report);
    ASSERT_NE(status, -1);
    ASSERT_TRUE(WIFEXITED(status));
    // promtool exits 1 on a parse error and 3 on lint problems, printing them either way.
    EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool output:\n"
                                      << output << "\nexposition:\n"
                                      << text;
    EXPECT_EQ(output, "") << "exposition:\n" << text;
    if (!HasFailure())
        std::filesystem::remove(file);
    else
        ADD_FAILURE() << "exposition kept at " << file;
}

// The checker itself catches what it should, so a pass above means something.
TEST(metrics_promtool, promtool_rejects_a_broken_exposition) {
    const std::string promtool = find_promtool();
    if (promtool.empty())
        GTEST_SKIP() << "promtool not found (install Debian's 'prometheus' package)";
    const auto file = std::filesystem::temp_directory_path() /
                      ("lakemesh_broken_" + std::to_string(::getpid()) + ".prom");
    {
        std::ofstream out(file, std::ios::binary);
        out << "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"unterminated} 1\n";
    }
    const std::string cmd =
        "'" + promtool + "' check metrics < '" + file.string() + "' > /dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    std::filesystem::remove(file);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace lakemesh::observe
