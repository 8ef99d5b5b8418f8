// Fixture of the typed-endpoint tests: a client on the test's target, a way to run one
// operation to completion with its error code, and cleanup of the services a test registered
// (so tests can share a real agent).
#pragma once

#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace lakemesh::test {

class typed_client_fixture : public ::testing::Test {
  protected:
    consul_target target;
    boost::asio::io_context io;
    consul::client c{io, target.client_config()};
    std::vector<std::string> registered;

    void TearDown() override {
        for (const auto& id : registered) {
            call<std::monostate>(
                [&](auto h) { c.agent().async_service_deregister(id, std::move(h)); });
        }
    }

    /// Starts an operation with a callback (`start(handler)`) and runs the io_context until it
    /// completes. An operation that never completes fails the test after a minute, with a clear
    /// message, instead of hanging until ctest's timeout; the test then stops.
    template <class T, class Start>
    std::pair<error_code, consul::result<T>> call(Start start) {
        std::optional<std::pair<error_code, consul::result<T>>> out;
        start([&](error_code ec, consul::result<T> r) { out.emplace(ec, std::move(r)); });
        io.restart();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
        while (!out) {
            io.run_one_for(std::chrono::milliseconds(10));
            if (!out && std::chrono::steady_clock::now() > deadline) {
                c.shutdown();
                io.run_for(std::chrono::seconds(1));
                if (!out) {
                    ADD_FAILURE() << "operation did not complete within a minute";
                    std::abort();
                }
                ADD_FAILURE() << "operation did not complete within a minute (shut down)";
            }
        }
        return std::move(*out);
    }

    /// Runs an operation expected to succeed and returns its value.
    template <class T, class Start>
    T ok(Start start) {
        auto [ec, r] = call<T>(std::move(start));
        EXPECT_FALSE(ec) << ec.message() << ": " << r.diag.to_string();
        return std::move(r.value);
    }

    /// Registers `reg` and remembers it for TearDown.
    void register_service(const consul::service_registration& reg) {
        ok<std::monostate>([&](auto h) { c.agent().async_service_register(reg, std::move(h)); });
        registered.push_back(reg.id.empty() ? reg.name : reg.id);
    }
};

}  // namespace lakemesh::test
