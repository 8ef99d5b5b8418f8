// How consul::client reads answers off the wire, against a loopback server that writes scripted
// bytes in scripted pieces: heads and bodies split across reads, the next answer's bytes already
// in the buffer, answers that go to Beast's parser (chunked), a connection closed mid-answer, the
// body limit, cancellation and the request timeout. The fast head parser and the Beast fallback
// must give the same results. Every case runs twice: as the first exchange on a new connection
// (the coroutine path) and on a pooled connection, after a warm-up exchange (the callback path).
#include <lakemesh/consul/client.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

/// Accepts one connection; for each request read, writes that step's pieces with a pause
/// between them (so each is a separate read on the client), then closes, or with `hold_open`
/// waits for the client to close first.
class scripted_server {
  public:
    using step = std::vector<std::string>;

    explicit scripted_server(std::vector<step> steps, bool hold_open = false)
        : steps_(std::move(steps)), hold_open_(hold_open) {
        thread_ = std::thread([this] { serve(); });
    }
    ~scripted_server() {
        // Unblocks accept or read when a test ends early.
        error_code ec;
        acceptor_.close(ec);
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    int requests() const { return requests_.load(); }

  private:
    void serve() {
        error_code ec;
        tcp::socket s(io_);
        acceptor_.accept(s, ec);
        if (ec) {
            return;
        }
        s.set_option(tcp::no_delay(true));
        asio::streambuf in;
        for (const auto& pieces : steps_) {
            const auto n = asio::read_until(s, in, "\r\n\r\n", ec);
            if (ec) {
                return;
            }
            in.consume(n);
            ++requests_;
            for (std::size_t i = 0; i < pieces.size(); ++i) {
                if (i != 0) {
                    std::this_thread::sleep_for(30ms);
                }
                asio::write(s, asio::buffer(pieces[i]), ec);
            }
        }
        if (hold_open_) {
            char byte;
            s.read_some(asio::buffer(&byte, 1), ec);  // until the client closes
        }
        s.shutdown(tcp::socket::shutdown_both, ec);
    }

    std::vector<step> steps_;
    bool hold_open_;
    asio::io_context io_;
    tcp::acceptor acceptor_{io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    std::uint16_t port_ = acceptor_.local_endpoint().port();
    std::atomic<int> requests_{0};
    std::thread thread_;
};

struct raw_outcome {
    error_code ec;
    consul::result<consul::raw_response> r;
};

class answer_reading : public ::testing::TestWithParam<bool> {
  protected:
    asio::io_context io;

    /// On a pooled connection: whether the case's steps follow a warm-up exchange.
    static bool pooled() { return GetParam(); }
    /// The warm-up step first when pooled.
    static std::vector<scripted_server::step> script(std::vector<scripted_server::step> steps) {
        if (pooled()) {
            steps.insert(steps.begin(), {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm"});
        }
        return steps;
    }
    /// Exchanges of the case itself the server has seen.
    static int case_requests(const scripted_server& server) {
        return server.requests() - (pooled() ? 1 : 0);
    }

    consul::client make_client(const scripted_server& server, std::size_t max_body = 1 << 20,
                               std::chrono::milliseconds timeout = 5s) {
        consul::client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", server.port()}};
        cfg.request_timeout = timeout;
        cfg.max_response_body = max_body;
        consul::client c(io, cfg);
        if (pooled()) {
            auto warm = get(c);
            EXPECT_FALSE(warm.ec) << warm.ec.message();
            EXPECT_EQ(warm.r.value.body, "warm");
            EXPECT_EQ(c.open_connections(), 1u);
        }
        return c;
    }

    raw_outcome get(consul::client& c, asio::cancellation_slot slot = {}) {
        raw_outcome out;
        consul::raw_request req;
        req.path = "kv/k";
        c.async_raw(req, asio::bind_cancellation_slot(
                             slot, [&](error_code ec, consul::result<consul::raw_response> r) {
                                 out.ec = ec;
                                 out.r = std::move(r);
                             }));
        io.restart();
        io.run();
        return out;
    }
};

std::string pattern(std::size_t n) {
    std::string s(n, ' ');
    for (std::size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>('a' + i % 26);
    }
    return s;
}

std::string chunked(const std::string& body) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx", body.size());
    return "HTTP/1.1 200 OK\r\nX-Consul-Index: 11\r\nTransfer-Encoding: chunked\r\n\r\n" +
           std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
}

TEST_P(answer_reading, head_and_body_split_across_many_reads) {
    const std::string body = pattern(50000);
    const std::string head =
        "HTTP/1.1 200 OK\r\nX-Consul-Index: 9\r\nX-Consul-KnownLeader: true\r\n"
        "Content-Length: 50000\r\n\r\n";
    // Cuts inside a name, between CR and LF, right after the head, and inside the body.
    const std::string all = head + body;
    const std::size_t cuts[] = {
        3, 20, 34, head.size(), head.size() + 100, head.size() + 20000, all.size()};
    scripted_server::step pieces;
    std::size_t from = 0;
    for (std::size_t cut : cuts) {
        pieces.push_back(all.substr(from, cut - from));
        from = cut;
    }
    scripted_server server(script({pieces}));
    auto c = make_client(server);
    auto out = get(c);
    ASSERT_FALSE(out.ec) << out.ec.message() << " " << out.r.diag.client_message();
    EXPECT_EQ(out.r.value.status, 200u);
    EXPECT_EQ(out.r.value.body, body);
    EXPECT_EQ(out.r.meta.index, 9u);
    EXPECT_TRUE(out.r.meta.known_leader);
}

TEST_P(answer_reading, bytes_of_the_next_answer_wait_in_the_buffer_for_it) {
    // The first write carries the whole first answer and the second one, which goes to Beast
    // (chunked) from bytes already buffered; then a simple third answer.
    const std::string first =
        "HTTP/1.1 200 OK\r\nX-Consul-Index: 10\r\nContent-Length: 3\r\n\r\none";
    const std::string third = "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nthree";
    scripted_server server(script({{first + chunked("two")}, {}, {third}}));
    auto c = make_client(server);
    auto a = get(c);
    ASSERT_FALSE(a.ec) << a.ec.message();
    EXPECT_EQ(a.r.value.body, "one");
    EXPECT_EQ(a.r.meta.index, 10u);
    auto b = get(c);
    ASSERT_FALSE(b.ec) << b.ec.message();
    EXPECT_EQ(b.r.value.body, "two");
    EXPECT_EQ(b.r.meta.index, 11u);
    auto d = get(c);
    ASSERT_FALSE(d.ec) << d.ec.message();
    EXPECT_EQ(d.r.value.status, 404u);
    EXPECT_EQ(d.r.value.body, "three");
    EXPECT_EQ(case_requests(server), 3);
    EXPECT_EQ(c.open_connections(), 1u);
}

TEST_P(answer_reading, connection_close_answer_is_not_pooled) {
    scripted_server server(
        script({{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"}}));
    auto c = make_client(server);
    auto out = get(c);
    ASSERT_FALSE(out.ec) << out.ec.message();
    EXPECT_EQ(out.r.value.body, "ok");
    EXPECT_EQ(c.open_connections(), 0u);
}

TEST_P(answer_reading, closed_mid_answer_is_the_same_error_on_both_parsers) {
    const std::string simple = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
    const std::string beast = chunked(pattern(100)).substr(0, 80);
    const std::string in_head = "HTTP/1.1 200 OK\r\nContent-Le";
    std::vector<error_code> seen;
    for (const auto& partial : {simple, beast, in_head}) {
        scripted_server server(script({{partial}}));
        auto c = make_client(server);
        auto out = get(c);
        EXPECT_TRUE(out.ec) << partial;
        seen.push_back(out.ec);
    }
    EXPECT_EQ(seen[0], transport_errc::protocol_error) << seen[0].message();
    EXPECT_EQ(seen[1], seen[0]) << seen[1].message();
    EXPECT_EQ(seen[2], seen[0]) << seen[2].message();
}

TEST_P(answer_reading, body_limit_on_both_parsers) {
    const std::string body = pattern(2000);
    const std::string simple = "HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + body;
    for (const auto& answer : {simple, chunked(body)}) {
        scripted_server server(script({{answer}}));
        auto c = make_client(server, 1000);
        auto out = get(c);
        EXPECT_EQ(out.ec, decode_errc::body_too_large) << out.ec.message();
    }
}

TEST_P(answer_reading, cancellation_while_waiting_for_the_answer) {
    // The server reads the request and never answers.
    scripted_server server(script({scripted_server::step{}}), true);
    auto c = make_client(server);
    asio::cancellation_signal cancel;
    asio::steady_timer later(io, 100ms);
    later.async_wait([&](error_code) { cancel.emit(asio::cancellation_type::terminal); });
    const auto start = std::chrono::steady_clock::now();
    auto out = get(c, cancel.slot());
    EXPECT_EQ(out.ec, asio::error::operation_aborted) << out.ec.message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
    EXPECT_EQ(case_requests(server), 1);
    EXPECT_EQ(c.open_connections(), 0u);  // a connection left mid-answer is not reused
}

TEST_P(answer_reading, request_timeout_while_waiting_for_the_answer) {
    scripted_server server(script({scripted_server::step{}}), true);
    auto c = make_client(server, 1 << 20, 300ms);
    const auto start = std::chrono::steady_clock::now();
    auto out = get(c);
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(out.ec, transport_errc::timeout) << out.ec.message();
    EXPECT_GE(took, 300ms);
    EXPECT_LT(took, 4s);
    EXPECT_EQ(c.open_connections(), 0u);
}

// The request timeout counts from each exchange's start, also when the next exchange starts
// from the previous one's completion on the same connection while the watchdog is still armed
// for the previous deadline: that wake-up must move on to the new deadline, not end the new
// exchange early.
TEST_P(answer_reading, timeout_counts_from_each_exchange_in_a_serial_loop) {
    // Answers after 20 and 24 pauses of 30 ms: 0.6 s and 0.72 s, each within the 1 s timeout,
    // while the second ends well after the first exchange's deadline.
    const auto delayed = [](int pauses, const std::string& answer) {
        scripted_server::step pieces(static_cast<std::size_t>(pauses), std::string());
        pieces.push_back(answer);
        return pieces;
    };
    const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    scripted_server server(script({delayed(20, ok), delayed(24, ok)}), true);
    auto c = make_client(server, 1 << 20, 1000ms);
    raw_outcome first;
    raw_outcome second;
    consul::raw_request req;
    req.path = "kv/k";
    c.async_raw(req, [&](error_code ec, consul::result<consul::raw_response> r) {
        first.ec = ec;
        first.r = std::move(r);
        c.async_raw(req, [&](error_code ec2, consul::result<consul::raw_response> r2) {
            second.ec = ec2;
            second.r = std::move(r2);
        });
    });
    io.restart();
    io.run();
    EXPECT_FALSE(first.ec) << first.ec.message();
    EXPECT_FALSE(second.ec) << second.ec.message();
    EXPECT_EQ(second.r.value.body, "ok");
    EXPECT_EQ(c.open_connections(), 1u);
}

INSTANTIATE_TEST_SUITE_P(connections, answer_reading, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                             return info.param ? "pooled" : "first";
                         });

}  // namespace
}  // namespace lakemesh::test
