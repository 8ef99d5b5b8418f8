// consul::client against dev_consul (or a real agent): KV, status, raw calls, completion tokens,
// blocking queries, cancellation, failover, pool reuse, validation and error mapping.
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "run_future.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <thread>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::client;
using consul::client_config;
using consul::kv_pair;
using consul::query_options;
using consul::result;

/// Runs `op(client)` (which returns a future) on a background io thread and waits for it.
class client_fixture : public ::testing::Test {
  protected:
    consul_target target;
    asio::io_context io;
    client c{io, target.client_config()};
    std::string p = unique_name("client");

    template <class F>
    auto run(F&& start) {
        return test::run_future(io, std::forward<F>(start));
    }
};

TEST_F(client_fixture, callback_token_put_then_get) {
    bool put_ok = false;
    std::optional<kv_pair> got;
    error_code put_ec, get_ec;
    c.async_kv_put(p + "/a", "hello", {}, [&](error_code ec, result<bool> r) {
        put_ec = ec;
        put_ok = r.value;
        c.async_kv_get(p + "/a", {}, [&](error_code ec2, result<std::optional<kv_pair>> g) {
            get_ec = ec2;
            got = g.value;
            EXPECT_GT(g.meta.index, 0u);
            EXPECT_TRUE(g.meta.known_leader);
        });
    });
    io.run();
    ASSERT_FALSE(put_ec) << put_ec.message();
    EXPECT_TRUE(put_ok);
    ASSERT_FALSE(get_ec) << get_ec.message();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->key, p + "/a");
    EXPECT_EQ(got->value, "hello");
    EXPECT_GT(got->modify_index, 0u);
}

TEST_F(client_fixture, use_future_token) {
    auto put = c.async_kv_put(p + "/f", std::string("\0bin\xff", 5), {}, asio::use_future);
    io.run();
    EXPECT_TRUE(put.get().value);
    io.restart();
    auto get = c.async_kv_get(p + "/f", {}, asio::use_future);
    io.run();
    auto r = get.get();
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->value, std::string("\0bin\xff", 5));
}

TEST_F(client_fixture, use_awaitable_token) {
    std::string seen;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto w = co_await c.async_kv_put(p + "/co", "coroutine", asio::use_awaitable);
            EXPECT_TRUE(w.value);
            consul::query_options stale;
            stale.consistency = consul::consistency_mode::stale;
            auto r = co_await c.async_kv_get(p + "/co", stale, asio::use_awaitable);
            seen = r.value ? r.value->value : "";
            auto leader = co_await c.async_status_leader(asio::use_awaitable);
            EXPECT_FALSE(leader.value.empty());
        },
        asio::detached);
    io.run();
    EXPECT_EQ(seen, "coroutine");
}

TEST_F(client_fixture, status_leader_is_one_of_the_raft_peers) {
    auto leader = run([&] { return c.async_status_leader(asio::use_future); });
    auto peers = run([&] { return c.async_status_peers(asio::use_future); });
    ASSERT_FALSE(leader.value.empty());
    ASSERT_FALSE(peers.value.empty());
    EXPECT_NE(std::find(peers.value.begin(), peers.value.end(), leader.value), peers.value.end())
        << leader.value;
    // host:port, as Consul answers.
    EXPECT_NE(leader.value.rfind(':'), std::string::npos);
    if (target.dev() != nullptr) {
        EXPECT_EQ(peers.value, std::vector<std::string>{"127.0.0.1:8300"});
    }
}

TEST_F(client_fixture, deferred_token) {
    auto op = c.async_kv_put(p + "/d", "deferred", {}, asio::deferred);
    bool done = false;
    std::move(op)([&](error_code ec, result<bool> r) {
        EXPECT_FALSE(ec);
        done = r.value;
    });
    io.run();
    EXPECT_TRUE(done);
}

TEST_F(client_fixture, missing_key_is_nullopt_not_an_error) {
    auto r = c.async_kv_get(p + "/missing", {}, asio::use_future);
    io.run();
    auto v = r.get();
    EXPECT_FALSE(v.value.has_value());
    EXPECT_GT(v.meta.index, 0u);
}

TEST_F(client_fixture, list_keys_and_delete) {
    for (auto k : {"x/1", "x/2", "x/y/3", "z"}) {
        c.async_kv_put(p + "/" + k, "v", {}, asio::detached);
    }
    io.run();
    io.restart();
    auto list = c.async_kv_list(p + "/x", {}, asio::use_future);
    auto keys = c.async_kv_keys(p + "/", "/", {}, asio::use_future);
    auto none = c.async_kv_list(p + "/nothing", {}, asio::use_future);
    io.run();
    EXPECT_EQ(list.get().value.size(), 3u);
    EXPECT_EQ(keys.get().value, (std::vector<std::string>{p + "/x/", p + "/z"}));
    EXPECT_TRUE(none.get().value.empty());
    io.restart();
    auto del = c.async_kv_delete(p + "/x", {.recurse = true}, asio::use_future);
    io.run();
    EXPECT_TRUE(del.get().value);
    io.restart();
    auto after = c.async_kv_list(p + "/", {}, asio::use_future);
    io.run();
    auto rest = after.get().value;
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0].key, p + "/z");
}

TEST_F(client_fixture, cas_conflicts_report_false) {
    auto first = run([&] { return c.async_kv_put(p + "/cas", "1", {.cas = 0}, asio::use_future); });
    EXPECT_TRUE(first.value);
    auto again = run([&] { return c.async_kv_put(p + "/cas", "2", {.cas = 0}, asio::use_future); });
    EXPECT_FALSE(again.value);
    auto cur = run([&] { return c.async_kv_get(p + "/cas", {}, asio::use_future); });
    auto idx = cur.value->modify_index;
    EXPECT_FALSE(run([&] {
                     return c.async_kv_put(p + "/cas", "3", {.cas = idx + 100}, asio::use_future);
                 }).value);
    EXPECT_TRUE(
        run([&] { return c.async_kv_put(p + "/cas", "4", {.cas = idx}, asio::use_future); }).value);
    EXPECT_FALSE(
        run([&] { return c.async_kv_delete(p + "/cas", {.cas = idx}, asio::use_future); }).value);
}

TEST_F(client_fixture, lock_acquire_and_release_between_two_sessions) {
    auto make_session = [&] {
        auto r = run([&] {
            return c.async_raw({.method = "PUT",
                                .path = "session/create",
                                .body = R"({"TTL":"30s"})",
                                .idempotent = false},
                               asio::use_future);
        });
        EXPECT_EQ(r.value.status, 200u) << r.value.body;
        return nlohmann::json::parse(r.value.body)["ID"].get<std::string>();
    };
    auto s1 = make_session();
    auto s2 = make_session();
    EXPECT_TRUE(run([&] {
                    return c.async_kv_put(p + "/lock", "owner1", {.acquire = s1}, asio::use_future);
                }).value);
    EXPECT_FALSE(run([&] {
                     return c.async_kv_put(p + "/lock", "owner2", {.acquire = s2},
                                           asio::use_future);
                 }).value);
    auto held = run([&] { return c.async_kv_get(p + "/lock", {}, asio::use_future); });
    EXPECT_EQ(held.value->session, s1);
    EXPECT_EQ(held.value->lock_index, 1u);
    EXPECT_FALSE(run([&] {
                     return c.async_kv_put(p + "/lock", "x", {.release = s2}, asio::use_future);
                 }).value);
    EXPECT_TRUE(run([&] {
                    return c.async_kv_put(p + "/lock", "free", {.release = s1}, asio::use_future);
                }).value);
    EXPECT_TRUE(run([&] {
                    return c.async_kv_put(p + "/lock", "owner2", {.acquire = s2}, asio::use_future);
                }).value);
    auto now = run([&] { return c.async_kv_get(p + "/lock", {}, asio::use_future); });
    EXPECT_EQ(now.value->session, s2);
    EXPECT_EQ(now.value->lock_index, 2u);
    for (const auto& s : {s1, s2}) {
        run([&] {
            return c.async_raw({.method = "PUT", .path = "session/destroy/" + s}, asio::use_future);
        });
    }
}

TEST_F(client_fixture, blocking_query_wakes_on_change_with_larger_index) {
    run([&] { return c.async_kv_put(p + "/w", "1", {}, asio::use_future); });
    auto first = run([&] { return c.async_kv_get(p + "/w", {}, asio::use_future); });
    query_options q;
    q.index = first.meta.index;
    q.wait = 10s;
    std::optional<result<std::optional<kv_pair>>> woken;
    c.async_kv_get(p + "/w", q, [&](error_code ec, auto r) {
        EXPECT_FALSE(ec);
        woken = std::move(r);
    });
    // A second client writes once the query is held.
    io.restart();
    asio::io_context io2;
    client writer(io2, target.client_config());
    if (auto* d = target.dev()) {
        while (d->blocking_queries() == 0) {
            io.run_one_for(5ms);
        }
    } else {
        io.run_for(200ms);
    }
    auto w = writer.async_kv_put(p + "/w", "2", {}, asio::use_future);
    io2.run();
    EXPECT_TRUE(w.get().value);
    while (!woken) {
        io.run_one_for(10ms);
    }
    EXPECT_GT(woken->meta.index, first.meta.index);
    EXPECT_EQ(woken->value->value, "2");
}

// Boost 1.81 has no asio::cancel_after (it came in 1.86); a timer emitting on a cancellation
// slot is the same mechanism it uses.
TEST_F(client_fixture, per_operation_cancellation_aborts_a_blocking_query) {
    run([&] { return c.async_kv_put(p + "/c", "1", {}, asio::use_future); });
    auto first = run([&] { return c.async_kv_get(p + "/c", {}, asio::use_future); });
    error_code got;
    asio::cancellation_signal cancel;
    c.async_kv_get(
        p + "/c", {.index = first.meta.index, .wait = 30s},
        asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, auto) { got = ec; }));
    asio::steady_timer timeout(io, 100ms);
    timeout.async_wait([&](error_code) { cancel.emit(asio::cancellation_type::terminal); });
    auto start = std::chrono::steady_clock::now();
    io.restart();
    io.run();
    EXPECT_EQ(got, asio::error::operation_aborted);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    // The client stays usable after a cancellation.
    EXPECT_TRUE(run([&] { return c.async_kv_put(p + "/c", "2", {}, asio::use_future); }).value);
}

// Operations complete without a post of their own: a failure found before anything is sent
// relies on co_spawn posting, so the handler still never runs inside the initiating function,
// whether that is called from outside the io_context or from one of its handlers.
TEST_F(client_fixture, handler_never_runs_inside_the_initiating_function) {
    int calls = 0;
    bool called_inside = false;
    auto handler = [&](error_code ec, auto) {
        EXPECT_EQ(ec.category(), validation_category()) << ec.message();
        ++calls;
    };
    c.async_kv_get("", {}, handler);
    EXPECT_EQ(calls, 0);
    asio::post(io, [&] {
        const int before = calls;
        c.async_kv_get("", {}, handler);
        called_inside = calls != before;
    });
    io.run();
    EXPECT_EQ(calls, 2);
    EXPECT_FALSE(called_inside);
}

// A completion runs on the executor associated with the handler (here a strand), not merely on
// the client's.
TEST_F(client_fixture, completion_runs_on_the_handlers_executor) {
    auto strand = asio::make_strand(io);
    bool done = false;
    bool on_strand = false;
    c.async_kv_get(p + "/none", {}, asio::bind_executor(strand, [&](error_code ec, auto) {
                       EXPECT_FALSE(ec) << ec.message();
                       on_strand = strand.running_in_this_thread();
                       done = true;
                   }));
    io.run();
    EXPECT_TRUE(done);
    EXPECT_TRUE(on_strand);
}

// A handler bound to another io_context: the operation keeps work on that context while it is
// pending, so its run() waits for the completion instead of returning at once, and the handler
// runs there. (When the handler's executor is the client's own, nothing extra is tracked.)
TEST_F(client_fixture, completion_on_another_io_context_keeps_that_context_running) {
    asio::io_context other;
    bool done = false;
    std::thread::id ran_on;
    // Started before the client's thread runs, so no call races with it.
    c.async_kv_get(p + "/none", {}, asio::bind_executor(other, [&](error_code ec, auto r) {
                       EXPECT_FALSE(ec) << ec.message();
                       EXPECT_FALSE(r.value.has_value());
                       ran_on = std::this_thread::get_id();
                       done = true;
                   }));
    std::thread client_thread([this] { io.run(); });
    const auto handlers_run = other.run();
    client_thread.join();
    EXPECT_EQ(handlers_run, 1u);
    EXPECT_TRUE(done);
    EXPECT_EQ(ran_on, std::this_thread::get_id());
}

// The handler completes inline from the finished operation, and a caller commonly starts its
// next operation right there with the same cancellation slot: the finished operation must have
// let go of the slot, and the new one must be cancellable through it.
TEST_F(client_fixture, next_operation_started_from_the_handler_reuses_the_cancellation_slot) {
    run([&] { return c.async_kv_put(p + "/s", "1", {}, asio::use_future); });
    asio::cancellation_signal cancel;
    error_code first;
    error_code second;
    bool second_done = false;
    asio::steady_timer timeout(io);
    c.async_kv_get(
        p + "/s", {}, asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec, auto r) {
            first = ec;
            query_options blocking;
            blocking.index = r.meta.index;
            blocking.wait = 30s;
            c.async_kv_get(p + "/s", blocking,
                           asio::bind_cancellation_slot(cancel.slot(), [&](error_code ec2, auto) {
                               second = ec2;
                               second_done = true;
                           }));
            timeout.expires_after(100ms);
            timeout.async_wait([&](error_code) { cancel.emit(asio::cancellation_type::terminal); });
        }));
    auto start = std::chrono::steady_clock::now();
    io.restart();
    io.run();
    EXPECT_FALSE(first) << first.message();
    ASSERT_TRUE(second_done);
    EXPECT_EQ(second, asio::error::operation_aborted);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(client_fixture, keep_alive_reuses_one_connection_for_serial_calls) {
    for (int i = 0; i < 20; ++i) {
        run([&] { return c.async_kv_get(p + "/none", {}, asio::use_future); });
    }
    EXPECT_EQ(c.open_connections(0), 1u);
}

TEST_F(client_fixture, concurrent_calls_are_capped_by_the_pool) {
    auto cfg = target.client_config();
    cfg.pool_size_per_address = 3;
    client capped(io, cfg);
    std::vector<std::future<result<std::optional<kv_pair>>>> futs;
    for (int i = 0; i < 30; ++i) {
        futs.push_back(capped.async_kv_get(p + "/k", {}, asio::use_future));
    }
    std::size_t max_open = 0;
    io.restart();
    while (!std::all_of(futs.begin(), futs.end(),
                        [](auto& f) { return f.wait_for(0s) == std::future_status::ready; })) {
        io.run_one_for(10ms);
        max_open = std::max(max_open, capped.open_connections(0));
    }
    EXPECT_LE(max_open, 3u);
    for (auto& f : futs) {
        EXPECT_NO_THROW(f.get());
    }
}

TEST_F(client_fixture, validation_errors_send_nothing) {
    // Runs on a real agent too; only the request count needs dev_consul.
    const auto before = target.dev() != nullptr ? target.dev()->requests_served() : 0;
    for (const std::string& key : {std::string("a\r\nX-Evil: 1"), std::string("a\x01"),
                                   std::string("/lead"), std::string()}) {
        auto f = c.async_kv_get(key, {}, asio::use_future);
        io.restart();
        io.run();
        try {
            f.get();
            ADD_FAILURE() << "expected a validation error for key of size " << key.size();
        } catch (const boost::system::system_error& e) {
            EXPECT_EQ(e.code().category(), validation_category()) << e.code().message();
        }
    }
    error_code ec;
    c.async_kv_put(p + "/x", "v", {.acquire = "bad\nsession"}, [&](error_code e, auto) { ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(ec, validation_errc::header_injection);
    if (target.dev() != nullptr) {
        EXPECT_EQ(target.dev()->requests_served(), before);
    }
}

TEST_F(client_fixture, flags_are_stored_with_the_value) {
    EXPECT_TRUE(run([&] {
                    return c.async_kv_put(p + "/f", "v", {.flags = 0xfeedULL << 32},
                                          asio::use_future);
                }).value);
    auto r = run([&] { return c.async_kv_get(p + "/f", {}, asio::use_future); });
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->flags, 0xfeedULL << 32);
    auto all = run([&] { return c.async_kv_list(p + "/f", {}, asio::use_future); });
    ASSERT_EQ(all.value.size(), 1u);
    EXPECT_EQ(all.value[0].flags, 0xfeedULL << 32);
}

TEST_F(client_fixture, percent_encoding_of_keys) {
    const std::string key = p + "/sp ace/q?u#h%25&=+";
    EXPECT_TRUE(run([&] { return c.async_kv_put(key, "v", {}, asio::use_future); }).value);
    auto r = run([&] { return c.async_kv_get(key, {}, asio::use_future); });
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->key, key);
}

TEST(client, wrong_token_is_permission_denied_with_consuls_text) {
    testing::dev_consul_options o;
    o.acl_token = "the-token";
    consul_target target(o);
    LAKEMESH_NEEDS_DEV(target);
    asio::io_context io;
    auto cfg = target.client_config();
    cfg.token = "wrong-token";
    client c(io, cfg);
    error_code ec;
    diagnostics diag;
    c.async_kv_get("k", {}, [&](error_code e, auto r) {
        ec = e;
        diag = r.diag;
    });
    io.run();
    EXPECT_EQ(ec, consul_errc::permission_denied);
    EXPECT_EQ(diag.http_status(), 403u);
    EXPECT_EQ(diag.server_message(), "ACL not found");
    EXPECT_FALSE(is_retryable(ec));

    cfg.token = "the-token";
    client ok(io, cfg);
    auto f = ok.async_kv_put("k", "v", {}, asio::use_future);
    io.restart();
    io.run();
    EXPECT_TRUE(f.get().value);
}

TEST(client, fails_over_to_the_second_address) {
    consul_target target;
    LAKEMESH_NEEDS_DEV(target);
    // A port that was just free: connecting to it is refused.
    std::uint16_t dead_port;
    {
        testing::dev_consul tmp;
        dead_port = tmp.port();
    }
    asio::io_context io;
    client_config cfg;
    cfg.addresses = {{"127.0.0.1", dead_port}, {"127.0.0.1", target.port()}};
    client c(io, cfg);
    auto f = c.async_status_leader(asio::use_future);
    io.run();
    EXPECT_EQ(f.get().value, "127.0.0.1:8300");
    // Every address down: all_addresses_failed, retryable.
    client_config dead;
    dead.addresses = {{"127.0.0.1", dead_port}, {"127.0.0.1", dead_port}};
    client d(io, dead);
    error_code ec;
    diagnostics diag;
    d.async_status_leader([&](error_code e, auto r) {
        ec = e;
        diag = r.diag;
    });
    io.restart();
    io.run();
    EXPECT_EQ(ec, transport_errc::all_addresses_failed);
    EXPECT_TRUE(is_retryable(ec));
    EXPECT_NE(diag.client_message().find(std::to_string(dead_port)), std::string::npos);
}

TEST(client, connect_timeout_ends_a_connect_that_never_completes) {
    // A listener with a full accept queue: Linux drops further SYNs, so a connect neither
    // succeeds nor fails. Only connect_timeout can end it (the request timeout is far longer).
    asio::io_context io;
    asio::ip::tcp::acceptor full(io);
    const asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    full.open(ep.protocol());
    full.bind(ep);
    full.listen(0);
    const auto port = full.local_endpoint().port();
    std::vector<std::unique_ptr<asio::ip::tcp::socket>> fillers;
    for (int i = 0; i < 4; ++i) {
        fillers.push_back(std::make_unique<asio::ip::tcp::socket>(io));
        fillers.back()->async_connect({ep.address(), port}, [](error_code) {});
    }
    io.run_for(200ms);
    io.restart();

    client_config cfg;
    cfg.addresses = {{"127.0.0.1", port}};
    cfg.connect_timeout = 300ms;
    cfg.request_timeout = 60s;
    client c(io, cfg);
    std::optional<error_code> ec;
    diagnostics diag;
    c.async_kv_get("k", [&](error_code e, auto r) {
        ec = e;
        diag = r.diag;
    });
    const auto start = std::chrono::steady_clock::now();
    while (!ec && std::chrono::steady_clock::now() - start < 30s) {
        io.run_one_for(50ms);
    }
    ASSERT_TRUE(ec) << "no completion: connect_timeout did not fire";
    EXPECT_EQ(*ec, transport_errc::timeout) << ec->message();
    EXPECT_NE(diag.client_message().find("connecting to 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << diag.client_message();
    EXPECT_TRUE(is_retryable(*ec));
}

TEST(client, request_timeout_closes_a_connection_that_never_answers) {
    // An agent that accepts and then stays silent: the request must end with a timeout, and the
    // connection must not hold the io_context once it is done.
    asio::io_context io;
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    asio::ip::tcp::socket accepted(io);
    silent.async_accept(accepted, [](error_code) {});
    client_config cfg;
    cfg.addresses = {{"127.0.0.1", silent.local_endpoint().port()}};
    cfg.request_timeout = 200ms;
    client c(io, cfg);
    error_code ec;
    auto start = std::chrono::steady_clock::now();
    c.async_kv_get("k", [&](error_code e, auto) { ec = e; });
    io.run();
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(ec, transport_errc::timeout);
    EXPECT_TRUE(is_retryable(ec));
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 5s);
    EXPECT_EQ(c.open_connections(), 0u);
}

TEST(client, idle_pooled_connections_do_not_keep_the_io_context_running) {
    consul_target target;
    LAKEMESH_NEEDS_DEV(target);
    asio::io_context io;
    auto cfg = target.client_config();
    client c(io, cfg);
    auto f = c.async_kv_get("no-such-key", asio::use_future);
    auto start = std::chrono::steady_clock::now();
    io.run();  // returns once the call is done, although its connection stays open and pooled
    EXPECT_LT(std::chrono::steady_clock::now() - start, cfg.connect_timeout);
    EXPECT_FALSE(f.get().value);
    EXPECT_EQ(c.open_connections(), 1u);
}

TEST(client_agent_restart, reconnects_transparently_after_the_agent_closed_idle_connections) {
    consul_target target;
    LAKEMESH_NEEDS_CONTROL(target);
    asio::io_context io;
    client c(io, target.client_config());
    auto f1 = c.async_kv_put("a", "1", {}, asio::use_future);
    io.run();
    EXPECT_TRUE(f1.get().value);
    target.restart_agent(/*keep_state=*/true);  // closes every connection
    auto f2 = c.async_kv_get("a", {}, asio::use_future);
    io.restart();
    io.run();
    auto r = f2.get();
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->value, "1");
}

TEST(client, server_errors_map_to_retryable_codes_and_body_limit_is_enforced) {
    consul_target target;
    LAKEMESH_NEEDS_DEV(target);
    asio::io_context io;
    client c(io, target.client_config());
    target.dev()->fail_next(1, testing::dev_fault::http_500);
    error_code ec;
    diagnostics diag;
    c.async_kv_get("k", {}, [&](error_code e, auto r) {
        ec = e;
        diag = r.diag;
    });
    io.run();
    EXPECT_EQ(ec, consul_errc::internal_error);
    EXPECT_TRUE(is_retryable(ec));
    EXPECT_NE(diag.server_message().find("injected fault"), std::string::npos);

    auto put = c.async_kv_put("big", std::string(10000, 'x'), {}, asio::use_future);
    io.restart();
    io.run();
    EXPECT_TRUE(put.get().value);
    auto cfg = target.client_config();
    cfg.max_response_body = 1000;
    client small(io, cfg);
    small.async_kv_get("big", {}, [&](error_code e, auto) { ec = e; });
    io.restart();
    io.run();
    EXPECT_EQ(ec, decode_errc::body_too_large);
}

}  // namespace
}  // namespace lakemesh::test
