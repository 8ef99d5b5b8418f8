// A small metrics registry: counters, gauges and histograms with fixed buckets, label sets fixed
// when a family is created, and exposition in the Prometheus text format 0.0.4.
//
// Hot path: a part creates its families and children once, keeps the child references, and
// updates them with relaxed atomics: no lock, no lookup, no allocation. Registration (adding a
// family, creating a child with with()) takes a mutex and may allocate.
//
// Thread safety: every member of every class here is safe to call from any thread. render() sees
// each value at some moment during the call; a histogram's _count always equals its +Inf bucket.
//
// Secrets: nothing here takes an ACL token, and callers must never put a token or any other
// secret into a metric name, HELP text or label value: the exposition is served unauthenticated.
#pragma once

#include <lakemesh/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::observe {

enum class metric_type { counter, gauge, histogram };

/// A monotonically increasing count. Names of counter families end in `_total`.
class counter {
  public:
    void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> value_{0};
};

/// A value that goes up and down (entries in a cache, calls in flight, a breaker's state).
class gauge {
  public:
    void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
    void inc(double d = 1.0) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
    void dec(double d = 1.0) noexcept { value_.fetch_add(-d, std::memory_order_relaxed); }
    double value() const noexcept { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0.0};
};

/// Observations counted into fixed buckets, with their sum. Bucket i counts values v with
/// bounds[i-1] < v <= bounds[i] (a value equal to a bound goes into that bound's bucket); values
/// above the last bound go into the +Inf bucket. NaN observations are dropped: one NaN would
/// make the sum NaN for the life of the process.
class histogram {
  public:
    /// `bounds` must outlive the histogram (the family owns them).
    explicit histogram(std::span<const double> bounds);

    void observe(double v) noexcept {
        if (std::isnan(v))
            return;
        const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
        counts_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(
            1, std::memory_order_relaxed);
        sum_.fetch_add(v, std::memory_order_relaxed);
    }
    /// Observes a duration in seconds (the base unit).
    template <class Rep, class Period>
    void observe(std::chrono::duration<Rep, Period> d) noexcept {
        observe(std::chrono::duration<double>(d).count());
    }

    std::span<const double> bounds() const noexcept { return bounds_; }
    /// Count in bucket i alone (not cumulative); i == bounds().size() is the +Inf bucket.
    std::uint64_t bucket_count(std::size_t i) const noexcept {
        return counts_[i].load(std::memory_order_relaxed);
    }
    std::uint64_t count() const noexcept;
    double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

  private:
    std::span<const double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
    std::atomic<double> sum_{0.0};
};

/// What the families share: name, HELP, label names, and the children by label values.
class metric_family {
  public:
    virtual ~metric_family();
    metric_family(const metric_family&) = delete;
    metric_family& operator=(const metric_family&) = delete;

    const std::string& name() const noexcept { return name_; }
    const std::string& help() const noexcept { return help_; }
    const std::vector<std::string>& label_names() const noexcept { return label_names_; }
    virtual metric_type type() const noexcept = 0;

    /// Appends the family's HELP, TYPE and samples (children ordered by label values).
    void render(std::string& out) const;

  protected:
    struct child_base {
        virtual ~child_base() = default;
        std::string labels_text;  ///< `a="x",b="y"`, escaped, without braces; empty when none
    };

    metric_family(std::string name, std::string help, std::vector<std::string> label_names);
    /// The child for `values`, created on first use. Null with invalid_argument when the count
    /// of values differs from the label names, or a value is not valid UTF-8.
    child_base* find_or_create(const std::string_view* values, std::size_t n, error_code& ec);

  private:
    virtual std::unique_ptr<child_base> make_child() const = 0;
    virtual void render_child(const child_base& c, std::string& out) const = 0;

    std::string name_;
    std::string help_;
    std::vector<std::string> label_names_;
    mutable std::mutex mutex_;
    std::map<std::vector<std::string>, std::unique_ptr<child_base>, std::less<>> children_;
};

/// A family whose children are `Child` (counter, gauge or histogram).
template <class Child>
class family_of : public metric_family {
  public:
    /// Returns the child for label values given in the order of the family's label names,
    /// created on first use. The pointer stays valid as long as the registry: keep it and update
    /// it on the hot path. A family without labels has one child, `with({})`, rendered from the
    /// start (as 0). Bad values (wrong count, invalid UTF-8) give null and
    /// validation_errc::invalid_argument.
    Child* with(std::initializer_list<std::string_view> values, error_code& ec) {
        return as_child(find_or_create(values.begin(), values.size(), ec));
    }
    Child* with(std::span<const std::string_view> values, error_code& ec) {
        return as_child(find_or_create(values.data(), values.size(), ec));
    }
    Child* with(const std::vector<std::string>& values, error_code& ec) {
        const std::vector<std::string_view> views(values.begin(), values.end());
        return with(std::span<const std::string_view>(views), ec);
    }
    /// As above, null on bad values without saying why.
    Child* with(std::initializer_list<std::string_view> values) {
        error_code ec;
        return with(values, ec);
    }

  protected:
    struct node : child_base, Child {
        using Child::Child;
    };
    using metric_family::metric_family;

  private:
    static Child* as_child(child_base* c) noexcept { return static_cast<node*>(c); }
};

class counter_family final : public family_of<counter> {
  public:
    metric_type type() const noexcept override { return metric_type::counter; }

  private:
    friend class metrics_registry;
    using family_of::family_of;
    std::unique_ptr<child_base> make_child() const override;
    void render_child(const child_base& c, std::string& out) const override;
};

class gauge_family final : public family_of<gauge> {
  public:
    metric_type type() const noexcept override { return metric_type::gauge; }

  private:
    friend class metrics_registry;
    using family_of::family_of;
    std::unique_ptr<child_base> make_child() const override;
    void render_child(const child_base& c, std::string& out) const override;
};

class histogram_family final : public family_of<histogram> {
  public:
    metric_type type() const noexcept override { return metric_type::histogram; }
    std::span<const double> bounds() const noexcept { return bounds_; }

    /// Latency buckets in seconds, 100 µs to 10 s: calls inside a data centre take well under
    /// a millisecond, Consul blocking queries and timeouts take seconds.
    static std::span<const double> default_buckets() noexcept;

  private:
    friend class metrics_registry;
    histogram_family(std::string name, std::string help, std::vector<std::string> label_names,
                     std::vector<double> bounds);
    std::unique_ptr<child_base> make_child() const override;
    void render_child(const child_base& c, std::string& out) const override;

    std::vector<double> bounds_;
    std::vector<std::string> le_text_;  ///< `le="0.005"` per bound, then `le="+Inf"`
};

/// Owns the families. Families live as long as the registry; they cannot be removed.
///
/// Registration errors (validation_errc, with the name or label at fault in diag):
/// - invalid_name: a metric name not matching [a-zA-Z_][a-zA-Z0-9_]* (colons are left to
///   recording rules), a counter name without the `_total` suffix, a label name not matching
///   [a-zA-Z_][a-zA-Z0-9_]*, starting with `__` (reserved), or `le` / `quantile` (reserved for
///   histograms and summaries; promtool flags them elsewhere), a label name given twice, or a
///   name whose samples (x_bucket, x_sum, x_count of a histogram x) collide with another family.
/// - invalid_argument: HELP not valid UTF-8; histogram bounds not finite or not strictly
///   increasing; a name already registered with another type, HELP, labels or bounds.
/// Registering the same family twice with identical settings returns the existing one.
class metrics_registry {
  public:
    metrics_registry();
    ~metrics_registry();
    metrics_registry(const metrics_registry&) = delete;
    metrics_registry& operator=(const metrics_registry&) = delete;

    error_code add_counter(std::string_view name, std::string_view help,
                           std::vector<std::string> label_names, counter_family*& out,
                           diagnostics& diag);
    error_code add_gauge(std::string_view name, std::string_view help,
                         std::vector<std::string> label_names, gauge_family*& out,
                         diagnostics& diag);
    /// `bounds` are the upper bounds of the buckets without +Inf (added always); use
    /// histogram_family::default_buckets() for latencies in seconds.
    error_code add_histogram(std::string_view name, std::string_view help,
                             std::vector<std::string> label_names, std::vector<double> bounds,
                             histogram_family*& out, diagnostics& diag);

    /// The exposition in text format 0.0.4 (Content-Type: text/plain; version=0.0.4), families
    /// ordered by name, children by label values, so equal states render equal text.
    std::string render() const;
    /// Appends the exposition to `out` (reuse one buffer across scrapes).
    void render(std::string& out) const;

  private:
    error_code check_new(std::string_view name, std::string_view help,
                         const std::vector<std::string>& label_names, metric_type type,
                         const std::vector<double>* bounds, metric_family*& existing,
                         diagnostics& diag) const;
    void insert(std::unique_ptr<metric_family> f);

    mutable std::mutex mutex_;
    std::map<std::string, std::unique_ptr<metric_family>, std::less<>> families_;
    std::map<std::string, std::string, std::less<>> sample_names_;  ///< sample name -> family
};

}  // namespace lakemesh::observe
