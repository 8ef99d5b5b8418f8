// A loopback TCP forwarder that a test can cut: the network between a node and its Consul agent.
// It runs on its own thread (the test's io_context is driven by the test), accepts on
// 127.0.0.1:<port()> and relays bytes both ways to the target. cut() drops every connection and
// refuses new ones, as a network partition would; restore() accepts again on the same port.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace lakemesh::test {

class tcp_forwarder {
  public:
    tcp_forwarder(std::string target_host, std::uint16_t target_port);
    ~tcp_forwarder();
    tcp_forwarder(const tcp_forwarder&) = delete;
    tcp_forwarder& operator=(const tcp_forwarder&) = delete;

    std::uint16_t port() const;
    /// Closes every relayed connection and the listening socket: connects are refused.
    void cut();
    /// Listens again on the same port.
    void restore();
    /// Connections accepted so far.
    std::uint64_t accepted() const;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::test
