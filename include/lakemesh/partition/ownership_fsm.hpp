// What one node does with the partitions of its cluster: which to acquire, which to hand off,
// when a drain is over, what to tell the application. A sans-I/O state machine: the shell
// (partition_registry) feeds it the members, the ownership table read from Consul KV, its
// lease and the outcomes of its requests, and carries out the actions it answers.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/partition/assignment.hpp>
#include <lakemesh/partition/fence.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lakemesh::partition {

using clock = std::chrono::steady_clock;

/// The state of a partition as its status key in Consul KV says (and as the owner writes it).
enum class partition_state : std::uint8_t {
    unknown,    ///< No status key, or one that does not parse.
    acquiring,  ///< Locked by a new owner, which is loading it (on_acquired not returned yet).
    active,     ///< Owned and served.
    draining,   ///< Its owner is handing it off: finishing in-flight work before the release.
    released,   ///< Handed off: free for the next owner (no lock-delay applies).
};

/// "acquiring", "active", "draining", "released", "unknown".
const char* to_string(partition_state s) noexcept;

/// One partition as Consul KV shows it: its owner key (lock and fencing token) and status key.
struct partition_record {
    /// The session holding the owner key's lock; empty when it is free.
    std::string session;
    /// The node that holds (or, when free, last held) the partition, from the owner key.
    std::string node;
    /// Where that node serves requests, from the owner key.
    std::string address;
    std::uint16_t port = 0;
    /// The token of the current (or last) term, from the owner key; 0: never owned.
    fencing_token token = 0;
    /// ModifyIndex of the owner key; 0 when the key does not exist.
    std::uint64_t owner_index = 0;
    /// The status key: its state and ModifyIndex (0 when absent).
    partition_state state = partition_state::unknown;
    std::uint64_t status_index = 0;

    bool locked() const noexcept { return !session.empty(); }
    friend bool operator==(const partition_record&, const partition_record&) = default;
};

/// Settings of the ownership state machine.
struct ownership_config {
    std::uint32_t partitions = 256;
    /// This node's member ID.
    std::string node_id;
    /// Hand-offs (drains and releases) in flight at once. A newcomer therefore receives its
    /// share a few partitions at a time. Zero is treated as 1.
    std::uint32_t max_concurrent_moves = 4;
    /// Acquisitions in flight at once (after a failover many partitions are free together).
    std::uint32_t max_concurrent_acquires = 32;
    /// A drain that takes longer is cut short: the partition is released anyway and reported.
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
    /// A free partition that its assigned node has not taken after this long is taken by any
    /// node (the orphan sweep); rebalancing then moves it where it belongs. Zero: never.
    std::chrono::milliseconds orphan_timeout{std::chrono::seconds(10)};
    /// The lock-delay of the cluster's sessions. A partition freed by an invalidated session
    /// (not released) refuses acquisitions until it has passed since the invalidation, so
    /// after a refusal the next try waits until lock_delay after the partition was seen free
    /// instead of knocking in between.
    std::chrono::milliseconds lock_delay{std::chrono::seconds(15)};
    /// Retries of a failed acquisition (lock-delay, a lost race, an error): the delay doubles
    /// from base up to cap.
    std::chrono::milliseconds acquire_retry_base{50};
    std::chrono::milliseconds acquire_retry_cap{std::chrono::milliseconds(500)};
};

/// What the shell must do.
struct ownership_action {
    enum class kind : std::uint8_t {
        /// Take the lock: a transaction that checks the owner key is unchanged since
        /// `expected_owner_index` (absent when 0), locks it with the session and writes `token`,
        /// and sets the status to acquiring (CAS on `status_index`). Answer with
        /// on_acquire_result().
        acquire,
        /// The partition is this node's for term `token`: call on_acquired(p, token), then write
        /// the status active. Nothing to answer.
        acquired,
        /// Write the status draining, then call on_releasing(p, token, done); answer
        /// on_drained() when done is called (on_drain_timeout is the machine's own).
        start_drain,
        /// Release: a transaction that checks the session still holds the lock, sets the status
        /// released and unlocks the owner key. Answer with on_release_result().
        release,
        /// The term ended without a hand-off (lease lost, lock taken away): call on_lost(p,
        /// token) at once. Nothing to answer.
        lost,
    };
    kind what = kind::acquire;
    std::uint32_t partition = 0;
    fencing_token token = 0;
    /// For acquire: the owner key's ModifyIndex to check (0: must not exist), the status key's.
    std::uint64_t expected_owner_index = 0;
    std::uint64_t status_index = 0;
    /// For release: the drain timed out before the application finished.
    bool drain_timed_out = false;

    friend bool operator==(const ownership_action&, const ownership_action&) = default;
};

/// The node's own view of one partition.
enum class local_state : std::uint8_t {
    idle,       ///< Not this node's.
    acquiring,  ///< Acquisition in flight.
    active,     ///< This node's; the application serves it.
    draining,   ///< Handing off: the application is finishing in-flight work.
    releasing,  ///< Release in flight.
};

/// How an acquisition ended.
enum class acquire_outcome : std::uint8_t {
    acquired,  ///< The transaction committed: the lock is ours with the token asked for.
    refused,   ///< Rolled back: someone else holds it, it changed, or the lock-delay runs.
    failed,    ///< No answer or an error: it may or may not have been applied (the table
               ///< will tell; a lock held by our session is adopted).
};

/// The ownership rules. Every input method answers the actions to take, in order, and
/// wake_at() says when to call on_timer() next. Thread safety: none; one owner.
///
/// Rules:
/// - Nothing is acquired without a trusted lease; losing it ends every term at once (lost).
/// - The target is assign(members, partitions, current owners), the current owners being the
///   nodes holding locks (and this node for what it holds, even before the table shows it).
/// - A partition assigned here and free in the table is acquired (throttled by
///   max_concurrent_acquires, retried with back-off when refused); a lock that our session
///   holds without our knowing (an acquisition whose answer was lost) is adopted.
/// - A partition held here and assigned elsewhere is drained, then released (at most
///   max_concurrent_moves at once).
/// - A partition free for longer than orphan_timeout is acquired by whoever sees it first.
/// - leave() sets this node's weight to 0 locally: everything is handed off; left() tells when
///   nothing is held any more.
class ownership_fsm {
  public:
    explicit ownership_fsm(ownership_config cfg);

    /// The live members (this node among them when its member check passes).
    std::vector<ownership_action> set_members(clock::time_point now, std::vector<member> members);
    /// A new ownership table (one record per partition) and the cluster's current epoch.
    std::vector<ownership_action> set_table(clock::time_point now,
                                            std::vector<partition_record> table,
                                            std::uint32_t epoch);
    /// No acquisition before `until`. The registry calls it when the cluster's epoch is new (it
    /// created the config key, or found one younger than the lock-delay): Consul lost its
    /// state, lock-delays included, while the previous owners may still trust their leases for
    /// up to a lock-delay. set_table() does the same by itself when the epoch changes.
    std::vector<ownership_action> hold_acquisitions_until(clock::time_point now,
                                                          clock::time_point until);
    /// The lease: the session ID now held and trusted, or "" when there is none (which ends
    /// every term this node holds).
    std::vector<ownership_action> set_lease(clock::time_point now, std::string session);

    std::vector<ownership_action> on_acquire_result(clock::time_point now, std::uint32_t p,
                                                    acquire_outcome outcome,
                                                    std::uint64_t owner_index = 0,
                                                    std::uint64_t status_index = 0);
    /// The application finished draining p (its `done` was called).
    std::vector<ownership_action> on_drained(clock::time_point now, std::uint32_t p);
    /// acquired: the release committed (owner_index: the owner key's new ModifyIndex).
    /// refused: the lock was no longer ours, so the term is lost. failed: retried.
    std::vector<ownership_action> on_release_result(clock::time_point now, std::uint32_t p,
                                                    acquire_outcome outcome,
                                                    std::uint64_t owner_index = 0);
    /// A status write of this node for p committed with this ModifyIndex (the next write's CAS).
    std::vector<ownership_action> on_status_written(clock::time_point now, std::uint32_t p,
                                                    std::uint64_t status_index);
    std::vector<ownership_action> on_timer(clock::time_point now);
    /// Hand everything off (graceful stop, maintenance). undo with rejoin().
    std::vector<ownership_action> leave(clock::time_point now);
    std::vector<ownership_action> rejoin(clock::time_point now);

    /// When on_timer() is needed next, after `now` (time_point::max(): not needed).
    clock::time_point wake_at(clock::time_point now) const noexcept;
    /// leave() was called and no partition is held or in flight.
    bool left() const noexcept;
    /// No acquisition or hand-off is pending: this node holds exactly what it is assigned.
    bool settled() const noexcept;

    local_state state_of(std::uint32_t p) const noexcept { return local_[p].state; }
    /// The token of this node's current term of p (0 when it holds none).
    fencing_token token_of(std::uint32_t p) const noexcept;
    /// Partitions held (active or draining).
    std::vector<std::uint32_t> owned() const;
    const std::vector<partition_record>& table() const noexcept { return table_; }
    /// The target of the last plan (empty before members are known).
    const assignment& target() const noexcept { return target_; }
    std::uint32_t epoch() const noexcept { return epoch_; }
    /// The highest token this node has seen for p (its memory across Consul state losses).
    fencing_token highest_seen(std::uint32_t p) const noexcept { return highest_[p]; }
    const ownership_config& config() const noexcept { return cfg_; }

    /// Counters.
    std::uint64_t handoffs() const noexcept { return handoffs_; }
    std::uint64_t drain_timeouts() const noexcept { return drain_timeouts_; }
    std::uint64_t terms_lost() const noexcept { return lost_; }
    std::uint64_t acquisitions() const noexcept { return acquisitions_; }

  private:
    struct local {
        local_state state = local_state::idle;
        fencing_token token = 0;
        /// The session an acquisition in flight was sent with.
        std::string session;
        /// ModifyIndex of the owner and status keys after this node's last write to them.
        std::uint64_t owner_index = 0;
        std::uint64_t status_index = 0;
        clock::time_point since{};
        clock::time_point retry_at{};
        unsigned failures = 0;
        /// A release is in flight.
        bool in_flight = false;
    };

    std::vector<ownership_action> plan(clock::time_point now, std::vector<ownership_action> out);
    void end_term(std::uint32_t p, std::vector<ownership_action>& out);
    fencing_token next_token(std::uint32_t p) const noexcept;
    void back_off(std::uint32_t p, clock::time_point now);
    void release(std::uint32_t p, bool timed_out, std::vector<ownership_action>& out);
    std::size_t count(local_state s) const noexcept;

    ownership_config cfg_;
    std::vector<member> members_;
    std::vector<partition_record> table_;
    std::vector<local> local_;
    std::vector<fencing_token> highest_;
    std::vector<clock::time_point> free_since_;
    std::uint32_t epoch_ = 0;
    /// The last non-zero epoch seen (the config key may be missing for a moment in between).
    std::uint32_t seen_epoch_ = 0;
    clock::time_point quiet_until_{};
    std::string session_;
    bool leaving_ = false;
    assignment target_;
    std::uint64_t handoffs_ = 0;
    std::uint64_t drain_timeouts_ = 0;
    std::uint64_t lost_ = 0;
    std::uint64_t acquisitions_ = 0;
};

}  // namespace lakemesh::partition
