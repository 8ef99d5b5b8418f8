#include <lakemesh/partition/ownership_fsm.hpp>

#include <algorithm>

namespace lakemesh::partition {

const char* to_string(partition_state s) noexcept {
    switch (s) {
        case partition_state::acquiring:
            return "acquiring";
        case partition_state::active:
            return "active";
        case partition_state::draining:
            return "draining";
        case partition_state::released:
            return "released";
        case partition_state::unknown:
            break;
    }
    return "unknown";
}

ownership_fsm::ownership_fsm(ownership_config cfg)
    : cfg_(std::move(cfg)),
      table_(cfg_.partitions),
      local_(cfg_.partitions),
      highest_(cfg_.partitions, 0),
      free_since_(cfg_.partitions, clock::time_point::max()) {
    cfg_.max_concurrent_moves = std::max<std::uint32_t>(cfg_.max_concurrent_moves, 1);
    cfg_.max_concurrent_acquires = std::max<std::uint32_t>(cfg_.max_concurrent_acquires, 1);
}

std::size_t ownership_fsm::count(local_state s) const noexcept {
    return static_cast<std::size_t>(
        std::count_if(local_.begin(), local_.end(), [s](const local& l) { return l.state == s; }));
}

fencing_token ownership_fsm::token_of(std::uint32_t p) const noexcept {
    if (p >= local_.size()) {
        return 0;
    }
    const auto s = local_[p].state;
    return s == local_state::active || s == local_state::draining ? local_[p].token : 0;
}

std::vector<std::uint32_t> ownership_fsm::owned() const {
    std::vector<std::uint32_t> out;
    for (std::uint32_t p = 0; p < local_.size(); ++p) {
        if (token_of(p) != 0) {
            out.push_back(p);
        }
    }
    return out;
}

fencing_token ownership_fsm::next_token(std::uint32_t p) const noexcept {
    const fencing_token base = std::max(table_[p].token, highest_[p]);
    return std::max(make_token(epoch_, 1), base + 1);
}

void ownership_fsm::back_off(std::uint32_t p, clock::time_point now) {
    auto& l = local_[p];
    const auto shift = std::min(l.failures++, 16u);
    l.retry_at = now + std::min(cfg_.acquire_retry_cap, cfg_.acquire_retry_base * (1 << shift));
}

void ownership_fsm::end_term(std::uint32_t p, std::vector<ownership_action>& out) {
    auto& l = local_[p];
    switch (l.state) {
        case local_state::active:
        case local_state::draining:
        case local_state::releasing:
            out.push_back({.what = ownership_action::kind::lost, .partition = p, .token = l.token});
            ++lost_;
            break;
        default:
            break;
    }
    l.state = local_state::idle;
    l.token = 0;
    l.in_flight = false;
}

void ownership_fsm::release(std::uint32_t p, bool timed_out, std::vector<ownership_action>& out) {
    auto& l = local_[p];
    l.state = local_state::releasing;
    l.in_flight = true;
    out.push_back({.what = ownership_action::kind::release,
                   .partition = p,
                   .token = l.token,
                   .status_index = std::max(l.status_index, table_[p].status_index),
                   .drain_timed_out = timed_out});
}

std::vector<ownership_action> ownership_fsm::plan(clock::time_point now,
                                                  std::vector<ownership_action> out) {
    const auto P = cfg_.partitions;
    // The members as this node plans with them: itself at weight 0 while leaving.
    std::vector<member> members = members_;
    if (leaving_) {
        for (auto& m : members) {
            if (m.id == cfg_.node_id) {
                m.weight = 0;
            }
        }
    }
    std::vector<std::string> current(P);
    for (std::uint32_t p = 0; p < P; ++p) {
        const auto s = local_[p].state;
        if (s == local_state::active || s == local_state::draining || s == local_state::releasing) {
            current[p] = cfg_.node_id;
        } else if (table_[p].locked()) {
            current[p] = table_[p].node;
        }
    }
    target_ = assign(std::move(members), P, current);
    // Nothing without a lease, nor before the first table (epoch 0: no config read yet).
    if (session_.empty() || epoch_ == 0) {
        return out;
    }
    bool self_has_weight = false;
    for (const auto& m : target_.members) {
        self_has_weight |= m.id == cfg_.node_id && m.weight > 0 && !leaving_;
    }

    // Hand off what is assigned elsewhere.
    auto moves = count(local_state::draining) + count(local_state::releasing);
    for (std::uint32_t p = 0; p < P && moves < cfg_.max_concurrent_moves; ++p) {
        auto& l = local_[p];
        if (l.state == local_state::active && target_.owner_id(p) != cfg_.node_id) {
            l.state = local_state::draining;
            l.since = now;
            ++handoffs_;
            ++moves;
            out.push_back({.what = ownership_action::kind::start_drain,
                           .partition = p,
                           .token = l.token,
                           .status_index = std::max(l.status_index, table_[p].status_index)});
        }
    }

    // Take what is assigned here and free, and orphans nobody took in time.
    auto acquiring = count(local_state::acquiring);
    if (now < quiet_until_) {
        acquiring = cfg_.max_concurrent_acquires;
    }
    for (std::uint32_t p = 0; p < P && acquiring < cfg_.max_concurrent_acquires; ++p) {
        auto& l = local_[p];
        if (l.state != local_state::idle || table_[p].locked() || now < l.retry_at) {
            continue;
        }
        const bool assigned = target_.owner_id(p) == cfg_.node_id;
        const bool orphan = self_has_weight && cfg_.orphan_timeout.count() > 0 &&
                            free_since_[p] != clock::time_point::max() &&
                            now >= free_since_[p] + cfg_.orphan_timeout;
        if (!assigned && !orphan) {
            continue;
        }
        l.state = local_state::acquiring;
        l.token = next_token(p);
        l.session = session_;
        ++acquiring;
        out.push_back({.what = ownership_action::kind::acquire,
                       .partition = p,
                       .token = l.token,
                       .expected_owner_index = table_[p].owner_index,
                       .status_index = table_[p].status_index});
    }
    return out;
}

std::vector<ownership_action> ownership_fsm::set_members(clock::time_point now,
                                                         std::vector<member> members) {
    members_ = std::move(members);
    return plan(now, {});
}

std::vector<ownership_action> ownership_fsm::set_table(clock::time_point now,
                                                       std::vector<partition_record> table,
                                                       std::uint32_t epoch) {
    table.resize(cfg_.partitions);
    if (epoch != 0 && seen_epoch_ != 0 && epoch != seen_epoch_) {
        // Consul lost its state: its lock-delays are gone, the old owners' leases are not.
        quiet_until_ = std::max(quiet_until_, now + cfg_.lock_delay);
    }
    if (epoch != 0) {
        seen_epoch_ = epoch;
    }
    epoch_ = epoch;
    std::vector<ownership_action> out;
    for (std::uint32_t p = 0; p < cfg_.partitions; ++p) {
        auto& rec = table[p];
        auto& l = local_[p];
        highest_[p] = std::max(highest_[p], rec.token);
        if (rec.locked()) {
            free_since_[p] = clock::time_point::max();
        } else if (free_since_[p] == clock::time_point::max()) {
            free_since_[p] = now;
        }
        // Newer than what this node last did to the owner key (the table may lag behind it).
        const bool newer = rec.owner_index > l.owner_index;
        const bool held = l.state == local_state::active || l.state == local_state::draining ||
                          (l.state == local_state::releasing && !l.in_flight);
        if (held && newer && rec.session != session_) {
            // The lock was taken from this node (session invalidated, key deleted).
            end_term(p, out);
            l.owner_index = rec.owner_index;
        } else if (l.state == local_state::idle && newer && !session_.empty() &&
                   rec.session == session_) {
            // Our lock from an acquisition whose answer was lost: adopt it.
            l.state = local_state::active;
            l.token = rec.token;
            l.owner_index = rec.owner_index;
            l.status_index = rec.status_index;
            ++acquisitions_;
            out.push_back({.what = ownership_action::kind::acquired,
                           .partition = p,
                           .token = rec.token,
                           .status_index = rec.status_index});
        }
        if (rec.status_index > l.status_index && rec.session == session_) {
            l.status_index = rec.status_index;
        }
    }
    table_ = std::move(table);
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::hold_acquisitions_until(clock::time_point now,
                                                                     clock::time_point until) {
    quiet_until_ = std::max(quiet_until_, until);
    return plan(now, {});
}

std::vector<ownership_action> ownership_fsm::set_lease(clock::time_point now, std::string session) {
    std::vector<ownership_action> out;
    if (session != session_) {
        for (std::uint32_t p = 0; p < cfg_.partitions; ++p) {
            end_term(p, out);
            // What this node wrote belongs to the old session's time; after Consul lost its
            // state the indexes start over below it.
            local_[p].owner_index = 0;
            local_[p].status_index = 0;
        }
        session_ = std::move(session);
    }
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::on_acquire_result(clock::time_point now,
                                                               std::uint32_t p,
                                                               acquire_outcome outcome,
                                                               std::uint64_t owner_index,
                                                               std::uint64_t status_index) {
    std::vector<ownership_action> out;
    if (p >= cfg_.partitions || local_[p].state != local_state::acquiring) {
        return plan(now, std::move(out));
    }
    auto& l = local_[p];
    if (outcome == acquire_outcome::acquired && l.session == session_ && !session_.empty()) {
        l.state = local_state::active;
        l.owner_index = std::max(l.owner_index, owner_index);
        l.status_index = std::max(l.status_index, status_index);
        l.failures = 0;
        highest_[p] = std::max(highest_[p], l.token);
        ++acquisitions_;
        out.push_back({.what = ownership_action::kind::acquired,
                       .partition = p,
                       .token = l.token,
                       .status_index = l.status_index});
    } else {
        // Refused, failed, or taken with a session given up meanwhile (whose destruction frees
        // the lock): not ours. A failed one that did commit shows up in the table and is
        // adopted.
        l.state = local_state::idle;
        l.token = 0;
        back_off(p, now);
        // Freed by an invalidated session: its lock-delay ran from before we saw it free.
        if (outcome == acquire_outcome::refused && !table_[p].locked() &&
            table_[p].state != partition_state::released &&
            free_since_[p] != clock::time_point::max()) {
            const auto delay_end = free_since_[p] + cfg_.lock_delay;
            if (delay_end > now) {
                l.retry_at = delay_end;
            }
        }
    }
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::on_drained(clock::time_point now, std::uint32_t p) {
    std::vector<ownership_action> out;
    if (p < cfg_.partitions && local_[p].state == local_state::draining) {
        release(p, false, out);
    }
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::on_release_result(clock::time_point now,
                                                               std::uint32_t p,
                                                               acquire_outcome outcome,
                                                               std::uint64_t owner_index) {
    std::vector<ownership_action> out;
    if (p >= cfg_.partitions || local_[p].state != local_state::releasing) {
        return plan(now, std::move(out));
    }
    auto& l = local_[p];
    l.in_flight = false;
    switch (outcome) {
        case acquire_outcome::acquired:
            l.state = local_state::idle;
            l.token = 0;
            l.owner_index = std::max(l.owner_index, owner_index);
            l.failures = 0;
            break;
        case acquire_outcome::refused:
            end_term(p, out);
            break;
        case acquire_outcome::failed:
            back_off(p, now);
            break;
    }
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::on_status_written(clock::time_point now,
                                                               std::uint32_t p,
                                                               std::uint64_t status_index) {
    if (p < cfg_.partitions) {
        local_[p].status_index = std::max(local_[p].status_index, status_index);
    }
    return plan(now, {});
}

std::vector<ownership_action> ownership_fsm::on_timer(clock::time_point now) {
    std::vector<ownership_action> out;
    for (std::uint32_t p = 0; p < cfg_.partitions; ++p) {
        auto& l = local_[p];
        if (l.state == local_state::draining && now >= l.since + cfg_.drain_timeout) {
            ++drain_timeouts_;
            release(p, true, out);
        } else if (l.state == local_state::releasing && !l.in_flight && now >= l.retry_at) {
            release(p, false, out);
        }
    }
    return plan(now, std::move(out));
}

std::vector<ownership_action> ownership_fsm::leave(clock::time_point now) {
    leaving_ = true;
    return plan(now, {});
}

std::vector<ownership_action> ownership_fsm::rejoin(clock::time_point now) {
    leaving_ = false;
    return plan(now, {});
}

clock::time_point ownership_fsm::wake_at(clock::time_point now) const noexcept {
    auto at = clock::time_point::max();
    // Only times still ahead: what is due now was done by the last event, or waits for a
    // throttle slot that a result frees. Acquisitions wait for the quiet period too.
    auto consider = [&](clock::time_point t) {
        if (t > now) {
            at = std::min(at, t);
        }
    };
    auto consider_acquire = [&](clock::time_point t) { consider(std::max(t, quiet_until_)); };
    for (std::uint32_t p = 0; p < cfg_.partitions; ++p) {
        const auto& l = local_[p];
        switch (l.state) {
            case local_state::draining:
                consider(l.since + cfg_.drain_timeout);
                break;
            case local_state::releasing:
                if (!l.in_flight) {
                    consider(l.retry_at);
                }
                break;
            case local_state::idle:
                if (!table_[p].locked() && !session_.empty()) {
                    if (target_.owner_id(p) == cfg_.node_id) {
                        consider_acquire(l.retry_at);
                    } else if (cfg_.orphan_timeout.count() > 0 && !leaving_ &&
                               free_since_[p] != clock::time_point::max()) {
                        consider_acquire(
                            std::max(l.retry_at, free_since_[p] + cfg_.orphan_timeout));
                    }
                }
                break;
            default:
                break;
        }
    }
    return at;
}

bool ownership_fsm::left() const noexcept {
    return leaving_ && std::all_of(local_.begin(), local_.end(),
                                   [](const local& l) { return l.state == local_state::idle; });
}

bool ownership_fsm::settled() const noexcept {
    for (std::uint32_t p = 0; p < cfg_.partitions; ++p) {
        const auto s = local_[p].state;
        const bool assigned = target_.owner_id(p) == cfg_.node_id;
        if (s == local_state::acquiring || s == local_state::draining ||
            s == local_state::releasing || (s == local_state::active) != assigned) {
            return false;
        }
    }
    return true;
}

}  // namespace lakemesh::partition
