#include <lakemesh/partition/assignment.hpp>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <unordered_map>

namespace lakemesh::partition {

namespace {

constexpr std::uint64_t fnv_offset = 14695981039346656037ull;
constexpr std::uint64_t fnv_prime = 1099511628211ull;

std::uint64_t fnv1a(std::string_view bytes) noexcept {
    std::uint64_t h = fnv_offset;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= fnv_prime;
    }
    return h;
}

std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double usable_weight(double w) noexcept {
    return std::isfinite(w) && w > 0 ? w : 0.0;
}

double score_from_hash(std::uint64_t member_hash, double weight, std::uint32_t p) noexcept {
    // The pair's hash: the member's hash and the partition mixed together.
    const std::uint64_t x = splitmix64(member_hash ^ splitmix64(p));
    // u in (0, 1), never 0 or 1: 53 bits and half a step.
    const double u = (static_cast<double>(x >> 11) + 0.5) * 0x1p-53;
    return -weight / std::log(u);
}

}  // namespace

std::uint64_t stable_hash(std::string_view bytes) noexcept {
    return splitmix64(fnv1a(bytes));
}

std::uint32_t partition_of(std::string_view key, std::uint32_t partitions) noexcept {
    // (h * partitions) >> 64 from 32-bit halves: exact, as partitions < 2^32.
    const std::uint64_t h = stable_hash(key);
    const std::uint64_t high = (h >> 32) * partitions;
    const std::uint64_t low = (h & 0xffffffffu) * partitions;
    return static_cast<std::uint32_t>((high + (low >> 32)) >> 32);
}

double rendezvous_score(std::string_view member_id, double weight,
                        std::uint32_t partition) noexcept {
    return score_from_hash(stable_hash(member_id), usable_weight(weight), partition);
}

std::string_view assignment::owner_id(std::uint32_t p) const noexcept {
    if (p >= owner.size() || !owner[p]) {
        return {};
    }
    return members[*owner[p]].id;
}

std::vector<std::uint32_t> assignment::partitions_of(std::string_view member_id) const {
    std::vector<std::uint32_t> out;
    for (std::uint32_t p = 0; p < owner.size(); ++p) {
        if (owner[p] && members[*owner[p]].id == member_id) {
            out.push_back(p);
        }
    }
    return out;
}

assignment assign(std::vector<member> members, std::uint32_t partitions,
                  const std::vector<std::string>& current) {
    assignment out;
    std::sort(members.begin(), members.end(),
              [](const member& a, const member& b) { return a.id < b.id; });
    members.erase(std::unique(members.begin(), members.end(),
                              [](const member& a, const member& b) { return a.id == b.id; }),
                  members.end());
    out.members = std::move(members);
    out.owner.assign(partitions, std::nullopt);
    const auto n = static_cast<std::uint32_t>(out.members.size());

    double total = 0;
    for (const auto& m : out.members) {
        total += usable_weight(m.weight);
    }
    if (n == 0 || partitions == 0 || total <= 0) {
        return out;
    }

    // Quotas by largest remainder: floor(share) each, and the partitions left over go one each
    // to the members with the largest fractional parts (ties: heavier, then lower ID). They add
    // up to the partition count.
    std::vector<std::uint32_t> quota(n), load(n, 0);
    std::vector<double> weight(n), fraction(n);
    std::unordered_map<std::string_view, std::uint32_t> index_of;
    std::uint32_t given = 0;
    for (std::uint32_t i = 0; i < n; ++i) {
        weight[i] = usable_weight(out.members[i].weight);
        const double share = static_cast<double>(partitions) * weight[i] / total;
        quota[i] = static_cast<std::uint32_t>(std::floor(share));
        fraction[i] = share - quota[i];
        given += quota[i];
        index_of.emplace(out.members[i].id, i);
    }
    std::vector<std::uint32_t> by_remainder;
    for (std::uint32_t i = 0; i < n; ++i) {
        if (weight[i] > 0) {
            by_remainder.push_back(i);
        }
    }
    std::sort(by_remainder.begin(), by_remainder.end(), [&](std::uint32_t a, std::uint32_t b) {
        return std::tie(fraction[b], weight[b], a) < std::tie(fraction[a], weight[a], b);
    });
    for (std::uint32_t k = 0; given < partitions; ++k, ++given) {
        ++quota[by_remainder[k % by_remainder.size()]];
    }

    // Current owners that are members with weight keep their partitions for now.
    auto& owner = out.owner;
    for (std::uint32_t p = 0; p < partitions && p < current.size(); ++p) {
        if (current[p].empty()) {
            continue;
        }
        auto it = index_of.find(current[p]);
        if (it != index_of.end() && weight[it->second] > 0) {
            owner[p] = it->second;
            ++load[it->second];
        }
    }

    std::vector<std::uint64_t> member_hash(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        member_hash[i] = stable_hash(out.members[i].id);
    }
    auto score = [&](std::uint32_t m, std::uint32_t p) {
        return score_from_hash(member_hash[m], weight[m], p);
    };

    // A member above its quota frees its lowest-scored partitions.
    for (std::uint32_t m = 0; m < n; ++m) {
        if (load[m] <= quota[m]) {
            continue;
        }
        std::vector<std::pair<double, std::uint32_t>> mine;
        for (std::uint32_t p = 0; p < partitions; ++p) {
            if (owner[p] == m) {
                mine.emplace_back(score(m, p), p);
            }
        }
        std::sort(mine.begin(), mine.end());  // lowest score first; ties: lower partition
        for (std::uint32_t k = 0; k < load[m] - quota[m]; ++k) {
            owner[mine[k].second].reset();
        }
        load[m] = quota[m];
    }

    // Now every member is at or below its quota and the free partitions are exactly the
    // missing ones. They go to members below quota, best (partition, member) score first:
    // scanning the sorted pairs once picks the best remaining pair each time, because the
    // free partitions and the members below quota only ever shrink.
    struct pair {
        double score;
        std::uint32_t p;
        std::uint32_t m;
    };
    std::vector<pair> pairs;
    for (std::uint32_t m = 0; m < n; ++m) {
        for (std::uint32_t p = 0; p < partitions && load[m] < quota[m]; ++p) {
            if (!owner[p]) {
                pairs.push_back({score(m, p), p, m});
            }
        }
    }
    // Members are sorted by ID, so ordering by index breaks ties by ID.
    std::sort(pairs.begin(), pairs.end(), [](const pair& a, const pair& b) {
        return std::tie(b.score, a.p, a.m) < std::tie(a.score, b.p, b.m);
    });
    for (const auto& pr : pairs) {
        if (!owner[pr.p] && load[pr.m] < quota[pr.m]) {
            owner[pr.p] = pr.m;
            ++load[pr.m];
        }
    }
    return out;
}

}  // namespace lakemesh::partition
