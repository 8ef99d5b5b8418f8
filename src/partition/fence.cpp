#include <lakemesh/partition/fence.hpp>

namespace lakemesh::partition {

fence::fence(std::uint32_t partitions)
    : partitions_(partitions), newest_(new std::atomic<fencing_token>[partitions]) {
    for (std::uint32_t p = 0; p < partitions; ++p) {
        newest_[p].store(0, std::memory_order_relaxed);
    }
}

bool fence::admit(std::uint32_t p, fencing_token token) noexcept {
    if (p >= partitions_ || token == 0) {
        rejections_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    auto& slot = newest_[p];
    fencing_token seen = slot.load(std::memory_order_acquire);
    while (token > seen) {
        if (slot.compare_exchange_weak(seen, token, std::memory_order_acq_rel)) {
            return true;
        }
    }
    if (token == seen) {
        return true;
    }
    rejections_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

fencing_token fence::newest(std::uint32_t p) const noexcept {
    return p < partitions_ ? newest_[p].load(std::memory_order_acquire) : 0;
}

}  // namespace lakemesh::partition
