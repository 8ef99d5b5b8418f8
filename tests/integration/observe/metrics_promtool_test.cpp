// The exposition passes Prometheus' own checker: `promtool check metrics` (Debian's prometheus
// package) parses the text format 0.0.4 and lints names, HELP, units and reserved labels.
#include <lakemesh/observe/metrics.hpp>

#include "promtool.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace lakemesh::observe {
namespace {

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
    const std::string promtool = test::find_promtool();
    if (promtool.empty())
        GTEST_SKIP() << "promtool not found (install Debian's 'prometheus' package, or set "
                        "PROMTOOL): the exposition was NOT checked";

    metrics_registry reg;
    fill(reg);
    if (HasFatalFailure())
        return;
    const std::string text = reg.render();
    // promtool exits 1 on a parse error and 3 on lint problems, printing them either way.
    const auto problems = test::promtool_problems(promtool, text);
    EXPECT_FALSE(problems) << "promtool: " << *problems << "\nexposition:\n" << text;
}

// The checker itself catches what it should, so a pass above means something.
TEST(metrics_promtool, promtool_rejects_a_broken_exposition) {
    const std::string promtool = test::find_promtool();
    if (promtool.empty())
        GTEST_SKIP() << "promtool not found (install Debian's 'prometheus' package)";
    EXPECT_TRUE(test::promtool_problems(
        promtool, "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"unterminated} 1\n"));
}

}  // namespace
}  // namespace lakemesh::observe
