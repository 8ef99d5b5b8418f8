// Runs an io_context on the test's thread until an operation started with asio::use_future
// completes: the future never becomes ready on its own, since nothing else runs the context.
#pragma once

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <functional>
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

/// Runs `io` on the test's thread until `done()` holds (true) or `limit` of real time passes
/// (false: the awaited event never came). `done()` is checked between slices of `slice`, so the
/// wait ends on the event, never on a fixed sleep.
inline bool run_until(boost::asio::io_context& io, const std::function<bool()>& done,
                      std::chrono::steady_clock::duration limit,
                      std::chrono::milliseconds slice = std::chrono::milliseconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    io.restart();
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return done();
        }
        io.run_for(slice);
        io.restart();
    }
    return true;
}

}  // namespace lakemesh::test
