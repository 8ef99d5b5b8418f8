// lakemesh::partition::partition_table: who owns which partition of a cluster, followed by one
// blocking query on the cluster's KV prefix and readable lock-free from any thread. Callers use
// it to route a key to its owner; the partition registry uses it to decide what to do.
#pragma once

#include <lakemesh/consul/watch.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/observe/log.hpp>
#include <lakemesh/partition/fence.hpp>
#include <lakemesh/partition/ownership_fsm.hpp>

#include <boost/asio/any_io_executor.hpp>

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

namespace lakemesh::partition {

/// One partition as the table shows it.
struct partition_owner {
    /// The holder's node ID, address and port; when free, the last holder's.
    std::string node;
    std::string address;
    std::uint16_t port = 0;
    /// The token of the current (or last) term.
    fencing_token token = 0;
    /// Locked by a live session: `node` owns it now. False: free (between owners).
    bool owned = false;
    /// What the owner last wrote to the status key.
    partition_state state = partition_state::unknown;
    /// The status key's user metadata.
    std::map<std::string, std::string> meta;
};

/// An immutable picture of a cluster's partitions.
struct table_snapshot {
    std::uint32_t partitions = 0;
    /// The cluster's epoch (0 before the config key was read).
    std::uint32_t epoch = 0;
    /// X-Consul-Index of the listing.
    std::uint64_t index = 0;
    /// One entry per partition.
    std::vector<partition_owner> owners;
    /// The records the ownership state machine works on (keys' sessions and indexes).
    std::vector<partition_record> records;
    /// The config key was absent (a new cluster, or Consul lost its state).
    bool config_missing = true;
};

/// What route() returns: the partition of a key and, pinned for the view's lifetime, its owner
/// entry. A move-only guard of the calling thread, like discovery::snapshot_view: keep it short
/// and destroy it on the thread that made it.
class route_view {
  public:
    route_view() noexcept = default;
    route_view(route_view&& o) noexcept;
    route_view& operator=(route_view&& o) noexcept;
    route_view(const route_view&) = delete;
    route_view& operator=(const route_view&) = delete;
    ~route_view();

    /// False before the table was read (or for a partition out of range).
    explicit operator bool() const noexcept { return owner_ != nullptr; }
    std::uint32_t partition() const noexcept { return partition_; }
    /// The owner entry (valid while the view lives).
    const partition_owner& owner() const noexcept { return *owner_; }
    const partition_owner* operator->() const noexcept { return owner_; }
    /// Owned by a live node right now.
    bool has_owner() const noexcept { return owner_ != nullptr && owner_->owned; }

  private:
    friend class partition_table;
    const partition_owner* owner_ = nullptr;
    void* reader_ = nullptr;
    std::uint32_t partition_ = 0;
};

struct table_config {
    /// The cluster's KV prefix, ending in '/' (e.g. "lakemesh/lake/").
    std::string prefix;
    std::uint32_t partitions = 256;
    /// The blocking query's settings.
    consul::watch_config watch{};
};

/// Thread safety: route(), at(), snapshot() and partition_of() from any thread; the rest on the
/// executor.
class partition_table {
  public:
    using executor_type = boost::asio::any_io_executor;
    using change_callback = std::function<void(const std::shared_ptr<const table_snapshot>&)>;

    partition_table(executor_type ex, consul::client& c, table_config cfg,
                    observe::logger log = {});
    ~partition_table();
    partition_table(const partition_table&) = delete;
    partition_table& operator=(const partition_table&) = delete;

    /// Starts following the prefix; `on_change` (optional) runs on the executor after every new
    /// snapshot. on_error runs on each failed read.
    void start(change_callback on_change = {},
               std::function<void(const error_code&)> on_error = {});
    void stop();

    /// partition_of(key, partitions): see assignment.hpp.
    std::uint32_t partition_of(std::string_view key) const noexcept;
    /// The owner of the key's partition. Lock-free, no allocation.
    route_view route(std::string_view key) const noexcept;
    /// The owner of partition p.
    route_view at(std::uint32_t p) const noexcept;
    /// The current snapshot (null before the first read).
    std::shared_ptr<const table_snapshot> snapshot() const;
    /// Reads the prefix again now (e.g. after a "not owner" answer), without waiting for the
    /// watch. The snapshot is replaced when the read answers.
    void refresh();
    /// Consul is known to answer again: the watch, if waiting out an error backoff, reads now.
    void retry_now();
    const table_config& config() const noexcept;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::partition
