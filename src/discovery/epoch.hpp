// Epoch-based reclamation for the service cache's lock-free reads: readers announce the epoch
// they read in (a store to their own cache line, no shared read-modify-write); the writer frees
// what it replaced only once every reader has moved past the epoch it was replaced in.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace lakemesh::discovery::detail {

/// One reading thread's announcement. Records are never freed; a thread's record is reused by
/// a later thread after the first one exits.
struct alignas(64) epoch_reader {
    /// Epoch the thread reads in; 0 when it holds nothing.
    std::atomic<std::uint64_t> active{0};
    /// Nested pins of the owning thread (only that thread touches it).
    std::uint32_t depth = 0;
    std::atomic<bool> in_use{true};
    epoch_reader* next = nullptr;
};

class epoch_domain {
  public:
    /// The process-wide domain every cache shares.
    static epoch_domain& instance();

    /// Pins the calling thread: nothing retired from now on is freed until unpin(). Nests.
    epoch_reader* pin() noexcept {
        epoch_reader* r = local();
        if (r->depth++ == 0) {
#if defined(__SANITIZE_THREAD__)
            // ThreadSanitizer does not model fences; a sequentially consistent exchange is at
            // least as strong as the store and fence below, and it sees that one.
            r->active.exchange(epoch_.load(std::memory_order_relaxed), std::memory_order_seq_cst);
#else
            r->active.store(epoch_.load(std::memory_order_relaxed), std::memory_order_relaxed);
            // The announcement must be visible before this thread reads any shared pointer.
            // With membarrier() the collector pays for that (a barrier on every thread of the
            // process before it scans the records), so the reader only stops the compiler; a
            // full fence here would also serialise the cache misses of consecutive lookups.
            if (heavy_collect_) {
                std::atomic_signal_fence(std::memory_order_seq_cst);
            } else {
                std::atomic_thread_fence(std::memory_order_seq_cst);
            }
#endif
        }
        return r;
    }
    static void unpin(epoch_reader* r) noexcept {
        if (--r->depth == 0) {
            r->active.store(0, std::memory_order_release);
        }
    }

    /// Frees `release` (which must no longer be reachable by new readers) once no reader can
    /// hold it. Any thread.
    void retire(std::function<void()> release);
    /// Advances the epoch when every reader allows it and frees what is safe to free. Returns
    /// the number of objects still waiting.
    std::size_t collect();

  private:
    epoch_domain();
    /// The collector's side of the asymmetric fence: membarrier() when registered, else a
    /// plain fence (the readers then use full fences too).
    void heavy_fence() noexcept;
    epoch_reader* local() noexcept;
    epoch_reader* acquire_record();

    /// Set once at construction: membarrier(PRIVATE_EXPEDITED) is registered.
    bool heavy_collect_ = false;
    std::atomic<std::uint64_t> epoch_{1};
    std::atomic<epoch_reader*> head_{nullptr};
    std::mutex mutex_;
    std::vector<std::pair<std::uint64_t, std::function<void()>>> retired_;
};

}  // namespace lakemesh::discovery::detail
