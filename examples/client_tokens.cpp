// The four completion-token styles of lakemesh::consul::client, one KV call each, against an
// embedded dev Consul agent (or the agent named by CONSUL_HTTP_ADDR). The README's client
// snippets are taken from the marked blocks of this file (a test checks they stay identical).
#include <lakemesh/consul/client.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

namespace asio = boost::asio;
using namespace lakemesh;

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
    std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
    failures += ok ? 0 : 1;
}

asio::awaitable<void> coroutine_style(consul::client& c) {
    // [snippet:awaitable]
    // C++20 coroutine: co_await the operation; errors come back as values, never as exceptions.
    auto [ec, r] = co_await c.async_kv_get("config/greeting", asio::as_tuple(asio::use_awaitable));
    if (!ec && r.value) {
        std::cout << "coroutine read " << r.value->value << " at index " << r.meta.index << "\n";
    }
    // [/snippet]
    expect(!ec && r.value && r.value->value == "hello", "use_awaitable reads the key");
}

}  // namespace

int main() {
    std::optional<testing::dev_consul> agent;
    consul::client_config cfg;
    if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
        cfg = consul::client_config::from_env();  // throws lakemesh::error on a malformed variable
    } else {
        agent.emplace();
        cfg.addresses = {consul::agent_address{"127.0.0.1", agent->port()}};
    }

    asio::io_context io;
    consul::client c(io, cfg);

    bool written = false;
    {
        // [snippet:callback]
        // Callback: the handler receives the error code and a result<T> (value, meta, diag).
        c.async_kv_put("config/greeting", "hello",
                       [&](lakemesh::error_code ec, consul::result<bool> r) {
                           if (ec) {
                               std::cerr << ec.message() << ": " << r.diag.server_message() << "\n";
                           }
                           written = !ec && r.value;
                       });
        io.run();
        // [/snippet]
        io.restart();
    }
    expect(written, "callback put writes the key");

    asio::co_spawn(io, coroutine_style(c), asio::detached);
    io.run();
    io.restart();

    {
        // [snippet:future]
        // std::future: run the io_context elsewhere; an error is thrown from get() as a
        // boost::system::system_error.
        auto keys = c.async_kv_keys("config/", "/", asio::use_future);
        std::thread runner([&io] { io.run(); });
        std::cout << "keys under config/: " << keys.get().value.size() << "\n";
        runner.join();
        // [/snippet]
        io.restart();
    }

    {
        // [snippet:deferred]
        // deferred: build the operation now, start it later (or compose it).
        auto op = c.async_kv_delete("config/greeting", asio::deferred);
        std::move(op)([](lakemesh::error_code ec, consul::result<bool> r) {
            std::cout << "deleted: " << (!ec && r.value) << "\n";
        });
        io.run();
        // [/snippet]
        io.restart();
    }

    auto check = c.async_kv_get("config/greeting", asio::use_future);
    io.run();
    expect(!check.get().value.has_value(), "deferred delete removed the key");
    return failures == 0 ? 0 : 1;
}
