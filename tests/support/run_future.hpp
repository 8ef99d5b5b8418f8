// Runs an io_context on the test's thread until an operation started with asio::use_future
// completes: the future never becomes ready on its own, since nothing else runs the context.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <future>

namespace lakemesh::test {

/// Calls `start()` (which returns a std::future), runs `io` until the future is ready and
/// returns its value.
template <class Start>
auto run_future(boost::asio::io_context& io, Start&& start) {
    auto fut = start();
    io.restart();
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        io.run_one_for(std::chrono::milliseconds(10));
    }
    return fut.get();
}

}  // namespace lakemesh::test
