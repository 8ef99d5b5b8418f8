// Test support: a deterministic fault-injecting TCP proxy on loopback, between the library and a
// Consul agent or between a caller and a callee. It runs on its own thread (the test drives its
// own io_context), accepts on 127.0.0.1:<port()> and relays bytes both ways to the target.
//
// Faults act on the answer direction (target -> client), except blackhole, which also swallows
// what the client sends. set_fault() changes the fault of every open connection and of every
// new one; set_fault_for_next() gives a fault to the next K accepted connections only. Byte
// offsets (reset_after, truncate_after, flip_offsets) count answer bytes from the moment the
// fault took effect on a connection. Nothing is random: garbage is generated from `seed`.
//
// Every counter change wakes wait_until(), so a test blocks on "a connection is now stalled" or
// "N connections accepted" without sleeping.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lakemesh::test {

struct proxy_fault {
    /// Delay before each chunk of the answer is passed on.
    std::chrono::milliseconds latency{0};
    /// Hold every answer byte until the fault is changed (the connection stays open).
    bool stall = false;
    /// Accept, read, never answer: bytes both ways are dropped.
    bool blackhole = false;
    /// Reset the connection (SO_LINGER 0, then close: an RST) right after accepting it.
    bool reset_on_accept = false;
    /// Reset once this many answer bytes were passed on (0: as the answer starts).
    std::optional<std::size_t> reset_after;
    /// Pass this many answer bytes on, then close normally (FIN).
    std::optional<std::size_t> truncate_after;
    /// XOR 0xFF the answer bytes at these offsets.
    std::vector<std::size_t> flip_offsets;
    /// Replace every byte of the answer body (after the first "\r\n\r\n") with garbage of the
    /// same length, generated from `seed`: the head and framing stay valid.
    bool garbage_body = false;
    std::uint32_t seed = 1;
    /// Pass the answer on at this rate (bytes per second). 0: unthrottled.
    std::size_t bytes_per_second = 0;

    bool none() const {
        return latency.count() == 0 && !stall && !blackhole && !reset_on_accept && !reset_after &&
               !truncate_after && flip_offsets.empty() && !garbage_body && bytes_per_second == 0;
    }
};

/// A snapshot of the proxy's counters.
struct proxy_counters {
    std::uint64_t accepted = 0;        ///< Connections accepted.
    std::uint64_t open = 0;            ///< Relayed connections open now.
    std::uint64_t bytes_up = 0;        ///< Client bytes passed to the target.
    std::uint64_t bytes_down = 0;      ///< Answer bytes passed to the client.
    std::uint64_t stalled = 0;         ///< Connections holding answer bytes now (stall).
    std::uint64_t dropped_bytes = 0;   ///< Bytes swallowed by a blackhole.
    std::uint64_t resets = 0;          ///< Connections reset by a fault.
    std::uint64_t truncations = 0;     ///< Answers cut short by truncate_after.
    std::uint64_t corrupted = 0;       ///< Chunks altered by flip_offsets or garbage_body.
    std::uint64_t faults_applied = 0;  ///< Any of the above, plus delayed/throttled chunks.
};

class fault_proxy {
  public:
    fault_proxy(std::string target_host, std::uint16_t target_port);
    ~fault_proxy();
    fault_proxy(const fault_proxy&) = delete;
    fault_proxy& operator=(const fault_proxy&) = delete;

    std::uint16_t port() const;

    /// The fault of every open and every new connection; proxy_fault{} clears it. A stalled
    /// connection passes its held bytes on as soon as the new fault has no stall.
    void set_fault(proxy_fault f);
    /// The next `k` accepted connections get `f`; connections after them and the open ones keep
    /// the fault set by set_fault().
    void set_fault_for_next(proxy_fault f, std::size_t k);
    /// Clears every fault (set_fault(proxy_fault{}) and forgets pending set_fault_for_next).
    void clear();

    /// Closes the listening socket: new connects are refused. Open connections stay.
    void refuse();
    /// Listens again on the same port.
    void accept_again();
    /// Closes every relayed connection (RST when `reset`, FIN otherwise).
    void drop_connections(bool reset = false);

    proxy_counters counters() const;
    /// Blocks the calling thread until `pred(counters())` holds (true) or `limit` passes
    /// (false). Woken by every counter change, not by polling.
    bool wait_until(const std::function<bool(const proxy_counters&)>& pred,
                    std::chrono::milliseconds limit = std::chrono::seconds(10)) const;

    /// Deterministic garbage as garbage_body produces it (for tests of the proxy itself).
    static std::string garbage(std::uint32_t seed, std::size_t n);

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::test
