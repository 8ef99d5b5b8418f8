// The rules of one TTL check as a sans-I/O state machine: when to run the service's probe, what
// a probe that hangs or throws means, and when to tell Consul.
//
// Rules:
// * a probe due while the previous one still runs is skipped, never started twice;
// * a probe that passes its deadline is critical with "probe timed out after <timeout>";
// * a probe that throws is critical with "probe threw: <what()>";
// * Consul is told (PUT /v1/agent/check/update/:check_id) when the status or the output differs
//   from what Consul last accepted, or when the last accepted update is older than the refresh
//   threshold (ttl * refresh_fraction), because a TTL check goes critical when not updated
//   within its TTL even if nothing changed;
// * one update is in flight at a time, so updates cannot overtake each other; what changes
//   meanwhile is sent when it completes;
// * a failed update backs off exponentially with jitter and the local status is kept; the
//   first update after the back-off carries the latest status (Consul catches up);
// * nothing is sent before the check is registered (on_registered), and a re-registration
//   resets what Consul is known to hold to the registration's status.
//
// See https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-update
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/health/types.hpp>
#include <lakemesh/resilience/random.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace lakemesh::health {

/// Settings of one TTL check. Plain aggregate; every field has a usable default.
struct ttl_check_config {
    /// The TTL the check is registered with in Consul. Zero: no refresh; updates are sent only
    /// when something changed.
    duration ttl = std::chrono::seconds(30);
    /// An unchanged status is sent again once the last accepted update is older than
    /// ttl * refresh_fraction. Clamped to [0.05, 1]; the default (the health scheduler's too)
    /// leaves a third of the TTL for an update that has to be retried.
    double refresh_fraction = 2.0 / 3.0;
    /// Longest a probe may run before it counts as critical. Zero: the TTL (a probe slower than
    /// the TTL cannot keep the check alive anyway); zero with a zero TTL: no limit.
    duration probe_timeout = std::chrono::seconds(5);
    /// Back-off ceiling after the first consecutive failed update; it doubles with every further
    /// failure. The delay drawn is uniform in [ceiling / 2, ceiling]. Zero: retry at once.
    duration push_backoff_base = std::chrono::milliseconds(250);
    /// Cap of the back-off ceiling; keep it well below the TTL. Zero: no cap (not recommended).
    duration push_backoff_cap = std::chrono::seconds(10);
};

/// What the shell must do next.
enum class check_action_kind : std::uint8_t {
    none,         ///< Nothing to start.
    start_probe,  ///< Start the probe now; `probe_deadline` is when it counts as timed out.
    push,         ///< Send `push_status` and `push_output` to Consul now; report the outcome.
    back_off,     ///< The update failed; it is retried at `retry_at` (the wake timer).
};

/// The state machine's answer to an event.
struct check_action {
    check_action_kind kind = check_action_kind::none;
    /// For start_probe: the probe's deadline (`never` when there is no limit).
    time_point probe_deadline = never;
    /// For push: the update to send.
    status push_status = status::critical;
    std::string push_output{};
    /// For back_off: when the update is retried.
    time_point retry_at = never;
    /// With any kind, only from on_wake(): the running probe passed its deadline and is now
    /// reported critical; cancel it. Its completion must still be reported, and is ignored.
    bool cancel_probe = false;
};

/// Where the probe is.
enum class probe_state : std::uint8_t {
    idle,        ///< No probe running.
    running,     ///< A probe runs; expects its completion (or on_wake at the deadline).
    cancelling,  ///< Timed out and reported; waiting for the cancelled probe to complete.
};

/// Where the update to Consul is.
enum class push_state : std::uint8_t {
    idle,         ///< No update in flight or waiting.
    in_flight,    ///< An update was sent; expects on_push_succeeded() or on_push_failed().
    backing_off,  ///< The last update failed; waiting for on_wake() at retry_at().
};

/// One TTL check's rules: events in, actions out, no clock reads and no I/O.
///
/// Protocol: call on_registered() once Consul has the check (and after every re-registration);
/// on_probe_due() when the check_schedule's probe timer pops; one of on_probe_completed(),
/// on_probe_threw() or on_probe_timed_out() per started probe; one of on_push_succeeded() or
/// on_push_failed() per push; on_wake() when the wake timer pops. After every event, arm the
/// check's wake timer at wake_at() (check_schedule::set_wake does nothing when it is
/// unchanged). Events that do not fit the state (a second completion, a push outcome with no
/// push in flight) are ignored and answer `none`.
///
/// Probe deadlines: wake_at() includes the running probe's deadline, so the shell needs no
/// timer of its own; on_wake() past it reports the timeout and sets cancel_probe. A shell that
/// enforces the deadline itself (e.g. asio::cancel_after) reports on_probe_timed_out() instead.
///
/// Thread safety: none; one owner.
class ttl_check_fsm {
  public:
    explicit ttl_check_fsm(const ttl_check_config& cfg = {});

    /// Consul holds the check now, with `registered_status` and no output (TTL checks start
    /// critical unless registered with a Status). Starts or resumes updates; a back-off in
    /// progress ends, since the agent answered.
    check_action on_registered(time_point now, status registered_status = status::critical);
    /// The probe timer popped: start_probe, or none when the previous probe still runs.
    check_action on_probe_due(time_point now);
    /// The probe finished with a result.
    check_action on_probe_completed(time_point now, status result, std::string output);
    /// The probe threw; `what` is the exception's what() (or a description when it was not a
    /// std::exception). Reported critical with "probe threw: <what>".
    check_action on_probe_threw(time_point now, std::string_view what);
    /// The shell stopped the probe at its deadline; the probe is over. Reported critical with
    /// "probe timed out after <probe timeout>".
    check_action on_probe_timed_out(time_point now);
    /// Consul accepted the last push. Answers push at once when the status changed meanwhile.
    check_action on_push_succeeded(time_point now);
    /// The last push failed with `ec`: back_off with a jittered delay drawn from `rng`.
    check_action on_push_failed(time_point now, const error_code& ec,
                                resilience::random_source& rng);
    /// The wake timer popped: probe deadline, end of a back-off, or TTL refresh, whichever are
    /// due at `now` (an early call answers none).
    check_action on_wake(time_point now);

    /// When on_wake() must be called next; `never` when no timed obligation is pending.
    time_point wake_at() const noexcept;

    /// Changes the TTL (after re-registering with a new one); takes effect at once.
    void set_ttl(duration ttl) noexcept;

    /// The latest local result (critical with no output before the first probe).
    status current_status() const noexcept { return status_; }
    const std::string& current_output() const noexcept { return output_; }
    /// A probe has reported since construction.
    bool has_result() const noexcept { return has_result_; }
    /// What Consul is known to hold: the last accepted push, or the registration's status.
    status consul_status() const noexcept { return acked_status_; }
    const std::string& consul_output() const noexcept { return acked_output_; }
    /// When Consul last accepted a push (sent time) or registered the check.
    time_point consul_updated_at() const noexcept { return acked_at_; }
    bool registered() const noexcept { return registered_; }
    probe_state probe() const noexcept { return probe_; }
    push_state push() const noexcept { return push_; }
    /// Failed pushes since the last accepted one; a shell may re-register after a few (the
    /// agent may have lost the check), and should log the error.
    unsigned consecutive_push_failures() const noexcept { return push_failures_; }
    const error_code& last_push_error() const noexcept { return last_push_error_; }
    /// Probe timer pops skipped because the previous probe still ran.
    std::uint64_t overlapping_ticks() const noexcept { return overlapping_ticks_; }
    /// The effective probe timeout (`duration::max()` for none).
    duration probe_timeout() const noexcept { return probe_timeout_; }
    /// Age of the last accepted update at which it is refreshed (zero: no refresh).
    duration refresh_after() const noexcept { return refresh_after_; }
    const ttl_check_config& config() const noexcept { return cfg_; }

  private:
    void record(status result, std::string output);
    void record_timeout();
    bool needs_push(time_point now) const noexcept;
    check_action push_if_needed(time_point now);
    duration backoff_ceiling(unsigned failures) const noexcept;

    ttl_check_config cfg_;
    duration refresh_after_{};
    duration probe_timeout_{};

    status status_ = status::critical;
    std::string output_;
    bool has_result_ = false;

    bool registered_ = false;
    std::uint32_t registration_ = 0;  ///< Counts on_registered(), so a stale push is not taken.
    status acked_status_ = status::critical;
    std::string acked_output_;
    time_point acked_at_{};

    probe_state probe_ = probe_state::idle;
    time_point probe_deadline_ = never;

    push_state push_ = push_state::idle;
    status sent_status_ = status::critical;
    std::string sent_output_;
    time_point sent_at_{};
    std::uint32_t sent_registration_ = 0;
    time_point retry_at_ = never;
    unsigned push_failures_ = 0;
    error_code last_push_error_{};

    std::uint64_t overlapping_ticks_ = 0;
};

/// Human form of a duration for check outputs: "2s", "1500ms", "250us" or "10ns", the largest
/// unit that shows it exactly.
std::string format_duration(duration d);

}  // namespace lakemesh::health
