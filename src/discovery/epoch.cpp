#include "epoch.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace lakemesh::discovery::detail {

namespace {

/// Gives the thread's record back when the thread ends.
struct thread_record {
    epoch_reader* record = nullptr;
    ~thread_record() {
        if (record != nullptr) {
            record->active.store(0, std::memory_order_release);
            record->depth = 0;
            record->in_use.store(false, std::memory_order_release);
        }
    }
};

thread_local thread_record this_thread;

}  // namespace

epoch_domain& epoch_domain::instance() {
    // Never destroyed: reader records and late retirements may outlive static destruction order.
    static epoch_domain* d = new epoch_domain();
    return *d;
}

epoch_domain::epoch_domain() {
    const long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0) == 0) {
        heavy_collect_ = true;
    }
}

void epoch_domain::heavy_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer does not model fences; a sequentially consistent read-modify-write of the
    // epoch orders this thread's stores before its later loads the same way.
    epoch_.fetch_add(0, std::memory_order_seq_cst);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    if (heavy_collect_) {
        // Every running thread of the process executes a full barrier: a reader's announcement
        // made before it is visible below, and a reader's loads after it see what the writer
        // unpublished before this call.
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0);
    }
}

epoch_reader* epoch_domain::local() noexcept {
    if (this_thread.record == nullptr) {
        this_thread.record = acquire_record();
    }
    return this_thread.record;
}

epoch_reader* epoch_domain::acquire_record() {
    for (epoch_reader* r = head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
        bool free = false;
        if (r->in_use.compare_exchange_strong(free, true, std::memory_order_acq_rel)) {
            return r;
        }
    }
    auto* r = new epoch_reader();
    epoch_reader* h = head_.load(std::memory_order_relaxed);
    do {
        r->next = h;
    } while (
        !head_.compare_exchange_weak(h, r, std::memory_order_release, std::memory_order_relaxed));
    return r;
}

void epoch_domain::retire(std::function<void()> release) {
    std::lock_guard lock(mutex_);
    retired_.emplace_back(epoch_.load(std::memory_order_relaxed), std::move(release));
}

std::size_t epoch_domain::collect() {
    std::vector<std::function<void()>> ready;
    std::size_t left = 0;
    {
        std::lock_guard lock(mutex_);
        if (retired_.empty()) {
            return 0;
        }
        // Two steps at most: what was retired in the current epoch becomes free in one call
        // when no reader is pinned.
        for (int step = 0; step < 2; ++step) {
            heavy_fence();
            const std::uint64_t e = epoch_.load(std::memory_order_relaxed);
            bool all_current = true;
            for (epoch_reader* r = head_.load(std::memory_order_acquire); r != nullptr;
                 r = r->next) {
                const std::uint64_t a = r->active.load(std::memory_order_acquire);
                if (a != 0 && a != e) {
                    all_current = false;
                    break;
                }
            }
            if (!all_current) {
                break;
            }
            epoch_.store(e + 1, std::memory_order_seq_cst);
        }
        const std::uint64_t now = epoch_.load(std::memory_order_relaxed);
        // An object retired in epoch r may be held by readers pinned in r - 1 or r; once the
        // epoch is r + 2 every reader has unpinned since.
        auto keep = retired_.begin();
        for (auto it = retired_.begin(); it != retired_.end(); ++it) {
            if (it->first + 2 <= now) {
                ready.push_back(std::move(it->second));
            } else {
                if (keep != it) {
                    *keep = std::move(*it);
                }
                ++keep;
            }
        }
        retired_.erase(keep, retired_.end());
        left = retired_.size();
    }
    for (auto& f : ready) {
        f();
    }
    return left;
}

}  // namespace lakemesh::discovery::detail
