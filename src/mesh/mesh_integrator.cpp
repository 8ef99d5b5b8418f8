// mesh_integrator: wiring of the parts, start/stop ordering and the resilient call path.
#include <lakemesh/mesh_integrator.hpp>

#include "core/ascii.hpp"
#include "mesh/http_pool.hpp"
#include "mesh/mesh_metrics.hpp"
#include "mesh/policy_watch.hpp"

#include <nlohmann/json.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <deque>
#include <iomanip>
#include <random>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace lakemesh {

namespace asio = boost::asio;
using resilience::clock;

namespace {

/// The Consul client's one observer: the mesh's metrics, then the span listener (if any).
class consul_request_fanout final : public consul::request_observer {
  public:
    consul_request_fanout(std::shared_ptr<consul::request_observer> metrics,
                          std::shared_ptr<observe::span_listener> spans)
        : metrics_(std::move(metrics)), spans_(std::move(spans)) {}

    void on_request(const consul::request_event& e) noexcept override {
        metrics_->on_request(e);
        if (spans_) {
            observe::span_event s;
            s.kind = observe::span_kind::consul_request;
            s.name = e.group;
            s.start = e.start;
            s.duration = e.elapsed;
            s.ec = e.ec;
            s.status = e.status;
            spans_->on_span_end(s);
        }
    }

  private:
    std::shared_ptr<consul::request_observer> metrics_;
    std::shared_ptr<observe::span_listener> spans_;
};

/// System-clock time of a steady-clock instant in the past, for span events.
std::chrono::system_clock::time_point wall_time_of(resilience::time_point t) {
    const auto ago = resilience::clock::now() - t;
    return std::chrono::system_clock::now() -
           std::chrono::duration_cast<std::chrono::system_clock::duration>(ago);
}

bool valid_name(std::string_view s) {
    return !s.empty() && s.size() <= 256 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

/// version "00", 32 hex trace ID, 16 hex parent ID, 2 hex flags; IDs not all zero.
bool valid_traceparent(std::string_view tp) {
    if (tp.size() < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-') {
        return false;
    }
    const auto version = tp.substr(0, 2);
    const auto trace = tp.substr(3, 32);
    const auto parent = tp.substr(36, 16);
    const auto flags = tp.substr(53, 2);
    if (!is_lower_hex(version) || version == "ff" || !is_lower_hex(trace) ||
        !is_lower_hex(parent) || !is_lower_hex(flags)) {
        return false;
    }
    if (version == "00" && tp.size() != 55) {
        return false;
    }
    return trace.find_first_not_of('0') != std::string_view::npos &&
           parent.find_first_not_of('0') != std::string_view::npos;
}

/// Writes `v` as 16 lower-case hex digits at `out`.
void write_hex(char* out, std::uint64_t v) noexcept {
    static constexpr char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; --i) {
        out[i] = hex[v & 0xf];
        v >>= 4;
    }
}

/// Trace and span IDs: SplitMix64 (random-looking, not secret, as W3C Trace Context asks),
/// seeded from std::random_device. Far cheaper per ID than std::mt19937_64's block refills.
struct id_source {
    std::uint64_t state =
        (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    std::uint64_t next() noexcept {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

error_code map_policy_error(const error_code& ec, const error_code& last) {
    if (ec.category() != policy_category()) {
        return ec;
    }
    switch (static_cast<policy_errc>(ec.value())) {
        case policy_errc::circuit_open:
            return call_errc::circuit_open;
        case policy_errc::bulkhead_full:
        case policy_errc::bulkhead_wait_timeout:
            return call_errc::bulkhead_full;
        case policy_errc::retry_budget_exhausted:
            return call_errc::retry_budget_exhausted;
        case policy_errc::deadline_exceeded:
            return call_errc::deadline_exceeded;
        case policy_errc::no_endpoints:
            return call_errc::no_instances;
        case policy_errc::retries_exhausted:
            return last ? last : ec;
    }
    return ec;
}

}  // namespace

// ------------------------------------------------------------------ call_context

call_context call_context::from_request(const mesh::http_request& req, resilience::time_point now) {
    call_context ctx;
    if (auto d = req.header(headers::deadline_ms); !d.empty()) {
        std::int64_t ms = 0;
        auto [end, ec] = std::from_chars(d.data(), d.data() + d.size(), ms);
        if (ec == std::errc{} && end == d.data() + d.size() && ms >= 0) {
            ctx.deadline = resilience::deadline::after(now, std::chrono::milliseconds(ms));
        }
    }
    if (auto tp = req.header(headers::traceparent); valid_traceparent(tp)) {
        ctx.traceparent = std::string(tp);
        ctx.tracestate = std::string(req.header(headers::tracestate));
    }
    return ctx;
}

std::string_view call_context::trace_id() const noexcept {
    return traceparent.size() >= 35 ? std::string_view(traceparent).substr(3, 32)
                                    : std::string_view{};
}

// ------------------------------------------------------------------ validation

error_code validate(const mesh_config& cfg, diagnostics& diag) {
    auto fail = [&](validation_errc e, std::string msg) {
        diag.set_client_message(std::move(msg));
        return make_error_code(e);
    };
    if (!cfg.service_name.empty()) {
        if (!valid_name(cfg.service_name)) {
            return fail(
                validation_errc::invalid_name,
                "service_name '" + cfg.service_name + "': use letters, digits, '-', '_' and '.'");
        }
        if (!cfg.service_id.empty() && !valid_name(cfg.service_id)) {
            return fail(
                validation_errc::invalid_name,
                "service_id '" + cfg.service_id + "': use letters, digits, '-', '_' and '.'");
        }
        if (cfg.port == 0) {
            return fail(validation_errc::invalid_argument,
                        "port: a registered service needs the port it serves on");
        }
    }
    for (const auto& [name, sc] : cfg.services) {
        if (!valid_name(name)) {
            return fail(validation_errc::invalid_name,
                        "services: '" + name + "' is not a valid service name");
        }
    }
    for (const auto& dep : cfg.dependencies) {
        if (!valid_name(dep)) {
            return fail(validation_errc::invalid_name,
                        "dependencies: '" + dep + "' is not a valid service name");
        }
    }
    if (cfg.connect_timeout <= std::chrono::milliseconds::zero()) {
        return fail(validation_errc::invalid_duration, "connect_timeout must be positive");
    }
    if (cfg.stop_timeout < std::chrono::milliseconds::zero()) {
        return fail(validation_errc::invalid_duration, "stop_timeout must not be negative");
    }
    if (auto ec = cfg.consul.validate(diag)) {
        diag.set_client_message("consul: " + diag.client_message());
        return ec;
    }
    if (cfg.partitions) {
        if (auto ec = partition::validate(*cfg.partitions, diag)) {
            diag.set_client_message("partitions: " + diag.client_message());
            return ec;
        }
    }
    if (cfg.policy_reload) {
        if (auto ec = mesh::detail::validate(*cfg.policy_reload, diag)) {
            return ec;
        }
    }
    return {};
}

mesh_config mesh_config::from_env(error_code& ec, diagnostics& diag) {
    mesh_config cfg;
    cfg.consul = consul::client_config::from_env(ec, diag);
    return cfg;
}

// ------------------------------------------------------------------ impl

struct mesh_integrator::impl : std::enable_shared_from_this<impl> {
    /// One service this process calls.
    struct service_state {
        std::string name;
        /// Checked once (policy_of() makes states for any name, valid or not).
        bool name_ok = valid_name(name);
        service_call_config cfg;
        std::unique_ptr<mesh::detail::service_metrics> m;
        resilience::policy policy;
        resilience::load_balancer balancer;
        std::shared_ptr<const discovery::service_snapshot> snapshot;
        /// Endpoint IDs of the instances whose meta asks for TLS (when cfg.tls is empty).
        std::unordered_set<std::string> secure;

        /// Whether the call to endpoint `id` goes over TLS.
        bool tls_for(const std::string& id) const {
            return cfg.tls ? *cfg.tls : !secure.empty() && secure.contains(id);
        }

        service_state(const asio::any_io_executor& ex, std::string n, service_call_config c,
                      std::uint64_t seed, mesh::detail::mesh_metrics& metrics)
            : name(std::move(n)),
              cfg(std::move(c)),
              m(metrics.make_service(name)),
              policy(
                  ex,
                  [&] {
                      auto p = cfg.policy;
                      p.target = name;
                      return p;
                  }(),
                  metrics.policy_listener(*m), seed),
              balancer(cfg.balancer, seed ^ 0x9e3779b97f4a7c15ULL) {}

        // Recent successful answer latencies, for hedging at the observed p95.
        static constexpr std::size_t window = 128;
        std::vector<clock::duration> recent;
        std::size_t recent_next = 0;
        std::uint64_t samples = 0;
        clock::duration p95{};

        void record_latency(clock::duration d) {
            if (!cfg.hedge.enabled || cfg.hedge.delay > std::chrono::milliseconds::zero()) {
                return;
            }
            if (recent.size() < window) {
                recent.push_back(d);
            } else {
                recent[recent_next] = d;
                recent_next = (recent_next + 1) % window;
            }
            // Recomputed every 16 answers: a sort of 128 durations, off the per-call path.
            if (++samples % 16 == 0 || samples == cfg.hedge.min_samples) {
                auto sorted = recent;
                const auto k = (sorted.size() * 95 + 99) / 100 - 1;
                std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k),
                                 sorted.end());
                p95 = sorted[k];
            }
        }

        /// The delay before a hedge, or none when this service does not hedge (yet).
        std::optional<clock::duration> hedge_delay() const {
            if (!cfg.hedge.enabled) {
                return std::nullopt;
            }
            if (cfg.hedge.delay > std::chrono::milliseconds::zero()) {
                return cfg.hedge.delay;
            }
            if (samples < std::max<std::uint64_t>(cfg.hedge.min_samples, 1) ||
                p95 == clock::duration::zero()) {
                return std::nullopt;
            }
            return std::max<clock::duration>(p95, cfg.hedge.min_delay);
        }
    };

    struct hedge_state;

    /// One call in flight: the policy's run of it and the sink of its exchanges, in one object,
    /// so that a call costs one allocation of its own.
    struct call_state final : resilience::detail::policy_run, mesh::detail::exchange_sink {
        // Constructed with its handler: any_completion_handler's move-assignment recurses in
        // Boost 1.81, so it is only ever move-constructed.
        call_state(impl& owner, asio::any_completion_handler<void(error_code, call_result)> h)
            : mesh(owner.weak_from_this()), fallback(owner.ex), handler(std::move(h)) {}

        std::weak_ptr<impl> mesh;
        asio::any_io_executor fallback;  ///< completes the call when the mesh is gone
        std::string service;
        mesh::http_request request;
        call_options options;
        clock::time_point started = clock::now();
        mesh::detail::service_metrics* m = nullptr;  ///< null until the service is known
        service_state* st = nullptr;  ///< whose policy runs the call; valid while the mesh lives
        bool idempotent = true;
        call_result result;
        error_code last_error;
        std::uint64_t last_endpoint = 0;
        bool tried = false;
        bool tls = false;        ///< the attempt in flight goes over TLS
        bool cancelled = false;  ///< by the caller, the stop or the destructor
        // The attempt in flight ends at its per-try timeout before the call's deadline: when it
        // is aborted, the instance was too slow (rather than the caller out of time).
        bool per_try_bound = false;
        diagnostics attempt_diag;
        asio::any_completion_handler<void(error_code, call_result)> handler;
        // In the mesh's list of calls in flight (which holds no reference).
        call_state* prev_in_flight = nullptr;
        call_state* next_in_flight = nullptr;
        bool listed = false;
        // Partition calls: the key, whether the last attempt found no owner, 421s received.
        bool partition_call = false;
        std::string key;
        bool no_owner = false;
        unsigned misdirected = 0;
        // The attempt in flight: its number, endpoint, start, and the exchange (or hedge)
        // sending it.
        unsigned attempt_no = 0;
        std::optional<resilience::endpoint_handle> pick;
        clock::time_point attempt_started{};
        mesh::detail::http_pool::exchange* sending = nullptr;
        /// Weak: the hedge's legs and timer keep it, and it keeps the call (no cycle).
        std::weak_ptr<hedge_state> hedge;

        ~call_state() override {
            // Dropped unfinished (its io_context destroyed first): out of the list.
            if (listed) {
                if (auto self = mesh.lock()) {
                    self->in_flight.remove(*this);
                }
            }
        }

        /// The traceparent header, added as the request goes out (no copy into the request).
        std::span<const mesh::detail::header_ref> trace_header() {
            trace_ref = {headers::traceparent, result.traceparent};
            return {&trace_ref, 1};
        }
        mesh::detail::header_ref trace_ref;

        std::shared_ptr<call_state> shared() {
            return std::static_pointer_cast<call_state>(shared_from_this());
        }

        /// The caller's cancellation, the stop's, the destructor's.
        void cancel_call() {
            cancelled = true;
            cancel();
        }

        void start_attempt(const resilience::attempt_context& ctx) override {
            if (auto self = mesh.lock()) {
                self->attempt(*this, ctx, in_run());
                return;
            }
            asio::post(fallback, [c = shared(), n = ctx.attempt] {
                c->attempt_complete(make_error_code(asio::error::operation_aborted), n);
            });
        }

        void cancel_attempt() override {
            if (auto hs = hedge.lock()) {
                hs->cancel();
            } else if (sending != nullptr) {
                mesh::detail::http_pool::cancel(*sending);
            }
        }

        void on_exchange_done(error_code ec, mesh::http_response& resp) override {
            sending = nullptr;
            if (auto self = mesh.lock()) {
                self->attempt_done(*st, *this, pick, result.endpoint, attempt_started, false, ec,
                                   resp);
                if (!ec || resp.status != 0) {
                    result.response = std::move(resp);
                }
            }
            attempt_complete(ec, attempt_no);
        }

        void finished(error_code ec, bool inside_run) override {
            sending = nullptr;
            hedge.reset();
            auto c = shared();
            if (auto self = mesh.lock()) {
                auto mapped = map_policy_error(ec, last_error);
                if (mapped == make_error_code(partition_errc::not_owner)) {
                    mapped = no_owner ? make_error_code(call_errc::no_instances)
                                      : make_error_code(call_errc::not_owner);
                }
                // A cancel (the caller's, the stop, the destructor) can end the call inside
                // cancel(): post then, never run the handler in there; likewise inside run().
                self->complete_call(c, mapped, !cancelled && !inside_run);
                return;
            }
            // The mesh was destroyed: the call still completes, as aborted.
            auto h = std::move(handler);
            auto hex = asio::get_associated_executor(h, fallback);
            asio::post(
                fallback,
                asio::bind_executor(hex, [h = std::move(h), r = std::move(result)]() mutable {
                    std::move(h)(make_error_code(asio::error::operation_aborted), std::move(r));
                }));
        }
    };

    asio::any_io_executor ex;
    mesh_config cfg;
    observe::logger log;
    mesh::detail::mesh_metrics metrics;
    consul::client client;
    discovery::service_cache cache;
    health::health_scheduler scheduler;
    std::optional<partition::partition_registry> registry;
    std::optional<partition::partition_table> own_table;
    std::unique_ptr<service_state> partition_calls;
    std::shared_ptr<mesh::detail::http_pool> pool;
    std::unordered_map<std::string, std::unique_ptr<service_state>> services;
    /// The calls in flight, newest first, linked through the calls themselves (no allocation
    /// per call); each is kept alive by what it waits for, not by this list.
    struct call_list {
        call_state* head = nullptr;
        std::size_t count = 0;

        std::size_t size() const noexcept { return count; }
        bool empty() const noexcept { return count == 0; }
        void add(call_state& c) noexcept {
            c.next_in_flight = head;
            c.prev_in_flight = nullptr;
            if (head != nullptr) {
                head->prev_in_flight = &c;
            }
            head = &c;
            c.listed = true;
            ++count;
        }
        void remove(call_state& c) noexcept {
            if (!c.listed) {
                return;
            }
            (c.prev_in_flight != nullptr ? c.prev_in_flight->next_in_flight : head) =
                c.next_in_flight;
            if (c.next_in_flight != nullptr) {
                c.next_in_flight->prev_in_flight = c.prev_in_flight;
            }
            c.prev_in_flight = c.next_in_flight = nullptr;
            c.listed = false;
            --count;
        }
        /// References to every call, to cancel them (cancelling one unlinks it).
        std::vector<std::shared_ptr<call_state>> snapshot() const {
            std::vector<std::shared_ptr<call_state>> out;
            out.reserve(count);
            for (auto* c = head; c != nullptr; c = c->next_in_flight) {
                if (auto p = c->weak_from_this().lock()) {
                    out.push_back(std::static_pointer_cast<call_state>(std::move(p)));
                }
            }
            return out;
        }
    } in_flight;
    id_source ids;
    std::uint64_t seed_counter = std::random_device{}();

    enum class phase { idle, started, stopping, stopped } state = phase::idle;
    bool consul_ok = false;
    bool registry_joined = false;
    std::string consul_reason = "not started";
    std::string service_id;
    asio::steady_timer ready_timer;
    std::chrono::milliseconds ready_backoff{100};
    std::vector<asio::any_completion_handler<void(error_code)>> start_waiters;
    std::vector<asio::any_completion_handler<void(error_code)>> stop_waiters;
    error_code stop_error;
    asio::steady_timer drain_timer;
    bool draining = false;
    mesh_stats counters;
    asio::steady_timer metrics_timer;
    std::optional<observe::admin_server> admin;
    /// The latest failures (calls, readiness), newest last, for /status.
    std::deque<std::pair<std::chrono::system_clock::time_point, std::string>> last_errors;
    std::vector<std::shared_ptr<const partition::fence>> fences;
    // Runtime policy reload (mesh_config::policy_reload); after `counters`, which it counts in.
    std::unique_ptr<mesh::detail::policy_watch> policies;

    impl(asio::any_io_executor e, mesh_config c, observe::logger l)
        : ex(std::move(e)),
          cfg(std::move(c)),
          log(std::move(l)),
          metrics(cfg.metrics, log.with_component("metrics")),
          client(ex, cfg.consul, log),
          cache(ex, client, cfg.cache, log),
          scheduler(ex, client, cfg.health, log),
          pool(std::make_shared<mesh::detail::http_pool>(
              ex,
              [&] {
                  mesh::detail::http_pool_config p;
                  p.connect_timeout = cfg.connect_timeout;
                  p.max_idle_per_endpoint = cfg.max_idle_connections_per_instance;
                  p.idle_timeout = cfg.idle_connection_timeout;
                  p.max_response_body = cfg.max_response_body;
                  p.tls = cfg.instance_tls;
                  return p;
              }())),
          ready_timer(ex),
          drain_timer(ex),
          metrics_timer(ex) {
        if (!cfg.instance_tls.verify) {
            log.warn(
                "TLS certificate verification to service instances is OFF "
                "(instance_tls.verify=false): any host on the path can pose as an instance. "
                "Never use this outside a test.");
        }
        client.set_observer(
            std::make_shared<consul_request_fanout>(metrics.consul_observer(), cfg.spans));
        service_id = cfg.service_id.empty() && !cfg.service_name.empty()
                         ? cfg.service_name + "-" + cfg.address + "-" + std::to_string(cfg.port)
                         : cfg.service_id;
        if (cfg.partitions) {
            auto rc = *cfg.partitions;
            if (rc.port == 0) {
                rc.address = cfg.address;
                rc.port = cfg.port;
            }
            registry.emplace(ex, client, cache, scheduler, std::move(rc), log);
        } else if (cfg.partition_table) {
            own_table.emplace(ex, client, *cfg.partition_table, log);
        }
    }

    service_state& state_for(const std::string& name) {
        auto it = services.find(name);
        if (it == services.end()) {
            auto sc = calls_for(name);
            it = services
                     .emplace(name, std::make_unique<service_state>(ex, name, std::move(sc),
                                                                    seed_counter++, metrics))
                     .first;
        }
        return *it->second;
    }

    // ---------------------------------------------------------------- policy reload

    /// The configured settings of calls to `name`.
    service_call_config static_calls(const std::string& name) const {
        auto c = cfg.services.find(name);
        return c != cfg.services.end() ? c->second : cfg.default_calls;
    }

    /// The settings new calls to `name` use: the KV override when there is one.
    service_call_config calls_for(const std::string& name) const {
        if (policies) {
            if (const auto* o = policies->override_of(name)) {
                return *o;
            }
        }
        return static_calls(name);
    }

    /// The KV override of `name` changed: a service already called takes it now (one never
    /// called takes it in state_for).
    void apply_calls(const std::string& name) {
        auto it = services.find(name);
        if (it == services.end()) {
            return;
        }
        auto& st = *it->second;
        if (mesh::detail::apply_call_config(st.name, st.cfg, st.policy, st.balancer,
                                            calls_for(name),
                                            seed_counter++ ^ 0x9e3779b97f4a7c15ULL)) {
            st.snapshot.reset();  // refresh_balancer fills the balancer again
        }
    }

    void start_policy_watch() {
        if (!cfg.policy_reload || policies) {
            return;
        }
        mesh::detail::policy_watch::callbacks cb;
        cb.static_calls = [this](const std::string& name) { return static_calls(name); };
        cb.changed = [w = weak_from_this()](const std::string& name) {
            if (auto self = w.lock()) {
                self->apply_calls(name);
            }
        };
        policies = std::make_unique<mesh::detail::policy_watch>(ex, client, *cfg.policy_reload, log,
                                                                std::move(cb), counters);
        policies->start();
    }

    // ---------------------------------------------------------------- readiness

    bool registered() const {
        if (cfg.service_name.empty()) {
            return true;
        }
        auto s = scheduler.status_of(service_id);
        return s && s->registered;
    }

    bool is_ready() const {
        return state == phase::started && consul_ok && registered() &&
               (!registry || registry_joined);
    }

    std::string reason() const {
        if (state == phase::idle) {
            return "not started";
        }
        if (state != phase::started) {
            return "stopping or stopped";
        }
        if (!consul_ok) {
            return consul_reason;
        }
        if (!registered()) {
            return "service '" + service_id + "' not registered in Consul yet";
        }
        if (registry && !registry_joined) {
            return "partition registry has not joined the cluster yet";
        }
        return {};
    }

    void complete_start_waiters(error_code ec) {
        auto waiters = std::move(start_waiters);
        start_waiters.clear();
        for (auto& h : waiters) {
            post_handler(std::move(h), ec);
        }
    }

    void post_handler(asio::any_completion_handler<void(error_code)> h, error_code ec) const {
        auto hex = asio::get_associated_executor(h, ex);
        asio::post(
            ex, asio::bind_executor(hex, [h = std::move(h), ec]() mutable { std::move(h)(ec); }));
    }

    void check_ready() {
        if (is_ready() && !start_waiters.empty()) {
            complete_start_waiters({});
        }
    }

    /// Asks Consul for its leader: reachability, with back-off while it fails.
    void readiness_tick() {
        if (state != phase::started) {
            return;
        }
        client.async_status_leader(
            [w = weak_from_this()](error_code ec, consul::result<std::string> answer) {
                const std::string& leader = answer.value;
                auto self = w.lock();
                if (!self || self->state != phase::started) {
                    return;
                }
                if (!ec && !leader.empty()) {
                    self->consul_ok = true;
                    self->consul_reason.clear();
                    self->ready_backoff = std::chrono::milliseconds(100);
                } else {
                    self->consul_ok = false;
                    self->consul_reason = ec ? "Consul unreachable: " + ec.message()
                                             : std::string("Consul has no leader");
                    self->ready_backoff =
                        std::min(self->ready_backoff * 2, std::chrono::milliseconds(2000));
                }
                self->check_ready();
                // While waiting for readiness, look again soon; after it, once a second.
                const auto next = self->is_ready()  ? std::chrono::milliseconds(1000)
                                  : self->consul_ok ? std::chrono::milliseconds(50)
                                                    : self->ready_backoff;
                self->ready_timer.expires_after(next);
                self->ready_timer.async_wait([w](error_code tec) {
                    if (auto s = w.lock(); s && !tec) {
                        s->readiness_tick();
                    }
                });
            });
    }

    // ---------------------------------------------------------------- start

    void start(asio::any_completion_handler<void(error_code)> h) {
        if (state == phase::stopping || state == phase::stopped) {
            post_handler(std::move(h), call_errc::mesh_stopped);
            return;
        }
        if (state == phase::started) {
            if (cfg.start == start_mode::wait_for_consul && !is_ready()) {
                start_waiters.push_back(std::move(h));
            } else {
                post_handler(std::move(h), {});
            }
            return;
        }
        diagnostics diag;
        if (auto ec = validate(cfg, diag)) {
            log.error("mesh: invalid configuration: " + diag.to_string());
            post_handler(std::move(h), ec);
            return;
        }
        if (!cfg.service_name.empty()) {
            health::service_definition def;
            def.registration.id = service_id;
            def.registration.name = cfg.service_name;
            def.registration.address = cfg.address;
            def.registration.port = cfg.port;
            def.registration.tags = cfg.tags;
            def.registration.meta = cfg.meta;
            def.checks = cfg.checks;
            if (auto ec = scheduler.register_service(std::move(def))) {
                log.error("mesh: cannot register service '" + service_id + "': " + ec.message());
                post_handler(std::move(h), ec);
                return;
            }
        }
        if (cfg.admin.enabled) {
            if (auto ec = start_admin(diag)) {
                log.error("mesh: the admin endpoint did not start: " + diag.to_string());
                post_handler(std::move(h), ec);
                return;
            }
        }
        state = phase::started;
        start_policy_watch();
        for (const auto& dep : cfg.dependencies) {
            auto& st = state_for(dep);
            cache.async_resolve(dep, st.cfg.query, [](error_code, discovery::resolve_result) {});
        }
        if (own_table) {
            own_table->start();
        }
        if (registry) {
            registry->async_start([w = weak_from_this()](error_code ec) {
                auto self = w.lock();
                if (!self) {
                    return;
                }
                if (ec) {
                    self->log.error("mesh: the partition registry could not join: " + ec.message());
                    if (ec != make_error_code(partition_errc::registry_stopped)) {
                        self->complete_start_waiters(ec);
                    }
                    return;
                }
                self->registry_joined = true;
                self->check_ready();
            });
        }
        if (cfg.start == start_mode::wait_for_consul) {
            start_waiters.push_back(std::move(h));
        } else {
            post_handler(std::move(h), {});
        }
        readiness_tick();
        metrics_tick();
    }

    // ---------------------------------------------------------------- metrics

    /// Refreshes the metrics read from the parts' own counters.
    void collect() {
        auto& m = metrics;
        m.calls_in_flight->set(static_cast<double>(in_flight.size()));
        const auto cs = cache.stats();
        m.cache_services->set(static_cast<double>(cs.services));
        m.cache_watches->set(static_cast<double>(cs.watches));
        m.catch_up(m.cache_resolves, cs.resolves);
        m.catch_up(m.cache_updates, cs.updates);
        m.catch_up(m.cache_evictions, cs.evictions);
        m.catch_up(m.cache_watch_errors, cs.watch_errors);
        m.catch_up(m.cache_resyncs, cs.resyncs);
        m.consul_connections->set(static_cast<double>(client.open_connections()));

        std::array<std::size_t, 3> by_status{};
        for (const auto& sh : scheduler.statuses()) {
            if (!sh.local) {
                continue;
            }
            for (const auto& ch : sh.checks) {
                ++by_status[static_cast<std::size_t>(ch.state)];
            }
        }
        for (std::size_t i = 0; i < by_status.size(); ++i) {
            m.checks_by_status[i]->set(static_cast<double>(by_status[i]));
        }
        m.catch_up(m.ttl_updates, scheduler.updates_sent());
        m.catch_up(m.ttl_update_batches, scheduler.update_batches_sent());
        m.catch_up(m.registration_repairs, scheduler.repairs());
        m.registered->set(!cfg.service_name.empty() && registered() ? 1.0 : 0.0);
        m.ready->set(is_ready() ? 1.0 : 0.0);

        if (registry) {
            const auto rs = registry->stats();
            m.partitions_owned->set(static_cast<double>(rs.owned));
            m.partition_members->set(static_cast<double>(rs.members));
            m.catch_up(m.partition_acquisitions, rs.acquisitions);
            m.catch_up(m.partition_handoffs, rs.handoffs);
            m.catch_up(m.partition_drain_timeouts, rs.drain_timeouts);
            m.catch_up(m.partition_terms_lost, rs.terms_lost);
            m.catch_up(m.partition_self_fencings, rs.self_fencings);
            m.catch_up(m.session_renew_failures, rs.renew_failures);
            m.catch_up(m.sessions_created, rs.sessions_created);
            m.session_renew_latency->set(
                std::chrono::duration<double>(rs.last_renew_latency).count());
        }
        std::uint64_t rejected = 0;
        for (const auto& f : fences) {
            rejected += f->rejections();
        }
        m.catch_up(m.fence_rejections, rejected);
        m.catch_up(m.policy_reloads, counters.policy_reloads);
        m.catch_up(m.policy_reload_rejections, counters.policy_reload_rejections);

        const auto now = clock::now();
        auto service_gauges = [&](service_state& st) {
            auto& sm = *st.m;
            switch (st.policy.breaker().state()) {
                case resilience::breaker_state::closed:
                    sm.breaker_state->set(0);
                    break;
                case resilience::breaker_state::half_open:
                    sm.breaker_state->set(1);
                    break;
                case resilience::breaker_state::open:
                    sm.breaker_state->set(2);
                    break;
            }
            sm.bulkhead_in_use->set(static_cast<double>(st.policy.concurrency().in_flight()));
            sm.endpoints->set(static_cast<double>(st.balancer.endpoints().size()));
            sm.ejected_endpoints->set(static_cast<double>(st.balancer.outliers().ejected_count()));
            if (st.snapshot) {
                sm.staleness->set(
                    std::chrono::duration<double>(now - st.snapshot->received).count());
            }
        };
        for (auto& [name, st] : services) {
            service_gauges(*st);
        }
        if (partition_calls) {
            service_gauges(*partition_calls);
        }
    }

    void note_error(std::string what) {
        if (last_errors.size() >= 10) {
            last_errors.pop_front();
        }
        last_errors.emplace_back(std::chrono::system_clock::now(), std::move(what));
    }

    error_code start_admin(diagnostics& diag) {
        observe::admin_source src;
        src.metrics = [w = weak_from_this()] {
            auto self = w.lock();
            if (!self) {
                return std::string();
            }
            self->collect();
            return self->metrics.registry().render();
        };
        src.ready = [w = weak_from_this()](std::string& why) {
            auto self = w.lock();
            if (!self) {
                why = "stopped";
                return false;
            }
            why = self->reason();
            return self->is_ready();
        };
        src.status_json = [w = weak_from_this()] {
            auto self = w.lock();
            return self ? self->status_json() : std::string("{}");
        };
        admin.emplace(ex, cfg.admin, std::move(src), log.with_component("admin"));
        return admin->start(diag);
    }

    static std::string utc(std::chrono::system_clock::time_point t) {
        const auto tt = std::chrono::system_clock::to_time_t(t);
        std::tm tm{};
        gmtime_r(&tt, &tm);
        std::ostringstream out;
        out << std::put_time(&tm, "%Y-%m-%dT%H:%M:%SZ");
        return out.str();
    }

    /// The admin endpoint's /status document (schema in observe/admin_server.hpp).
    std::string status_json() {
        using json = nlohmann::json;
        json doc;
        doc["service"] = {{"name", cfg.service_name},
                          {"id", service_id},
                          {"ready", is_ready()},
                          {"not_ready_reason", reason()}};
        doc["consul"] = {
            {"address", cfg.consul.addresses.empty() ? std::string()
                                                     : cfg.consul.addresses.front().to_string()},
            {"last_error", consul_ok ? std::string() : consul_reason}};
        json members = json::array();
        if (registry) {
            for (const auto& m : registry->members()) {
                members.push_back({{"node", m.id}, {"address", ""}, {"weight", m.weight}});
            }
        }
        doc["members"] = std::move(members);
        if (const auto* table = routing_table()) {
            json rows = json::array();
            const auto snap = table->snapshot();
            if (snap) {
                for (std::size_t p = 0; p < snap->owners.size(); ++p) {
                    const auto& o = snap->owners[p];
                    rows.push_back({{"partition", p},
                                    {"owner", o.owned ? o.node : std::string()},
                                    {"state", o.owned ? std::string(partition::to_string(o.state))
                                                      : std::string("free")},
                                    {"token", std::to_string(o.token)}});
                }
                // Members' addresses, from the owners they hold.
                for (auto& m : doc["members"]) {
                    for (const auto& o : snap->owners) {
                        if (o.node == m["node"].get<std::string>() && !o.address.empty()) {
                            m["address"] = o.address + ":" + std::to_string(o.port);
                            break;
                        }
                    }
                }
            }
            doc["partitions"] = {{"cluster", table->config().prefix},
                                 {"count", table->config().partitions},
                                 {"owned_here", registry ? registry->owned_count() : 0},
                                 {"table", std::move(rows)}};
        } else {
            doc["partitions"] = nullptr;
        }
        json svcs = json::array();
        auto add_service = [&](service_state& st) {
            json eps = json::array();
            const auto& lb = st.balancer;
            for (std::size_t i = 0; i < lb.endpoints().size(); ++i) {
                const auto& e = lb.endpoints()[i];
                eps.push_back({{"address", e.address + ":" + std::to_string(e.port)},
                               {"healthy", e.health == resilience::endpoint_health::passing},
                               {"ejected", i < lb.outliers().size() && lb.outliers().is_ejected(i)},
                               {"in_flight", lb.in_flight(i)}});
            }
            std::uint64_t calls = 0;
            for (auto* c : st.m->calls) {
                calls += c->value();
            }
            const auto ok = st.m->calls[0]->value();
            svcs.push_back(
                {{"name", st.name},
                 {"breaker", std::string(resilience::to_string(st.policy.breaker().state()))},
                 {"bulkhead_in_use", st.policy.concurrency().in_flight()},
                 {"calls", calls},
                 {"failures", calls - ok},
                 {"endpoints", std::move(eps)}});
        };
        std::vector<std::string> names;
        for (const auto& [name, st] : services) {
            names.push_back(name);
        }
        std::sort(names.begin(), names.end());
        for (const auto& n : names) {
            add_service(*services.at(n));
        }
        if (partition_calls) {
            add_service(*partition_calls);
        }
        doc["services"] = std::move(svcs);
        json errors = json::array();
        for (const auto& [at, what] : last_errors) {
            errors.push_back({{"at", utc(at)}, {"what", what}});
        }
        doc["last_errors"] = std::move(errors);
        return doc.dump(-1, ' ', false, json::error_handler_t::replace);
    }

    void metrics_tick() {
        collect();
        metrics_timer.expires_after(std::chrono::seconds(1));
        metrics_timer.async_wait([w = weak_from_this()](error_code ec) {
            if (auto self = w.lock(); self && !ec && self->state != phase::stopped) {
                self->metrics_tick();
            }
        });
    }

    // ---------------------------------------------------------------- stop

    void stop(asio::any_completion_handler<void(error_code)> h) {
        if (state == phase::stopped) {
            post_handler(std::move(h), {});
            return;
        }
        stop_waiters.push_back(std::move(h));
        if (state == phase::stopping) {
            return;
        }
        const bool was_started = state == phase::started;
        // A start that got there (between two readiness ticks) succeeded; the others did not.
        check_ready();
        state = phase::stopping;
        ready_timer.cancel();
        if (policies) {
            policies->stop();
        }
        complete_start_waiters(call_errc::mesh_stopped);
        if (!was_started) {
            // Nothing registered, but calls may be in flight (calls need no start).
            cache.stop();
            drain_calls();
            return;
        }
        // 1. Hand the partitions off (the registry needs the session and the calls still work).
        if (registry) {
            registry->async_stop([w = weak_from_this()](error_code ec) {
                if (auto self = w.lock()) {
                    if (ec && !self->stop_error) {
                        self->stop_error = ec;
                    }
                    self->stop_health();
                }
            });
        } else {
            stop_health();
        }
    }

    // 2. Deregister the service and its checks.
    void stop_health() {
        scheduler.async_stop([w = weak_from_this()](error_code ec) {
            if (auto self = w.lock()) {
                if (ec && !self->stop_error) {
                    self->stop_error = ec;
                }
                self->cache.stop();
                if (self->own_table) {
                    self->own_table->stop();
                }
                self->drain_calls();
            }
        });
    }

    // 3. Let in-flight calls finish, up to stop_timeout; then cancel the rest.
    void drain_calls() {
        if (in_flight.empty()) {
            finish_stop();
            return;
        }
        draining = true;
        drain_timer.expires_after(cfg.stop_timeout);
        drain_timer.async_wait([w = weak_from_this()](error_code ec) {
            auto self = w.lock();
            if (!self || self->state != phase::stopping) {
                return;
            }
            if (!ec) {
                self->log.warn("mesh: " + std::to_string(self->in_flight.size()) +
                               " calls still in flight after the stop timeout; cancelling");
                for (auto& c : self->in_flight.snapshot()) {
                    c->cancel_call();
                }
            }
        });
    }

    void call_finished() {
        if (state == phase::stopping && draining && in_flight.empty()) {
            drain_timer.cancel();
            finish_stop();
        }
    }

    // 4. Close the connections.
    void finish_stop() {
        if (state == phase::stopped) {
            return;
        }
        state = phase::stopped;
        metrics_timer.cancel();
        if (admin) {
            admin->stop();
        }
        collect();
        pool->shutdown();
        auto waiters = std::move(stop_waiters);
        stop_waiters.clear();
        for (auto& h : waiters) {
            post_handler(std::move(h), stop_error);
        }
    }

    // ---------------------------------------------------------------- calls

    /// `from_completion`: called from an asynchronous completion (never inside async_call), so
    /// the handler may run at once rather than after another pass of the scheduler.
    void complete_call(const std::shared_ptr<call_state>& c, error_code ec,
                       bool from_completion = false) {
        in_flight.remove(*c);
        ++counters.calls;
        if (c->m) {
            c->m->record_call(ec, clock::now() - c->started);
        }
        if (cfg.spans && !c->result.traceparent.empty()) {
            auto e = span_of(*c, observe::span_kind::call);
            e.start = wall_time_of(c->started);
            e.duration = clock::now() - c->started;
            e.ec = ec;
            e.status = c->result.response.status;
            e.attempt = c->result.attempts;
            e.endpoint = c->result.endpoint;
            cfg.spans->on_span_end(e);
        }
        if (ec) {
            ++counters.call_failures;
            std::string msg = c->partition_call
                                  ? "call for key '" + c->key.substr(0, 128) +
                                        "' to partitioned cluster '" + c->service + "'"
                                  : "call to service '" + c->service + "'";
            msg += ": " + std::to_string(c->result.attempts) + " attempt(s)";
            if (!c->result.endpoint.empty()) {
                msg += ", last to " + c->result.endpoint;
            }
            msg += ": " + ec.message();
            // The attempt's own diagnostics say more than the code when the
            // failure came from below (transport, Consul, configuration).
            if (!c->attempt_diag.client_message().empty() &&
                (!c->last_error || c->last_error.category() != call_category())) {
                msg += " (" + c->attempt_diag.client_message() + ")";
            }
            // The trace ID ties the failure to the request's trace in logs and /status.
            if (c->result.traceparent.size() >= 35) {
                msg += " [trace " + c->result.traceparent.substr(3, 32) + "]";
            }
            if (ec != asio::error::operation_aborted) {
                if (log.enabled(observe::log_level::debug)) {
                    log.debug("mesh: " + msg);
                }
                note_error(msg);
            }
            c->result.diag.set_client_message(std::move(msg));
            if (c->result.response.status != 0) {
                c->result.diag.set_http_status(c->result.response.status);
            }
        }
        auto h = std::move(c->handler);
        auto hex = asio::get_associated_executor(h, ex);
        if (from_completion && hex == asio::any_completion_executor(ex)) {
            // Already on the handler's executor, in a completion: what dispatch would do, without
            // wrapping the handler and moving the result twice more.
            call_finished();
            std::move(h)(ec, std::move(c->result));
            return;
        }
        auto done =
            asio::bind_executor(hex, [h = std::move(h), ec, r = std::move(c->result)]() mutable {
                std::move(h)(ec, std::move(r));
            });
        call_finished();
        if (from_completion) {
            asio::dispatch(ex, std::move(done));
        } else {
            asio::post(ex, std::move(done));
        }
    }

    std::string make_traceparent(const call_context& parent, const mesh::http_request& req) {
        // The caller's context (checked: it may have been filled by hand from anything), else
        // the request's own header, else a new trace.
        std::string_view incoming;
        if (valid_traceparent(parent.traceparent)) {
            incoming = parent.traceparent;
        } else if (auto own = req.header(headers::traceparent); valid_traceparent(own)) {
            incoming = own;
        }
        // "00-" trace-id (32) "-" parent-id (16) "-" flags (2): 55 characters, written in place.
        std::string tp(55, '-');
        tp[0] = '0';
        tp[1] = '0';
        if (!incoming.empty()) {
            incoming.copy(tp.data() + 3, 32, 3);
            incoming.copy(tp.data() + 53, 2, 53);
        } else {
            std::uint64_t hi = 0;
            std::uint64_t lo = 0;
            while (hi == 0 && lo == 0) {
                hi = ids.next();
                lo = ids.next();
            }
            write_hex(tp.data() + 3, hi);
            write_hex(tp.data() + 19, lo);
            tp[53] = '0';
            tp[54] = '1';
        }
        std::uint64_t span = 0;
        while (span == 0) {
            span = ids.next();
        }
        write_hex(tp.data() + 36, span);
        return tp;
    }

    void refresh_balancer(service_state& st) {
        auto view = st.cfg.query == discovery::service_query{}
                        ? cache.lookup(st.name)
                        : cache.lookup(st.name, st.cfg.query);
        (view ? metrics.cache_lookup_hits : metrics.cache_lookup_misses)->inc();
        if (!view || view.get() == st.snapshot.get()) {
            return;
        }
        st.snapshot = view.share();
        auto& secure = st.secure;
        secure.clear();
        std::vector<resilience::endpoint> eps;
        eps.reserve(st.snapshot->instances.size());
        for (const auto& inst : st.snapshot->instances) {
            resilience::endpoint e;
            e.id = inst.node + "/" + inst.id;
            e.address = inst.address;
            e.port = inst.port;
            e.health = inst.status == consul::check_status::warning
                           ? resilience::endpoint_health::warning
                           : resilience::endpoint_health::passing;
            e.weight_passing = static_cast<std::uint32_t>(std::max(inst.weights.passing, 0));
            e.weight_warning = static_cast<std::uint32_t>(std::max(inst.weights.warning, 0));
            if (auto it = inst.meta.find("secure");
                it != inst.meta.end() && lakemesh::detail::iequals(it->second, "true")) {
                secure.insert(e.id);
            }
            eps.push_back(std::move(e));
        }
        st.balancer.update(std::move(eps), clock::now());
    }

    /// A span event of call `c` (trace and span IDs from its traceparent).
    observe::span_event span_of(const call_state& c, observe::span_kind kind) const {
        observe::span_event e;
        e.kind = kind;
        e.name = c.m ? std::string_view(c.m->service) : std::string_view(c.service);
        const std::string_view tp = c.result.traceparent;
        if (tp.size() >= 52) {
            e.trace_id = tp.substr(3, 32);
            e.span_id = tp.substr(36, 16);
        }
        return e;
    }

    void span_attempt_start(const call_state& c, std::string_view endpoint) {
        if (!cfg.spans) {
            return;
        }
        auto e = span_of(c, observe::span_kind::attempt);
        e.endpoint = endpoint;
        e.attempt = c.result.attempts;
        e.start = std::chrono::system_clock::now();
        cfg.spans->on_span_start(e);
    }

    /// Trace context, idempotency, the in-flight list and the user's cancellation.
    void prepare(const std::shared_ptr<call_state>& c) {
        c->idempotent =
            c->options.idempotent.value_or(mesh::is_idempotent_method(c->request.method));
        c->result.traceparent = make_traceparent(c->options.parent, c->request);
        // Sent from result.traceparent (see trace_header()), so a request's own goes.
        if (!c->request.header(headers::traceparent).empty()) {
            std::erase_if(c->request.headers, [](const auto& h) {
                return lakemesh::detail::iequals(h.first, headers::traceparent);
            });
        }
        if (!c->options.parent.tracestate.empty() &&
            c->request.header(headers::tracestate).empty()) {
            c->request.set_header(std::string(headers::tracestate), c->options.parent.tracestate);
        }
        in_flight.add(*c);
        if (cfg.spans) {
            auto e = span_of(*c, observe::span_kind::call);
            e.start = wall_time_of(c->started);
            cfg.spans->on_span_start(e);
        }
        // The user's cancellation reaches the call through our own signal, which the stop uses too.
        auto slot = asio::get_associated_cancellation_slot(c->handler);
        if (slot.is_connected()) {
            slot.assign([w = std::weak_ptr<call_state>(c)](asio::cancellation_type) {
                if (auto cs = w.lock()) {
                    cs->cancel_call();
                }
            });
        }
    }

    void call(std::string service, mesh::http_request req, call_options opts,
              asio::any_completion_handler<void(error_code, call_result)> h) {
        auto c = std::make_shared<call_state>(*this, std::move(h));
        c->service = std::move(service);
        c->request = std::move(req);
        c->options = std::move(opts);
        if (state == phase::stopping || state == phase::stopped) {
            complete_call(c, call_errc::mesh_stopped);
            return;
        }
        // A known service's name was checked when its state was made.
        const auto known = services.find(c->service);
        if (known != services.end() ? !known->second->name_ok : !valid_name(c->service)) {
            c->attempt_diag.set_client_message("service name '" + c->service + "' is invalid");
            complete_call(c, validation_errc::invalid_name);
            return;
        }
        prepare(c);
        auto& st = known != services.end() ? *known->second : state_for(c->service);
        c->m = st.m.get();
        refresh_balancer(st);
        if (st.snapshot) {
            run(st, c);
            return;
        }
        cache.async_resolve(c->service, st.cfg.query,
                            [w = weak_from_this(), c](error_code ec, discovery::resolve_result) {
                                auto self = w.lock();
                                if (!self) {
                                    return;
                                }
                                if (ec) {
                                    self->complete_call(c, ec);
                                    return;
                                }
                                auto& s = self->state_for(c->service);
                                self->refresh_balancer(s);
                                self->run(s, c);
                            });
    }

    void run(service_state& st, const std::shared_ptr<call_state>& c) {
        resilience::call_options po;
        po.inherited = c->options.parent.deadline;
        if (c->options.timeout > std::chrono::milliseconds::zero()) {
            po.inherited = po.inherited.nested(clock::now(), c->options.timeout);
        }
        po.idempotent = c->idempotent;
        po.last_error = &c->last_error;
        c->st = &st;
        c->run(st.policy, po);
    }

    /// Ends attempt `n` of `c` with `ec` before anything was sent (from a completion).
    void fail_attempt(call_state& c, unsigned n, error_code ec) {
        asio::post(ex, [c = c.shared(), n, ec] { c->attempt_complete(ec, n); });
    }

    /// `fresh`: the call began just now (its balancer was refreshed by call()).
    void attempt(call_state& c, const resilience::attempt_context& actx, bool fresh) {
        const auto now = clock::now();
        std::string host;
        std::uint16_t port = 0;
        c.attempt_no = actx.attempt;
        c.pick.reset();
        if (c.partition_call) {
            auto* table = routing_table();
            auto v = table->route(c.key);
            if (!v.has_owner()) {
                // Between owners (a failover or a move): nothing was sent; look again soon.
                c.no_owner = true;
                table->refresh();
                fail_attempt(c, actx.attempt, partition_errc::not_owner);
                return;
            }
            c.no_owner = false;
            host = v->address;
            port = v->port;
            c.tls = cfg.partition_calls.tls.value_or(false);
            c.request.set_header(std::string(headers::fencing_token), std::to_string(v->token));
            c.request.set_header(std::string(headers::partition), std::to_string(v.partition()));
        } else {
            auto& st = *c.st;
            if (!fresh) {
                refresh_balancer(st);
            }
            auto& lb = st.balancer;
            auto pick = lb.pick(now);
            // A retry goes elsewhere when there is anywhere else to go.
            for (int i = 0; pick && c.tried && pick->key == c.last_endpoint && i < 8 &&
                            lb.eligible().size() > 1;
                 ++i) {
                pick = lb.pick(now);
            }
            if (!pick) {
                fail_attempt(c, actx.attempt,
                             lb.endpoints().empty() ? call_errc::no_instances
                                                    : call_errc::all_endpoints_ejected);
                return;
            }
            const auto& ep = lb.at(*pick);
            host = ep.address;
            port = ep.port;
            c.tls = st.tls_for(ep.id);
            c.last_endpoint = pick->key;
            c.pick = pick;
            lb.on_start(*pick);
        }
        c.tried = true;
        c.per_try_bound = actx.attempt_deadline.is_set() &&
                          actx.attempt_deadline.when() < actx.call_deadline.when();
        c.result.endpoint = host + ":" + std::to_string(port);
        ++c.result.attempts;
        ++counters.attempts;
        if (actx.call_deadline.is_set()) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                actx.call_deadline.remaining(now));
            c.request.set_header(std::string(headers::deadline_ms), std::to_string(left.count()));
        }
        c.attempt_diag.clear();
        span_attempt_start(c, c.result.endpoint);
        if (c.pick && c.idempotent) {
            auto& st = *c.st;
            if (auto delay = st.hedge_delay(); delay && st.balancer.eligible().size() > 1) {
                hedged(st, c, *c.pick, std::move(host), port, *delay);
                return;
            }
        }
        c.attempt_started = now;
        c.sending = pool->send(std::move(host), port, c.tls, c.request, c.trace_header(),
                               c.idempotent, c.attempt_diag, c.shared());
    }

    /// One attempt sent twice: the primary at once, a hedge to another instance after `delay`
    /// unless the primary answered by then. The first success wins and cancels the other.
    struct hedge_state {
        hedge_state(std::shared_ptr<call_state> c, unsigned n, const asio::any_io_executor& ex)
            : call(std::move(c)), attempt(n), timer(ex) {}

        /// Until the attempt ends (then null: the call holds this state, not the reverse).
        std::shared_ptr<call_state> call;
        unsigned attempt;
        asio::steady_timer timer;
        asio::cancellation_signal legs[2];
        diagnostics diag[2];
        std::string endpoint[2];
        int running = 0;
        bool hedge_sent = false;
        bool done = false;
        bool cancelled = false;  // by the policy (per-try timeout) or the caller

        /// Ends the attempt with `ec` (once; the caller holds this state).
        void complete(error_code ec) {
            done = true;
            timer.cancel();
            auto c = std::move(call);
            c->hedge.reset();
            c->attempt_complete(ec, attempt);
        }
        void cancel() {
            cancelled = true;
            timer.cancel();
            for (auto& leg : legs) {
                leg.emit(asio::cancellation_type::terminal);
            }
        }
    };

    void hedged(service_state& st, call_state& c, resilience::endpoint_handle primary,
                std::string host, std::uint16_t port, clock::duration delay) {
        auto hs = std::make_shared<hedge_state>(c.shared(), c.attempt_no, ex);
        c.hedge = hs;
        send_leg(st, hs, 0, primary, std::move(host), port, c.tls);
        hs->timer.expires_after(delay);
        hs->timer.async_wait([w = weak_from_this(), hs, s = &st, primary](error_code ec) {
            auto self = w.lock();
            if (!self || ec || hs->done || hs->cancelled) {
                return;
            }
            auto& c = *hs->call;
            auto& lb = s->balancer;
            const auto now = clock::now();
            std::optional<resilience::endpoint_handle> pick;
            for (int i = 0; i < 8 && (!pick || pick->key == primary.key); ++i) {
                pick = lb.pick(now);
            }
            if (!pick || pick->key == primary.key) {
                return;  // nowhere else to go: the primary alone decides
            }
            const auto& ep = lb.at(*pick);
            lb.on_start(*pick);
            hs->hedge_sent = true;
            ++c.result.hedges;
            ++self->counters.hedges;
            s->m->hedges->inc();
            self->span_attempt_start(c, ep.address + ":" + std::to_string(ep.port));
            self->send_leg(*s, hs, 1, *pick, ep.address, ep.port, s->tls_for(ep.id));
        });
    }

    void send_leg(service_state& st, const std::shared_ptr<hedge_state>& hs, int leg,
                  resilience::endpoint_handle pick, std::string host, std::uint16_t port,
                  bool tls) {
        hs->endpoint[leg] = host + ":" + std::to_string(port);
        ++hs->running;
        auto& c = *hs->call;
        pool->async_send(
            std::move(host), port, tls, c.request, c.trace_header(), true, hs->diag[leg],
            asio::bind_cancellation_slot(
                hs->legs[leg].slot(),
                [w = weak_from_this(), c = c.shared(), hs, leg, s = &st, pick,
                 started = clock::now()](error_code ec, mesh::http_response resp) mutable {
                    --hs->running;
                    auto self = w.lock();
                    if (!self) {
                        if (!hs->done) {
                            hs->complete(make_error_code(asio::error::operation_aborted));
                        }
                        return;
                    }
                    // A leg cancelled because the other won says nothing about its endpoint.
                    const bool lost = hs->done && !hs->cancelled;
                    self->attempt_done(*s, *c, pick, hs->endpoint[leg], started, lost, ec, resp);
                    if (hs->done) {
                        return;
                    }
                    const bool other_running = hs->running > 0;
                    if (ec && other_running) {
                        if (resp.status != 0) {
                            c->result.response = std::move(resp);
                        }
                        return;  // the other leg may still succeed
                    }
                    hs->done = true;  // before the other leg hears it lost
                    if (other_running) {
                        hs->legs[1 - leg].emit(asio::cancellation_type::terminal);
                    }
                    if (!ec || resp.status != 0) {
                        c->result.response = std::move(resp);
                    }
                    c->result.endpoint = hs->endpoint[leg];
                    if (!ec && leg == 1) {
                        c->result.hedge_won = true;
                        ++self->counters.hedges_won;
                        if (c->m) {
                            c->m->hedges_won->inc();
                        }
                    }
                    if (ec) {
                        c->attempt_diag = hs->diag[leg];
                    }
                    hs->complete(ec);
                }));
    }

    /// Classifies one attempt's outcome (in `ec`) and feeds the balancer. `abandoned`: a hedge
    /// leg that lost.
    void attempt_done(service_state& st, call_state& c,
                      const std::optional<resilience::endpoint_handle>& pick,
                      const std::string& endpoint, clock::time_point started, bool abandoned,
                      error_code& ec, mesh::http_response& resp) {
        const bool server_error = !ec && (resp.status >= 500 || resp.status == 429);
        const bool cancelled =
            ec == asio::error::operation_aborted && (c.cancelled || !c.per_try_bound);
        if (cfg.spans) {
            auto e = span_of(c, observe::span_kind::attempt);
            e.endpoint = endpoint;
            e.attempt = c.result.attempts;
            e.start = wall_time_of(started);
            e.duration = clock::now() - started;
            e.ec = server_error ? make_error_code(call_errc::upstream_status) : ec;
            e.status = resp.status;
            cfg.spans->on_span_end(e);
        }
        if (c.m && !abandoned && !cancelled) {
            const auto key = pick ? pick->key : std::hash<std::string>{}(endpoint);
            auto& em = metrics.endpoint(*c.m, key, endpoint);
            (!ec && !server_error ? em.ok : em.failed)->inc();
            em.duration->observe(clock::now() - started);
        }
        if (pick) {
            if (abandoned || cancelled) {
                // Cancelled by the caller or the stop, a lost hedge, or the call's deadline:
                // nothing learnt about the instance.
                st.balancer.on_abandon(*pick);
            } else {
                // A per-try timeout (operation_aborted while the attempt's own deadline was the
                // tighter one) is the endpoint's failure: it feeds ejection and the latency.
                const auto end = clock::now();
                const bool ok = !ec && !server_error;
                st.balancer.on_finish(*pick, end, end - started, ok);
                if (ok) {
                    st.record_latency(end - started);
                }
            }
        }
        if (server_error) {
            ec = call_errc::upstream_status;
        } else if (!ec && c.partition_call && resp.status == 421) {
            // "Not owner": refresh the table; the retry goes to the owner it names then, once.
            metrics.partition_misdirected->inc();
            routing_table()->refresh();
            ec = ++c.misdirected >= 2 ? make_error_code(call_errc::not_owner)
                                      : make_error_code(partition_errc::not_owner);
        }
    }

    partition::partition_table* routing_table() {
        if (registry) {
            return &registry->table();
        }
        return own_table ? &*own_table : nullptr;
    }
    const partition::partition_table* routing_table() const {
        return const_cast<impl*>(this)->routing_table();
    }

    void call_partition(std::string key, mesh::http_request req, call_options opts,
                        asio::any_completion_handler<void(error_code, call_result)> h) {
        auto c = std::make_shared<call_state>(*this, std::move(h));
        c->partition_call = true;
        c->key = std::move(key);
        c->service = routing_table() ? routing_table()->config().prefix : std::string();
        c->request = std::move(req);
        c->options = std::move(opts);
        if (state == phase::stopping || state == phase::stopped) {
            complete_call(c, call_errc::mesh_stopped);
            return;
        }
        if (!routing_table()) {
            c->attempt_diag.set_client_message(
                "async_call_partition needs mesh_config::partitions or partition_table");
            complete_call(c, validation_errc::invalid_configuration);
            return;
        }
        if (!partition_calls) {
            partition_calls = std::make_unique<service_state>(
                ex, "partitions:" + c->service, cfg.partition_calls, seed_counter++, metrics);
        }
        prepare(c);
        c->m = partition_calls->m.get();
        run(*partition_calls, c);
    }
};

// ------------------------------------------------------------------ facade

mesh_integrator::mesh_integrator(executor_type ex, mesh_config cfg, observe::logger log)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(cfg), std::move(log))) {}

mesh_integrator::mesh_integrator(boost::asio::io_context& io, mesh_config cfg, observe::logger log)
    : mesh_integrator(io.get_executor(), std::move(cfg), std::move(log)) {}

mesh_integrator::~mesh_integrator() {
    // Consul requests still in flight finish after this object is gone (their exchanges hold
    // the transport); they must not report to the metrics and spans destroyed with it.
    impl_->client.set_observer(nullptr);
    impl_->ready_timer.cancel();
    impl_->drain_timer.cancel();
    impl_->metrics_timer.cancel();
    if (impl_->admin) {
        impl_->admin->stop();
    }
    if (impl_->policies) {
        impl_->policies->stop();
    }
    for (auto& c : impl_->in_flight.snapshot()) {
        c->cancel_call();
    }
    impl_->pool->shutdown();
}

mesh_integrator::executor_type mesh_integrator::get_executor() const noexcept {
    return impl_->ex;
}
const mesh_config& mesh_integrator::config() const noexcept {
    return impl_->cfg;
}
consul::client& mesh_integrator::client() noexcept {
    return impl_->client;
}
discovery::service_cache& mesh_integrator::cache() noexcept {
    return impl_->cache;
}
health::health_scheduler& mesh_integrator::health() noexcept {
    return impl_->scheduler;
}
partition::partition_registry* mesh_integrator::partitions() noexcept {
    return impl_->registry ? &*impl_->registry : nullptr;
}
resilience::policy& mesh_integrator::policy_of(const std::string& service) {
    return impl_->state_for(service).policy;
}
const resilience::load_balancer* mesh_integrator::balancer_of(const std::string& service) const {
    auto it = impl_->services.find(service);
    return it == impl_->services.end() ? nullptr : &it->second->balancer;
}
const partition::partition_table* mesh_integrator::partition_table() const noexcept {
    return impl_->routing_table();
}
void mesh_integrator::call_partition(
    std::string key, mesh::http_request request, call_options options,
    boost::asio::any_completion_handler<void(error_code, call_result)> h) {
    impl_->call_partition(std::move(key), std::move(request), std::move(options), std::move(h));
}
service_call_config mesh_config::default_partition_calls() {
    service_call_config sc;
    // Wait out a failover's ownerless moment (about 2 s with registry_config::fast_failover):
    // 8 attempts, from 50 ms growing to at most 800 ms, about 3 s in all.
    sc.policy.retry.max_attempts = 8;
    sc.policy.retry.base_backoff = std::chrono::milliseconds(50);
    sc.policy.retry.max_backoff = std::chrono::milliseconds(800);
    sc.policy.retry.jitter = resilience::jitter_kind::decorrelated;
    // No retry budget: it is shared by every partition, so during a failover the calls to the
    // moving partitions spent it and calls to partitions that had an owner all along failed
    // with retry_budget_exhausted. Most of these retries send nothing (no owner yet), and the
    // rest are bounded by max_attempts, the back-off and one not-owner redirect per call.
    sc.policy.retry_budget.window = resilience::duration::zero();
    // One breaker, or one bulkhead, over every owner of the cluster would let one hung owner
    // stop the calls to healthy ones (its calls would fill the shared slots). Bound partition
    // calls with call_options::timeout or partition_calls.policy.timeout instead.
    sc.policy.circuit_breaker.reset();
    sc.policy.bulkhead.reset();
    sc.balancer.outlier_detection.reset();
    return sc;
}
bool mesh_integrator::ready() const noexcept {
    return impl_->is_ready();
}
std::string mesh_integrator::not_ready_reason() const {
    return impl_->reason();
}
observe::metrics_registry& mesh_integrator::metrics() noexcept {
    return impl_->metrics.registry();
}
std::string mesh_integrator::render_metrics() {
    impl_->collect();
    return impl_->metrics.registry().render();
}
void mesh_integrator::watch_fence(std::shared_ptr<const partition::fence> f) {
    if (f) {
        impl_->fences.push_back(std::move(f));
    }
}
std::string mesh_integrator::status_json() {
    return impl_->status_json();
}
std::uint16_t mesh_integrator::admin_port() const noexcept {
    return impl_->admin ? impl_->admin->port() : 0;
}
mesh_stats mesh_integrator::stats() const noexcept {
    auto s = impl_->counters;
    s.in_flight = impl_->in_flight.size();
    return s;
}

void mesh_integrator::start(boost::asio::any_completion_handler<void(error_code)> h) {
    impl_->start(std::move(h));
}
void mesh_integrator::stop(boost::asio::any_completion_handler<void(error_code)> h) {
    impl_->stop(std::move(h));
}
void mesh_integrator::call(std::string service, mesh::http_request request, call_options options,
                           boost::asio::any_completion_handler<void(error_code, call_result)> h) {
    impl_->call(std::move(service), std::move(request), std::move(options), std::move(h));
}

}  // namespace lakemesh
