// Fencing tokens: each ownership term of a partition gets a token greater than every token given
// out for that partition before, so that whoever receives a request tagged with a token can
// refuse one from an owner that has since been replaced.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace lakemesh::partition {

/// A fencing token: the registry's epoch in the upper 32 bits and the partition's term in the
/// lower 32.
///
/// The term counts the acquisitions of one partition: it is kept in the partition's owner key
/// in Consul KV, and an acquisition writes term + 1 in the same transaction that takes the lock,
/// guarded by the key's ModifyIndex (so two owners can never get the same term). The epoch is
/// kept in the cluster's config key: it is set when that key is created, to the larger of the
/// Unix time in seconds and one more than the highest epoch any node has seen. When Consul loses
/// its state (raft index and LockIndex start over, every key is gone), the first node to notice
/// recreates the config key with a new, larger epoch, so the tokens of the new terms compare
/// greater than every token issued before, even though the terms start over at 1. (The raft
/// index or LockIndex alone would go backwards there; the Unix time keeps the epoch increasing
/// even when every node restarted with Consul and nobody remembers the old epoch.)
using fencing_token = std::uint64_t;

constexpr fencing_token make_token(std::uint32_t epoch, std::uint32_t term) noexcept {
    return (static_cast<std::uint64_t>(epoch) << 32) | term;
}
constexpr std::uint32_t token_epoch(fencing_token t) noexcept {
    return static_cast<std::uint32_t>(t >> 32);
}
constexpr std::uint32_t token_term(fencing_token t) noexcept {
    return static_cast<std::uint32_t>(t);
}

/// The receiving side's check: accepts a request for a partition only if its token is not older
/// than the newest token it has accepted for that partition.
///
/// Thread safety: admit() and newest() are lock-free and may be called from any thread.
class fence {
  public:
    /// A fence for partitions [0, partitions).
    explicit fence(std::uint32_t partitions);

    /// True when `token` is at least the newest token accepted for partition `p` (which then
    /// becomes `token`). False, counted in rejections(), for an older token, for token 0 (no
    /// token) and for a partition out of range.
    bool admit(std::uint32_t p, fencing_token token) noexcept;
    /// The newest token accepted for `p` (0: none, or out of range).
    fencing_token newest(std::uint32_t p) const noexcept;
    std::uint64_t rejections() const noexcept {
        return rejections_.load(std::memory_order_relaxed);
    }
    std::uint32_t partitions() const noexcept { return partitions_; }

  private:
    std::uint32_t partitions_;
    std::unique_ptr<std::atomic<fencing_token>[]> newest_;
    std::atomic<std::uint64_t> rejections_{0};
};

}  // namespace lakemesh::partition
