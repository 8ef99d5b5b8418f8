// mesh_config::from_json: a configuration file read with nlohmann_json. Every field is checked
// as it is read; an error names the field's path, a syntax error its line and column.
#include <lakemesh/mesh_integrator.hpp>

#include "consul/go_duration.hpp"
#include "mesh/policy_watch.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

namespace lakemesh {

namespace {

using json = nlohmann::json;

/// Raised inside the reader; turned into an error_code at the top.
struct config_error {
    validation_errc code;
    std::string message;
};

/// Walks one JSON object: takes known fields by name and reports the ones left over.
class object_reader {
  public:
    object_reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
        if (!j_.is_object()) {
            throw config_error{validation_errc::invalid_configuration,
                               where() + ": expected an object, got " + j_.type_name()};
        }
    }

    std::string field_path(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }

    const json* get(std::string_view key) {
        seen_.insert(std::string(key));
        auto it = j_.find(key);
        return it == j_.end() || it->is_null() ? nullptr : &*it;
    }

    void str(std::string_view key, std::string& out) {
        if (auto v = get(key)) {
            expect(*v, v->is_string(), key, "a string");
            out = v->get<std::string>();
        }
    }
    void boolean(std::string_view key, bool& out) {
        if (auto v = get(key)) {
            expect(*v, v->is_boolean(), key, "true or false");
            out = v->get<bool>();
        }
    }
    template <class T>
    void integer(std::string_view key, T& out, std::int64_t lo, std::int64_t hi) {
        if (auto v = get(key)) {
            expect(*v, v->is_number_integer(), key, "an integer");
            const auto n = v->get<std::int64_t>();
            if (n < lo || n > hi) {
                throw config_error{validation_errc::invalid_argument,
                                   field_path(key) + ": " + std::to_string(n) +
                                       " is out of range [" + std::to_string(lo) + ", " +
                                       std::to_string(hi) + "]"};
            }
            out = static_cast<T>(n);
        }
    }
    void number(std::string_view key, double& out, double lo, double hi) {
        if (auto v = get(key)) {
            expect(*v, v->is_number(), key, "a number");
            const auto n = v->get<double>();
            if (!(n >= lo && n <= hi)) {
                throw config_error{validation_errc::invalid_argument,
                                   field_path(key) + ": " + v->dump() + " is out of range [" +
                                       std::to_string(lo) + ", " + std::to_string(hi) + "]"};
            }
            out = n;
        }
    }
    /// A Go duration string ("250ms", "1m30s") or a number of milliseconds.
    template <class D>
    void dur(std::string_view key, D& out) {
        if (auto v = get(key)) {
            std::optional<std::chrono::nanoseconds> d;
            if (v->is_string()) {
                d = consul::detail::parse_go_duration(v->get<std::string>());
            } else if (v->is_number_integer()) {
                d = std::chrono::milliseconds(v->get<std::int64_t>());
            } else {
                expect(*v, false, key, "a duration (\"250ms\", \"10s\") or milliseconds");
            }
            if (!d || d->count() < 0) {
                throw config_error{validation_errc::invalid_duration,
                                   field_path(key) + ": " + v->dump() +
                                       " is not a non-negative duration like \"250ms\" or "
                                       "\"10s\""};
            }
            out = std::chrono::duration_cast<D>(*d);
        }
    }
    void strings(std::string_view key, std::vector<std::string>& out) {
        if (auto v = get(key)) {
            expect(*v, v->is_array(), key, "an array of strings");
            out.clear();
            for (const auto& e : *v) {
                expect(e, e.is_string(), key, "an array of strings");
                out.push_back(e.get<std::string>());
            }
        }
    }
    void string_map(std::string_view key, std::map<std::string, std::string>& out) {
        if (auto v = get(key)) {
            expect(*v, v->is_object(), key, "an object of strings");
            out.clear();
            for (const auto& [k, e] : v->items()) {
                expect(e, e.is_string(), key, "an object of strings");
                out[k] = e.get<std::string>();
            }
        }
    }

    /// Call last: any field not taken is an error (a typo must not be silently ignored).
    void finish() const {
        for (const auto& [k, v] : j_.items()) {
            if (!seen_.count(k)) {
                throw config_error{validation_errc::invalid_configuration,
                                   field_path(k) + ": unknown field"};
            }
        }
    }

    [[noreturn]] void fail(std::string_view key, const std::string& what) const {
        throw config_error{validation_errc::invalid_argument, field_path(key) + ": " + what};
    }

  private:
    std::string where() const { return path_.empty() ? "the configuration" : path_; }
    void expect(const json& v, bool ok, std::string_view key, const char* what) const {
        if (!ok) {
            throw config_error{
                validation_errc::invalid_configuration,
                field_path(key) + ": expected " + what + ", got " + v.type_name() + " " + v.dump()};
        }
    }

    const json& j_;
    std::string path_;
    std::set<std::string, std::less<>> seen_;
};

void read_check(const json& j, const std::string& path, health::service_check& out) {
    object_reader r(j, path);
    consul::check_definition c;
    r.str("id", c.id);
    r.str("name", c.name);
    r.str("notes", c.notes);
    r.str("http", c.http);
    r.str("method", c.method);
    r.boolean("tls_skip_verify", c.tls_skip_verify);
    r.str("tcp", c.tcp);
    r.str("grpc", c.grpc);
    r.dur("interval", c.interval);
    r.dur("timeout", c.timeout);
    r.dur("deregister_critical_service_after", c.deregister_critical_service_after);
    r.finish();
    const int kinds = int(!c.http.empty()) + int(!c.tcp.empty()) + int(!c.grpc.empty());
    if (kinds != 1) {
        throw config_error{validation_errc::invalid_configuration,
                           path + ": a check needs exactly one of http, tcp or grpc"};
    }
    if (c.interval <= std::chrono::milliseconds::zero()) {
        throw config_error{validation_errc::invalid_duration,
                           path + ".interval: an agent-run check needs a positive interval"};
    }
    out = std::move(c);
}

void read_breaker(const json& j, const std::string& path,
                  std::optional<resilience::circuit_breaker_config>& out) {
    if (j.is_boolean()) {
        if (j.get<bool>()) {
            out = out.value_or(resilience::circuit_breaker_config{});
        } else {
            out.reset();
        }
        return;
    }
    auto c = out.value_or(resilience::circuit_breaker_config{});
    object_reader r(j, path);
    r.integer("consecutive_failures", c.consecutive_failures, 0, 1'000'000);
    r.integer("window_size", c.window_size, 1, 1'000'000);
    r.dur("window_duration", c.window_duration);
    r.integer("minimum_calls", c.minimum_calls, 0, 1'000'000);
    r.number("failure_rate_threshold", c.failure_rate_threshold, 0.0, 1.0);
    r.dur("slow_call_duration", c.slow_call_duration);
    r.number("slow_call_rate_threshold", c.slow_call_rate_threshold, 0.0, 1.0);
    r.dur("open_duration", c.open_duration);
    r.number("open_duration_multiplier", c.open_duration_multiplier, 1.0, 100.0);
    r.dur("max_open_duration", c.max_open_duration);
    r.integer("half_open_probes", c.half_open_probes, 1, 1'000'000);
    r.finish();
    out = c;
}

void read_bulkhead(const json& j, const std::string& path,
                   std::optional<resilience::bulkhead_config>& out) {
    if (j.is_boolean()) {
        if (j.get<bool>()) {
            out = out.value_or(resilience::bulkhead_config{});
        } else {
            out.reset();
        }
        return;
    }
    auto c = out.value_or(resilience::bulkhead_config{});
    object_reader r(j, path);
    r.integer("max_concurrent", c.max_concurrent, 1, 1'000'000);
    r.integer("max_queue", c.max_queue, 0, 1'000'000);
    r.dur("max_wait", c.max_wait);
    r.finish();
    out = c;
}

void read_outliers(const json& j, const std::string& path,
                   std::optional<resilience::outlier_config>& out) {
    if (j.is_boolean()) {
        if (j.get<bool>()) {
            out = out.value_or(resilience::outlier_config{});
        } else {
            out.reset();
        }
        return;
    }
    auto c = out.value_or(resilience::outlier_config{});
    object_reader r(j, path);
    r.integer("consecutive_failures", c.consecutive_failures, 0, 1'000'000);
    r.dur("interval", c.interval);
    r.integer("success_rate_minimum_hosts", c.success_rate_minimum_hosts, 0, 1'000'000);
    r.integer("success_rate_request_volume", c.success_rate_request_volume, 0, 1'000'000);
    r.number("success_rate_stdev_factor", c.success_rate_stdev_factor, 0.0, 100.0);
    r.dur("base_ejection_time", c.base_ejection_time);
    r.dur("max_ejection_time", c.max_ejection_time);
    r.integer("max_ejection_percent", c.max_ejection_percent, 0, 100);
    r.integer("panic_threshold_percent", c.panic_threshold_percent, 0, 100);
    r.finish();
    out = c;
}

void read_calls(const json& j, const std::string& path, service_call_config& out) {
    object_reader r(j, path);
    auto& p = out.policy;
    r.dur("timeout", p.timeout);
    if (auto v = r.get("retry")) {
        object_reader rr(*v, r.field_path("retry"));
        rr.integer("max_attempts", p.retry.max_attempts, 1, 100);
        rr.dur("base_backoff", p.retry.base_backoff);
        rr.dur("max_backoff", p.retry.max_backoff);
        rr.number("multiplier", p.retry.multiplier, 1.0, 100.0);
        rr.dur("per_try_timeout", p.retry.per_try_timeout);
        rr.finish();
    }
    if (auto v = r.get("retry_budget")) {
        object_reader rb(*v, r.field_path("retry_budget"));
        rb.number("ratio", p.retry_budget.ratio, 0.0, 100.0);
        rb.number("min_retries_per_second", p.retry_budget.min_retries_per_second, 0.0, 1e9);
        rb.dur("window", p.retry_budget.window);
        rb.finish();
    }
    if (auto v = r.get("circuit_breaker")) {
        read_breaker(*v, r.field_path("circuit_breaker"), p.circuit_breaker);
    }
    if (auto v = r.get("bulkhead")) {
        read_bulkhead(*v, r.field_path("bulkhead"), p.bulkhead);
    }
    if (auto v = r.get("balancer")) {
        static const std::map<std::string, resilience::balancer_kind, std::less<>> kinds{
            {"round_robin", resilience::balancer_kind::round_robin},
            {"random", resilience::balancer_kind::random},
            {"weighted", resilience::balancer_kind::weighted},
            {"least_request", resilience::balancer_kind::least_request},
            {"peak_ewma", resilience::balancer_kind::peak_ewma},
        };
        auto it = v->is_string() ? kinds.find(v->get<std::string>()) : kinds.end();
        if (it == kinds.end()) {
            r.fail("balancer", v->dump() +
                                   " is not one of round_robin, random, weighted, "
                                   "least_request, peak_ewma");
        }
        out.balancer.kind = it->second;
    }
    if (auto v = r.get("outlier_detection")) {
        read_outliers(*v, r.field_path("outlier_detection"), out.balancer.outlier_detection);
    }
    if (auto v = r.get("hedge")) {
        // true: hedge at the observed p95; false: off; an object: the settings.
        if (v->is_boolean()) {
            out.hedge.enabled = v->get<bool>();
        } else {
            object_reader rh(*v, r.field_path("hedge"));
            out.hedge.enabled = true;
            rh.boolean("enabled", out.hedge.enabled);
            rh.dur("delay", out.hedge.delay);
            rh.dur("min_delay", out.hedge.min_delay);
            rh.integer("min_samples", out.hedge.min_samples, 1, 1'000'000);
            rh.finish();
        }
    }
    if (r.get("tls")) {
        bool tls = false;
        r.boolean("tls", tls);
        out.tls = tls;
    }
    r.str("tag", out.query.tag);
    r.boolean("include_warning", out.query.include_warning);
    r.string_map("meta", out.query.meta);
    r.finish();
}

void read_consul(const json& j, consul::client_config& c) {
    object_reader r(j, "consul");
    if (auto v = r.get("address")) {
        std::vector<std::string> list;
        if (v->is_string()) {
            list.push_back(v->get<std::string>());
        } else {
            r.strings("address", list);
        }
        c.addresses.clear();
        for (const auto& a : list) {
            bool tls = false;
            auto addr = consul::parse_agent_address(a, &tls);
            if (!addr) {
                r.fail("address", "'" + a + "' is not host:port or an http(s):// URL");
            }
            c.use_tls = c.use_tls || tls;
            c.addresses.push_back(std::move(*addr));
        }
    }
    r.str("token", c.token);
    r.str("datacenter", c.datacenter);
    r.boolean("tls", c.use_tls);
    r.str("ca_file", c.tls.ca_file);
    r.dur("connect_timeout", c.connect_timeout);
    r.dur("request_timeout", c.request_timeout);
    r.finish();
}

void read_partitions(const json& j, partition::registry_config& c) {
    object_reader r(j, "partitions");
    std::string cluster;
    std::string node;
    r.str("cluster", cluster);
    r.str("node_id", node);
    bool fast = false;
    r.boolean("fast_failover", fast);
    if (fast) {
        c = partition::registry_config::fast_failover(cluster, node);
    }
    c.cluster = cluster;
    c.node_id = node;
    r.integer("partitions", c.partitions, 1, 65536);
    r.str("prefix", c.prefix);
    r.number("weight", c.weight, 0.0, 1e6);
    r.integer("max_concurrent_moves", c.max_concurrent_moves, 1, 65536);
    r.dur("drain_timeout", c.drain_timeout);
    r.dur("member_check_interval", c.member_check_interval);
    r.dur("session_ttl", c.lease.session_ttl);
    r.dur("lock_delay", c.lease.lock_delay);
    r.boolean("register_partition_services", c.register_partition_services);
    r.finish();
}

void read_root(const json& j, mesh_config& cfg) {
    object_reader r(j, "");
    if (auto v = r.get("service")) {
        object_reader s(*v, "service");
        s.str("name", cfg.service_name);
        s.str("id", cfg.service_id);
        s.str("address", cfg.address);
        s.integer("port", cfg.port, 1, 65535);
        s.strings("tags", cfg.tags);
        s.string_map("meta", cfg.meta);
        if (auto checks = s.get("checks")) {
            if (!checks->is_array()) {
                s.fail("checks", "expected an array of checks");
            }
            cfg.checks.clear();
            for (std::size_t i = 0; i < checks->size(); ++i) {
                read_check((*checks)[i], "service.checks[" + std::to_string(i) + "]",
                           cfg.checks.emplace_back());
            }
        }
        s.finish();
    }
    if (auto v = r.get("consul")) {
        read_consul(*v, cfg.consul);
    }
    if (auto v = r.get("cache")) {
        object_reader c(*v, "cache");
        c.integer("max_services", cfg.cache.max_services, 1, 1'000'000);
        c.integer("max_instances", cfg.cache.max_instances, 1, 1'000'000);
        c.boolean("watch", cfg.cache.watch);
        c.dur("ttl", cfg.cache.ttl);
        c.dur("max_staleness", cfg.cache.max_staleness);
        c.finish();
    }
    if (auto v = r.get("calls")) {
        read_calls(*v, "calls", cfg.default_calls);
    }
    if (auto v = r.get("services")) {
        if (!v->is_object()) {
            r.fail("services", "expected an object of service name to call settings");
        }
        for (const auto& [name, sj] : v->items()) {
            // A service's settings start from the file's defaults ("calls").
            auto sc = cfg.default_calls;
            read_calls(sj, "services." + name, sc);
            cfg.services[name] = std::move(sc);
        }
    }
    r.strings("dependencies", cfg.dependencies);
    if (auto v = r.get("partitions")) {
        read_partitions(*v, cfg.partitions.emplace());
    }
    if (auto v = r.get("start_mode")) {
        if (*v == "degraded") {
            cfg.start = start_mode::degraded;
        } else if (*v == "wait_for_consul") {
            cfg.start = start_mode::wait_for_consul;
        } else {
            r.fail("start_mode", v->dump() + " is not \"degraded\" or \"wait_for_consul\"");
        }
    }
    if (auto v = r.get("admin")) {
        object_reader a(*v, "admin");
        a.boolean("enabled", cfg.admin.enabled);
        a.str("address", cfg.admin.address);
        a.integer("port", cfg.admin.port, 0, 65535);
        a.str("token", cfg.admin.token);
        a.integer("max_request_bytes", cfg.admin.max_request_bytes, 1, 1 << 24);
        a.dur("read_timeout", cfg.admin.read_timeout);
        a.integer("max_connections", cfg.admin.max_connections, 1, 100'000);
        a.finish();
    }
    if (auto v = r.get("policy_reload")) {
        object_reader pr(*v, "policy_reload");
        auto& c = cfg.policy_reload.emplace();
        pr.str("prefix", c.prefix);
        pr.finish();
    }
    r.dur("stop_timeout", cfg.stop_timeout);
    r.dur("connect_timeout", cfg.connect_timeout);
    r.integer("max_idle_connections_per_instance", cfg.max_idle_connections_per_instance, 0,
              1'000'000);
    r.dur("idle_connection_timeout", cfg.idle_connection_timeout);
    r.integer("max_response_body", cfg.max_response_body, 1, std::int64_t{1} << 40);
    if (auto v = r.get("instance_tls")) {
        object_reader t(*v, "instance_tls");
        t.str("ca_file", cfg.instance_tls.ca_file);
        t.str("ca_path", cfg.instance_tls.ca_path);
        t.str("cert_file", cfg.instance_tls.cert_file);
        t.str("key_file", cfg.instance_tls.key_file);
        t.str("server_name", cfg.instance_tls.server_name);
        t.boolean("verify", cfg.instance_tls.verify);
        t.finish();
    }
    r.finish();
}

/// Line and column (from 1) of byte offset `pos` of `text`.
std::string line_and_column(std::string_view text, std::size_t pos) {
    pos = std::min(pos, text.size());
    std::size_t line = 1;
    std::size_t col = 1;
    for (std::size_t i = 0; i < pos; ++i) {
        if (text[i] == '\n') {
            ++line;
            col = 1;
        } else {
            ++col;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

}  // namespace

mesh_config mesh_config::from_json(std::string_view text, error_code& ec, diagnostics& diag) {
    ec = {};
    mesh_config cfg = from_env(ec, diag);
    if (ec) {
        return cfg;
    }
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        // nlohmann counts the byte after the offending one.
        diag.set_client_message("configuration is not valid JSON at " +
                                line_and_column(text, e.byte > 0 ? e.byte - 1 : 0) + ": " +
                                e.what());
        ec = validation_errc::invalid_configuration;
        return cfg;
    }
    try {
        read_root(j, cfg);
    } catch (const config_error& e) {
        diag.set_client_message(e.message);
        ec = e.code;
        return cfg;
    } catch (const json::exception& e) {
        diag.set_client_message(std::string("configuration: ") + e.what());
        ec = validation_errc::invalid_configuration;
        return cfg;
    }
    if (auto vec = validate(cfg, diag)) {
        ec = vec;
    }
    return cfg;
}

namespace mesh::detail {

service_call_config service_call_config_from_json(std::string_view text,
                                                  const service_call_config& base, error_code& ec,
                                                  diagnostics& diag) {
    ec = {};
    service_call_config sc = base;
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        diag.set_client_message("not valid JSON at " +
                                line_and_column(text, e.byte > 0 ? e.byte - 1 : 0) + ": " +
                                e.what());
        ec = validation_errc::invalid_configuration;
        return sc;
    }
    try {
        if (!j.is_object()) {
            throw config_error{
                validation_errc::invalid_configuration,
                std::string("expected an object of call settings, got ") + j.type_name()};
        }
        read_calls(j, "", sc);
    } catch (const config_error& e) {
        diag.set_client_message(e.message);
        ec = e.code;
    } catch (const json::exception& e) {
        diag.set_client_message(e.what());
        ec = validation_errc::invalid_configuration;
    }
    return sc;
}

}  // namespace mesh::detail

mesh_config mesh_config::from_json_file(const std::string& path, error_code& ec,
                                        diagnostics& diag) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        diag.set_client_message("cannot read configuration file '" + path + "'");
        ec = validation_errc::invalid_configuration;
        return mesh_config{};
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    auto cfg = from_json(ss.str(), ec, diag);
    if (ec) {
        diag.set_client_message(path + ": " + diag.client_message());
    }
    return cfg;
}

}  // namespace lakemesh
