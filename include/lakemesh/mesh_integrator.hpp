// lakemesh::mesh_integrator: the mesh in one object. On one executor it owns the Consul client,
// the service cache, the health scheduler and (optionally) the partition registry, registers
// this service with its checks, and makes resilient calls to other services: discovery, load
// balancing with outlier ejection, then the service's policy (retry with budget, circuit
// breaker, bulkhead, deadline, per-try timeout) around a keep-alive connection pool per
// instance. Calls carry W3C trace context and the remaining deadline to the next hop.
//
//   boost::asio::io_context io;
//   lakemesh::mesh_config cfg;
//   cfg.service_name = "orders";
//   cfg.port = 8080;
//   lakemesh::mesh_integrator mesh(io, cfg);
//   mesh.async_start([](lakemesh::error_code) {});
//   mesh.async_call("stock", {.method = "GET", .target = "/items/7"}, {},
//                   [](lakemesh::error_code ec, lakemesh::call_result r) { ... });
//   io.run();
#pragma once

#include <lakemesh/consul/client.hpp>
#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/discovery/service_cache.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/mesh/http.hpp>
#include <lakemesh/observe/admin_server.hpp>
#include <lakemesh/observe/log.hpp>
#include <lakemesh/observe/metrics.hpp>
#include <lakemesh/observe/trace.hpp>
#include <lakemesh/partition/fence.hpp>
#include <lakemesh/partition/partition_registry.hpp>
#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/load_balancer.hpp>
#include <lakemesh/resilience/policy.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh {

/// Headers lakemesh puts on calls and reads from incoming requests.
namespace headers {
/// W3C Trace Context (https://www.w3.org/TR/trace-context/).
inline constexpr std::string_view traceparent = "traceparent";
inline constexpr std::string_view tracestate = "tracestate";
/// The caller's remaining time in whole milliseconds when the request was sent.
inline constexpr std::string_view deadline_ms = "X-Lakemesh-Deadline-Ms";
/// The fencing token of the partition a call targets, and the partition.
inline constexpr std::string_view fencing_token = "X-Lakemesh-Fencing-Token";
inline constexpr std::string_view partition = "X-Lakemesh-Partition";
}  // namespace headers

/// What an incoming request carried from its caller: the deadline and the trace. Pass it as
/// call_options::parent to calls made while serving the request, so that they inherit the
/// remaining time and continue the trace.
struct call_context {
    /// The caller's deadline, converted to this process's clock (none when the request had no
    /// deadline header).
    resilience::deadline deadline{};
    /// The incoming traceparent and tracestate ("" when absent or malformed).
    std::string traceparent;
    std::string tracestate;

    /// Reads the headers of an incoming request. A malformed header is ignored (never an
    /// error): a bad deadline leaves the deadline unset, a bad traceparent starts a new trace.
    static call_context from_request(const mesh::http_request& req,
                                     resilience::time_point now = resilience::clock::now());
    /// The trace ID (32 hex digits) of traceparent, "" when none.
    std::string_view trace_id() const noexcept;
};

/// Hedged requests: when an idempotent attempt has not answered after `delay`, a second one
/// goes to another instance; the first answer (a status below 500, other than 429) wins and the
/// other is cancelled. A hedge is sent only when the service has another eligible instance, and
/// at most one per attempt; both count as one attempt for the retry policy.
struct hedge_config {
    bool enabled = false;
    /// Fixed delay. Zero: the observed p95 of this service's recent answers (at least
    /// `min_delay`; until `min_samples` answers were seen, no hedge is sent).
    std::chrono::milliseconds delay{0};
    std::chrono::milliseconds min_delay{1};
    std::size_t min_samples = 20;
};

/// How calls to one service are made.
struct service_call_config {
    /// Retry, budget, breaker, bulkhead, timeout. `target` is set to the service's name.
    resilience::policy_config policy{};
    /// Endpoint choice and outlier ejection.
    resilience::load_balancer_config balancer{};
    /// Which instances to call (passing only by default, a tag, meta).
    discovery::service_query query{};
    /// Off by default. Partition calls are never hedged (one owner).
    hedge_config hedge{};
    /// Call the instances over TLS (mesh_config::instance_tls). Empty: each instance says, by
    /// its service meta `secure` = "true" (the key Spring Cloud Consul registers); partition
    /// owners, which carry no meta, are then called without TLS.
    std::optional<bool> tls{};
};

/// What async_start does while Consul cannot be reached.
enum class start_mode : std::uint8_t {
    /// Complete async_start once Consul answered, the service is registered and the partition
    /// registry (if any) has joined.
    wait_for_consul,
    /// Complete async_start at once; the mesh keeps trying in the background and ready()
    /// reports when it got there.
    degraded,
};

/// Runtime policy reload from Consul KV (mesh_config::policy_reload). Each key
/// `<prefix>config/policies/<service>` holds a JSON object of the same shape as a service's entry
/// in the configuration file's "services" map (README "Configuration file"). It is a complete
/// description of that service's call settings over its static ones: fields it does not set keep
/// the values of mesh_config::services[service] (or default_calls when the service has no entry);
/// a later value replaces an earlier one entirely (values are not merged with each other). A valid
/// value applies to calls that start after it was read (calls in flight keep their policy); an
/// invalid one (bad JSON, unknown field, wrong type or value, inconsistent settings, empty, over
/// 64 KiB, or a key with '/' after the service name) is logged as a warning naming the key and
/// the field, counted in mesh_stats::policy_reload_rejections, and the service keeps what it had.
/// A deleted key returns the service to its static settings. A change of the balancer settings
/// starts a new balancer (its latency and ejection state start over); a change of the query
/// resolves the service again.
struct policy_reload_config {
    /// KV prefix: letters, ending in '/', no leading '/', no empty segments or control characters.
    std::string prefix = "lakemesh/";
};

/// Settings of a mesh_integrator. Plain aggregate; every field has a usable default.
struct mesh_config {
    /// This service as registered in Consul. Empty name: a pure client that registers nothing.
    std::string service_name;
    /// Instance ID. Empty: "<service_name>-<address>-<port>".
    std::string service_id;
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;
    std::vector<std::string> tags;
    std::map<std::string, std::string> meta;
    /// The service's checks: agent-run (HTTP/TCP/gRPC) or fed by this process's probes.
    std::vector<health::service_check> checks;

    consul::client_config consul{};
    discovery::service_cache_config cache{};
    health::scheduler_config health{};

    /// Calls to services not named in `services`.
    service_call_config default_calls{};
    /// Calls to named services (replaces default_calls for that service).
    std::map<std::string, service_call_config> services;
    /// Services this one calls: their instances are resolved (and watched) at start.
    std::vector<std::string> dependencies;

    /// The partition registry. Empty: this service owns no partitions.
    std::optional<partition::registry_config> partitions;
    /// For a service that calls a partitioned cluster without owning partitions: the cluster's
    /// ownership table (its prefix, e.g. "lakemesh/lake/", and partition count), followed by one
    /// blocking watch from async_start on. Ignored when `partitions` is set (the registry's own
    /// table routes then).
    std::optional<partition::table_config> partition_table;
    /// How calls to partition owners (async_call_partition) are made. While a partition has no
    /// owner (a failover), or its owner answers "not owner", attempts are retried with back-off
    /// within these limits; the defaults wait about 3 s, with no retry budget.
    service_call_config partition_calls = default_partition_calls();
    static service_call_config default_partition_calls();

    /// Where the mesh's metrics go (README "Metrics"). Empty: a registry of its own; give one to
    /// export the mesh's metrics beside the application's.
    std::shared_ptr<observe::metrics_registry> metrics;
    /// The admin HTTP endpoint (README "Admin page"): /metrics, /healthz, /readyz, /status and
    /// an HTML page. Off unless admin.enabled; started by async_start, stopped by async_stop.
    observe::admin_config admin{};
    /// Receives a start and an end event for every call and attempt, and an end event for every
    /// Consul request (observe/trace.hpp), to bridge them to a tracer. Empty: none.
    std::shared_ptr<observe::span_listener> spans;
    /// Watch `<prefix>config/policies/` in KV from async_start on and apply the call settings
    /// found there (see policy_reload_config). Empty: off.
    std::optional<policy_reload_config> policy_reload;

    start_mode start = start_mode::degraded;
    /// How long async_stop lets in-flight calls finish before it cancels them.
    std::chrono::milliseconds stop_timeout{5000};
    /// Connection pool per instance: connect timeout, idle connections kept, idle lifetime,
    /// largest response body.
    std::chrono::milliseconds connect_timeout{1000};
    std::size_t max_idle_connections_per_instance = 32;
    std::chrono::milliseconds idle_connection_timeout{30000};
    std::size_t max_response_body = 16u * 1024u * 1024u;
    /// TLS to instances (service_call_config::tls): the CA that signed their certificates (empty:
    /// the system's), a client certificate for mutual TLS, and the name to verify (empty: the
    /// address the call goes to, an IP address or a host name). Verification is on by default;
    /// a certificate that fails it fails the attempt with transport_errc::tls_verify_failed
    /// before the request is sent.
    consul::tls_config instance_tls{};

    /// Consul's settings from its environment variables (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN,
    /// ...), everything else at its default. Errors as consul::client_config::from_env.
    static mesh_config from_env(error_code& ec, diagnostics& diag);
    /// Reads a JSON configuration (see README "Configuration file"): unknown fields, wrong
    /// types and invalid values are errors that name the field (e.g. "services.stock.policy.
    /// retry.max_attempts"), and a syntax error names its line and column. Consul's environment
    /// variables apply first; the file's "consul" object overrides them.
    static mesh_config from_json(std::string_view text, error_code& ec, diagnostics& diag);
    /// from_json on a file's contents; a file that cannot be read is invalid_configuration.
    static mesh_config from_json_file(const std::string& path, error_code& ec, diagnostics& diag);
};

/// Checks a configuration without touching the network (names, port, the partition registry's
/// settings, the Consul client's). Errors as validation_errc with the field in diag.
error_code validate(const mesh_config& cfg, diagnostics& diag);

/// Per-call options of async_call.
struct call_options {
    /// Time allowed for the whole call. Zero: the service policy's timeout. The call ends at the
    /// earliest of this, the policy's timeout and parent.deadline.
    std::chrono::milliseconds timeout{0};
    /// Whether the request may be sent twice. Empty: by method (GET, HEAD, PUT, DELETE, OPTIONS
    /// and TRACE are idempotent). A non-idempotent call is retried only when it provably never
    /// left (connect failures).
    std::optional<bool> idempotent;
    /// The incoming request this call is made for: deadline and trace are inherited.
    call_context parent{};
};

/// The outcome of a call.
struct call_result {
    /// The last answer received (status 0 when none arrived).
    mesh::http_response response;
    /// "address:port" of the instance that answered last ("" when none was tried).
    std::string endpoint;
    /// Attempts sent (0 when the call was refused before any); a hedge counts as one.
    unsigned attempts = 0;
    /// Hedges sent, and whether the answer came from one.
    unsigned hedges = 0;
    bool hedge_won = false;
    /// The traceparent sent with the call.
    std::string traceparent;
    /// For failures: the service, the endpoint, the attempts and what went wrong.
    diagnostics diag;
};

/// Counters, for metrics. Read on the executor.
struct mesh_stats {
    std::uint64_t calls = 0;
    std::uint64_t call_failures = 0;
    std::uint64_t attempts = 0;
    std::uint64_t hedges = 0;
    std::uint64_t hedges_won = 0;
    /// Policy values from KV applied (deletions that restored the static settings included),
    /// and values rejected (mesh_config::policy_reload).
    std::uint64_t policy_reloads = 0;
    std::uint64_t policy_reload_rejections = 0;
    std::size_t in_flight = 0;
};

/// Thread safety: everything on the executor (a strand when the io_context runs on several
/// threads), except what the parts themselves allow from any thread (cache lookups, the
/// partition table's route()). Callbacks and completion handlers run on the executor (or the
/// handler's associated executor).
/// Lifetime: the destructor stops timers and closes connections without any network exchange
/// (nothing is deregistered: call async_stop first for a graceful stop). In-flight calls then
/// complete with operation_aborted.
class mesh_integrator {
  public:
    using executor_type = boost::asio::any_io_executor;

    mesh_integrator(executor_type ex, mesh_config cfg, observe::logger log = {});
    mesh_integrator(boost::asio::io_context& io, mesh_config cfg, observe::logger log = {});
    ~mesh_integrator();
    mesh_integrator(const mesh_integrator&) = delete;
    mesh_integrator& operator=(const mesh_integrator&) = delete;

    executor_type get_executor() const noexcept;
    const mesh_config& config() const noexcept;

    consul::client& client() noexcept;
    discovery::service_cache& cache() noexcept;
    health::health_scheduler& health() noexcept;
    /// The partition registry; null when mesh_config::partitions is empty.
    partition::partition_registry* partitions() noexcept;
    /// The resilience policy calls to `service` go through (created on first use).
    resilience::policy& policy_of(const std::string& service);
    /// The load balancer of `service`, null before the first call to it.
    const resilience::load_balancer* balancer_of(const std::string& service) const;

    /// Registers the service and its checks, starts their probes, resolves the dependencies and
    /// joins the partition registry. An unreachable Consul is not an error: the mesh keeps
    /// trying with back-off; with start_mode::degraded this completes at once, with
    /// wait_for_consul once ready(). Idempotent.
    /// Completion: void(error_code). Errors: validation_errc (the configuration),
    /// partition_errc::config_mismatch, call_errc::mesh_stopped (async_stop came first).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_start(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto h) {
                start(boost::asio::any_completion_handler<void(error_code)>(std::move(h)));
            },
            token);
    }

    /// Stops in order: refuses new calls, hands the partitions off, deregisters the service and
    /// destroys the session, stops the watches, lets in-flight calls finish up to stop_timeout
    /// (then cancels them) and closes the connections. Idempotent.
    /// Completion: void(error_code): the first error of the registry's or scheduler's stop
    /// (e.g. partition_errc::handoff_incomplete), else success.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_stop(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto h) {
                stop(boost::asio::any_completion_handler<void(error_code)>(std::move(h)));
            },
            token);
    }

    /// True once Consul answered, the service is registered and the registry (if any) joined.
    bool ready() const noexcept;
    /// Why ready() is false ("" when it is true).
    std::string not_ready_reason() const;

    /// One HTTP request to one instance of `service`, chosen by the service's balancer, under
    /// the service's policy. A retry goes to another instance when there is one. Statuses below
    /// 500 (other than 429) are answers, not errors: check result.response.status.
    /// Completion: void(error_code, call_result). Errors: call_errc (no_instances,
    /// all_endpoints_ejected, circuit_open, bulkhead_full, deadline_exceeded,
    /// retry_budget_exhausted, upstream_status, mesh_stopped), the transport's
    /// (transport_errc::connect_failed, connection_closed, timeout for a per-try timeout, ...),
    /// discovery and Consul errors of the first resolve, operation_aborted when cancelled
    /// through the handler's cancellation slot.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_call(std::string service, mesh::http_request request, call_options options,
                    Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, call_result)>(
            [this](auto h, std::string s, mesh::http_request r, call_options o) {
                call(std::move(s), std::move(r), std::move(o),
                     boost::asio::any_completion_handler<void(error_code, call_result)>(
                         std::move(h)));
            },
            token, std::move(service), std::move(request), std::move(options));
    }

    /// async_call to the owner of `key`'s partition (route(key) on the ownership table of the
    /// registry, or of mesh_config::partition_table). The request carries the owner's fencing
    /// token (headers::fencing_token) and the partition (headers::partition). An answer 421
    /// (Misdirected Request) means "not owner": the table is refreshed and the call retried once
    /// at the owner it then names. A partition without an owner (failover in progress) is
    /// retried with back-off (mesh_config::partition_calls). Non-idempotent requests are resent
    /// only after a 421 or when no owner was found, since then nothing acted on them.
    /// Completion: void(error_code, call_result). Errors: as async_call, and call_errc::not_owner
    /// (still misdirected after a refresh), call_errc::no_instances (no owner within the retry
    /// limits), validation_errc::invalid_configuration (no table configured).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_call_partition(std::string key, mesh::http_request request, call_options options,
                              Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, call_result)>(
            [this](auto h, std::string k, mesh::http_request r, call_options o) {
                call_partition(std::move(k), std::move(r), std::move(o),
                               boost::asio::any_completion_handler<void(error_code, call_result)>(
                                   std::move(h)));
            },
            token, std::move(key), std::move(request), std::move(options));
    }

    /// The ownership table partition calls route with (the registry's or the configured one);
    /// null when neither is configured.
    const partition::partition_table* partition_table() const noexcept;

    mesh_stats stats() const noexcept;

    /// The registry the mesh's metrics are in (mesh_config::metrics, or its own).
    observe::metrics_registry& metrics() noexcept;
    /// Refreshes the metrics read from the parts' own counters (cache, health, partitions,
    /// breakers, bulkheads, ejections; done every second anyway) and renders the registry in the
    /// Prometheus text format 0.0.4. On the executor.
    std::string render_metrics();
    /// Counts the rejections of a fence this process checks incoming partition requests with
    /// in lakemesh_partition_fence_rejections_total. The mesh keeps a reference to it.
    void watch_fence(std::shared_ptr<const partition::fence> f);
    /// The admin endpoint's /status document (JSON): this service and its readiness, the
    /// partition members and table, the services called with their endpoints, breakers and
    /// bulkheads, the last errors. See observe/admin_server.hpp for the schema. On the executor.
    std::string status_json();
    /// The port the admin endpoint listens on; 0 when it is off or not started.
    std::uint16_t admin_port() const noexcept;

  private:
    void start(boost::asio::any_completion_handler<void(error_code)> h);
    void stop(boost::asio::any_completion_handler<void(error_code)> h);
    void call(std::string service, mesh::http_request request, call_options options,
              boost::asio::any_completion_handler<void(error_code, call_result)> h);
    void call_partition(std::string key, mesh::http_request request, call_options options,
                        boost::asio::any_completion_handler<void(error_code, call_result)> h);

    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh
