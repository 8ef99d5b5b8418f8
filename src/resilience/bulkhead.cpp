#include <lakemesh/resilience/bulkhead.hpp>

#include <algorithm>

namespace lakemesh::resilience {

bulkhead::bulkhead(bulkhead_config cfg) : cfg_(cfg) {}

bulkhead_result bulkhead::try_acquire(time_point now, deadline call_deadline) {
    if (queue_.empty() && has_free_slot()) {
        ++in_flight_;
        return {bulkhead_admission::admitted, 0, {}};
    }
    if (queue_.size() >= cfg_.max_queue) {
        return {bulkhead_admission::rejected, 0, {}};
    }
    deadline wait_end = call_deadline;
    if (cfg_.max_wait > duration::zero()) {
        wait_end = wait_end.earliest(deadline::after(now, cfg_.max_wait));
    }
    const std::uint64_t ticket = next_ticket_++;
    queue_.push_back({ticket, wait_end.when()});
    return {bulkhead_admission::queued, ticket, wait_end.when()};
}

std::optional<std::uint64_t> bulkhead::release() noexcept {
    if (in_flight_ > 0) {
        --in_flight_;
    }
    if (queue_.empty() || !has_free_slot()) {
        return std::nullopt;
    }
    const std::uint64_t ticket = queue_.front().ticket;
    queue_.pop_front();
    ++in_flight_;
    return ticket;
}

bool bulkhead::cancel_wait(std::uint64_t ticket) noexcept {
    const auto it = std::find_if(queue_.begin(), queue_.end(),
                                 [ticket](const waiter& w) { return w.ticket == ticket; });
    if (it == queue_.end()) {
        return false;
    }
    queue_.erase(it);
    return true;
}

std::vector<std::uint64_t> bulkhead::expire(time_point now) {
    std::vector<std::uint64_t> expired;
    std::erase_if(queue_, [&](const waiter& w) {
        if (now < w.until) {
            return false;
        }
        expired.push_back(w.ticket);
        return true;
    });
    return expired;
}

std::vector<std::uint64_t> bulkhead::reconfigure(bulkhead_config cfg) {
    cfg_ = cfg;
    std::vector<std::uint64_t> admitted;
    while (!queue_.empty() && has_free_slot()) {
        admitted.push_back(queue_.front().ticket);
        queue_.pop_front();
        ++in_flight_;
    }
    // A smaller queue bound applies to new arrivals only; waiters already queued keep waiting.
    return admitted;
}

}  // namespace lakemesh::resilience
