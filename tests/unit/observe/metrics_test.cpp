#include <lakemesh/observe/metrics.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace lakemesh::observe {
namespace {

counter_family& add_counter(metrics_registry& reg, std::string_view name, std::string_view help,
                            std::vector<std::string> labels) {
    counter_family* f = nullptr;
    diagnostics diag;
    const auto ec = reg.add_counter(name, help, std::move(labels), f, diag);
    EXPECT_FALSE(ec) << ec.message() << ": " << diag.client_message();
    return *f;
}

gauge_family& add_gauge(metrics_registry& reg, std::string_view name, std::string_view help,
                        std::vector<std::string> labels) {
    gauge_family* f = nullptr;
    diagnostics diag;
    const auto ec = reg.add_gauge(name, help, std::move(labels), f, diag);
    EXPECT_FALSE(ec) << ec.message() << ": " << diag.client_message();
    return *f;
}

histogram_family& add_histogram(metrics_registry& reg, std::string_view name, std::string_view help,
                                std::vector<std::string> labels, std::vector<double> bounds) {
    histogram_family* f = nullptr;
    diagnostics diag;
    const auto ec = reg.add_histogram(name, help, std::move(labels), std::move(bounds), f, diag);
    EXPECT_FALSE(ec) << ec.message() << ": " << diag.client_message();
    return *f;
}

TEST(metrics, exact_exposition_of_a_small_registry) {
    metrics_registry reg;
    auto& calls = add_counter(reg, "lakemesh_calls_total", "Calls by method and outcome.",
                              {"method", "outcome"});
    auto& inflight = add_gauge(reg, "lakemesh_calls_in_flight", "Calls in flight.", {});
    auto& latency = add_histogram(reg, "lakemesh_call_duration_seconds", "Call latency.",
                                  {"method"}, {0.005, 0.25, 1});

    calls.with({"POST", "ok"})->inc();
    calls.with({"GET", "ok"})->inc(3);
    calls.with({"GET", "error"})->inc();
    inflight.with({})->set(2);
    auto* get = latency.with({"GET"});
    get->observe(0.001);
    get->observe(0.25);
    get->observe(std::chrono::milliseconds(2000));

    EXPECT_EQ(reg.render(),
              "# HELP lakemesh_call_duration_seconds Call latency.\n"
              "# TYPE lakemesh_call_duration_seconds histogram\n"
              "lakemesh_call_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 1\n"
              "lakemesh_call_duration_seconds_bucket{method=\"GET\",le=\"0.25\"} 2\n"
              "lakemesh_call_duration_seconds_bucket{method=\"GET\",le=\"1\"} 2\n"
              "lakemesh_call_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 3\n"
              "lakemesh_call_duration_seconds_sum{method=\"GET\"} 2.251\n"
              "lakemesh_call_duration_seconds_count{method=\"GET\"} 3\n"
              "# HELP lakemesh_calls_in_flight Calls in flight.\n"
              "# TYPE lakemesh_calls_in_flight gauge\n"
              "lakemesh_calls_in_flight 2\n"
              "# HELP lakemesh_calls_total Calls by method and outcome.\n"
              "# TYPE lakemesh_calls_total counter\n"
              "lakemesh_calls_total{method=\"GET\",outcome=\"error\"} 1\n"
              "lakemesh_calls_total{method=\"GET\",outcome=\"ok\"} 3\n"
              "lakemesh_calls_total{method=\"POST\",outcome=\"ok\"} 1\n");
}

TEST(metrics, families_without_labels_render_zero_from_the_start) {
    metrics_registry reg;
    add_counter(reg, "a_total", "A.", {});
    add_histogram(reg, "b_seconds", "B.", {}, {1});
    add_counter(reg, "c_total", "C.", {"x"});  // no child yet: HELP and TYPE only
    EXPECT_EQ(reg.render(),
              "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
              "# HELP b_seconds B.\n# TYPE b_seconds histogram\n"
              "b_seconds_bucket{le=\"1\"} 0\nb_seconds_bucket{le=\"+Inf\"} 0\n"
              "b_seconds_sum 0\nb_seconds_count 0\n"
              "# HELP c_total C.\n# TYPE c_total counter\n");
}

TEST(metrics, with_returns_the_same_child_for_the_same_values) {
    metrics_registry reg;
    auto& f = add_counter(reg, "x_total", "X.", {"a", "b"});
    auto* c1 = f.with({"1", "2"});
    error_code ec;
    auto* c2 = f.with(std::vector<std::string>{"1", "2"}, ec);
    for (int i = 0; i < 100; ++i)  // creating others does not move it
        f.with({"1", std::to_string(i)});
    EXPECT_EQ(c1, c2);
    EXPECT_EQ(c1, f.with({"1", "2"}));
}

TEST(metrics, escaping_of_label_values_and_help) {
    metrics_registry reg;
    auto& f = add_gauge(reg, "g", "Back\\slash, \"quotes\" stay,\nnew line.", {"v"});
    f.with({"a\\b\"c\nd"})->set(1);
    f.with({"ünïcode ✓"})->set(2);
    EXPECT_EQ(reg.render(),
              "# HELP g Back\\\\slash, \"quotes\" stay,\\nnew line.\n"
              "# TYPE g gauge\n"
              "g{v=\"a\\\\b\\\"c\\nd\"} 1\n"
              "g{v=\"ünïcode ✓\"} 2\n");
}

TEST(metrics, special_float_values_are_spelled_as_prometheus_reads_them) {
    metrics_registry reg;
    auto& f = add_gauge(reg, "g", "G.", {"k"});
    f.with({"a"})->set(std::numeric_limits<double>::infinity());
    f.with({"b"})->set(-std::numeric_limits<double>::infinity());
    f.with({"c"})->set(std::numeric_limits<double>::quiet_NaN());
    f.with({"d"})->set(1e-5);
    f.with({"e"})->set(-0.5);
    f.with({"f"})->set(12345678901.0);
    EXPECT_EQ(reg.render(),
              "# HELP g G.\n# TYPE g gauge\n"
              "g{k=\"a\"} +Inf\ng{k=\"b\"} -Inf\ng{k=\"c\"} NaN\ng{k=\"d\"} 1e-05\n"
              "g{k=\"e\"} -0.5\ng{k=\"f\"} 12345678901\n");
}

TEST(metrics, gauge_goes_up_and_down) {
    metrics_registry reg;
    auto* g = add_gauge(reg, "g", "G.", {}).with({});
    g->inc();
    g->inc(2.5);
    g->dec();
    EXPECT_DOUBLE_EQ(g->value(), 2.5);
}

TEST(metrics, histogram_value_equal_to_a_bound_goes_into_that_bucket) {
    metrics_registry reg;
    auto* h = add_histogram(reg, "h_seconds", "H.", {}, {0.1, 0.5, 1}).with({});
    h->observe(0.1);                                       // bucket 0 (le 0.1)
    h->observe(0.5);                                       // bucket 1
    h->observe(0.50000001);                                // bucket 2
    h->observe(1.0);                                       // bucket 2
    h->observe(1.5);                                       // +Inf
    h->observe(-3.0);                                      // bucket 0: below every bound
    h->observe(std::numeric_limits<double>::quiet_NaN());  // dropped
    EXPECT_EQ(h->bucket_count(0), 2u);
    EXPECT_EQ(h->bucket_count(1), 1u);
    EXPECT_EQ(h->bucket_count(2), 2u);
    EXPECT_EQ(h->bucket_count(3), 1u);
    EXPECT_EQ(h->count(), 6u);
    EXPECT_FALSE(std::isnan(h->sum()));
    const auto text = reg.render();
    EXPECT_NE(text.find("h_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("h_seconds_bucket{le=\"0.5\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("h_seconds_bucket{le=\"1\"} 5\n"), std::string::npos) << text;
    EXPECT_NE(text.find("h_seconds_bucket{le=\"+Inf\"} 6\n"), std::string::npos) << text;
    EXPECT_NE(text.find("h_seconds_count 6\n"), std::string::npos) << text;
}

TEST(metrics, default_buckets_are_seconds_and_increasing) {
    const auto b = histogram_family::default_buckets();
    ASSERT_FALSE(b.empty());
    EXPECT_LE(b.front(), 0.001);
    EXPECT_GE(b.back(), 10.0);
    for (std::size_t i = 1; i < b.size(); ++i)
        EXPECT_LT(b[i - 1], b[i]);
    metrics_registry reg;
    auto& h = add_histogram(reg, "d_seconds", "D.", {}, std::vector<double>(b.begin(), b.end()));
    EXPECT_EQ(h.bounds().size(), b.size());
}

TEST(metrics, concurrent_updates_from_two_threads_give_exact_totals) {
    metrics_registry reg;
    auto& cf = add_counter(reg, "c_total", "C.", {"k"});
    auto& gf = add_gauge(reg, "g", "G.", {});
    auto& hf = add_histogram(reg, "h_seconds", "H.", {}, {0.5});
    constexpr int n = 200'000;
    auto work = [&](double v) {
        auto* c = cf.with({"same"});  // both threads create or find the same child
        auto* g = gf.with({});
        auto* h = hf.with({});
        for (int i = 0; i < n; ++i) {
            c->inc();
            g->inc();
            h->observe(v);
        }
    };
    std::thread t1(work, 0.25);
    std::thread t2(work, 1.0);
    // A scrape meanwhile must not disturb the updates.
    for (int i = 0; i < 20; ++i)
        (void)reg.render();
    t1.join();
    t2.join();
    EXPECT_EQ(cf.with({"same"})->value(), 2u * n);
    EXPECT_EQ(gf.with({})->value(), 2.0 * n);
    auto* h = hf.with({});
    EXPECT_EQ(h->bucket_count(0), std::uint64_t{n});
    EXPECT_EQ(h->bucket_count(1), std::uint64_t{n});
    EXPECT_EQ(h->count(), 2u * n);
    EXPECT_DOUBLE_EQ(h->sum(), 1.25 * n);  // quarters and ones add exactly
}

struct bad_registration {
    const char* what;
    metric_type type;
    std::string name;
    std::vector<std::string> labels;
    std::vector<double> bounds;
    validation_errc expected;
};

TEST(metrics, invalid_registrations_get_a_clear_error) {
    const double inf = std::numeric_limits<double>::infinity();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<bad_registration> cases = {
        {"empty name", metric_type::gauge, "", {}, {}, validation_errc::invalid_name},
        {"leading digit", metric_type::gauge, "1abc", {}, {}, validation_errc::invalid_name},
        {"dash", metric_type::gauge, "a-b", {}, {}, validation_errc::invalid_name},
        {"colon", metric_type::gauge, "a:b", {}, {}, validation_errc::invalid_name},
        {"space", metric_type::gauge, "a b", {}, {}, validation_errc::invalid_name},
        {"newline", metric_type::gauge, "a\nb", {}, {}, validation_errc::invalid_name},
        {"counter without _total",
         metric_type::counter,
         "calls",
         {},
         {},
         validation_errc::invalid_name},
        {"counter named _total",
         metric_type::counter,
         "_total",
         {},
         {},
         validation_errc::invalid_name},
        {"bad label", metric_type::gauge, "g", {"a-b"}, {}, validation_errc::invalid_name},
        {"empty label", metric_type::gauge, "g", {""}, {}, validation_errc::invalid_name},
        {"reserved label",
         metric_type::gauge,
         "g",
         {"__name__"},
         {},
         validation_errc::invalid_name},
        {"le on a histogram",
         metric_type::histogram,
         "h",
         {"le"},
         {1},
         validation_errc::invalid_name},
        {"le on a gauge", metric_type::gauge, "g", {"le"}, {}, validation_errc::invalid_name},
        {"quantile", metric_type::gauge, "g", {"quantile"}, {}, validation_errc::invalid_name},
        {"duplicate label",
         metric_type::gauge,
         "g",
         {"a", "b", "a"},
         {},
         validation_errc::invalid_name},
        {"infinite bound",
         metric_type::histogram,
         "h",
         {},
         {1, inf},
         validation_errc::invalid_argument},
        {"NaN bound", metric_type::histogram, "h", {}, {nan}, validation_errc::invalid_argument},
        {"decreasing bounds",
         metric_type::histogram,
         "h",
         {},
         {1, 0.5},
         validation_errc::invalid_argument},
        {"repeated bound",
         metric_type::histogram,
         "h",
         {},
         {1, 1},
         validation_errc::invalid_argument},
    };
    for (const auto& c : cases) {
        metrics_registry reg;
        diagnostics diag;
        error_code ec;
        if (c.type == metric_type::counter) {
            counter_family* f = reinterpret_cast<counter_family*>(1);
            ec = reg.add_counter(c.name, "help", c.labels, f, diag);
            EXPECT_EQ(f, nullptr) << c.what;
        } else if (c.type == metric_type::gauge) {
            gauge_family* f = reinterpret_cast<gauge_family*>(1);
            ec = reg.add_gauge(c.name, "help", c.labels, f, diag);
            EXPECT_EQ(f, nullptr) << c.what;
        } else {
            histogram_family* f = reinterpret_cast<histogram_family*>(1);
            ec = reg.add_histogram(c.name, "help", c.labels, c.bounds, f, diag);
            EXPECT_EQ(f, nullptr) << c.what;
        }
        EXPECT_EQ(ec, make_error_code(c.expected)) << c.what << ": " << ec.message();
        EXPECT_FALSE(diag.client_message().empty()) << c.what;
        EXPECT_EQ(reg.render(), "") << c.what;
    }
}

TEST(metrics, invalid_utf8_in_help_or_label_values_is_refused) {
    metrics_registry reg;
    gauge_family* f = nullptr;
    diagnostics diag;
    EXPECT_EQ(reg.add_gauge("g", "bad \xC3", {}, f, diag),
              make_error_code(validation_errc::invalid_argument));
    auto& ok = add_gauge(reg, "h", "H.", {"v"});
    error_code ec;
    EXPECT_EQ(ok.with({"\xFF"}, ec), nullptr);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(ok.with({"\xED\xA0\x80"}), nullptr);  // a surrogate
    EXPECT_EQ(ok.with({"\xC0\xAF"}), nullptr);      // overlong '/'
}

TEST(metrics, wrong_number_of_label_values_is_refused) {
    metrics_registry reg;
    auto& f = add_counter(reg, "x_total", "X.", {"a", "b"});
    error_code ec;
    EXPECT_EQ(f.with({"1"}, ec), nullptr);
    EXPECT_EQ(ec, make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(f.with({"1", "2", "3"}), nullptr);
    EXPECT_EQ(f.with({}), nullptr);
    EXPECT_NE(f.with({"1", "2"}, ec), nullptr);
    EXPECT_FALSE(ec);
}

TEST(metrics, registering_again_returns_the_same_family_or_an_error) {
    metrics_registry reg;
    auto& a = add_counter(reg, "x_total", "X.", {"a"});
    EXPECT_EQ(&add_counter(reg, "x_total", "X.", {"a"}), &a);

    diagnostics diag;
    counter_family* c = nullptr;
    EXPECT_EQ(reg.add_counter("x_total", "Other help.", {"a"}, c, diag),
              make_error_code(validation_errc::invalid_argument));
    EXPECT_EQ(reg.add_counter("x_total", "X.", {"b"}, c, diag),
              make_error_code(validation_errc::invalid_argument));
    gauge_family* g = nullptr;
    EXPECT_EQ(reg.add_gauge("x_total", "X.", {"a"}, g, diag),
              make_error_code(validation_errc::invalid_argument));

    auto& h = add_histogram(reg, "h", "H.", {}, {1, 2});
    EXPECT_EQ(&add_histogram(reg, "h", "H.", {}, {1, 2}), &h);
    histogram_family* h2 = nullptr;
    EXPECT_EQ(reg.add_histogram("h", "H.", {}, {1, 3}, h2, diag),
              make_error_code(validation_errc::invalid_argument));
}

TEST(metrics, sample_names_of_different_families_cannot_collide) {
    metrics_registry reg;
    add_histogram(reg, "h", "H.", {}, {1});
    diagnostics diag;
    gauge_family* g = nullptr;
    EXPECT_EQ(reg.add_gauge("h_count", "C.", {}, g, diag),
              make_error_code(validation_errc::invalid_name));
    EXPECT_NE(diag.client_message().find("'h'"), std::string::npos) << diag.client_message();
    add_gauge(reg, "x_sum", "S.", {});
    histogram_family* h = nullptr;
    EXPECT_EQ(reg.add_histogram("x", "X.", {}, {1}, h, diag),
              make_error_code(validation_errc::invalid_name));
}

TEST(metrics, render_appends_to_a_buffer) {
    metrics_registry reg;
    add_gauge(reg, "g", "G.", {});
    std::string out = "prefix\n";
    reg.render(out);
    EXPECT_EQ(out, "prefix\n# HELP g G.\n# TYPE g gauge\ng 0\n");
}

}  // namespace
}  // namespace lakemesh::observe
