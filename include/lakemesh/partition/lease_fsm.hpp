// The node's lease on its partitions: one Consul session, renewed in the background, and the
// self-fencing rule that decides how long the node may go on acting as an owner without hearing
// from Consul. A sans-I/O state machine: time comes in as `now`, actions go out.
//
// Why the trust window is min(TTL, lock-delay) - margin after the last renew *sent*:
// Consul can invalidate the session at any moment after it last confirmed it (a linked check
// turning critical does so at once, without waiting for the TTL), and once it does, another
// session can take the locks after the lock-delay. A renew that succeeded proves the session was
// valid when Consul handled it, which was after the node sent it. So no other node can hold one
// of this node's locks before send time + lock-delay, nor (by the TTL) before send time + TTL.
// The margin covers clock-rate differences and the time the node needs to stop acting. The node
// self-fences (stops acting as owner of every partition) when the window ends without a new
// successful renew, which is never later than "last successful renew + TTL - margin".
#pragma once

#include <lakemesh/error.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lakemesh::partition {

using clock = std::chrono::steady_clock;

/// Settings of the lease. Plain aggregate; the defaults are Consul's session defaults.
struct lease_config {
    /// Session TTL: Consul invalidates the session unless renewed within it (10s to 86400s).
    std::chrono::milliseconds session_ttl{std::chrono::seconds(15)};
    /// Session lock-delay: how long a lock freed by the session's invalidation stays
    /// unacquirable (Consul's default 15s, at most 60s).
    std::chrono::milliseconds lock_delay{std::chrono::seconds(15)};
    /// Safety margin taken off the trust window (clock-rate differences, the time to stop).
    std::chrono::milliseconds margin{std::chrono::seconds(1)};
    /// How often the session is renewed. Zero: a quarter of the trust window. Must be well
    /// inside the window (see validate()).
    std::chrono::milliseconds renew_interval{0};
    /// Back-off after a failed create: doubles from base up to cap.
    std::chrono::milliseconds retry_base{100};
    std::chrono::milliseconds retry_cap{std::chrono::seconds(5)};
};

/// The trust window: min(session_ttl, lock_delay) - margin.
std::chrono::milliseconds trust_window(const lease_config& c) noexcept;
/// The renew interval in effect (renew_interval, or a quarter of the window).
std::chrono::milliseconds effective_renew_interval(const lease_config& c) noexcept;

/// Checks the settings: the TTL within Consul's [10s, 86400s], the lock-delay within [0, 60s],
/// a positive margin, and a trust window at least twice the renew interval (so a renew that
/// is late by a whole interval does not yet self-fence). Errors: validation_errc with the field
/// named in `diag`.
error_code validate(const lease_config& c, diagnostics& diag);

enum class lease_state : std::uint8_t {
    none,      ///< No session (not created yet, or lost and not recreated yet).
    creating,  ///< A session create is in flight.
    held,      ///< A session exists and the node trusts it until valid_until().
    stopped,   ///< Final: stop() was called.
};

/// What the shell must do after an event.
struct lease_actions {
    /// Send PUT /v1/session/create.
    bool create = false;
    /// Send PUT /v1/session/renew/<renew_id>.
    bool renew = false;
    std::string renew_id;
    /// Sessions to destroy (best effort): one that was given up, so that its locks are freed.
    std::vector<std::string> destroy;
    /// The lease ended: the node must stop acting as owner of every partition at once.
    bool fenced = false;
    /// Call on_timer() at this time (clock::time_point::max(): no timer needed).
    clock::time_point wake_at = clock::time_point::max();
};

/// The lease's rules. Protocol: start(now) asks for a create; report each create and renew
/// with on_created / on_create_failed / on_renewed / on_renew_failed; call on_timer() at
/// wake_at; on_invalidated() when something else shows the session is gone (its locks were
/// freed). Every event answers the actions to take. Thread safety: none; one owner.
class lease_fsm {
  public:
    explicit lease_fsm(const lease_config& cfg);

    lease_actions start(clock::time_point now);
    /// The create sent at `sent_at` answered with session `id`.
    lease_actions on_created(clock::time_point now, clock::time_point sent_at, std::string id);
    lease_actions on_create_failed(clock::time_point now, const error_code& ec);
    /// The renew of `id` sent at `sent_at` succeeded.
    lease_actions on_renewed(clock::time_point now, clock::time_point sent_at,
                             const std::string& id);
    /// The renew of `id` failed. consul_errc::not_found (the session is gone) fences at once;
    /// other errors retry sooner, and the window ends the lease if none gets through.
    lease_actions on_renew_failed(clock::time_point now, const std::string& id,
                                  const error_code& ec);
    /// The session `id` is known to be invalidated (e.g. its locks were freed by Consul).
    lease_actions on_invalidated(clock::time_point now, const std::string& id);
    lease_actions on_timer(clock::time_point now);
    /// Something shows that a create would now succeed (the node's own member check passes,
    /// which a session linked to it needs): a create waiting out its back-off is sent at once,
    /// and one in flight that fails is retried at once instead of after the back-off. Without
    /// this a joining node would hold no session for up to a back-off step after the others
    /// began handing it its share. No-op when a session is held, and before start().
    lease_actions retry_now(clock::time_point now);
    /// Ends the lease for good: answers destroy of the current session (a graceful stop
    /// releases its locks first, so the lock-delay does not apply to them).
    lease_actions stop();

    lease_state state() const noexcept { return state_; }
    /// The session ID while held ("" otherwise).
    const std::string& session() const noexcept { return session_; }
    /// Held and inside the trust window at `now`.
    bool trusted(clock::time_point now) const noexcept {
        return state_ == lease_state::held && now < valid_until_;
    }
    clock::time_point valid_until() const noexcept { return valid_until_; }
    /// Sessions created so far, and self-fencings (windows that ended, sessions lost).
    std::uint64_t sessions_created() const noexcept { return created_; }
    std::uint64_t fencings() const noexcept { return fencings_; }

  private:
    lease_actions give_up(clock::time_point now);
    lease_actions plan(clock::time_point now, lease_actions a);

    lease_config cfg_;
    std::chrono::milliseconds window_;
    std::chrono::milliseconds renew_every_;
    lease_state state_ = lease_state::none;
    std::string session_;
    clock::time_point valid_until_{};
    clock::time_point next_renew_{};
    clock::time_point retry_at_{};
    bool renew_in_flight_ = false;
    /// retry_now() came while a create was in flight: its failure is retried at once.
    bool retry_soon_ = false;
    bool started_ = false;
    unsigned failures_ = 0;
    std::uint64_t created_ = 0;
    std::uint64_t fencings_ = 0;
};

}  // namespace lakemesh::partition
