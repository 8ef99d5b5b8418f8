// http_pool against a tiny Beast server on 127.0.0.1 in the same io_context (loopback only,
// no timing): round trips, keep-alive reuse, the retry rule for a pooled connection the server
// had closed, Connection: close, connect failure, cancellation, limits, validation, shutdown,
// and TLS (verification, SNI, pooling apart from plain connections).
#include "mesh/http_pool.hpp"

#include "test_certs.hpp"
#include "tls_http_server.hpp"

#include <gtest/gtest.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace lakemesh::mesh::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using test::self_signed_cert;
using test::tls_http_server;
using namespace std::chrono_literals;

/// What the test server does with a request.
enum class server_mode {
    answer,                        ///< answers and keeps the connection
    answer_then_close,             ///< answers, then closes without saying Connection: close
    answer_with_connection_close,  ///< answers with Connection: close, then closes
    never_answer,                  ///< reads the request and waits for the client to go away
};

/// An HTTP/1.1 server on 127.0.0.1 port 0. It answers 200 with X-Reply: yes, X-Method and
/// X-Echo-Header (the request's X-Test), and the body "echo:<request body>" (or `body_size`
/// bytes of 'x'); HEAD gets a Content-Length and no body.
class test_server {
  public:
    explicit test_server(asio::io_context& io)
        : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        accept();
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    server_mode mode = server_mode::answer;
    std::size_t body_size = 0;
    std::vector<http::request<http::string_body>> requests;
    int accepted = 0;
    int closed = 0;

  private:
    struct session : std::enable_shared_from_this<session> {
        session(test_server& server, tcp::socket socket)
            : server(server), socket(std::move(socket)) {}

        test_server& server;
        tcp::socket socket;
        beast::flat_buffer buffer;
        http::request<http::string_body> req;
        http::response<http::string_body> res;

        void read() {
            req = {};
            http::async_read(
                socket, buffer, req,
                [self = shared_from_this()](error_code ec, std::size_t) { self->on_request(ec); });
        }

        void on_request(error_code ec) {
            if (ec) {
                close();
                return;
            }
            server.requests.push_back(req);
            if (server.mode == server_mode::never_answer) {
                read();  // ends when the client closes
                return;
            }
            res = {};
            res.version(11);
            res.result(http::status::ok);
            res.set("X-Reply", "yes");
            res.set("X-Method", req.method_string());
            res.set("X-Echo-Header", req["X-Test"]);
            if (server.mode == server_mode::answer_with_connection_close) {
                res.keep_alive(false);
            }
            if (req.method() == http::verb::head) {
                res.set(http::field::content_length, "42");
            } else {
                res.body() = server.body_size > 0 ? std::string(server.body_size, 'x')
                                                  : "echo:" + req.body();
                res.prepare_payload();
            }
            http::async_write(socket, res, [self = shared_from_this()](error_code ec, std::size_t) {
                const auto mode = self->server.mode;
                if (ec || mode == server_mode::answer_then_close ||
                    mode == server_mode::answer_with_connection_close) {
                    self->close();
                    return;
                }
                self->read();
            });
        }

        void close() {
            error_code ignored;
            socket.shutdown(tcp::socket::shutdown_both, ignored);
            socket.close(ignored);
            ++server.closed;
        }
    };

    void accept() {
        acceptor_.async_accept([this](error_code ec, tcp::socket s) {
            if (ec) {
                return;
            }
            ++accepted;
            std::make_shared<session>(*this, std::move(s))->read();
            accept();
        });
    }

    tcp::acceptor acceptor_;
};

/// One async_send's outcome.
struct outcome {
    bool done = false;
    error_code ec;
    http_response res;
    diagnostics diag;
};

class http_pool_test : public ::testing::Test {
  protected:
    asio::io_context io;
    test_server server{io};
    std::shared_ptr<http_pool> pool = std::make_shared<http_pool>(io.get_executor());

    void make_pool(http_pool_config cfg) {
        pool = std::make_shared<http_pool>(io.get_executor(), cfg);
    }

    /// Runs handlers until `done` holds; false when nothing happens for 10 s (a hang).
    template <class Pred>
    bool run_until(Pred done) {
        while (!done()) {
            if (io.stopped()) {
                io.restart();
            }
            if (io.run_one_for(10s) == 0 && !done()) {
                return false;
            }
        }
        return true;
    }

    void start(outcome& o, const http_request& req, bool idempotent,
               asio::cancellation_slot slot = {}, std::string host = "127.0.0.1",
               std::uint16_t port = 0) {
        pool->async_send(std::move(host), port != 0 ? port : server.port(), false, req, idempotent,
                         o.diag,
                         asio::bind_cancellation_slot(slot, [&o](error_code ec, http_response r) {
                             o.done = true;
                             o.ec = ec;
                             o.res = std::move(r);
                         }));
        EXPECT_FALSE(o.done) << "completed from within async_send";
    }

    outcome send(const http_request& req, bool idempotent = true, std::string host = "127.0.0.1",
                 std::uint16_t port = 0) {
        outcome o;
        start(o, req, idempotent, {}, std::move(host), port);
        EXPECT_TRUE(run_until([&] { return o.done; }));
        return o;
    }

    static http_request get(std::string target = "/") {
        http_request r;
        r.target = std::move(target);
        return r;
    }
    static http_request post(std::string body) {
        http_request r;
        r.method = "POST";
        r.target = "/orders";
        r.body = std::move(body);
        return r;
    }
};

TEST(http_message, headers_match_in_any_case_and_set_header_replaces) {
    http_request r;
    r.headers = {{"X-One", "1"}, {"x-two", "2"}, {"X-ONE", "again"}};
    EXPECT_EQ(r.header("x-one"), "1");
    EXPECT_EQ(r.header("X-Two"), "2");
    EXPECT_EQ(r.header("X-Three"), "");
    r.set_header("x-one", "replaced");
    ASSERT_EQ(r.headers.size(), 2u);
    EXPECT_EQ(r.header("X-One"), "replaced");
    r.set_header("X-Three", "3");
    EXPECT_EQ(r.header("x-three"), "3");

    http_response res;
    res.headers = {{"Content-Type", "text/plain"}};
    EXPECT_EQ(res.header("content-type"), "text/plain");
}

TEST(http_message, idempotent_methods_are_those_of_rfc_9110) {
    for (auto m : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"}) {
        EXPECT_TRUE(is_idempotent_method(m)) << m;
    }
    for (auto m : {"POST", "PATCH", "CONNECT", "get", "PROPFIND", ""}) {
        EXPECT_FALSE(is_idempotent_method(m)) << m;
    }
}

TEST_F(http_pool_test, get_round_trip_carries_headers_and_body) {
    auto req = get("/items?id=7");
    req.headers = {{"X-Test", "hello"}};
    const auto o = send(req);
    ASSERT_FALSE(o.ec) << o.ec.message() << ": " << o.diag.client_message();
    EXPECT_EQ(o.res.status, 200u);
    EXPECT_EQ(o.res.header("x-reply"), "yes");
    EXPECT_EQ(o.res.header("X-Method"), "GET");
    EXPECT_EQ(o.res.header("X-Echo-Header"), "hello");
    EXPECT_EQ(o.res.body, "echo:");

    ASSERT_EQ(server.requests.size(), 1u);
    const auto& seen = server.requests[0];
    EXPECT_EQ(seen.target(), "/items?id=7");
    EXPECT_EQ(seen[http::field::host], "127.0.0.1:" + std::to_string(server.port()));
    EXPECT_EQ(seen[http::field::user_agent], "lakemesh/0.1");
    EXPECT_EQ(seen.count(http::field::content_length), 0u);

    // A body goes out with its length; a caller's own Content-Length and Host are not sent.
    auto p = post("{\"n\":1}");
    p.headers = {{"Content-Length", "999"}, {"Host", "evil"}};
    const auto o2 = send(p, false);
    ASSERT_FALSE(o2.ec) << o2.ec.message() << ": " << o2.diag.client_message();
    EXPECT_EQ(o2.res.body, "echo:{\"n\":1}");
    ASSERT_EQ(server.requests.size(), 2u);
    EXPECT_EQ(server.requests[1][http::field::content_length], "7");
    EXPECT_EQ(server.requests[1][http::field::host], "127.0.0.1:" + std::to_string(server.port()));
    EXPECT_EQ(server.requests[1].count(http::field::host), 1u);
}

TEST_F(http_pool_test, custom_method_and_empty_post_get_sent_as_given) {
    http_request r = get("/");
    r.method = "PROPFIND";
    const auto o = send(r, false);
    ASSERT_FALSE(o.ec) << o.diag.client_message();
    EXPECT_EQ(o.res.header("X-Method"), "PROPFIND");

    const auto o2 = send(post(""), false);
    ASSERT_FALSE(o2.ec) << o2.diag.client_message();
    EXPECT_EQ(server.requests.back()[http::field::content_length], "0");
}

TEST_F(http_pool_test, keep_alive_reuses_one_connection) {
    for (int i = 0; i < 2; ++i) {
        const auto o = send(get());
        ASSERT_FALSE(o.ec) << o.diag.client_message();
        EXPECT_EQ(o.res.status, 200u);
    }
    EXPECT_EQ(pool->connections_opened(), 1u);
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 1u);
    EXPECT_EQ(server.accepted, 1);
    EXPECT_EQ(server.requests.size(), 2u);
}

TEST_F(http_pool_test, host_name_is_resolved) {
    const auto o = send(get(), true, "localhost");
    ASSERT_FALSE(o.ec) << o.diag.client_message();
    EXPECT_EQ(o.res.status, 200u);
    EXPECT_EQ(server.requests.at(0)[http::field::host],
              "localhost:" + std::to_string(server.port()));
    EXPECT_EQ(pool->idle_connections("localhost", server.port()), 1u);
}

TEST_F(http_pool_test, head_answer_has_no_body_and_keeps_the_connection) {
    auto r = get();
    r.method = "HEAD";
    const auto o = send(r);
    ASSERT_FALSE(o.ec) << o.diag.client_message();
    EXPECT_EQ(o.res.header("Content-Length"), "42");
    EXPECT_EQ(o.res.body, "");
    const auto o2 = send(get());
    ASSERT_FALSE(o2.ec) << o2.diag.client_message();
    EXPECT_EQ(pool->connections_opened(), 1u);
}

TEST_F(http_pool_test, pooled_connection_closed_by_the_server_retries_get_but_not_post) {
    // The server closes each connection after answering, without Connection: close, so the
    // client pools a connection the server has closed by the time the next request goes out.
    server.mode = server_mode::answer_then_close;
    ASSERT_FALSE(send(get()).ec);
    ASSERT_TRUE(run_until([&] { return server.closed == 1; }));
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 1u);

    const auto retried = send(get("/again"));
    ASSERT_FALSE(retried.ec) << retried.diag.client_message();
    EXPECT_EQ(retried.res.status, 200u);
    EXPECT_EQ(pool->connections_opened(), 2u);
    EXPECT_EQ(server.accepted, 2);
    ASSERT_TRUE(run_until([&] { return server.closed == 2; }));
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 1u);

    const auto not_retried = send(post("pay once"), false);
    EXPECT_EQ(not_retried.ec, transport_errc::connection_closed);
    EXPECT_NE(not_retried.diag.client_message().find("127.0.0.1:" + std::to_string(server.port())),
              std::string::npos)
        << not_retried.diag.client_message();
    EXPECT_EQ(pool->connections_opened(), 2u);
    EXPECT_EQ(server.accepted, 2);
    EXPECT_EQ(server.requests.size(), 2u);  // the POST never reached a live connection
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);
}

TEST_F(http_pool_test, connection_close_answer_is_not_pooled) {
    server.mode = server_mode::answer_with_connection_close;
    const auto o = send(get());
    ASSERT_FALSE(o.ec) << o.diag.client_message();
    EXPECT_EQ(o.res.header("Connection"), "close");
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);
    const auto o2 = send(get());
    ASSERT_FALSE(o2.ec) << o2.diag.client_message();
    EXPECT_EQ(pool->connections_opened(), 2u);
}

TEST_F(http_pool_test, closed_port_fails_with_connect_failed) {
    std::uint16_t closed_port = 0;
    {
        tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        closed_port = a.local_endpoint().port();
    }
    const auto o = send(get(), true, "127.0.0.1", closed_port);
    EXPECT_EQ(o.ec, transport_errc::connect_failed);
    EXPECT_NE(o.diag.client_message().find("127.0.0.1:" + std::to_string(closed_port)),
              std::string::npos)
        << o.diag.client_message();
    EXPECT_EQ(pool->connections_opened(), 0u);
}

TEST_F(http_pool_test, cancellation_mid_request_aborts_and_closes_the_connection) {
    server.mode = server_mode::never_answer;
    int round = 0;
    for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                      asio::cancellation_type::total}) {
        SCOPED_TRACE(static_cast<int>(type));
        ++round;
        asio::cancellation_signal signal;
        outcome o;
        start(o, get(), true, signal.slot());
        ASSERT_TRUE(run_until([&] { return server.requests.size() == std::size_t(round); }));
        EXPECT_FALSE(o.done);
        signal.emit(type);
        ASSERT_TRUE(run_until([&] { return o.done; }));
        EXPECT_EQ(o.ec, asio::error::operation_aborted);
        EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);
        // The client closed its end: the server's wait for a next request ends.
        ASSERT_TRUE(run_until([&] { return server.closed == round; }));
    }
    EXPECT_EQ(pool->connections_opened(), 3u);
}

TEST_F(http_pool_test, body_over_the_limit_is_body_too_large) {
    make_pool({.max_response_body = 1024});
    server.body_size = 4096;
    const auto o = send(get());
    EXPECT_EQ(o.ec, decode_errc::body_too_large);
    EXPECT_NE(o.diag.client_message().find("max_response_body"), std::string::npos);
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);

    server.body_size = 1024;
    const auto ok = send(get());
    ASSERT_FALSE(ok.ec) << ok.diag.client_message();
    EXPECT_EQ(ok.res.body.size(), 1024u);
}

TEST_F(http_pool_test, header_injection_is_rejected_before_anything_is_sent) {
    auto in_value = get();
    in_value.set_header("X-Evil", "a\r\nInjected: 1");
    auto in_target = get("/a HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /b");
    auto in_method = get();
    in_method.method = "GET /x HTTP/1.1\r\n";
    for (const auto* req : {&in_value, &in_target, &in_method}) {
        const auto o = send(*req);
        EXPECT_EQ(o.ec, validation_errc::header_injection) << o.ec.message();
    }
    auto bad_name = get();
    bad_name.headers = {{"X Bad", "1"}};
    EXPECT_EQ(send(bad_name).ec, validation_errc::invalid_argument);
    // NUL (and other control characters) are refused too, in the target and in header values.
    auto nul_target = get(std::string("/a\0/b", 5));
    auto nul_value = get();
    nul_value.set_header("X-Value", std::string("a\0b", 3));
    auto nul_name = get();
    nul_name.headers = {{std::string("X-\0Name", 7), "1"}};
    auto tab_target = get("/a\tb");
    for (const auto* req : {&nul_target, &nul_value, &nul_name, &tab_target}) {
        const auto o = send(*req);
        EXPECT_EQ(o.ec, validation_errc::invalid_argument) << o.ec.message();
    }
    EXPECT_EQ(pool->connections_opened(), 0u);
    EXPECT_EQ(server.accepted, 0);
}

class http_pool_tls_test : public http_pool_test {
  protected:
    self_signed_cert cert{"127.0.0.1"};
    self_signed_cert other{"127.0.0.1"};
    tls_http_server https{io, cert};

    void SetUp() override {
        ASSERT_TRUE(cert.ok());
        ASSERT_TRUE(other.ok());
    }

    /// A pool that trusts `ca` (empty: the system's CAs) and verifies `name` (empty: the host).
    void trust(const std::string& ca, std::string name = {}) {
        http_pool_config cfg;
        cfg.tls.ca_file = ca;
        cfg.tls.server_name = std::move(name);
        make_pool(cfg);
    }

    outcome send_tls(const http_request& req, std::uint16_t port = 0,
                     std::string host = "127.0.0.1") {
        outcome o;
        pool->async_send(std::move(host), port != 0 ? port : https.port(), true, req, true, o.diag,
                         [&o](error_code ec, http_response r) {
                             o.done = true;
                             o.ec = ec;
                             o.res = std::move(r);
                         });
        EXPECT_FALSE(o.done) << "completed from within async_send";
        EXPECT_TRUE(run_until([&] { return o.done; }));
        return o;
    }
};

TEST_F(http_pool_tls_test,
       a_trusted_certificate_carries_the_exchange_and_the_connection_is_reused) {
    trust(cert.cert_file());
    for (int i = 0; i < 3; ++i) {
        const auto o = send_tls(get("/tls/" + std::to_string(i)));
        ASSERT_FALSE(o.ec) << o.ec.message() << " " << o.diag.client_message();
        EXPECT_EQ(o.res.status, 200u);
        EXPECT_EQ(o.res.body, "tls:/tls/" + std::to_string(i));
    }
    EXPECT_EQ(https.handshakes, 1);  // one TLS connection, kept alive
    EXPECT_EQ(pool->connections_opened(), 1u);
    EXPECT_EQ(pool->idle_connections("127.0.0.1", https.port(), true), 1u);
    EXPECT_EQ(pool->idle_connections("127.0.0.1", https.port(), false), 0u);
    EXPECT_EQ(https.last_sni, "");  // an IP literal is verified, never sent as SNI
    EXPECT_EQ(https.targets.size(), 3u);
}

TEST_F(http_pool_tls_test, tls_and_plain_connections_to_one_endpoint_are_pooled_apart) {
    trust(cert.cert_file());
    ASSERT_FALSE(send_tls(get("/a")).ec);
    // The same host:port asked for in plain HTTP gets a connection of its own (which fails
    // here, since the server speaks TLS only), never the pooled TLS one.
    const auto plain = send(get("/b"), true, "127.0.0.1", https.port());
    EXPECT_TRUE(plain.ec);
    EXPECT_EQ(https.accepted, 2);
    EXPECT_EQ(https.targets, std::vector<std::string>{"/a"});
    EXPECT_EQ(pool->idle_connections("127.0.0.1", https.port(), true), 1u);
}

TEST_F(http_pool_tls_test, an_untrusted_certificate_fails_closed_before_the_request_is_sent) {
    for (const std::string& ca : {std::string(), other.cert_file()}) {
        trust(ca);  // the system's CAs, or another certificate
        const auto o = send_tls(get("/secret"));
        EXPECT_EQ(o.ec, transport_errc::tls_verify_failed) << o.ec.message();
        EXPECT_NE(o.diag.client_message().find("nothing was sent"), std::string::npos)
            << o.diag.client_message();
        EXPECT_EQ(pool->idle_connections("127.0.0.1", https.port(), true), 0u);
    }
    EXPECT_TRUE(https.targets.empty());
}

TEST_F(http_pool_tls_test, a_certificate_for_another_name_fails_and_the_name_is_sent_as_sni) {
    trust(cert.cert_file(), "api.example.com");
    auto o = send_tls(get("/x"));
    EXPECT_EQ(o.ec, transport_errc::tls_verify_failed) << o.ec.message();
    EXPECT_NE(o.diag.client_message().find("api.example.com"), std::string::npos);
    // The certificate also names "localhost": verified against that name, it passes.
    trust(cert.cert_file(), "localhost");
    o = send_tls(get("/y"));
    ASSERT_FALSE(o.ec) << o.ec.message() << " " << o.diag.client_message();
    EXPECT_EQ(https.last_sni, "localhost");
    EXPECT_EQ(https.targets, std::vector<std::string>{"/y"});
}

TEST_F(http_pool_tls_test, ca_files_that_do_not_load_fail_without_connecting) {
    trust("/nonexistent/ca.pem");
    const auto o = send_tls(get());
    EXPECT_EQ(o.ec, transport_errc::tls_handshake_failed);
    EXPECT_NE(o.diag.client_message().find("/nonexistent/ca.pem"), std::string::npos)
        << o.diag.client_message();
    EXPECT_EQ(https.accepted, 0);
    EXPECT_EQ(pool->connections_opened(), 0u);
}

TEST_F(http_pool_tls_test, tls_to_a_plain_http_server_fails_cleanly) {
    trust(cert.cert_file());
    const auto o = send_tls(get("/plain"), server.port());
    EXPECT_EQ(o.ec, transport_errc::tls_handshake_failed) << o.ec.message();
    EXPECT_TRUE(server.requests.empty());  // the handshake bytes are not an HTTP request
}

TEST_F(http_pool_test, shutdown_closes_idle_connections_and_fails_later_sends) {
    ASSERT_FALSE(send(get()).ec);
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 1u);
    pool->shutdown();
    EXPECT_EQ(pool->idle_connections("127.0.0.1", server.port()), 0u);
    ASSERT_TRUE(run_until([&] { return server.closed == 1; }));
    const auto o = send(get());
    EXPECT_EQ(o.ec, asio::error::operation_aborted);
    EXPECT_EQ(server.requests.size(), 1u);
}

}  // namespace
}  // namespace lakemesh::mesh::detail
