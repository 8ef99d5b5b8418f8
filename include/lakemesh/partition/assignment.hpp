// Which member of a cluster should own which partition: weighted rendezvous hashing made sticky
// and balanced. Pure functions of their inputs, so every node that sees the same members and the
// same ownership computes the same assignment; no clock, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::partition {

/// A 64-bit hash that never changes between versions or platforms: FNV-1a over the bytes,
/// then the splitmix64 finaliser (so that short keys spread over all 64 bits).
std::uint64_t stable_hash(std::string_view bytes) noexcept;

/// The partition of a key: stable_hash(key) scaled to [0, partitions) by a 128-bit multiply
/// ((hash * partitions) >> 64). The same key maps to the same partition in every version of
/// lakemesh; the mapping changes only with the partition count. partitions == 0 answers 0.
std::uint32_t partition_of(std::string_view key, std::uint32_t partitions) noexcept;

/// A live member of the cluster as the assignment sees it.
struct member {
    /// Unique member ID (the member service instance's ID).
    std::string id;
    /// Relative capacity: a member of weight 2 gets twice the partitions of one of weight 1.
    /// Zero (a node in maintenance, or draining before it leaves) gets none. Negative, NaN and
    /// infinite weights count as zero.
    double weight = 1.0;

    friend bool operator==(const member&, const member&) = default;
};

/// The rendezvous score of `member_id` (of weight `weight`) for `partition`: -weight / ln(u),
/// u uniform in (0, 1) from stable_hash. The member with the highest score is the partition's
/// natural owner; with weights, a member wins a share of partitions proportional to its weight.
double rendezvous_score(std::string_view member_id, double weight,
                        std::uint32_t partition) noexcept;

/// The outcome: for each partition, the index (into `members`) of the member that should own
/// it, or nullopt when there are no members with weight.
struct assignment {
    /// The members as given, sorted by ID, duplicates (same ID) dropped.
    std::vector<member> members;
    std::vector<std::optional<std::uint32_t>> owner;

    /// The member ID assigned to partition p ("" when none).
    std::string_view owner_id(std::uint32_t p) const noexcept;
    /// Partitions assigned to the member with this ID.
    std::vector<std::uint32_t> partitions_of(std::string_view member_id) const;
};

/// Assigns `partitions` partitions to `members`.
///
/// `current[p]` is the member ID that owns partition p now ("" or absent: nobody). A current
/// owner that is still a member with weight keeps its partitions as long as it stays within its
/// quota, so a join or leave moves only what it must:
///
/// 1. Each member's share is partitions * weight / total weight. Its quota is floor(share),
///    plus one for the members with the largest fractional parts until the quotas add up to
///    the partition count (ties: the heavier member, then the lower ID).
/// 2. Partitions of departed members (and of members of weight 0) are free. A member above its
///    quota frees its partitions with the lowest rendezvous scores.
/// 3. Free partitions go to members below their quota, the best (partition, member)
///    rendezvous score first. Every member then holds exactly its quota.
///
/// With no current owners this is weighted rendezvous hashing with bounded loads. A join moves
/// only the newcomer's quota (all of it to the newcomer), a leave only the leaver's partitions
/// (plus the odd partition when the quotas' remainders shift). The result depends only on the
/// set of members and on `current`, not on the order of `members`; ties between scores are
/// broken by partition number, then ID. Cost: O(P * N + F * N log(F * N)) for P partitions,
/// N members and F free partitions.
assignment assign(std::vector<member> members, std::uint32_t partitions,
                  const std::vector<std::string>& current = {});

}  // namespace lakemesh::partition
