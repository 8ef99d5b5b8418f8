// The fault-injecting proxy itself, in front of a loopback HTTP server that answers one request per
// connection: each fault does what it says to the bytes a plain socket client receives.
#include "fault_proxy.hpp"
#include "recording_http_server.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

enum class ending { eof, reset, timeout, refused };

struct exchange {
    ending end = ending::timeout;
    std::string bytes;
};

/// Sends one GET to 127.0.0.1:port and reads until the connection ends or `limit` passes.
exchange get_once(std::uint16_t port, std::chrono::milliseconds limit = 10s) {
    exchange ex;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        ex.end = ending::refused;
        return ex;
    }
    const std::string req = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) < 0) {
        // An RST that arrived before the request went out is reported here, not by recv.
        ex.end = errno == ECONNRESET || errno == EPIPE ? ending::reset : ending::timeout;
        ::close(fd);
        return ex;
    }
    const auto deadline = clock_type::now() + limit;
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            ex.end = ending::timeout;
            break;
        }
        char buf[4096];
        auto r = ::recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
            ex.bytes.append(buf, static_cast<std::size_t>(r));
            continue;
        }
        ex.end = r == 0 ? ending::eof : (errno == ECONNRESET ? ending::reset : ending::timeout);
        break;
    }
    ::close(fd);
    return ex;
}

std::string body_of(const std::string& answer) {
    auto at = answer.find("\r\n\r\n");
    return at == std::string::npos ? std::string() : answer.substr(at + 4);
}

class fault_proxy_test : public ::testing::Test {
  protected:
    recording_http_server server;
    fault_proxy proxy{"127.0.0.1", server.port()};

    void SetUp() override { server.set_body(std::string(1000, 'b')); }
    /// The answer without any fault, for comparison.
    std::string clean() {
        auto ex = get_once(server.port());
        EXPECT_EQ(ex.end, ending::eof);
        return ex.bytes;
    }
};

TEST_F(fault_proxy_test, relays_unchanged_and_counts) {
    auto expected = clean();
    auto ex = get_once(proxy.port());
    EXPECT_EQ(ex.end, ending::eof);
    EXPECT_EQ(ex.bytes, expected);
    ASSERT_TRUE(proxy.wait_until([](const proxy_counters& c) { return c.open == 0; }));
    auto c = proxy.counters();
    EXPECT_EQ(c.accepted, 1u);
    EXPECT_EQ(c.bytes_down, expected.size());
    EXPECT_GT(c.bytes_up, 0u);
    EXPECT_EQ(c.faults_applied, 0u);
}

TEST_F(fault_proxy_test, latency_delays_the_answer) {
    proxy.set_fault({.latency = 300ms});
    auto start = clock_type::now();
    auto ex = get_once(proxy.port());
    EXPECT_GE(clock_type::now() - start, 300ms);
    EXPECT_EQ(ex.bytes, clean());
}

TEST_F(fault_proxy_test, stall_holds_every_byte_until_released) {
    proxy.set_fault({.stall = true});
    exchange ex;
    std::thread client([&] { ex = get_once(proxy.port()); });
    ASSERT_TRUE(proxy.wait_until([](const proxy_counters& c) { return c.stalled == 1; }));
    EXPECT_EQ(proxy.counters().bytes_down, 0u);
    proxy.clear();
    client.join();
    EXPECT_EQ(ex.end, ending::eof);
    EXPECT_EQ(ex.bytes, clean());
    EXPECT_EQ(proxy.counters().stalled, 0u);
}

TEST_F(fault_proxy_test, reset_after_n_bytes_is_an_rst) {
    proxy.set_fault({.reset_after = 50});
    auto ex = get_once(proxy.port());
    EXPECT_EQ(ex.end, ending::reset);
    EXPECT_EQ(ex.bytes, clean().substr(0, 50));
    EXPECT_EQ(proxy.counters().resets, 1u);
}

TEST_F(fault_proxy_test, reset_on_accept_sends_nothing) {
    proxy.set_fault({.reset_on_accept = true});
    auto ex = get_once(proxy.port());
    EXPECT_EQ(ex.end, ending::reset);
    EXPECT_EQ(ex.bytes, "");
    EXPECT_EQ(server.hits.load(), 0);
}

TEST_F(fault_proxy_test, truncate_after_n_bytes_is_a_clean_close) {
    proxy.set_fault({.truncate_after = 70});
    auto ex = get_once(proxy.port());
    EXPECT_EQ(ex.end, ending::eof);
    EXPECT_EQ(ex.bytes, clean().substr(0, 70));
    EXPECT_EQ(proxy.counters().truncations, 1u);
}

TEST_F(fault_proxy_test, blackhole_swallows_the_request_and_answers_nothing) {
    proxy.set_fault({.blackhole = true});
    auto ex = get_once(proxy.port(), 300ms);
    EXPECT_EQ(ex.end, ending::timeout);
    EXPECT_EQ(ex.bytes, "");
    EXPECT_GT(proxy.counters().dropped_bytes, 0u);
    EXPECT_EQ(server.hits.load(), 0);
    proxy.clear();
    EXPECT_EQ(get_once(proxy.port()).bytes, clean());
}

TEST_F(fault_proxy_test, flip_offsets_change_exactly_those_bytes) {
    auto expected = clean();
    proxy.set_fault({.flip_offsets = {0, 200, 999}});
    auto ex = get_once(proxy.port());
    ASSERT_EQ(ex.bytes.size(), expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        bool flipped = i == 0 || i == 200 || i == 999;
        EXPECT_EQ(ex.bytes[i], flipped ? static_cast<char>(expected[i] ^ 0xff) : expected[i]) << i;
    }
    EXPECT_EQ(proxy.counters().corrupted, 1u);
}

TEST_F(fault_proxy_test, garbage_body_keeps_the_head_and_is_deterministic) {
    auto expected = clean();
    proxy.set_fault({.garbage_body = true, .seed = 7});
    auto a = get_once(proxy.port());
    auto b = get_once(proxy.port());
    ASSERT_EQ(a.bytes.size(), expected.size());
    auto head_len = expected.size() - body_of(expected).size();
    EXPECT_EQ(a.bytes.substr(0, head_len), expected.substr(0, head_len));
    EXPECT_EQ(body_of(a.bytes), fault_proxy::garbage(7, 1000));
    EXPECT_EQ(a.bytes, b.bytes);
    EXPECT_NE(fault_proxy::garbage(7, 64), fault_proxy::garbage(8, 64));
}

TEST_F(fault_proxy_test, throttle_limits_the_rate) {
    proxy.set_fault({.bytes_per_second = 4000});
    auto start = clock_type::now();
    auto ex = get_once(proxy.port());
    auto took = clock_type::now() - start;
    EXPECT_EQ(ex.bytes, clean());
    // More than 1000 bytes at 4000 B/s: at least a quarter of a second.
    EXPECT_GE(took, 250ms);
}

TEST_F(fault_proxy_test, refused_then_accepting_again_on_the_same_port) {
    auto port = proxy.port();
    proxy.refuse();
    EXPECT_EQ(get_once(port).end, ending::refused);
    proxy.accept_again();
    EXPECT_EQ(proxy.port(), port);
    EXPECT_EQ(get_once(port).bytes, clean());
}

TEST_F(fault_proxy_test, fault_for_the_next_connections_only) {
    proxy.set_fault_for_next({.reset_on_accept = true}, 2);
    EXPECT_EQ(get_once(proxy.port()).end, ending::reset);
    EXPECT_EQ(get_once(proxy.port()).end, ending::reset);
    auto ex = get_once(proxy.port());
    EXPECT_EQ(ex.end, ending::eof);
    EXPECT_EQ(ex.bytes, clean());
    EXPECT_EQ(proxy.counters().accepted, 3u);
}

TEST_F(fault_proxy_test, a_fault_set_later_applies_to_an_open_connection) {
    // A connection stalled under one fault is reset when the fault changes to a reset.
    proxy.set_fault({.stall = true});
    exchange ex;
    std::thread client([&] { ex = get_once(proxy.port()); });
    ASSERT_TRUE(proxy.wait_until([](const proxy_counters& c) { return c.stalled == 1; }));
    proxy.set_fault({.reset_after = 10});
    client.join();
    EXPECT_EQ(ex.end, ending::reset);
    EXPECT_EQ(ex.bytes, clean().substr(0, 10));
}

}  // namespace
}  // namespace lakemesh::test
