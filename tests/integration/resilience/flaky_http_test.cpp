// The resilience policy against real sockets: a loopback HTTP server in this file answers
// according to a script (fail N of M, hold until released), and a minimal HTTP client runs under
// async_execute. Faults are decided by request number, not by timing.
#include <lakemesh/error.hpp>
#include <lakemesh/resilience/policy.hpp>

#include <gtest/gtest.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <list>
#include <string>
#include <vector>

namespace lakemesh::resilience {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// What the server does with its n-th request (1-based).
struct reply {
    unsigned status = 200;
    bool hold = false;  ///< Answer only after release_held() (or never, if the client gives up).
};

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1, port chosen by the system.
class flaky_server {
  public:
    flaky_server(asio::io_context& io, std::function<reply(unsigned)> script)
        : io_(io),
          acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)),
          script_(std::move(script)) {
        asio::co_spawn(io_, accept_loop(), asio::detached);
    }

    tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    unsigned requests() const { return requests_; }
    unsigned in_flight() const { return in_flight_; }
    unsigned max_in_flight() const { return max_in_flight_; }

    /// Lets every held request answer.
    void release_held() {
        for (auto* timer : held_) {
            timer->cancel();
        }
    }
    void stop() {
        error_code ignored;
        acceptor_.close(ignored);
        release_held();
    }

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            error_code ec;
            tcp::socket socket =
                co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                co_return;
            }
            asio::co_spawn(io_, session(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> session(tcp::socket socket) {
        error_code ec;
        std::string request;
        co_await asio::async_read_until(socket, asio::dynamic_buffer(request), "\r\n\r\n",
                                        asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            co_return;
        }
        const reply r = script_(++requests_);
        ++in_flight_;
        max_in_flight_ = std::max(max_in_flight_, in_flight_);
        if (r.hold) {
            asio::steady_timer timer(io_, asio::steady_timer::time_point::max());
            const auto it = held_.insert(held_.end(), &timer);
            co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            held_.erase(it);
        }
        --in_flight_;
        const std::string response = "HTTP/1.1 " + std::to_string(r.status) +
                                     " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(socket, asio::buffer(response),
                                   asio::redirect_error(asio::use_awaitable, ec));
    }

    asio::io_context& io_;
    tcp::acceptor acceptor_;
    std::function<reply(unsigned)> script_;
    unsigned requests_ = 0;
    unsigned in_flight_ = 0;
    unsigned max_in_flight_ = 0;
    std::list<asio::steady_timer*> held_;
};

/// GET over a fresh connection; completes with the error the HTTP status maps to.
asio::awaitable<error_code> http_get(tcp::endpoint server, std::string path) {
    error_code ec;
    tcp::socket socket(co_await asio::this_coro::executor);
    co_await socket.async_connect(server, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        co_return ec == asio::error::operation_aborted ? ec : transport_errc::connect_failed;
    }
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(request),
                               asio::redirect_error(asio::use_awaitable, ec));
    std::string response;
    if (!ec) {
        co_await asio::async_read_until(socket, asio::dynamic_buffer(response), "\r\n",
                                        asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
        co_return ec == asio::error::operation_aborted ? ec : transport_errc::connection_closed;
    }
    // "HTTP/1.1 503 X"
    if (response.size() < 12 || response.compare(0, 5, "HTTP/") != 0) {
        co_return transport_errc::protocol_error;
    }
    co_return error_from_http_status(static_cast<unsigned>(std::stoi(response.substr(9, 3))));
}

/// An Asio asynchronous operation with per-operation cancellation (through co_spawn).
template <typename CompletionToken>
auto async_http_get(asio::any_io_executor ex, tcp::endpoint server, std::string path,
                    CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(error_code)>(
        [ex, server, path](auto handler) {
            auto slot = asio::get_associated_cancellation_slot(handler);
            asio::co_spawn(
                ex, http_get(server, path),
                asio::bind_cancellation_slot(
                    slot, [h = std::move(handler)](std::exception_ptr e, error_code ec) mutable {
                        std::move(h)(e ? error_code(transport_errc::protocol_error) : ec);
                    }));
        },
        token);
}

struct counting_listener : event_listener {
    unsigned attempts = 0;
    unsigned retries = 0;
    std::vector<breaker_state> transitions;
    std::vector<error_code> rejections;
    void on_attempt(const attempt_event&) override { ++attempts; }
    void on_retry(const retry_event&) override { ++retries; }
    void on_breaker_transition(const breaker_transition_event& e) override {
        transitions.push_back(e.to);
    }
    void on_rejection(const rejection_event& e) override { rejections.push_back(e.reason); }
};

policy_config base_config() {
    policy_config cfg;
    cfg.target = "flaky";
    cfg.retry.max_attempts = 1;
    cfg.retry.base_backoff = 1ms;
    cfg.retry.max_backoff = 2ms;
    cfg.retry_budget.window = 0s;
    cfg.circuit_breaker.reset();
    cfg.bulkhead.reset();
    return cfg;
}

struct FlakyHttp : ::testing::Test {
    asio::io_context io;
    std::shared_ptr<counting_listener> events = std::make_shared<counting_listener>();

    /// Runs `body` as a coroutine and the io_context until everything finished.
    void run(std::function<asio::awaitable<void>()> body) {
        bool finished = false;
        asio::co_spawn(io, std::move(body), [&](std::exception_ptr e) {
            finished = true;
            if (e) {
                std::rethrow_exception(e);
            }
        });
        io.run_for(20s);
        ASSERT_TRUE(finished) << "test body did not finish";
    }

    auto get(flaky_server& server) {
        return [ex = io.get_executor(), ep = server.endpoint()](auto token) {
            return async_http_get(ex, ep, "/", std::move(token));
        };
    }
};

TEST_F(FlakyHttp, RetriesRecoverFromAServerThatFailsTwoOfEveryThree) {
    flaky_server server(io, [](unsigned n) { return reply{(n - 1) % 3 < 2 ? 503U : 200U}; });
    auto cfg = base_config();
    cfg.retry.max_attempts = 3;
    policy p(io, cfg, events, 7);
    std::vector<error_code> results;
    run([&]() -> asio::awaitable<void> {
        for (int i = 0; i < 10; ++i) {
            error_code ec;
            co_await async_execute(p, get(server), asio::redirect_error(asio::use_awaitable, ec));
            results.push_back(ec);
        }
        server.stop();
    });
    EXPECT_EQ(results, std::vector<error_code>(10));
    EXPECT_EQ(server.requests(), 30U);
    EXPECT_EQ(events->attempts, 30U);
    EXPECT_EQ(events->retries, 20U);
}

TEST_F(FlakyHttp, WithTooFewAttemptsRetriesAreExhausted) {
    flaky_server server(io, [](unsigned n) { return reply{(n - 1) % 3 < 2 ? 503U : 200U}; });
    auto cfg = base_config();
    cfg.retry.max_attempts = 2;
    policy p(io, cfg, events, 7);
    error_code result, last;
    run([&]() -> asio::awaitable<void> {
        co_await async_execute(p, call_options{.last_error = &last}, get(server),
                               asio::redirect_error(asio::use_awaitable, result));
        server.stop();
    });
    EXPECT_EQ(result, policy_errc::retries_exhausted);
    EXPECT_EQ(last, consul_errc::unavailable);
    EXPECT_EQ(server.requests(), 2U);
}

TEST_F(FlakyHttp, BreakerOpensRejectsThenProbesAndCloses) {
    // Requests 1-3 fail, the first probe (4) fails too, the second probe (5) succeeds.
    flaky_server server(io, [](unsigned n) { return reply{n <= 4 ? 503U : 200U}; });
    auto cfg = base_config();
    cfg.circuit_breaker = circuit_breaker_config{.consecutive_failures = 3,
                                                 .failure_rate_threshold = 0.0,
                                                 .open_duration = 30ms,
                                                 .open_duration_multiplier = 2.0,
                                                 .max_open_duration = 1s,
                                                 .half_open_probes = 1};
    policy p(io, cfg, events, 7);
    std::vector<error_code> results;
    run([&]() -> asio::awaitable<void> {
        auto call = [&]() -> asio::awaitable<void> {
            error_code ec;
            co_await async_execute(p, get(server), asio::redirect_error(asio::use_awaitable, ec));
            results.push_back(ec);
        };
        for (int i = 0; i < 6; ++i) {
            co_await call();  // 3 failures, then 3 rejections
        }
        asio::steady_timer timer(io);
        // Waiting for the end of an open period is the one place real time must pass.
        while (p.breaker().state() != breaker_state::closed) {
            timer.expires_at(p.breaker().open_until() + 1ms);
            co_await timer.async_wait(asio::use_awaitable);
            co_await call();
        }
        co_await call();
        server.stop();
    });
    const error_code unavailable = consul_errc::unavailable;
    const error_code open = policy_errc::circuit_open;
    EXPECT_EQ(results, (std::vector<error_code>{unavailable, unavailable, unavailable, open, open,
                                                open, unavailable, error_code{}, error_code{}}));
    EXPECT_EQ(server.requests(), 6U);
    EXPECT_EQ(events->transitions,
              (std::vector<breaker_state>{breaker_state::open, breaker_state::half_open,
                                          breaker_state::open, breaker_state::half_open,
                                          breaker_state::closed}));
    EXPECT_EQ(events->rejections, std::vector<error_code>(3, open));
}

TEST_F(FlakyHttp, BulkheadCapsConcurrencyQueuesAndRejects) {
    flaky_server server(io, [](unsigned) { return reply{200, true}; });
    auto cfg = base_config();
    cfg.bulkhead = bulkhead_config{.max_concurrent = 3, .max_queue = 2, .max_wait = 0ms};
    policy p(io, cfg, events, 7);
    std::vector<error_code> results;
    run([&]() -> asio::awaitable<void> {
        for (int i = 0; i < 8; ++i) {
            async_execute(p, get(server), [&](error_code ec) { results.push_back(ec); });
        }
        asio::steady_timer poll(io);
        while (server.requests() < 3) {
            poll.expires_after(1ms);
            co_await poll.async_wait(asio::use_awaitable);
        }
        // Three in flight at the server, two queued, three rejected at once.
        EXPECT_EQ(server.in_flight(), 3U);
        EXPECT_EQ(p.concurrency().waiting(), 2U);
        EXPECT_EQ(results, std::vector<error_code>(3, policy_errc::bulkhead_full));
        while (results.size() < 8) {
            server.release_held();
            poll.expires_after(1ms);
            co_await poll.async_wait(asio::use_awaitable);
        }
        server.stop();
    });
    EXPECT_EQ(server.requests(), 5U);
    EXPECT_EQ(server.max_in_flight(), 3U);
    EXPECT_EQ(std::count(results.begin(), results.end(), error_code{}), 5);
    EXPECT_EQ(std::count(results.begin(), results.end(), error_code(policy_errc::bulkhead_full)),
              3);
    EXPECT_EQ(events->rejections.size(), 3U);
}

TEST_F(FlakyHttp, PerTryTimeoutCancelsASlowRequestAndTheRetrySucceeds) {
    // The first request never gets an answer; the second is answered at once.
    flaky_server server(io, [](unsigned n) { return reply{200, n == 1}; });
    auto cfg = base_config();
    cfg.retry.max_attempts = 2;
    cfg.retry.per_try_timeout = 50ms;
    policy p(io, cfg, events, 7);
    error_code result = asio::error::would_block;
    run([&]() -> asio::awaitable<void> {
        co_await async_execute(p, get(server), asio::redirect_error(asio::use_awaitable, result));
        server.stop();
    });
    EXPECT_FALSE(result);
    EXPECT_EQ(server.requests(), 2U);
    EXPECT_EQ(events->retries, 1U);
}

TEST_F(FlakyHttp, DeadlineCancelsTheRequestInFlight) {
    flaky_server server(io, [](unsigned) { return reply{200, true}; });
    auto cfg = base_config();
    cfg.timeout = 50ms;
    policy p(io, cfg, events, 7);
    error_code result;
    run([&]() -> asio::awaitable<void> {
        co_await async_execute(p, get(server), asio::redirect_error(asio::use_awaitable, result));
        server.stop();
    });
    EXPECT_EQ(result, policy_errc::deadline_exceeded);
    EXPECT_EQ(server.requests(), 1U);
}

}  // namespace
}  // namespace lakemesh::resilience
