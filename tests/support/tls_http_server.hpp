// Test support: an HTTPS/1.1 server on 127.0.0.1 (port 0) in the test's own io_context, with a
// certificate from test_certs. It answers every request 200 "tls:<target>" on a keep-alive
// connection and records the handshakes, the SNI the client sent and the request targets.
#pragma once

#include "test_certs.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace lakemesh::test {

class tls_http_server {
  public:
    tls_http_server(boost::asio::io_context& io, const self_signed_cert& cert);

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    /// Connections accepted, TLS handshakes completed.
    int accepted = 0;
    int handshakes = 0;
    /// The server name of the last handshake ("" when the client sent none).
    std::string last_sni = "(none yet)";
    /// The target of every request answered.
    std::vector<std::string> targets;

  private:
    struct session;
    void accept();

    boost::asio::ssl::context ctx_{boost::asio::ssl::context::tls_server};
    boost::asio::ip::tcp::acceptor acceptor_;
};

}  // namespace lakemesh::test
