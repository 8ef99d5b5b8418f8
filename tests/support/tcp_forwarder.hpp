// A loopback TCP forwarder that a test can cut: the network between a node and its Consul agent.
// A thin wrapper over fault_proxy (which runs on its own thread; the test's io_context is driven
// by the test): accepts on 127.0.0.1:<port()> and relays bytes both ways to the target. cut()
// drops every connection and refuses new ones, as a network partition would; restore() accepts
// again on the same port. proxy() gives the finer faults.
#pragma once

#include "fault_proxy.hpp"

#include <cstdint>
#include <string>

namespace lakemesh::test {

class tcp_forwarder {
  public:
    tcp_forwarder(std::string target_host, std::uint16_t target_port)
        : proxy_(std::move(target_host), target_port) {}

    std::uint16_t port() const { return proxy_.port(); }
    /// Closes every relayed connection and the listening socket: connects are refused.
    void cut() {
        proxy_.refuse();
        proxy_.drop_connections();
    }
    /// Listens again on the same port.
    void restore() { proxy_.accept_again(); }
    /// Connections accepted so far.
    std::uint64_t accepted() const { return proxy_.counters().accepted; }
    fault_proxy& proxy() { return proxy_; }

  private:
    fault_proxy proxy_;
};

}  // namespace lakemesh::test
