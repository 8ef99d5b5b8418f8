// A consul::client connected to the test target (dev_consul, or the agent named by
// CONSUL_HTTP_ADDR), with a helper that drives one use_future operation to completion.
#pragma once

#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "run_future.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <cstdlib>
#include <future>
#include <string>

namespace lakemesh::test {

class consul_client_test : public ::testing::Test {
  protected:
    consul_target target;
    boost::asio::io_context io;
    consul::client c{io, target.client_config()};

    /// Runs the io_context until the future `start()` returns is ready, and returns its value.
    template <class F>
    auto run(F&& start) {
        return test::run_future(io, std::forward<F>(start));
    }

    /// Drives the io_context until `fut` is ready or `limit` passes; true when ready.
    template <class Future>
    bool wait_ready(Future& fut, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
        io.restart();
        auto end = std::chrono::steady_clock::now() + limit;
        while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            if (std::chrono::steady_clock::now() > end) {
                return false;
            }
            io.run_one_for(std::chrono::milliseconds(10));
        }
        return true;
    }

    /// Any endpoint through the raw call; returns the HTTP status.
    unsigned raw(const std::string& method, const std::string& path, const std::string& body = {}) {
        consul::raw_request req;
        req.method = method;
        req.path = path;
        req.body = body;
        auto r = run([&] { return c.async_raw(req, boost::asio::use_future); });
        return r.value.status;
    }
};

}  // namespace lakemesh::test
