// lakemesh::health::health_scheduler: the Asio shell around check_schedule and ttl_check_fsm.
// It registers this process's services with the Consul agent, runs their probes and feeds the
// results to TTL checks, keeps an aggregated view of their health, repairs what the agent
// forgets (anti-entropy) and deregisters everything on stop.
//
// One steady_timer drives every probe, probe deadline, push retry and TTL refresh of every
// check (see check_schedule), so thousands of idle checks cost one armed timer.
//
// https://developer.hashicorp.com/consul/api-docs/agent/service
// https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-update
#pragma once

#include <lakemesh/consul/agent.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/health/types.hpp>
#include <lakemesh/observe/log.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace lakemesh::consul {
class client;
}

namespace lakemesh::health {

// ------------------------------------------------------------------ probes

/// What a probe reports. `output` becomes the Consul check's output (truncated to 4 KiB).
struct probe_result {
    status state = status::passing;
    std::string output;
};

/// A probe that answers at once, on the scheduler's executor. It blocks the executor while it
/// runs, so it must be quick: a probe that can hang belongs in an async_probe. One that returns
/// after its timeout counts as timed out; one that throws counts as critical.
using sync_probe = std::function<probe_result()>;

namespace detail {
struct probe_call;
}

/// Handed to an async_probe: call it once with the result, from any thread. Calls after the
/// first, and calls after the probe timed out, are ignored.
class probe_completion {
  public:
    explicit probe_completion(std::shared_ptr<detail::probe_call> call) noexcept
        : call_(std::move(call)) {}

    void operator()(status state, std::string output) const;
    void operator()(probe_result result) const { (*this)(result.state, std::move(result.output)); }
    /// True once the probe timed out or the scheduler stopped: its result is no longer wanted.
    bool cancelled() const noexcept;
    /// `f` runs on the scheduler's executor when the probe is cancelled (at once if it already
    /// is); use it to abandon the work. Call on the scheduler's executor, e.g. in the probe.
    void on_cancel(std::function<void()> f) const;

  private:
    std::shared_ptr<detail::probe_call> call_;
};

/// A probe that answers later: start the work and call the completion when done. Started on
/// the scheduler's executor; throwing from it counts as critical.
using async_probe = std::function<void(probe_completion)>;

/// A TTL check whose status comes from one of this process's probes.
struct probe_check {
    /// Check ID. Empty: "service:<service id>:<n>", n counting the service's checks from 1.
    std::string id;
    /// Check name. Empty: the ID.
    std::string name;
    std::string notes;
    /// The probe (required).
    std::variant<sync_probe, async_probe> probe;
    /// How often the probe runs; jittered by scheduler_config::probe_jitter.
    duration interval = std::chrono::seconds(10);
    /// Longest a probe may run before the check is critical with "probe timed out after ...".
    /// Zero: the TTL.
    duration timeout = std::chrono::seconds(5);
    /// The TTL registered in Consul: the check turns critical when this process stops
    /// reporting for this long. Zero: three intervals. Rounded up to whole milliseconds.
    duration ttl = duration::zero();
    /// Consul removes the service after the check has been critical this long. Zero: never.
    std::chrono::milliseconds deregister_critical_service_after{0};
};

/// One check of a service: run by the agent (consul::check_definition with http, tcp or grpc
/// and an interval) or fed by a probe of this process.
using service_check = std::variant<consul::check_definition, probe_check>;

/// A service instance to keep registered.
struct service_definition {
    /// ID, name, tags, meta, address, port, weights... `check` and `checks` must be empty: the
    /// checks go in `checks` below. `replace_existing_checks` is always set.
    consul::service_registration registration;
    std::vector<service_check> checks;
};

// ------------------------------------------------------------------ status view

/// One check as the status view shows it.
struct check_health {
    std::string check_id;
    /// The probe's latest result; for an agent-run check, the agent's status at the last
    /// reconciliation (critical before it, as Consul starts checks).
    status state = status::critical;
    std::string output;
    /// True for HTTP/TCP/gRPC checks the agent runs.
    bool agent_run = false;
};

/// One service as the status view shows it.
struct service_health {
    std::string service_id;
    std::string service_name;
    /// The worst of its checks (passing with no checks), as consul::aggregate_status.
    status aggregate = status::passing;
    /// Consul accepted the latest registration (false before it, while a repair is pending and
    /// for remote services).
    bool registered = false;
    /// Registered by this process (false: reported by the remote source).
    bool local = true;
    std::vector<check_health> checks;
};

/// Called when a service's aggregate status changes: (service ID, old, new). Runs on the
/// scheduler's executor; it may call the scheduler.
using change_callback = std::function<void(const std::string&, status, status)>;

/// Where the status view finds services this process does not register (the service cache's
/// hook). It calls health_scheduler::notify_remote_change() when one of them changes.
class remote_health_source {
  public:
    virtual ~remote_health_source() = default;
    virtual std::optional<service_health> health_of(std::string_view service_id) const = 0;
};

// ------------------------------------------------------------------ the scheduler

/// Settings of a health_scheduler. Plain aggregate; every field has a usable default.
struct scheduler_config {
    /// Period of the reconciliation that compares the agent's services and checks with the
    /// desired set and re-registers what drifted. Zero: no periodic reconciliation (lost
    /// checks are still repaired when an update is refused).
    std::chrono::milliseconds reconcile_interval{30000};
    /// Jitter of each reconciliation and each probe firing, as a fraction of the period.
    double reconcile_jitter = 0.1;
    double probe_jitter = 0.1;
    /// Timer slack: the scheduler's one timer wakes up to timer_slack_fraction of the shortest
    /// probe interval (at most timer_slack_cap) after the earliest due probe, deadline, retry or
    /// refresh, and handles everything due by then in that one wake-up. Probes then fire at
    /// most that much after their jittered time (1% of a 10 s interval: 100 ms, against the
    /// ±10% jitter), which saves a timer re-arm per firing when thousands of checks run.
    /// Clamped to [0, 0.1]. Zero (either field): every timer is handled at its due time.
    double timer_slack_fraction = 0.01;
    std::chrono::milliseconds timer_slack_cap{250};
    /// TTL refresh: an unchanged status is sent again once the last accepted one is older than
    /// ttl * refresh_fraction (see ttl_check_config); status changes are sent at once. The
    /// default leaves a third of the TTL (one interval with the default TTL of 3 intervals) for
    /// an update that has to be retried, and sends a quarter fewer updates than TTL/2.
    double refresh_fraction = 2.0 / 3.0;
    /// TTL updates in flight at once; more wait in the scheduler, in the order they were asked
    /// for. Refreshes come due in bursts (one timer wake-up handles many checks), and a burst
    /// larger than the client's connection pool would otherwise wait inside the client, one
    /// timer and one suspended request each. Zero: no limit.
    std::size_t max_updates_in_flight = 64;
    /// TTL updates sent together as one pipelined batch on one connection
    /// (agent_api::async_check_updates): the updates asked for while handling one event (a timer
    /// wake-up handles many checks) go out in batches of up to this many, one write and about
    /// one wake-up each instead of one per update. 1: every update its own request, for an
    /// agent reached through an intermediary that does not handle HTTP/1.1 pipelining.
    std::size_t max_updates_per_batch = 32;
    /// Back-off of failed TTL updates and failed registrations: the ceiling starts at base and
    /// doubles per consecutive failure up to cap; the delay is uniform in [ceiling/2, ceiling].
    std::chrono::milliseconds backoff_base{250};
    std::chrono::milliseconds backoff_cap{10000};
    /// Seed of the jitter PRNG; empty: std::random_device.
    std::optional<std::uint64_t> seed;
};

/// Keeps this process's services registered and their TTL checks fed.
///
/// Control calls (register_service, deregister_service, add_check, remove_check, the status
/// view) are synchronous and must run on the scheduler's executor; the network work they cause
/// happens in the background.
///
/// Anti-entropy: when the agent answers a TTL update with 404 or "does not have associated
/// TTL" (it restarted and lost its state), the service and all its checks are registered again
/// and updates resume. The periodic reconciliation repairs services or checks that went missing
/// or changed. While Consul is unreachable the local status is kept and updates back off; the
/// first one to get through carries the latest status.
///
/// Thread safety: none beyond probe_completion; use from the executor (a strand when it is
///   multi-threaded).
/// Lifetime: the destructor stops timers and probes but deregisters nothing; call async_stop()
///   first for a graceful stop.
class health_scheduler {
  public:
    using executor_type = boost::asio::any_io_executor;

    health_scheduler(executor_type ex, consul::client& client, scheduler_config cfg,
                     observe::logger log = {});
    health_scheduler(boost::asio::io_context& io, consul::client& client, scheduler_config cfg,
                     observe::logger log = {});
    ~health_scheduler();
    health_scheduler(const health_scheduler&) = delete;
    health_scheduler& operator=(const health_scheduler&) = delete;

    executor_type get_executor() const noexcept;

    /// Registers the service (or replaces the definition registered under the same ID: calling
    /// it again is idempotent) and starts its probes. Errors, with nothing changed:
    /// validation_errc::invalid_name (no name, duplicate check IDs), invalid_argument (a probe
    /// check without a probe, checks in `registration`, an agent-run check of no kind),
    /// invalid_duration (a negative duration); invalid_configuration after async_stop().
    error_code register_service(service_definition def);
    /// Stops the service's probes and deregisters it from the agent. False if unknown.
    bool deregister_service(const std::string& service_id);
    /// Adds one check to a registered service (re-registers it with all its checks). Errors as
    /// register_service, and invalid_name for an unknown service or an existing check ID.
    error_code add_check(const std::string& service_id, service_check check);
    /// Removes one check by ID. False if unknown.
    bool remove_check(const std::string& service_id, const std::string& check_id);

    /// The service's health: a service of this process, else the remote source's answer.
    std::optional<service_health> status_of(std::string_view service_id) const;
    /// Every service this process registered.
    std::vector<service_health> statuses() const;
    /// Subscribes to aggregate changes; returns an ID for remove_on_change().
    std::uint64_t on_change(change_callback cb);
    void remove_on_change(std::uint64_t id);

    /// The hook for the service cache: status_of() asks it about services not registered here.
    void set_remote_source(std::shared_ptr<const remote_health_source> source);
    /// For the remote source: forwards a watched service's change to the subscribers.
    void notify_remote_change(const std::string& service_id, status old_status, status new_status);

    /// Checks scheduled, and services registered by this process.
    std::size_t check_count() const noexcept;
    std::size_t service_count() const noexcept;
    /// Repairs made so far (re-registrations after a loss or a drift).
    std::uint64_t repairs() const noexcept;
    /// TTL updates (PUT /v1/agent/check/update) sent so far, answered or not.
    std::uint64_t updates_sent() const noexcept;
    /// Pipelined batches among them (each counted in updates_sent() once per update).
    std::uint64_t update_batches_sent() const noexcept;

    /// Graceful stop: stops every probe and timer, deregisters every service this process
    /// registered (waiting for registrations in flight first), then completes. Afterwards the
    /// scheduler keeps nothing pending, so the io_context runs out.
    /// Completion signature: void(error_code) — the first deregistration error other than
    /// not_found (already gone). Cancellation: not supported.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_stop(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto handler) { start_stop(std::move(handler)); }, token);
    }

  private:
    void start_stop(boost::asio::any_completion_handler<void(error_code)> handler);

    class impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::health
