// ownership_fsm driven against a simulated Consul KV (locks, sessions, lock-delay, ModifyIndex)
// with a manual clock: several nodes, their actions applied in order, and the invariant that no
// partition is ever active on two nodes checked after every step.
#include <lakemesh/partition/ownership_fsm.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace lakemesh::partition {
namespace {

using namespace std::chrono_literals;
using kind = ownership_action::kind;

constexpr std::uint32_t P = 64;

/// The part of Consul KV the registry uses: one owner key and one status key per partition.
struct fake_kv {
    std::vector<partition_record> records = std::vector<partition_record>(P);
    std::set<std::string> sessions;
    std::vector<clock::time_point> lock_delay_until = std::vector<clock::time_point>(P);
    std::uint64_t index = 100;
    std::uint32_t epoch = 7;
    clock::duration lock_delay = 1s;

    acquire_outcome acquire(clock::time_point now, const ownership_action& a,
                            const std::string& session, const std::string& node,
                            std::uint64_t& owner_index) {
        auto& r = records[a.partition];
        if (r.owner_index != a.expected_owner_index || r.locked() || !sessions.count(session) ||
            now < lock_delay_until[a.partition]) {
            return acquire_outcome::refused;
        }
        r.session = session;
        r.node = node;
        r.token = a.token;
        r.owner_index = ++index;
        r.state = partition_state::acquiring;
        r.status_index = index;
        owner_index = r.owner_index;
        return acquire_outcome::acquired;
    }
    acquire_outcome release(const ownership_action& a, const std::string& session,
                            std::uint64_t& owner_index) {
        auto& r = records[a.partition];
        if (r.session != session) {
            return acquire_outcome::refused;
        }
        r.session.clear();
        r.owner_index = ++index;
        r.state = partition_state::released;
        r.status_index = index;
        owner_index = r.owner_index;
        return acquire_outcome::acquired;
    }
    /// Consul invalidating a session (TTL, linked check, destroy): its locks are freed and the
    /// lock-delay starts.
    void invalidate(clock::time_point now, const std::string& session) {
        sessions.erase(session);
        for (std::uint32_t p = 0; p < P; ++p) {
            if (records[p].session == session) {
                records[p].session.clear();
                records[p].owner_index = ++index;
                lock_delay_until[p] = now + lock_delay;
            }
        }
    }
};

struct node {
    std::string id;
    ownership_fsm fsm;
    std::string session;
    bool alive = true;
    /// The weight its member registration advertises (0 while it leaves).
    double weight = 1.0;
    /// Drains the application has not finished yet (it finishes them when `drain_instantly`).
    std::set<std::uint32_t> draining;
    bool drain_instantly = true;
    /// Terms as the application saw them: acquired minus released/lost.
    std::map<std::uint32_t, fencing_token> serving;
    std::vector<ownership_action> seen;
};

ownership_config config_for(const std::string& id) {
    ownership_config c;
    c.partitions = P;
    c.node_id = id;
    c.max_concurrent_moves = 2;
    c.drain_timeout = 5s;
    c.orphan_timeout = 10s;
    c.lock_delay = 1s;
    return c;
}

class ownership_sim : public ::testing::Test {
  protected:
    clock::time_point now{std::chrono::hours(1)};
    fake_kv kv;
    std::deque<node> nodes;
    int session_seq = 0;
    std::size_t max_moves_seen = 0;

    node& add(const std::string& id) {
        nodes.push_back(node{id, ownership_fsm(config_for(id))});
        auto& n = nodes.back();
        n.session = "session-" + std::to_string(++session_seq);
        kv.sessions.insert(n.session);
        handle(n, n.fsm.set_lease(now, n.session));
        return n;
    }
    node& at(const std::string& id) {
        for (auto& n : nodes) {
            if (n.id == id) {
                return n;
            }
        }
        throw std::runtime_error("no node " + id);
    }
    std::vector<member> members() const {
        std::vector<member> out;
        for (const auto& n : nodes) {
            if (n.alive) {
                out.push_back({n.id, n.weight});
            }
        }
        return out;
    }

    void handle(node& n, std::vector<ownership_action> actions) {
        std::deque<ownership_action> queue(actions.begin(), actions.end());
        while (!queue.empty()) {
            auto a = queue.front();
            queue.pop_front();
            n.seen.push_back(a);
            std::vector<ownership_action> more;
            switch (a.what) {
                case kind::acquire: {
                    std::uint64_t idx = 0;
                    auto out = kv.acquire(now, a, n.session, n.id, idx);
                    more = n.fsm.on_acquire_result(now, a.partition, out, idx, idx);
                    break;
                }
                case kind::acquired:
                    ASSERT_EQ(n.serving.count(a.partition), 0u);
                    n.serving[a.partition] = a.token;
                    break;
                case kind::start_drain:
                    n.draining.insert(a.partition);
                    if (n.drain_instantly) {
                        n.draining.erase(a.partition);
                        more = n.fsm.on_drained(now, a.partition);
                    }
                    break;
                case kind::release: {
                    // The application has stopped serving by the time of the release.
                    n.serving.erase(a.partition);
                    std::uint64_t idx = 0;
                    auto out = kv.release(a, n.session, idx);
                    more = n.fsm.on_release_result(now, a.partition, out, idx);
                    break;
                }
                case kind::lost:
                    ASSERT_EQ(n.serving.count(a.partition), 1u) << a.partition;
                    n.serving.erase(a.partition);
                    break;
            }
            queue.insert(queue.end(), more.begin(), more.end());
            check_invariants();
        }
    }

    /// Every node sees the members and the table (as a watch would deliver them).
    void broadcast() {
        for (int round = 0; round < 50; ++round) {
            const auto before = kv.index;
            for (auto& n : nodes) {
                if (!n.alive) {
                    continue;
                }
                handle(n, n.fsm.set_members(now, members()));
                handle(n, n.fsm.set_table(now, kv.records, kv.epoch));
            }
            if (kv.index == before) {
                return;
            }
        }
        FAIL() << "no quiescence";
    }

    void advance(clock::duration d, clock::duration step = 50ms) {
        const auto end = now + d;
        while (now < end) {
            now = std::min(end, now + step);
            for (auto& n : nodes) {
                if (n.alive) {
                    handle(n, n.fsm.on_timer(now));
                }
            }
            broadcast();
        }
    }

    void check_invariants() {
        std::map<std::uint32_t, std::string> active;
        for (const auto& n : nodes) {
            std::size_t moves = 0;
            for (std::uint32_t p = 0; p < P; ++p) {
                const auto s = n.fsm.state_of(p);
                moves += s == local_state::draining || s == local_state::releasing ? 1 : 0;
                if (n.serving.count(p)) {
                    // Two nodes serving the same partition at the same instant: never.
                    ASSERT_TRUE(active.emplace(p, n.id).second)
                        << "partition " << p << " served by " << active[p] << " and " << n.id;
                    // Nobody else holds the lock of a partition served here. (Its own lock can
                    // be gone for a moment: when Consul loses its state, a node serves until
                    // its lease tells it.)
                    const auto& holder = kv.records[p].session;
                    EXPECT_TRUE(holder.empty() || holder == n.session) << p << " at " << n.id;
                    if (holder == n.session) {
                        EXPECT_EQ(kv.records[p].token, n.serving.at(p));
                    }
                }
            }
            max_moves_seen = std::max(max_moves_seen, moves);
        }
    }

    std::size_t serving_count(const std::string& id) { return at(id).serving.size(); }
    /// Every partition served by exactly one node.
    bool fully_owned() {
        std::size_t total = 0;
        for (const auto& n : nodes) {
            total += n.serving.size();
        }
        return total == P;
    }
};

TEST_F(ownership_sim, three_nodes_own_every_partition_exactly_once_and_balanced) {
    add("a");
    add("b");
    add("c");
    broadcast();
    EXPECT_TRUE(fully_owned());
    for (const auto* id : {"a", "b", "c"}) {
        EXPECT_GE(serving_count(id), 21u);
        EXPECT_LE(serving_count(id), 22u);
        EXPECT_TRUE(at(id).fsm.settled());
    }
    // First terms of the epoch.
    for (std::uint32_t p = 0; p < P; ++p) {
        EXPECT_EQ(kv.records[p].token, make_token(7, 1));
        EXPECT_EQ(kv.records[p].state, partition_state::acquiring);
    }
}

TEST_F(ownership_sim, a_join_is_handed_off_cooperatively_a_few_at_a_time) {
    add("a");
    add("b");
    add("c");
    broadcast();
    const auto before = kv.records;
    for (auto& n : nodes) {
        n.drain_instantly = false;  // the application takes its time
    }
    add("d");
    broadcast();
    // Owners started draining, no more than max_concurrent_moves each; nothing moved yet.
    EXPECT_LE(max_moves_seen, 2u);
    EXPECT_EQ(serving_count("d"), 0u);
    std::size_t draining = 0;
    for (auto& n : nodes) {
        draining += n.draining.size();
        for (auto p : n.draining) {
            EXPECT_EQ(n.fsm.state_of(p), local_state::draining);
            EXPECT_TRUE(n.serving.count(p)) << "a draining partition is still served";
        }
    }
    EXPECT_GE(draining, 1u);
    // The application finishes its drains as they come.
    for (int i = 0; i < 200 && !(fully_owned() && serving_count("d") >= 16); ++i) {
        for (auto& n : nodes) {
            auto ps = n.draining;
            n.draining.clear();
            for (auto p : ps) {
                handle(n, n.fsm.on_drained(now, p));
            }
        }
        broadcast();
    }
    EXPECT_TRUE(fully_owned());
    EXPECT_EQ(serving_count("d"), 16u);
    EXPECT_LE(max_moves_seen, 2u);
    std::size_t moved = 0;
    for (std::uint32_t p = 0; p < P; ++p) {
        if (kv.records[p].node != before[p].node) {
            ++moved;
            EXPECT_EQ(kv.records[p].node, "d");
            // A hand-off is a new term: a larger token.
            EXPECT_GT(kv.records[p].token, before[p].token);
            // The previous owner drained before it released.
            bool drained = false;
            for (const auto& a : at(before[p].node).seen) {
                drained |= a.what == kind::start_drain && a.partition == p;
                if (a.what == kind::release && a.partition == p) {
                    EXPECT_TRUE(drained);
                    EXPECT_FALSE(a.drain_timed_out);
                }
            }
        }
    }
    EXPECT_EQ(moved, 16u);  // only the newcomer's share
}

TEST_F(ownership_sim, a_graceful_leave_hands_everything_off) {
    add("a");
    add("b");
    add("c");
    broadcast();
    auto& c = at("c");
    // Leaving: c advertises weight 0 (its member meta), then hands off.
    c.weight = 0;
    handle(c, c.fsm.leave(now));
    broadcast();
    EXPECT_TRUE(c.fsm.left());
    EXPECT_EQ(serving_count("c"), 0u);
    EXPECT_EQ(serving_count("a") + serving_count("b"), P);
    EXPECT_EQ(c.fsm.terms_lost(), 0u);
    EXPECT_EQ(at("a").fsm.terms_lost() + at("b").fsm.terms_lost(), 0u);
}

TEST_F(ownership_sim, a_dead_node_fails_over_after_the_lock_delay) {
    add("a");
    add("b");
    add("c");
    broadcast();
    const auto before = kv.records;
    auto& c = at("c");
    const auto held = c.serving.size();
    c.alive = false;
    c.serving.clear();  // a dead process serves nothing
    // Consul invalidates c's session (its member check went critical); the others drop it
    // from the members.
    kv.invalidate(now, c.session);
    broadcast();
    // Locks are in lock-delay: nothing re-owned yet.
    EXPECT_EQ(serving_count("a") + serving_count("b"), P - held);
    advance(900ms);
    EXPECT_EQ(serving_count("a") + serving_count("b"), P - held);
    // The survivors try again as the lock-delay ends, not at some back-off step after it.
    advance(150ms);
    EXPECT_EQ(serving_count("a") + serving_count("b"), P);
    for (std::uint32_t p = 0; p < P; ++p) {
        // c's partitions start new terms; the others keep theirs.
        EXPECT_EQ(kv.records[p].token, before[p].token + (before[p].node == "c" ? 1 : 0)) << p;
    }
}

TEST_F(ownership_sim, renew_failure_mid_handoff_ends_the_term_as_lost_not_released) {
    add("a");
    add("b");
    broadcast();
    for (auto& n : nodes) {
        n.drain_instantly = false;
    }
    add("c");
    broadcast();
    auto& a = at("a");
    ASSERT_FALSE(a.draining.empty());
    const auto p = *a.draining.begin();
    const auto term = a.serving.at(p);
    // a's lease ends (it could not renew within its window): every term ends at once.
    handle(a, a.fsm.set_lease(now, ""));
    EXPECT_TRUE(a.serving.empty());
    EXPECT_EQ(a.fsm.state_of(p), local_state::idle);
    const auto& last = a.seen.back();
    EXPECT_EQ(last.what, kind::lost);
    // The drain's late completion releases nothing.
    auto after = a.fsm.on_drained(now, p);
    EXPECT_TRUE(after.empty());
    // Consul invalidates the session it gave up; after the lock-delay the partition goes on.
    kv.invalidate(now, a.session);
    a.session = "session-" + std::to_string(++session_seq);
    kv.sessions.insert(a.session);
    handle(a, a.fsm.set_lease(now, a.session));
    for (auto& n : nodes) {
        n.drain_instantly = true;
        auto ps = n.draining;
        n.draining.clear();
        for (auto q : ps) {
            handle(n, n.fsm.on_drained(now, q));
        }
    }
    advance(2s);
    EXPECT_TRUE(fully_owned());
    EXPECT_GT(kv.records[p].token, term);
}

TEST_F(ownership_sim, a_drain_that_overruns_is_released_anyway_and_reported) {
    add("a");
    broadcast();
    auto& a = at("a");
    a.drain_instantly = false;
    add("b");
    broadcast();
    ASSERT_FALSE(a.draining.empty());
    advance(5100ms);
    bool timed_out = false;
    for (const auto& act : a.seen) {
        timed_out |= act.what == kind::release && act.drain_timed_out;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_GE(a.fsm.drain_timeouts(), 1u);
    EXPECT_GE(serving_count("b"), 1u);
}

TEST_F(ownership_sim, an_orphan_nobody_takes_is_swept_up_after_the_orphan_timeout) {
    add("a");
    add("b");
    broadcast();
    // b stops acting (stuck) but stays a member; one of its partitions is freed.
    auto& b = at("b");
    b.alive = false;
    const auto p = b.serving.begin()->first;
    kv.records[p].session.clear();
    kv.records[p].owner_index = ++kv.index;
    b.serving.erase(p);
    for (int i = 0; i < 3; ++i) {
        auto& a = at("a");
        handle(a, a.fsm.set_members(now, {{"a", 1}, {"b", 1}}));
        handle(a, a.fsm.set_table(now, kv.records, kv.epoch));
    }
    EXPECT_FALSE(kv.records[p].locked());
    // Not a's to take yet.
    auto& a = at("a");
    EXPECT_GT(a.fsm.wake_at(now), now);
    for (int i = 0; i < 105; ++i) {
        now += 100ms;
        handle(a, a.fsm.on_timer(now));
        handle(a, a.fsm.set_table(now, kv.records, kv.epoch));
    }
    EXPECT_EQ(kv.records[p].session, a.session);
    EXPECT_EQ(a.serving.count(p), 1u);
}

TEST_F(ownership_sim, an_acquisition_whose_answer_was_lost_is_adopted_from_the_table) {
    auto& a = add("a");
    EXPECT_TRUE(a.fsm.set_table(now, kv.records, kv.epoch).empty());  // no members yet
    auto acts = a.fsm.set_members(now, {{"a", 1}});
    ASSERT_FALSE(acts.empty());
    ASSERT_EQ(acts[0].what, kind::acquire);
    // The transaction commits but its answer is lost.
    std::uint64_t idx = 0;
    ASSERT_EQ(kv.acquire(now, acts[0], a.session, "a", idx), acquire_outcome::acquired);
    auto more = a.fsm.on_acquire_result(now, acts[0].partition, acquire_outcome::failed);
    EXPECT_EQ(a.fsm.state_of(acts[0].partition), local_state::idle);
    more = a.fsm.set_table(now, kv.records, kv.epoch);
    auto it = std::find_if(more.begin(), more.end(), [&](const ownership_action& x) {
        return x.what == kind::acquired && x.partition == acts[0].partition;
    });
    ASSERT_NE(it, more.end());
    EXPECT_EQ(it->token, acts[0].token);
    EXPECT_EQ(a.fsm.state_of(acts[0].partition), local_state::active);
}

TEST_F(ownership_sim, after_consul_loses_its_state_new_terms_outrank_every_old_token) {
    add("a");
    add("b");
    broadcast();
    // Some history: a few hand-offs raise the terms.
    add("c");
    broadcast();
    std::vector<fencing_token> old(P);
    for (std::uint32_t p = 0; p < P; ++p) {
        old[p] = kv.records[p].token;
    }
    // Consul restarts without its data: keys and sessions gone, indexes start over, and the
    // registry recreates its config key with a new epoch. Each node learns it on its own
    // schedule (here: b's renew fails first, a still trusts its lease for a while).
    kv = fake_kv{};
    kv.index = 5;
    kv.epoch = 8;
    auto renew_fails = [&](node& n) {
        n.session = "session-" + std::to_string(++session_seq);
        kv.sessions.insert(n.session);
        handle(n, n.fsm.set_lease(now, n.session));
        EXPECT_TRUE(n.serving.empty());
    };
    renew_fails(at("b"));
    broadcast();
    // b must not take a's partitions while a may still act on them: nothing is acquired within
    // a lock-delay of the new epoch.
    EXPECT_TRUE(at("b").serving.empty());
    advance(300ms);
    renew_fails(at("a"));
    renew_fails(at("c"));
    advance(500ms);
    EXPECT_EQ(at("a").serving.size() + at("b").serving.size() + at("c").serving.size(), 0u);
    advance(300ms);
    // Even without a new epoch, the nodes' memory of the highest token keeps terms rising.
    kv = fake_kv{};
    kv.index = 3;
    kv.epoch = 8;
    std::vector<fencing_token> before(P);
    for (std::uint32_t p = 0; p < P; ++p) {
        before[p] = 0;
        for (auto& n : nodes) {
            before[p] = std::max(before[p], n.fsm.highest_seen(p));
        }
    }
    for (auto& n : nodes) {
        n.session = "session-" + std::to_string(++session_seq);
        kv.sessions.insert(n.session);
        handle(n, n.fsm.set_lease(now, n.session));
    }
    broadcast();
    ASSERT_TRUE(fully_owned());
    for (std::uint32_t p = 0; p < P; ++p) {
        EXPECT_GT(kv.records[p].token, before[p]) << p;
    }
}

TEST_F(ownership_sim, the_fence_rejects_a_stale_owners_write) {
    add("a");
    add("b");
    broadcast();
    fence f(P);
    auto& a = at("a");
    const auto p = a.serving.begin()->first;
    const auto old_token = a.serving.at(p);
    EXPECT_TRUE(f.admit(p, old_token));
    // a is cut off and fences itself; b takes p after the lock-delay.
    handle(a, a.fsm.set_lease(now, ""));
    a.alive = false;  // and its member check fails: it leaves the members
    kv.invalidate(now, a.session);
    advance(1500ms);
    auto& b = at("b");
    ASSERT_EQ(b.serving.count(p), 1u);
    EXPECT_TRUE(f.admit(p, b.serving.at(p)));
    // A write a sent before it stopped arrives late: refused.
    EXPECT_FALSE(f.admit(p, old_token));
    EXPECT_EQ(f.rejections(), 1u);
    EXPECT_TRUE(f.admit(p, b.serving.at(p)));  // the current owner's writes go on
    EXPECT_FALSE(f.admit(p, 0));
    EXPECT_FALSE(f.admit(P, b.serving.at(p)));
}

TEST_F(ownership_sim, without_a_lease_nothing_is_acquired) {
    nodes.push_back(node{"a", ownership_fsm(config_for("a"))});
    auto& a = nodes.back();
    auto acts = a.fsm.set_members(now, {{"a", 1}});
    acts = a.fsm.set_table(now, kv.records, kv.epoch);
    EXPECT_TRUE(acts.empty());
    EXPECT_EQ(a.fsm.wake_at(now), clock::time_point::max());
}

}  // namespace
}  // namespace lakemesh::partition
