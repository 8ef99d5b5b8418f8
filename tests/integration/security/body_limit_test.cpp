// Bodies over the limit are refused without being read whole: a server that answers with a
// body that never ends (chunked, or with a Content-Length far over the limit, streamed without
// pause) makes the mesh's call pool and the Consul client fail with body_too_large and close
// the connection, and the server manages to write no more than the limit plus what the socket
// buffers hold; without the limit it would write until its own cap.
#include <lakemesh/consul/client.hpp>

#include "mesh/http_pool.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <optional>
#include <thread>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::size_t limit = 64 * 1024;
// Where the server gives up: far beyond the limit plus any loopback socket buffering.
constexpr std::size_t server_cap = 512u * 1024u * 1024u;
// What it may have written when the client stopped reading at the limit and closed: the limit
// plus the kernel's send and receive buffers on loopback (a few MiB at most), generously.
constexpr std::size_t written_bound = 64u * 1024u * 1024u;

/// Answers one request with a head announcing a huge (chunked or fixed-length) body, then
/// streams body bytes from its own thread until a write fails or server_cap is reached.
class endless_body_server {
  public:
    explicit endless_body_server(bool chunked) : chunked_(chunked) {
        thread_ = std::thread([this] { serve(); });
    }
    ~endless_body_server() {
        error_code ignored;
        acceptor_.close(ignored);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    /// Body bytes written so far; `done` once the server stopped writing.
    std::atomic<std::size_t> written{0};
    std::atomic<bool> done{false};
    std::atomic<bool> hit_cap{false};

  private:
    void serve() {
        error_code ec;
        tcp::socket s(io_);
        acceptor_.accept(s, ec);
        if (ec) {
            done = true;
            return;
        }
        asio::streambuf in;
        asio::read_until(s, in, "\r\n\r\n", ec);
        std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
        head += chunked_ ? "Transfer-Encoding: chunked\r\n\r\n"
                         : "Content-Length: 1099511627776\r\n\r\n";
        asio::write(s, asio::buffer(head), ec);
        const std::string block(16 * 1024, 'x');
        char size_line[16];
        std::snprintf(size_line, sizeof size_line, "%zx\r\n", block.size());
        std::string chunk = chunked_ ? size_line + block + "\r\n" : block;
        while (!ec) {
            if (written >= server_cap) {
                hit_cap = true;
                break;
            }
            asio::write(s, asio::buffer(chunk), ec);
            if (!ec) {
                written += block.size();
            }
        }
        done = true;
    }

    bool chunked_;
    asio::io_context io_;
    tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    std::uint16_t port_ = acceptor_.local_endpoint().port();
    std::thread thread_;
};

/// Runs `io` until `pred` holds (false after a generous bound: the machine may be loaded).
template <class Pred>
bool run_until(asio::io_context& io, Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        io.restart();
        io.run_one_for(10ms);
    }
    return true;
}

class security_body_limit : public ::testing::TestWithParam<bool> {};

TEST_P(security_body_limit, the_mesh_call_pool_stops_at_max_response_body) {
    endless_body_server server(GetParam());
    asio::io_context io;
    auto pool = std::make_shared<mesh::detail::http_pool>(
        io.get_executor(), mesh::detail::http_pool_config{.max_response_body = limit});
    std::optional<error_code> result;
    diagnostics diag;
    mesh::http_request req;
    req.target = "/endless";
    pool->async_send("127.0.0.1", server.port(), false, req, true, diag,
                     [&](error_code ec, mesh::http_response) { result = ec; });
    ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
    EXPECT_EQ(*result, decode_errc::body_too_large) << result->message();
    EXPECT_NE(diag.client_message().find("max_response_body"), std::string::npos)
        << diag.client_message();
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);
    // The connection is closed, so the server's writes fail soon after the buffers fill.
    ASSERT_TRUE(run_until(io, [&] { return server.done.load(); }))
        << "the server is still writing: the connection was not closed";
    EXPECT_FALSE(server.hit_cap.load());
    EXPECT_LT(server.written.load(), written_bound);
    pool->shutdown();
}

TEST_P(security_body_limit, the_consul_client_stops_at_max_response_body) {
    endless_body_server server(GetParam());
    asio::io_context io;
    consul::client_config cfg;
    cfg.addresses = {consul::agent_address{"127.0.0.1", server.port()}};
    cfg.max_response_body = limit;
    consul::client c(io, cfg);
    std::optional<std::pair<error_code, diagnostics>> result;
    c.async_kv_list("endless", [&](error_code ec, auto r) { result.emplace(ec, r.diag); });
    ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
    EXPECT_EQ(result->first, decode_errc::body_too_large) << result->first.message();
    EXPECT_EQ(c.open_connections(0), 0u) << "the connection with the unread body is dropped";
    ASSERT_TRUE(run_until(io, [&] { return server.done.load(); }))
        << "the server is still writing: the connection was not closed";
    EXPECT_FALSE(server.hit_cap.load());
    EXPECT_LT(server.written.load(), written_bound);
}

INSTANTIATE_TEST_SUITE_P(security, security_body_limit, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                             return p.param ? std::string("chunked")
                                            : std::string("content_length");
                         });

}  // namespace
}  // namespace lakemesh::test
