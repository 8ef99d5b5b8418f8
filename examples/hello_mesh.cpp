// The smallest whole use of lakemesh: an "orders" service that registers itself in Consul and
// calls an "inventory" service through discovery, load balancing and its call policy. The
// README's first snippet is the marked block of this file (a test checks they stay identical).
//
// Runs against an embedded dev_consul, or the agent in CONSUL_HTTP_ADDR. Two inventory
// instances (tiny Beast servers on this io_context, each registered by its own mesh) answer;
// orders calls them a few times, then everything stops in order. Exit code 0 when every call
// was answered.
#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/testing/dev_consul.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstdlib>
#include <deque>
#include <iostream>
#include <optional>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

namespace {

/// An inventory instance: answers every GET with its own name.
asio::awaitable<void> serve(tcp::socket sock, std::string name) {
    boost::beast::flat_buffer buf;
    for (;;) {
        http::request<http::string_body> req;
        auto [ec, n] =
            co_await http::async_read(sock, buf, req, asio::as_tuple(asio::use_awaitable));
        if (ec) {
            co_return;
        }
        http::response<http::string_body> res{http::status::ok, 11};
        res.body() = "12 left (answered by " + name + ")";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await http::async_write(sock, res, asio::as_tuple(asio::use_awaitable));
        if (wec) {
            co_return;
        }
    }
}

asio::awaitable<void> accept(tcp::acceptor& acceptor, std::string name) {
    for (;;) {
        auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec) {
            co_return;
        }
        asio::co_spawn(acceptor.get_executor(), serve(std::move(sock), name), asio::detached);
    }
}

// [snippet:mesh]
asio::awaitable<int> run_orders(lakemesh::consul::client_config consul) {
    lakemesh::mesh_config cfg;
    cfg.service_name = "orders";
    cfg.port = 8080;      // where orders itself would serve
    cfg.consul = consul;  // or lakemesh::mesh_config::from_env()
    cfg.dependencies = {"inventory"};
    cfg.services["inventory"].policy.timeout = std::chrono::seconds(2);
    lakemesh::mesh_integrator mesh(co_await asio::this_coro::executor, cfg);
    co_await mesh.async_start(asio::use_awaitable);  // registered, cache primed

    int answered = 0;
    for (int i = 0; i < 4; ++i) {
        lakemesh::mesh::http_request req{.method = "GET", .target = "/stock/42"};
        lakemesh::call_options opts;
        auto [ec, res] =
            co_await mesh.async_call("inventory", req, opts, asio::as_tuple(asio::use_awaitable));
        if (ec) {
            std::cout << "call failed: " << res.diag.client_message() << "\n";
            continue;
        }
        std::cout << res.endpoint << " -> " << res.response.body << "\n";
        ++answered;
    }
    co_await mesh.async_stop(asio::use_awaitable);  // calls drained, deregistered
    co_return answered;
}
// [/snippet]

}  // namespace

int main() {
    std::optional<lakemesh::testing::dev_consul> agent;
    lakemesh::consul::client_config consul;
    if (std::getenv("CONSUL_HTTP_ADDR") != nullptr) {
        lakemesh::diagnostics diag;
        lakemesh::error_code ec;
        consul = lakemesh::consul::client_config::from_env(ec, diag);
        if (ec) {
            std::cerr << "CONSUL_HTTP_ADDR: " << diag.client_message() << "\n";
            return 2;
        }
    } else {
        agent.emplace();
        consul.addresses = {lakemesh::consul::agent_address{"127.0.0.1", agent->port()}};
    }

    asio::io_context io;
    // Two inventory instances, each registered by its own mesh (as two processes would).
    std::deque<tcp::acceptor> acceptors;
    std::deque<lakemesh::mesh_integrator> inventory;
    int started = 0;
    for (int i = 0; i < 2; ++i) {
        auto& acc =
            acceptors.emplace_back(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        const std::string name = "inventory-" + std::to_string(i + 1);
        asio::co_spawn(io, accept(acc, name), asio::detached);
        lakemesh::mesh_config cfg;
        cfg.service_name = "inventory";
        cfg.service_id = name;
        cfg.port = acc.local_endpoint().port();
        cfg.consul = consul;
        cfg.start = lakemesh::start_mode::wait_for_consul;
        inventory.emplace_back(io, cfg).async_start([&, name](lakemesh::error_code ec) {
            std::cout << name << (ec ? " failed to register: " + ec.message() : " registered")
                      << "\n";
            started += ec ? 0 : 1;
        });
    }

    int answered = -1;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            // Orders starts once both instances are in Consul.
            asio::steady_timer t(io);
            while (started < 2) {
                t.expires_after(std::chrono::milliseconds(10));
                co_await t.async_wait(asio::use_awaitable);
            }
            answered = co_await run_orders(consul);
            for (auto& m : inventory) {
                co_await m.async_stop(asio::use_awaitable);
            }
            for (auto& a : acceptors) {
                a.close();
            }
        },
        [](std::exception_ptr e) {
            if (e) {
                std::rethrow_exception(e);
            }
        });
    io.run();
    std::cout << answered << " of 4 calls answered\n";
    return answered == 4 ? 0 : 1;
}
