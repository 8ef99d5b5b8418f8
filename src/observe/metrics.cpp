#include <lakemesh/observe/metrics.hpp>

#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <utility>

namespace lakemesh::observe {
namespace {

constexpr std::array<double, 17> default_latency_buckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1.0,   2.5,    5.0,   10.0, 30.0};

// Go's strconv.ParseFloat (Prometheus' parser) reads the shortest round-trip form that
// std::to_chars writes ("1e-05", "0.25", "3"), and the spellings below for the rest.
void append_double(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else {
        char buf[32];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out.append(buf, r.ptr);
    }
}

void append_uint(std::string& out, std::uint64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// HELP escapes backslash and line feed; label values also the double quote.
void append_escaped(std::string& out, std::string_view s, bool quote) {
    for (char c : s) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (quote && c == '"')
            out += "\\\"";
        else
            out += c;
    }
}

bool is_valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > s.size())
            return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += len;
    }
    return true;
}

bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}

// [a-zA-Z_][a-zA-Z0-9_]*: Prometheus' label name syntax, and its metric name syntax without the
// colons that belong to recording rules.
bool is_valid_name(std::string_view s) {
    if (s.empty() || !is_name_start(s.front()))
        return false;
    return std::all_of(s.begin(), s.end(), is_name_char);
}

std::string_view type_name(metric_type t) {
    switch (t) {
        case metric_type::counter:
            return "counter";
        case metric_type::gauge:
            return "gauge";
        case metric_type::histogram:
            return "histogram";
    }
    return "untyped";
}

std::vector<std::string> sample_names_of(std::string_view name, metric_type t) {
    if (t != metric_type::histogram)
        return {std::string(name)};
    const std::string n(name);
    return {n + "_bucket", n + "_sum", n + "_count"};
}

error_code fail(diagnostics& diag, validation_errc e, std::string msg) {
    diag.set_client_message(std::move(msg));
    return e;
}

}  // namespace

// ---- histogram ----

histogram::histogram(std::span<const double> bounds)
    : bounds_(bounds), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
    for (std::size_t i = 0; i <= bounds.size(); ++i)
        counts_[i].store(0, std::memory_order_relaxed);
}

std::uint64_t histogram::count() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i)
        n += bucket_count(i);
    return n;
}

// ---- families ----

metric_family::metric_family(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

metric_family::~metric_family() = default;

metric_family::child_base* metric_family::find_or_create(const std::string_view* values,
                                                         std::size_t n, error_code& ec) {
    ec.clear();
    if (n != label_names_.size() ||
        !std::all_of(values, values + n, [](std::string_view v) { return is_valid_utf8(v); })) {
        ec = validation_errc::invalid_argument;
        return nullptr;
    }
    std::vector<std::string> key(values, values + n);
    std::lock_guard lock(mutex_);
    auto it = children_.find(key);
    if (it != children_.end())
        return it->second.get();
    auto child = make_child();
    for (std::size_t i = 0; i < n; ++i) {
        if (i > 0)
            child->labels_text += ',';
        child->labels_text += label_names_[i];
        child->labels_text += "=\"";
        append_escaped(child->labels_text, values[i], true);
        child->labels_text += '"';
    }
    auto* raw = child.get();
    children_.emplace(std::move(key), std::move(child));
    return raw;
}

void metric_family::render(std::string& out) const {
    out += "# HELP ";
    out += name_;
    out += ' ';
    append_escaped(out, help_, false);
    out += "\n# TYPE ";
    out += name_;
    out += ' ';
    out += type_name(type());
    out += '\n';
    std::lock_guard lock(mutex_);
    for (const auto& [values, child] : children_)
        render_child(*child, out);
}

namespace {
void append_sample_head(std::string& out, std::string_view name, std::string_view suffix,
                        const std::string& labels) {
    out += name;
    out += suffix;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
}
}  // namespace

std::unique_ptr<metric_family::child_base> counter_family::make_child() const {
    return std::make_unique<node>();
}

void counter_family::render_child(const child_base& c, std::string& out) const {
    const auto& n = static_cast<const node&>(c);
    append_sample_head(out, name(), "", n.labels_text);
    append_uint(out, n.value());
    out += '\n';
}

std::unique_ptr<metric_family::child_base> gauge_family::make_child() const {
    return std::make_unique<node>();
}

void gauge_family::render_child(const child_base& c, std::string& out) const {
    const auto& n = static_cast<const node&>(c);
    append_sample_head(out, name(), "", n.labels_text);
    append_double(out, n.value());
    out += '\n';
}

histogram_family::histogram_family(std::string name, std::string help,
                                   std::vector<std::string> label_names, std::vector<double> bounds)
    : family_of(std::move(name), std::move(help), std::move(label_names)),
      bounds_(std::move(bounds)) {
    for (double b : bounds_) {
        std::string le = "le=\"";
        append_double(le, b);
        le += '"';
        le_text_.push_back(std::move(le));
    }
    le_text_.emplace_back("le=\"+Inf\"");
}

std::span<const double> histogram_family::default_buckets() noexcept {
    return default_latency_buckets;
}

std::unique_ptr<metric_family::child_base> histogram_family::make_child() const {
    return std::make_unique<node>(std::span<const double>(bounds_));
}

void histogram_family::render_child(const child_base& c, std::string& out) const {
    const auto& n = static_cast<const node&>(c);
    const std::string& labels = n.labels_text;
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < le_text_.size(); ++i) {
        cumulative += n.bucket_count(i);
        out += name();
        out += "_bucket{";
        if (!labels.empty()) {
            out += labels;
            out += ',';
        }
        out += le_text_[i];
        out += "} ";
        append_uint(out, cumulative);
        out += '\n';
    }
    append_sample_head(out, name(), "_sum", labels);
    append_double(out, n.sum());
    out += '\n';
    // The +Inf bucket, not a separate counter, so _count never disagrees with it.
    append_sample_head(out, name(), "_count", labels);
    append_uint(out, cumulative);
    out += '\n';
}

// ---- registry ----

metrics_registry::metrics_registry() = default;
metrics_registry::~metrics_registry() = default;

error_code metrics_registry::check_new(std::string_view name, std::string_view help,
                                       const std::vector<std::string>& label_names,
                                       metric_type type, const std::vector<double>* bounds,
                                       metric_family*& existing, diagnostics& diag) const {
    existing = nullptr;
    const std::string quoted = "metric '" + std::string(name) + "'";
    if (!is_valid_name(name))
        return fail(diag, validation_errc::invalid_name,
                    quoted + ": a metric name must match [a-zA-Z_][a-zA-Z0-9_]*");
    if (type == metric_type::counter &&
        (name.size() <= 6 || name.substr(name.size() - 6) != "_total"))
        return fail(diag, validation_errc::invalid_name,
                    quoted + ": a counter's name must end in _total");
    if (!is_valid_utf8(help))
        return fail(diag, validation_errc::invalid_argument, quoted + ": HELP is not UTF-8");
    for (std::size_t i = 0; i < label_names.size(); ++i) {
        const std::string& l = label_names[i];
        const std::string where = quoted + ", label '" + l + "'";
        if (!is_valid_name(l))
            return fail(diag, validation_errc::invalid_name,
                        where + ": a label name must match [a-zA-Z_][a-zA-Z0-9_]*");
        if (l.starts_with("__"))
            return fail(diag, validation_errc::invalid_name,
                        where + ": label names starting with __ are reserved");
        if (l == "le" || l == "quantile")
            return fail(diag, validation_errc::invalid_name,
                        where + ": reserved for histogram buckets and summary quantiles");
        if (std::find(label_names.begin(), label_names.begin() + static_cast<std::ptrdiff_t>(i),
                      l) != label_names.begin() + static_cast<std::ptrdiff_t>(i))
            return fail(diag, validation_errc::invalid_name, where + ": given twice");
    }
    if (bounds) {
        for (std::size_t i = 0; i < bounds->size(); ++i) {
            const double b = (*bounds)[i];
            if (!std::isfinite(b))
                return fail(diag, validation_errc::invalid_argument,
                            quoted + ": bucket bounds must be finite (+Inf is always added)");
            if (i > 0 && !((*bounds)[i - 1] < b))
                return fail(diag, validation_errc::invalid_argument,
                            quoted + ": bucket bounds must be strictly increasing");
        }
    }

    if (auto it = families_.find(name); it != families_.end()) {
        metric_family& f = *it->second;
        bool same = f.type() == type && f.help() == help && f.label_names() == label_names;
        if (same && bounds) {
            const auto fb = static_cast<const histogram_family&>(f).bounds();
            same = std::equal(fb.begin(), fb.end(), bounds->begin(), bounds->end());
        }
        if (!same)
            return fail(diag, validation_errc::invalid_argument,
                        quoted + ": already registered as a " + std::string(type_name(f.type())) +
                            " with other HELP, labels or buckets");
        existing = &f;
        return {};
    }
    for (const auto& s : sample_names_of(name, type)) {
        if (auto it = sample_names_.find(s); it != sample_names_.end())
            return fail(
                diag, validation_errc::invalid_name,
                quoted + ": its sample " + s + " collides with metric '" + it->second + "'");
    }
    return {};
}

void metrics_registry::insert(std::unique_ptr<metric_family> f) {
    for (auto& s : sample_names_of(f->name(), f->type()))
        sample_names_.emplace(std::move(s), f->name());
    // A family without labels has exactly one child: create it so it renders from the start.
    if (f->label_names().empty()) {
        error_code ignored;
        switch (f->type()) {
            case metric_type::counter:
                static_cast<counter_family&>(*f).with({}, ignored);
                break;
            case metric_type::gauge:
                static_cast<gauge_family&>(*f).with({}, ignored);
                break;
            case metric_type::histogram:
                static_cast<histogram_family&>(*f).with({}, ignored);
                break;
        }
    }
    std::string key = f->name();
    families_.emplace(std::move(key), std::move(f));
}

error_code metrics_registry::add_counter(std::string_view name, std::string_view help,
                                         std::vector<std::string> label_names, counter_family*& out,
                                         diagnostics& diag) {
    out = nullptr;
    std::lock_guard lock(mutex_);
    metric_family* existing = nullptr;
    if (auto ec = check_new(name, help, label_names, metric_type::counter, nullptr, existing, diag))
        return ec;
    if (existing) {
        out = static_cast<counter_family*>(existing);
        return {};
    }
    std::unique_ptr<counter_family> f(
        new counter_family(std::string(name), std::string(help), std::move(label_names)));
    out = f.get();
    insert(std::move(f));
    return {};
}

error_code metrics_registry::add_gauge(std::string_view name, std::string_view help,
                                       std::vector<std::string> label_names, gauge_family*& out,
                                       diagnostics& diag) {
    out = nullptr;
    std::lock_guard lock(mutex_);
    metric_family* existing = nullptr;
    if (auto ec = check_new(name, help, label_names, metric_type::gauge, nullptr, existing, diag))
        return ec;
    if (existing) {
        out = static_cast<gauge_family*>(existing);
        return {};
    }
    std::unique_ptr<gauge_family> f(
        new gauge_family(std::string(name), std::string(help), std::move(label_names)));
    out = f.get();
    insert(std::move(f));
    return {};
}

error_code metrics_registry::add_histogram(std::string_view name, std::string_view help,
                                           std::vector<std::string> label_names,
                                           std::vector<double> bounds, histogram_family*& out,
                                           diagnostics& diag) {
    out = nullptr;
    std::lock_guard lock(mutex_);
    metric_family* existing = nullptr;
    if (auto ec =
            check_new(name, help, label_names, metric_type::histogram, &bounds, existing, diag))
        return ec;
    if (existing) {
        out = static_cast<histogram_family*>(existing);
        return {};
    }
    std::unique_ptr<histogram_family> f(new histogram_family(
        std::string(name), std::string(help), std::move(label_names), std::move(bounds)));
    out = f.get();
    insert(std::move(f));
    return {};
}

void metrics_registry::render(std::string& out) const {
    std::lock_guard lock(mutex_);
    for (const auto& [name, f] : families_)
        f->render(out);
}

std::string metrics_registry::render() const {
    std::string out;
    render(out);
    return out;
}

}  // namespace lakemesh::observe
