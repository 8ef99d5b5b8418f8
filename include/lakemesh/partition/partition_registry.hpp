// lakemesh::partition::partition_registry: this node's part in a partitioned cluster. It
// registers the node as a member, holds one Consul session, acquires the partitions assigned to
// it (weighted rendezvous hashing over the live members, sticky), hands partitions off
// cooperatively when the assignment moves them, takes over the partitions of nodes that die,
// and fences itself when it cannot renew its session.
//
// Consul data (the prefix defaults to "lakemesh/<cluster>/"):
//   <prefix>config                 the cluster's partition count and epoch (checked at start)
//   <prefix>partitions/<p>/owner   locked (?acquire) by the owner's session; holds the owner's
//                                  node, address, port and the term's fencing token
//   <prefix>partitions/<p>/status  state (acquiring|active|draining|released), owner, token,
//                                  updated_at and user metadata; written only by the lock holder
//   service <member_service>       one instance per node (ID <member_service>-<node_id>, so that
//                                  clusters can share an agent), with a TTL check
//                                  (lakemesh-member:<cluster>:<node_id>) the session is linked
//                                  to, and meta lakemesh-node, lakemesh-weight, lakemesh-cluster
//   service <cluster>-partition    one instance per owned partition (ID <cluster>-partition-<p>,
//                                  meta partition and token) with a TTL check fed by the
//                                  partition probe
// https://developer.hashicorp.com/consul/api-docs/session
// https://developer.hashicorp.com/consul/api-docs/kv
// https://developer.hashicorp.com/consul/api-docs/txn
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/observe/log.hpp>
#include <lakemesh/partition/assignment.hpp>
#include <lakemesh/partition/fence.hpp>
#include <lakemesh/partition/lease_fsm.hpp>
#include <lakemesh/partition/ownership_fsm.hpp>
#include <lakemesh/partition/partition_table.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::consul {
class client;
}
namespace lakemesh::discovery {
class service_cache;
}

namespace lakemesh::partition {

/// Handed to on_releasing: call it once when the partition's in-flight work is finished and
/// flushed, from any thread. Later calls, and calls after the drain timed out or the term was
/// lost, are ignored.
class drain_done {
  public:
    drain_done() = default;
    explicit drain_done(std::function<void()> f)
        : f_(std::make_shared<std::function<void()>>(std::move(f))) {}
    void operator()() const;

  private:
    std::shared_ptr<std::function<void()>> f_;
};

/// The application's side of ownership. Every callback runs on the registry's executor, one at
/// a time. Per partition, a term is: on_acquired(p, t), then exactly one of on_releasing(p, t,
/// done) (a hand-off: keep serving until you call done) or on_lost(p, t) (stop acting on p at
/// once: the lease ended or the lock was taken away). on_lost may also follow on_releasing when
/// the lease ends during the drain. A new term of p starts only after the previous one ended,
/// and its token is larger. Exceptions thrown by callbacks are caught and logged.
struct ownership_callbacks {
    std::function<void(std::uint32_t partition, fencing_token token)> on_acquired;
    std::function<void(std::uint32_t partition, fencing_token token, drain_done done)> on_releasing;
    std::function<void(std::uint32_t partition, fencing_token token)> on_lost;
};

/// Settings of a partition registry. Plain aggregate; every field but cluster and node_id has a
/// usable default.
struct registry_config {
    /// The cluster's name (e.g. "lake"): letters, digits, '-' and '_'. Required.
    std::string cluster;
    /// Partitions of the cluster; fixed for its lifetime (checked against <prefix>config).
    std::uint32_t partitions = 256;
    /// KV prefix, ending in '/'. Empty: "lakemesh/<cluster>/".
    std::string prefix;
    /// This node's member ID: unique in the cluster, stable across restarts. Required.
    std::string node_id;
    /// Where this node serves requests (routed to it by partition_table::route).
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;
    /// This node's relative capacity (advertised as member meta lakemesh-weight).
    double weight = 1.0;
    /// The member service's name. Empty: the cluster's name.
    std::string member_service;
    std::vector<std::string> member_tags;
    std::map<std::string, std::string> member_meta;
    /// The member's TTL check: how often the member probe runs, and its TTL (zero: three
    /// intervals). The session is linked to this check and to the node's serfHealth, so a node
    /// whose process dies loses its session (and its partitions) within the TTL.
    health::duration member_check_interval = std::chrono::seconds(2);
    health::duration member_check_ttl = health::duration::zero();
    /// The member probe. Null: passing while the process runs (and its executor turns).
    health::sync_probe member_probe;
    /// The session: TTL, lock-delay, self-fencing margin, renew interval.
    lease_config lease;
    /// See ownership_config.
    std::uint32_t max_concurrent_moves = 4;
    std::uint32_t max_concurrent_acquires = 32;
    std::chrono::milliseconds drain_timeout{std::chrono::seconds(30)};
    std::chrono::milliseconds orphan_timeout{std::chrono::seconds(10)};
    /// Register each owned partition as an instance of "<cluster>-partition" with a TTL check
    /// fed by partition_probe.
    bool register_partition_services = true;
    /// The partition probe. Null: passing while the partition is owned.
    std::function<health::probe_result(std::uint32_t partition)> partition_probe;
    health::duration partition_check_interval = std::chrono::seconds(10);
    /// The ownership table's blocking query (wait, back-off).
    consul::watch_config table_watch{};
    /// The application's callbacks.
    ownership_callbacks callbacks;

    /// Settings for failover within about two to three seconds of a node's death: member check
    /// every 250 ms with a 1 s TTL, lock-delay 1 s, margin 250 ms, renew every 150 ms, session
    /// TTL 10 s (Consul's minimum). The theoretical bound of a failover is the check TTL plus
    /// the lock-delay plus one watch round trip.
    static registry_config fast_failover(std::string cluster, std::string node_id);
};

/// Checks a configuration without touching the network. Errors: validation_errc::invalid_name
/// (cluster, node_id, member_service), invalid_key (prefix), invalid_argument (zero or more
/// than 65536 partitions, a weight that is not finite or is negative), invalid_duration (the
/// lease, see partition::validate, and non-positive intervals), with the field named in diag.
error_code validate(const registry_config& cfg, diagnostics& diag);

/// Counters, for metrics. Read from any thread.
struct registry_stats {
    std::uint64_t acquisitions = 0;
    std::uint64_t handoffs = 0;  ///< drains started
    std::uint64_t drain_timeouts = 0;
    std::uint64_t terms_lost = 0;
    std::uint64_t sessions_created = 0;
    std::uint64_t self_fencings = 0;
    /// Sessions of an earlier process of this node ID destroyed at start (see async_start).
    std::uint64_t previous_sessions_ended = 0;
    std::uint64_t renew_failures = 0;
    std::size_t owned = 0;
    std::size_t members = 0;
    /// Time from sending the last successful renew to its answer.
    std::chrono::microseconds last_renew_latency{0};
};

/// Thread safety: token_of(), owned_count(), stats(), table() and the partition_table's
/// route() from any thread; everything else on the executor. The consul::client, service_cache
/// and health_scheduler it is given must outlive it and share its executor.
class partition_registry {
  public:
    using executor_type = boost::asio::any_io_executor;

    partition_registry(executor_type ex, consul::client& client, discovery::service_cache& cache,
                       health::health_scheduler& scheduler, registry_config cfg,
                       observe::logger log = {});
    partition_registry(boost::asio::io_context& io, consul::client& client,
                       discovery::service_cache& cache, health::health_scheduler& scheduler,
                       registry_config cfg, observe::logger log = {});
    /// Stops timers and watches; releases nothing (call async_stop first for a graceful stop;
    /// otherwise Consul frees the locks when the session expires).
    ~partition_registry();
    partition_registry(const partition_registry&) = delete;
    partition_registry& operator=(const partition_registry&) = delete;

    executor_type get_executor() const noexcept;
    const registry_config& config() const noexcept;

    /// Joins the cluster: validates the settings, checks (or creates) <prefix>config, registers
    /// the member, creates the session and reads the ownership table. Completes once the node
    /// holds a session and has read the table (it then acquires its share in the background).
    /// Consul being unreachable is not an error: it keeps trying, with back-off. A session left
    /// by an earlier process of the same node ID (name "lakemesh <cluster> <node_id>", e.g. after
    /// kill -9 and a restart quicker than Consul's failure detection) is destroyed before the
    /// new one is created, so its partitions are free after the lock-delay rather than the TTL.
    /// Completion: void(error_code). Errors: validation_errc (settings),
    /// partition_errc::config_mismatch (the cluster stored another partition count or name),
    /// partition_errc::registry_stopped (async_stop before it completed).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_start(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto h) { start(std::move(h)); }, token);
    }

    /// Leaves the cluster gracefully: advertises weight 0, hands every partition off (drain,
    /// then release), destroys the session and deregisters the member. Idempotent.
    /// Completion: void(error_code): partition_errc::handoff_incomplete when some partitions
    /// could not be released within drain_timeout + 5 s (their terms are ended with on_lost).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_stop(Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [this](auto h) { stop(std::move(h)); }, token);
    }

    /// Maintenance: true drains the node without leaving (weight 0: every partition handed
    /// off, the member stays registered); false takes its share back.
    void set_maintenance(bool on);
    bool in_maintenance() const noexcept;

    /// The token of this node's current term of p (0: it does not own p).
    fencing_token token_of(std::uint32_t p) const noexcept;
    /// Partitions this node owns (active or draining).
    std::vector<std::uint32_t> owned() const;
    std::size_t owned_count() const noexcept;
    /// The node holds exactly what it is assigned, nothing in flight.
    bool settled() const;
    /// The live members as last seen.
    std::vector<member> members() const;
    /// The session ID ("" when none).
    std::string session() const;
    /// The ownership table (routing): route(key), at(p), snapshot().
    const partition_table& table() const noexcept;
    partition_table& table() noexcept;
    /// Sets user metadata for the status key of an owned partition (written at its next status
    /// write, and now). False when this node does not own p.
    bool set_partition_meta(std::uint32_t p, std::map<std::string, std::string> meta);
    registry_stats stats() const noexcept;

  private:
    void start(boost::asio::any_completion_handler<void(error_code)> h);
    void stop(boost::asio::any_completion_handler<void(error_code)> h);
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::partition
