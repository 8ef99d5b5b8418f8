// The wire side of pipelined check updates (agent_api::async_check_updates), against a scripted
// loopback server: every request of a batch arrives before the first answer is written, the
// answers are matched to the updates in order, and when the server closes the connection part
// way the unanswered updates go out again on a new connection. The same server shows that a
// request which is not safe to repeat is never sent twice when a kept-alive connection turns out
// to be closed, while a read is.
#include <lakemesh/consul/client.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <gtest/gtest.h>

#include <charconv>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using consul::check_status;
using consul::check_update;
using outcomes = std::vector<consul::check_update_outcome>;

/// Reads from `s` until `count` whole requests (head and Content-Length body) have arrived and
/// returns their request lines. Nothing is written meanwhile, so a client that waited for an
/// answer before sending its next request would never get this far.
std::vector<std::string> read_requests(tcp::socket& s, std::size_t count) {
    std::string data;
    std::vector<std::string> lines;
    std::size_t pos = 0;
    char chunk[4096];
    while (lines.size() < count) {
        const auto end = data.find("\r\n\r\n", pos);
        if (end != std::string::npos) {
            const std::string head = data.substr(pos, end - pos);
            std::size_t length = 0;
            if (auto cl = head.find("Content-Length: "); cl != std::string::npos) {
                const char* first = head.data() + cl + 16;
                std::from_chars(first, head.data() + head.size(), length);
            }
            if (data.size() >= end + 4 + length) {
                lines.push_back(head.substr(0, head.find("\r\n")));
                pos = end + 4 + length;
                continue;
            }
        }
        boost::system::error_code ec;
        const auto n = s.read_some(asio::buffer(chunk), ec);
        if (ec) {
            ADD_FAILURE() << "server read: " << ec.message() << " after " << lines.size();
            return lines;
        }
        data.append(chunk, n);
    }
    return lines;
}

/// Holds the connection open until the client closes it.
void wait_for_close(tcp::socket& s) {
    char byte;
    boost::system::error_code ec;
    s.read_some(asio::buffer(&byte, 1), ec);
}

std::string answer(unsigned status, const std::string& body, bool close = false) {
    std::string reason = status == 200 ? "OK" : "Error";
    std::string a =
        "HTTP/1.1 " + std::to_string(status) + " " + reason +
        "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    if (close) {
        a += "Connection: close\r\n";
    }
    return a + "\r\n" + body;
}

class pipeline_test : public ::testing::Test {
  protected:
    asio::io_context server_io;
    tcp::acceptor acceptor{server_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    asio::io_context io;

    consul::client make_client() {
        consul::client_config cfg;
        cfg.addresses = {consul::agent_address{"127.0.0.1", acceptor.local_endpoint().port()}};
        cfg.request_timeout = std::chrono::seconds(10);
        return consul::client(io, cfg);
    }

    std::vector<check_update> updates(std::size_t n) {
        std::vector<check_update> u;
        for (std::size_t i = 0; i < n; ++i) {
            u.push_back(check_update{"c" + std::to_string(i), check_status::passing, "ok"});
        }
        return u;
    }

    /// Starts an operation with a callback (`start(handler)`) and runs the client's io_context
    /// until it completes.
    template <class T, class Start>
    std::pair<error_code, consul::result<T>> run_op(Start start) {
        std::optional<std::pair<error_code, consul::result<T>>> out;
        start([&](error_code ec, consul::result<T> r) { out.emplace(ec, std::move(r)); });
        while (!out) {
            io.run_one_for(std::chrono::milliseconds(10));
        }
        return std::move(*out);
    }

    std::pair<error_code, consul::result<outcomes>> run_batch(consul::client& c,
                                                              std::vector<check_update> u) {
        return run_op<outcomes>(
            [&](auto h) { c.agent().async_check_updates(std::move(u), std::move(h)); });
    }
};

TEST_F(pipeline_test, all_requests_arrive_before_the_first_answer_and_answers_match_in_order) {
    std::vector<std::string> seen;
    std::thread server([&] {
        tcp::socket s = acceptor.accept();
        seen = read_requests(s, 3);
        const std::string answers = answer(200, "") +
                                    answer(404, "CheckID \"c1\" does not have associated TTL") +
                                    answer(200, "");
        asio::write(s, asio::buffer(answers));
        wait_for_close(s);  // the client keeps the connection for the next batch
    });
    auto c = make_client();
    auto [ec, r] = run_batch(c, updates(3));
    EXPECT_EQ(c.open_connections(0), 1u);
    c.shutdown();  // closes the pooled connection, which ends the server thread's read
    server.join();

    ASSERT_FALSE(ec) << ec.message();
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0], "PUT /v1/agent/check/update/c0 HTTP/1.1");
    EXPECT_EQ(seen[1], "PUT /v1/agent/check/update/c1 HTTP/1.1");
    EXPECT_EQ(seen[2], "PUT /v1/agent/check/update/c2 HTTP/1.1");
    ASSERT_EQ(r.value.size(), 3u);
    EXPECT_FALSE(r.value[0].error);
    EXPECT_EQ(r.value[1].error, consul_errc::not_found);
    EXPECT_NE(r.value[1].diag.server_message().find("does not have associated TTL"),
              std::string::npos);
    EXPECT_FALSE(r.value[2].error);
}

TEST_F(pipeline_test, unanswered_requests_go_out_again_when_the_server_closes_part_way) {
    std::vector<std::string> first;
    std::vector<std::string> second;
    std::thread server([&] {
        {
            tcp::socket s = acceptor.accept();
            first = read_requests(s, 4);
            // Answers one and closes: the other three were read but not acted on.
            asio::write(s, asio::buffer(answer(200, "", true)));
        }
        tcp::socket s = acceptor.accept();
        second = read_requests(s, 3);
        const std::string answers = answer(200, "") + answer(500, "rpc error") + answer(200, "");
        asio::write(s, asio::buffer(answers));
        wait_for_close(s);
    });
    auto c = make_client();
    auto [ec, r] = run_batch(c, updates(4));
    c.shutdown();
    server.join();

    ASSERT_FALSE(ec) << ec.message();
    ASSERT_EQ(first.size(), 4u);
    ASSERT_EQ(second.size(), 3u);
    EXPECT_EQ(second[0], "PUT /v1/agent/check/update/c1 HTTP/1.1");
    EXPECT_EQ(second[2], "PUT /v1/agent/check/update/c3 HTTP/1.1");
    ASSERT_EQ(r.value.size(), 4u);
    EXPECT_FALSE(r.value[0].error);
    EXPECT_FALSE(r.value[1].error);
    EXPECT_EQ(r.value[2].error, consul_errc::internal_error);
    EXPECT_FALSE(r.value[3].error);
}

TEST_F(pipeline_test, a_server_that_closes_without_answering_fails_the_batch_without_looping) {
    int connections = 0;
    std::thread server([&] {
        // A fresh connection that answers nothing is not sent again.
        tcp::socket s = acceptor.accept();
        ++connections;
        read_requests(s, 2);
    });
    auto c = make_client();
    auto [ec, r] = run_batch(c, updates(2));
    server.join();
    EXPECT_FALSE(ec);
    ASSERT_EQ(r.value.size(), 2u);
    EXPECT_EQ(r.value[0].error, transport_errc::connection_closed);
    EXPECT_EQ(r.value[1].error, transport_errc::connection_closed);
    EXPECT_EQ(connections, 1);
}

// A kept-alive connection that the agent closes just after reading the next request: the request
// arrived and may have been applied, and no answer came. Only a request that is safe to repeat
// goes out again, on a new connection; anything else fails with connection_closed and is not
// resent. The server then takes one more connection and records what arrives on it: the client's
// next call, never a resent write.
class resend_test : public pipeline_test {
  protected:
    /// Serves: connection 1 answers the warm-up GET, reads the next request and closes without
    /// answering; connection 2 reads one request and answers it with `second_body`.
    std::thread serve(std::vector<std::string>& lines, std::string second_body) {
        return std::thread([this, &lines, second_body] {
            {
                tcp::socket s = acceptor.accept();
                lines.push_back(read_requests(s, 1).at(0));
                asio::write(s, asio::buffer(answer(200, R"("127.0.0.1:8300")")));
                lines.push_back(read_requests(s, 1).at(0));
            }
            tcp::socket s = acceptor.accept();
            lines.push_back(read_requests(s, 1).at(0));
            asio::write(s, asio::buffer(answer(200, second_body)));
            wait_for_close(s);
        });
    }

    void warm_up(consul::client& c) {
        auto [ec, r] = run_op<std::string>([&](auto h) { c.async_status_leader(std::move(h)); });
        ASSERT_FALSE(ec) << ec.message();
    }

    /// Runs a call that must not be repeated on the stale connection, then a status read.
    template <class T, class Start>
    void expect_not_resent(Start start, const std::string& request_line) {
        std::vector<std::string> lines;
        auto server = serve(lines, R"("127.0.0.1:8300")");
        auto c = make_client();
        warm_up(c);
        auto [ec, r] = run_op<T>(start(c));
        EXPECT_EQ(ec, transport_errc::connection_closed) << ec.message();
        auto [lec, leader] =
            run_op<std::string>([&](auto h) { c.async_status_leader(std::move(h)); });
        EXPECT_FALSE(lec) << lec.message();
        c.shutdown();
        server.join();
        ASSERT_EQ(lines.size(), 3u);
        EXPECT_EQ(lines[1], request_line);
        EXPECT_EQ(lines[2], "GET /v1/status/leader HTTP/1.1");
    }
};

TEST_F(resend_test, a_read_is_sent_again_on_a_new_connection) {
    std::vector<std::string> lines;
    auto server = serve(lines, R"(["a","b"])");
    auto c = make_client();
    warm_up(c);
    auto [ec, r] =
        run_op<std::vector<std::string>>([&](auto h) { c.async_kv_keys("p/", "", std::move(h)); });
    c.shutdown();
    server.join();
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(r.value, (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[1], "GET /v1/kv/p/?keys HTTP/1.1");
    EXPECT_EQ(lines[2], lines[1]);
}

TEST_F(resend_test, a_cas_write_is_not_sent_again) {
    expect_not_resent<bool>(
        [](consul::client& c) {
            return [&c](auto h) { c.async_kv_put("k", "v", {.cas = 5}, std::move(h)); };
        },
        "PUT /v1/kv/k?cas=5 HTTP/1.1");
}

TEST_F(resend_test, a_lock_acquire_is_not_sent_again) {
    expect_not_resent<bool>(
        [](consul::client& c) {
            return [&c](auto h) { c.async_kv_put("k", "v", {.acquire = "s1"}, std::move(h)); };
        },
        "PUT /v1/kv/k?acquire=s1 HTTP/1.1");
}

TEST_F(resend_test, a_session_create_is_not_sent_again) {
    expect_not_resent<std::string>(
        [](consul::client& c) {
            return
                [&c](auto h) { c.session().async_create(consul::session_options{}, std::move(h)); };
        },
        "PUT /v1/session/create HTTP/1.1");
}

TEST_F(resend_test, a_write_transaction_is_not_sent_again) {
    expect_not_resent<consul::txn_result>(
        [](consul::client& c) {
            return [&c](auto h) {
                std::vector<consul::txn_kv_op> ops{
                    consul::txn_kv_op{.verb = consul::txn_kv_verb::set, .key = "k", .value = "v"}};
                c.txn().async_commit(ops, std::move(h));
            };
        },
        "PUT /v1/txn HTTP/1.1");
}

TEST_F(resend_test, a_raw_write_is_not_sent_again_unless_marked_idempotent) {
    expect_not_resent<consul::raw_response>(
        [](consul::client& c) {
            return [&c](auto h) {
                c.async_raw({.method = "POST", .path = "acl/token", .body = "{}"}, std::move(h));
            };
        },
        "POST /v1/acl/token HTTP/1.1");

    // Marked idempotent by the caller: sent again.
    std::vector<std::string> lines;
    auto server = serve(lines, "{}");
    auto c = make_client();
    warm_up(c);
    auto [ec, r] = run_op<consul::raw_response>([&](auto h) {
        c.async_raw({.method = "PUT", .path = "x/y", .body = "{}", .idempotent = true},
                    std::move(h));
    });
    c.shutdown();
    server.join();
    ASSERT_FALSE(ec) << ec.message();
    EXPECT_EQ(r.value.status, 200u);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[2], "PUT /v1/x/y HTTP/1.1");
}

}  // namespace
}  // namespace lakemesh::test
