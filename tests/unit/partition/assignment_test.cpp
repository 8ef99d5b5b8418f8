#include <lakemesh/partition/assignment.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace lakemesh::partition {
namespace {

constexpr std::uint32_t P = 256;

/// n members with random IDs; weighted: weights 1 to 4 (1 to 2 from 16 members on, so that
/// every share stays large enough for whole partitions to be within 10% of it).
std::vector<member> random_members(std::mt19937_64& rng, std::size_t n, bool weighted = false) {
    std::vector<member> out;
    std::uniform_int_distribution<int> w(1, n >= 16 ? 2 : 4);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back({"node-" + std::to_string(rng() % 1000000000), weighted ? w(rng) : 1.0});
    }
    return out;
}

/// The owners as IDs, the form `current` takes.
std::vector<std::string> owners(const assignment& a) {
    std::vector<std::string> out;
    for (std::uint32_t p = 0; p < a.owner.size(); ++p) {
        out.emplace_back(a.owner_id(p));
    }
    return out;
}

std::size_t moves(const assignment& a, const assignment& b) {
    std::size_t n = 0;
    for (std::uint32_t p = 0; p < a.owner.size(); ++p) {
        n += a.owner_id(p) != b.owner_id(p) ? 1 : 0;
    }
    return n;
}

/// Largest relative deviation of a member's count from its weighted share.
double imbalance(const assignment& a) {
    double total = 0;
    for (const auto& m : a.members) {
        total += m.weight;
    }
    double worst = 0;
    for (const auto& m : a.members) {
        const double share = a.owner.size() * m.weight / total;
        const double got = static_cast<double>(a.partitions_of(m.id).size());
        worst = std::max(worst, std::abs(got / share - 1.0));
    }
    return worst;
}

// The key-to-partition mapping is a promise to every caller and every stored byte: these values
// must never change. They were computed independently of this code from the documented
// definition (FNV-1a 64, splitmix64 finaliser, (hash * P) >> 64).
TEST(assignment, key_to_partition_mapping_is_stable_across_versions) {
    EXPECT_EQ(stable_hash(""), 0xc3817c016ba4ff30ull) << std::hex << stable_hash("");
    EXPECT_EQ(stable_hash("user:42"), 0x40a9a038e8d2b15dull) << std::hex << stable_hash("user:42");
    EXPECT_EQ(partition_of("user:42", 256), 64u);
    EXPECT_EQ(partition_of("orders/2026/12/04", 256), 82u);
    EXPECT_EQ(partition_of("", 256), 195u);
    EXPECT_EQ(partition_of("user:42", 1), 0u);
    EXPECT_EQ(partition_of("user:42", 0), 0u);
}

TEST(assignment, keys_spread_evenly_over_partitions) {
    std::vector<int> count(P, 0);
    constexpr int keys = 256 * 1000;
    for (int i = 0; i < keys; ++i) {
        const auto p = partition_of("key-" + std::to_string(i), P);
        ASSERT_LT(p, P);
        ++count[p];
    }
    const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    // 1000 expected per partition; the binomial standard deviation is about 32.
    EXPECT_GT(*lo, 850);
    EXPECT_LT(*hi, 1150);
}

TEST(assignment, balance_within_ten_percent_of_the_weighted_share) {
    std::mt19937_64 rng(7);
    for (std::size_t n : {3u, 5u, 16u}) {
        for (bool weighted : {false, true}) {
            for (int trial = 0; trial < 20; ++trial) {
                auto ms = random_members(rng, n, weighted);
                auto a = assign(ms, P);
                ASSERT_EQ(a.members.size(), n);
                for (std::uint32_t p = 0; p < P; ++p) {
                    ASSERT_TRUE(a.owner[p].has_value()) << p;
                }
                EXPECT_LE(imbalance(a), 0.10) << n << " members, weighted " << weighted;
            }
        }
    }
}

// Equal weights: at most ceil(P/N) + 2% of P for N members before the change. With weights the
// same holds for the mover's weighted share: ceil(its share) + 2% of P.
TEST(assignment, a_join_or_a_leave_moves_at_most_ceil_p_over_n_plus_two_percent) {
    std::mt19937_64 rng(11);
    auto share = [](const std::vector<member>& ms, const std::string& id) {
        double total = 0;
        double mine = 0;
        for (const auto& m : ms) {
            total += m.weight;
            mine += m.id == id ? m.weight : 0.0;
        }
        return P * mine / total;
    };
    for (std::size_t n : {3u, 5u, 16u}) {
        for (bool weighted : {false, true}) {
            const double bound = std::ceil(double(P) / double(n)) + 0.02 * P;
            std::size_t worst_join = 0;
            std::size_t worst_leave = 0;
            for (int trial = 0; trial < 20; ++trial) {
                auto ms = random_members(rng, n + 1, weighted);
                const member newcomer = ms.back();
                ms.pop_back();
                const auto before = assign(ms, P);

                auto joined = ms;
                joined.push_back(newcomer);
                const auto after_join = assign(joined, P, owners(before));
                worst_join = std::max(worst_join, moves(before, after_join));
                EXPECT_LE(moves(before, after_join),
                          std::ceil(share(joined, newcomer.id)) + 0.02 * P);
                // Nearly everything that moved went to the newcomer (a quota's remainder may
                // shift).
                std::size_t elsewhere = 0;
                for (std::uint32_t p = 0; p < P; ++p) {
                    elsewhere += before.owner_id(p) != after_join.owner_id(p) &&
                                         after_join.owner_id(p) != newcomer.id
                                     ? 1
                                     : 0;
                }
                EXPECT_LE(elsewhere, 0.02 * P);
                EXPECT_LE(imbalance(after_join), 0.10);

                auto left = ms;
                const std::string leaver = left[trial % n].id;
                left.erase(left.begin() + trial % static_cast<long>(n));
                const auto after_leave = assign(left, P, owners(before));
                worst_leave = std::max(worst_leave, moves(before, after_leave));
                EXPECT_LE(moves(before, after_leave), std::ceil(share(ms, leaver)) + 0.02 * P);
                // Nearly only the leaver's partitions moved.
                std::size_t others = 0;
                for (std::uint32_t p = 0; p < P; ++p) {
                    others += before.owner_id(p) != after_leave.owner_id(p) &&
                                      before.owner_id(p) != leaver
                                  ? 1
                                  : 0;
                }
                EXPECT_LE(others, 0.02 * P);
                EXPECT_LE(imbalance(after_leave), 0.10);
            }
            if (!weighted) {
                EXPECT_LE(worst_join, bound) << n << " members";
                EXPECT_LE(worst_leave, bound) << n << " members";
            }
        }
    }
}

TEST(assignment, every_node_computes_the_same_result_from_the_same_members) {
    std::mt19937_64 rng(3);
    auto ms = random_members(rng, 7, /*weighted=*/true);
    const auto reference = assign(ms, P);
    // Current owners: a partial, shuffled-looking table.
    auto current = owners(reference);
    for (std::uint32_t p = 0; p < P; p += 5) {
        current[p].clear();
    }
    const auto sticky = assign(ms, P, current);
    for (int node = 0; node < 10; ++node) {
        std::shuffle(ms.begin(), ms.end(), rng);
        EXPECT_EQ(owners(assign(ms, P)), owners(reference));
        EXPECT_EQ(owners(assign(ms, P, current)), owners(sticky));
    }
}

TEST(assignment, a_settled_assignment_is_kept_as_it_is) {
    std::mt19937_64 rng(5);
    for (std::size_t n : {1u, 2u, 3u, 16u, 40u}) {
        auto ms = random_members(rng, n, true);
        const auto a = assign(ms, P);
        EXPECT_EQ(moves(a, assign(ms, P, owners(a))), 0u) << n;
    }
}

TEST(assignment, weights_decide_the_shares_and_zero_gets_nothing) {
    std::vector<member> ms{{"a", 1}, {"b", 2}, {"c", 0}, {"d", 4}, {"e", 1}};
    const auto a = assign(ms, P);
    EXPECT_EQ(a.partitions_of("a").size(), 32u);
    EXPECT_EQ(a.partitions_of("b").size(), 64u);
    EXPECT_TRUE(a.partitions_of("c").empty());
    EXPECT_EQ(a.partitions_of("d").size(), 128u);
    EXPECT_EQ(a.partitions_of("e").size(), 32u);

    // "c" owned some partitions and went to weight 0 (maintenance): it keeps none, and only
    // its partitions move.
    auto current = owners(a);
    for (std::uint32_t p = 0; p < P; p += 16) {
        current[p] = "c";
    }
    const auto b = assign(ms, P, current);
    EXPECT_TRUE(b.partitions_of("c").empty());
    std::size_t moved = 0;
    for (std::uint32_t p = 0; p < P; ++p) {
        moved += current[p] != b.owner_id(p) ? 1 : 0;
    }
    EXPECT_LE(moved, 16u + 2u);
}

TEST(assignment, bad_and_edge_inputs_give_a_clear_answer) {
    // No members, or none with weight: nobody owns anything.
    const auto none = assign({}, P);
    ASSERT_EQ(none.owner.size(), P);
    EXPECT_TRUE(std::none_of(none.owner.begin(), none.owner.end(),
                             [](const auto& o) { return o.has_value(); }));
    const auto nan = assign({{"a", std::nan("")}, {"b", -1}, {"c", INFINITY}}, 8);
    for (const auto& o : nan.owner) {
        EXPECT_FALSE(o.has_value());
    }
    // Zero partitions.
    EXPECT_TRUE(assign({{"a", 1}}, 0).owner.empty());
    // Duplicated IDs count once; unknown current owners are ignored.
    const auto dup = assign({{"a", 1}, {"a", 1}, {"b", 1}}, 4, {"zzz", "a", "", "b"});
    EXPECT_EQ(dup.members.size(), 2u);
    EXPECT_EQ(dup.partitions_of("a").size(), 2u);
    EXPECT_EQ(dup.partitions_of("b").size(), 2u);
    EXPECT_EQ(dup.owner_id(1), "a");
    EXPECT_EQ(dup.owner_id(3), "b");
    // More members than partitions: each partition has one owner, nobody has two.
    std::vector<member> many;
    for (int i = 0; i < 10; ++i) {
        many.push_back({"m" + std::to_string(i), 1});
    }
    const auto few = assign(many, 3);
    for (const auto& m : few.members) {
        EXPECT_LE(few.partitions_of(m.id).size(), 1u);
    }
    EXPECT_EQ(few.owner_id(99), "");
}

TEST(assignment, rendezvous_score_prefers_heavier_members_in_proportion) {
    int heavy = 0;
    constexpr int n = 20000;
    for (std::uint32_t p = 0; p < n; ++p) {
        heavy += rendezvous_score("heavy", 3.0, p) > rendezvous_score("light", 1.0, p) ? 1 : 0;
    }
    EXPECT_NEAR(heavy / double(n), 0.75, 0.02);
}

}  // namespace
}  // namespace lakemesh::partition
