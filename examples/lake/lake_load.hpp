// A Lake client's traffic through lakemesh::mesh_integrator::async_call_partition: a steady
// load of writes and reads, statistics per window (calls, errors by kind, latency percentiles),
// and the read-back of every acknowledged write. Used by the lake_client example and the demo.
//
// Every write goes to a key of its own, so "acknowledged" is exact: a key whose PUT was answered
// 200 must read back with the value sent, whatever happened to the nodes since. A PUT that failed
// may or may not have landed; it is never checked.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/mesh_integrator.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <iomanip>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace lake {

/// A short name for what went wrong with a call, for one-line statistics: the error's enum name
/// ("no_instances", "connect_failed", ...), with the status for an upstream 5xx/429.
inline std::string error_kind(const lakemesh::error_code& ec, unsigned status = 0) {
    using lakemesh::call_category;
    using lakemesh::transport_category;
    static const char* const call_names[] = {"",
                                             "no_instances",
                                             "all_endpoints_ejected",
                                             "circuit_open",
                                             "bulkhead_full",
                                             "deadline_exceeded",
                                             "retry_budget_exhausted",
                                             "upstream_status",
                                             "not_owner",
                                             "mesh_stopped"};
    static const char* const transport_names[] = {"",
                                                  "connect_failed",
                                                  "connection_closed",
                                                  "timeout",
                                                  "resolve_failed",
                                                  "tls_handshake_failed",
                                                  "tls_verify_failed",
                                                  "all_addresses_failed",
                                                  "protocol_error"};
    const auto v = static_cast<std::size_t>(ec.value());
    if (ec.category() == call_category() && v > 0 && v < std::size(call_names)) {
        std::string k = call_names[v];
        if (ec == lakemesh::call_errc::upstream_status && status != 0) {
            k += " " + std::to_string(status);
        }
        return k;
    }
    if (ec.category() == transport_category() && v > 0 && v < std::size(transport_names)) {
        return transport_names[v];
    }
    return std::string(ec.category().name()) + ":" + std::to_string(ec.value());
}

/// Calls completed within a window of time.
struct call_window {
    std::chrono::duration<double> length{};
    std::uint64_t calls = 0;  ///< completed, successful or not
    std::uint64_t ok = 0;
    std::uint64_t writes_acknowledged = 0;
    /// Calls not started because max_in_flight calls were outstanding (the client sheds load
    /// rather than queue without bound).
    std::uint64_t shed = 0;
    /// Failed calls by kind (error_kind), and reads of an acknowledged key that came back
    /// without its value ("read: missing", "read: wrong value").
    std::map<std::string, std::uint64_t> errors;
    /// The first full message seen of each kind.
    std::map<std::string, std::string> messages;
    std::vector<double> latency_ms;

    /// Nearest-rank percentile of the latencies, 0 when there are none.
    double percentile(double q) const {
        if (latency_ms.empty()) {
            return 0;
        }
        auto v = latency_ms;
        std::sort(v.begin(), v.end());
        const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
        return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
    }
    std::uint64_t failed() const { return calls - ok; }

    /// "calls/s  98  ok  98  errors none  p50 1.9 ms  p99 7.3 ms"
    std::string line() const {
        std::ostringstream os;
        const double secs = std::max(length.count(), 1e-3);
        os << std::fixed << std::setprecision(0) << "calls/s " << std::setw(4)
           << static_cast<double>(calls) / secs << "  ok " << std::setw(4) << ok << "  errors ";
        if (errors.empty()) {
            os << "none";
        }
        bool first = true;
        for (const auto& [kind, n] : errors) {
            os << (first ? "" : ", ") << kind << " " << n;
            first = false;
        }
        if (shed != 0) {
            os << "  shed " << shed;
        }
        os << std::setprecision(1) << "  p50 " << percentile(0.50) << " ms  p99 "
           << percentile(0.99) << " ms";
        return os.str();
    }

    void add(const call_window& o) {
        length += o.length;
        calls += o.calls;
        ok += o.ok;
        writes_acknowledged += o.writes_acknowledged;
        shed += o.shed;
        for (const auto& [k, n] : o.errors) {
            errors[k] += n;
        }
        for (const auto& [k, m] : o.messages) {
            messages.emplace(k, m);
        }
        latency_ms.insert(latency_ms.end(), o.latency_ms.begin(), o.latency_ms.end());
    }
};

/// The read-back of every acknowledged write.
struct verify_result {
    std::size_t checked = 0;
    std::size_t matched = 0;
    /// Read back as 404 or with another value: an acknowledged write was lost.
    std::size_t lost = 0;
    /// Could not be read (every attempt failed): neither proven kept nor lost.
    std::size_t unverified = 0;
    std::vector<std::string> examples;  ///< a few lost or unverified keys, with what was seen
    /// The acknowledged writes that were checked (key, value).
    std::vector<std::pair<std::string, std::string>> writes;
    std::chrono::milliseconds took{0};

    bool passed() const { return lost == 0 && unverified == 0; }
};

/// A steady load of PUT /kv/<key> and GET /kv/<key> calls through async_call_partition, on the
/// mesh's executor. start(), stop(), take_window(), totals() and verify() may be called from any
/// thread except the mesh's own (stop() and verify().get() wait for the executor).
class lake_load {
  public:
    struct options {
        /// Calls started per second, half writes of new keys and half reads of acknowledged
        /// ones.
        double rate = 100;
        /// Calls outstanding at most; beyond it new calls are shed (counted, not sent).
        std::size_t max_in_flight = 64;
        /// Keys are <key_prefix><n>.
        std::string key_prefix = "key-";
    };

    lake_load(lakemesh::mesh_integrator& mesh, options o) : mesh_(mesh), opts_(std::move(o)) {}
    ~lake_load() { stop(); }
    lake_load(const lake_load&) = delete;
    lake_load& operator=(const lake_load&) = delete;

    void start() {
        enter();
        boost::asio::co_spawn(mesh_.get_executor(), pace(), boost::asio::detached);
    }

    /// Stops starting calls and waits until the outstanding ones completed. A read-back under way
    /// gives up (its remaining writes count as unverified); one started after stop() runs to
    /// its end.
    void stop() {
        stopping_ = true;
        std::unique_lock lock(mu_);
        idle_.wait(lock, [this] { return active_ == 0; });
    }

    /// What completed since the previous take_window().
    call_window take_window() {
        std::lock_guard lock(mu_);
        const auto now = std::chrono::steady_clock::now();
        call_window w = std::move(window_);
        w.length = now - window_start_;
        window_ = {};
        window_start_ = now;
        totals_.add(w);
        return w;
    }
    /// Everything taken so far (through take_window).
    call_window totals() const {
        std::lock_guard lock(mu_);
        return totals_;
    }
    std::uint64_t acknowledged() const { return acknowledged_.load(); }

    /// Reads back every write acknowledged so far, `concurrency` calls at a time. A read that
    /// fails (not a 404, not a wrong value: an error) is retried a few times with back-off,
    /// since a failover or hand-off may be under way.
    std::future<verify_result> verify(std::size_t concurrency = 8) {
        enter();
        return boost::asio::co_spawn(mesh_.get_executor(), read_back(concurrency, stopping_.load()),
                                     boost::asio::use_future);
    }

  private:
    using clock = std::chrono::steady_clock;
    template <class T>
    using awaitable = boost::asio::awaitable<T>;

    /// Counts a coroutine in or out, so that stop() can wait for every one.
    void enter() {
        std::lock_guard lock(mu_);
        ++active_;
    }
    void leave() {
        std::lock_guard lock(mu_);
        if (--active_ == 0) {
            idle_.notify_all();
        }
    }
    struct leave_on_exit {
        lake_load* self;
        ~leave_on_exit() { self->leave(); }
    };

    /// One call through the mesh.
    ///
    /// g++ 12 mishandles by-value parameters of coroutines (it copies them bitwise and may
    /// destroy both copies), which breaks strings and shared_ptrs alike. This coroutine takes
    /// references (to objects in the awaiting caller's frame), and since use_awaitable hands the
    /// initiation to a coroutine by value, the initiation captures only plain pointers; the
    /// request lives in this frame, which outlives the call.
    awaitable<std::pair<lakemesh::error_code, lakemesh::call_result>> call(
        const std::string& key, const std::string& method, const std::string& body) {
        std::string routed_key = key;
        lakemesh::mesh::http_request request;
        request.method = method;
        request.target = "/kv/" + key;
        request.body = body;
        lakemesh::call_options options;
        auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
        auto [ec, r] =
            co_await boost::asio::async_initiate<decltype(token),
                                                 void(lakemesh::error_code, lakemesh::call_result)>(
                [mesh = &mesh_, k = &routed_key, req = &request, o = &options](auto handler) {
                    mesh->async_call_partition(std::move(*k), std::move(*req), *o,
                                               std::move(handler));
                },
                token);
        co_return std::make_pair(ec, std::move(r));
    }

    /// Starts calls at opts_.rate per second, on a 10 ms tick.
    awaitable<void> pace() {
        leave_on_exit guard{this};
        boost::asio::steady_timer tick(mesh_.get_executor());
        const auto begin = clock::now();
        {
            std::lock_guard lock(mu_);
            window_start_ = begin;
        }
        std::uint64_t started = 0;
        while (!stopping_) {
            tick.expires_after(std::chrono::milliseconds(10));
            co_await tick.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
            const std::chrono::duration<double> elapsed = clock::now() - begin;
            const auto due = static_cast<std::uint64_t>(opts_.rate * elapsed.count());
            for (; started < due && !stopping_; ++started) {
                if (in_flight_ >= opts_.max_in_flight) {
                    std::lock_guard lock(mu_);
                    window_.shed += due - started;
                    started = due;
                    break;
                }
                ++in_flight_;
                enter();
                boost::asio::co_spawn(mesh_.get_executor(), one_call(started),
                                      boost::asio::detached);
            }
        }
    }

    awaitable<void> one_call(std::uint64_t n) {
        leave_on_exit guard{this};
        const bool write = n % 2 == 0 || acked_.empty();
        std::string key;
        std::string expected;
        if (write) {
            key = opts_.key_prefix + std::to_string(next_key_++);
            expected = "value-" + std::to_string(n) + "-" + std::to_string(rng_() % 100000);
        } else {
            std::uniform_int_distribution<std::size_t> pick(0, acked_.size() - 1);
            std::tie(key, expected) = acked_[pick(rng_)];
        }
        const auto t0 = clock::now();
        // Named arguments: g++ 12 destroys a conditional-expression temporary passed to a
        // coroutine twice.
        const std::string method = write ? "PUT" : "GET";
        std::string body;
        if (write) {
            body = expected;
        }
        auto [ec, r] = co_await call(key, method, body);
        const std::chrono::duration<double, std::milli> took = clock::now() - t0;
        --in_flight_;

        std::string kind;
        std::string message;
        if (ec) {
            kind = error_kind(ec, r.response.status);
            message = ec.message();
        } else if (r.response.status != 200) {
            kind = (!write && r.response.status == 404)
                       ? "read: missing"
                       : "status " + std::to_string(r.response.status);
            message = r.response.body;
        } else if (!write && r.response.body != expected) {
            kind = "read: wrong value";
            message = key + " read back \"" + r.response.body + "\", expected \"" + expected + "\"";
        } else if (write) {
            acked_.emplace_back(key, expected);
            ++acknowledged_;
        }
        std::lock_guard lock(mu_);
        ++window_.calls;
        window_.latency_ms.push_back(took.count());
        if (kind.empty()) {
            ++window_.ok;
            window_.writes_acknowledged += write ? 1 : 0;
        } else {
            ++window_.errors[kind];
            window_.messages.emplace(kind, message);
        }
    }

    awaitable<verify_result> read_back(std::size_t concurrency, bool after_stop) {
        leave_on_exit guard{this};
        const auto t0 = clock::now();
        verify_result out;
        out.writes = acked_;  // the writes acknowledged up to now
        std::size_t next = 0;
        std::size_t running = std::max<std::size_t>(concurrency, 1);
        // Signalled (cancelled) when the last worker finished.
        boost::asio::steady_timer all_done(mesh_.get_executor(), clock::time_point::max());
        for (std::size_t i = running; i > 0; --i) {
            boost::asio::co_spawn(mesh_.get_executor(), read_worker(out, next, after_stop),
                                  [&](std::exception_ptr) {
                                      if (--running == 0) {
                                          all_done.cancel();
                                      }
                                  });
        }
        co_await all_done.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
        out.unverified += out.writes.size() - out.checked;  // left when it gave up
        out.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - t0);
        co_return out;
    }

    awaitable<void> read_worker(verify_result& out, std::size_t& next, bool after_stop) {
        const auto give_up = [&] { return stopping_ && !after_stop; };
        boost::asio::steady_timer backoff(mesh_.get_executor());
        const std::string get = "GET";
        const std::string none;
        while (next < out.writes.size() && !give_up()) {
            const auto [key, expected] = out.writes[next++];
            ++out.checked;
            for (int attempt = 1;; ++attempt) {
                auto [ec, r] = co_await call(key, get, none);
                if (!ec && r.response.status == 200 && r.response.body == expected) {
                    ++out.matched;
                    break;
                }
                if (!ec && (r.response.status == 200 || r.response.status == 404)) {
                    ++out.lost;
                    if (out.examples.size() < 5) {
                        out.examples.push_back(
                            key + ": " +
                            (r.response.status == 404 ? "missing" : "\"" + r.response.body + "\"") +
                            ", expected \"" + expected + "\"");
                    }
                    break;
                }
                if (attempt == 5 || give_up()) {
                    ++out.unverified;
                    if (out.examples.size() < 5) {
                        out.examples.push_back(
                            key + ": not readable (" +
                            (ec ? error_kind(ec, r.response.status)
                                : "status " + std::to_string(r.response.status)) +
                            ")");
                    }
                    break;
                }
                backoff.expires_after(std::chrono::milliseconds(250 * attempt));
                co_await backoff.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
            }
        }
    }

    lakemesh::mesh_integrator& mesh_;
    options opts_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> acknowledged_{0};

    // On the executor only.
    std::size_t in_flight_ = 0;
    std::uint64_t next_key_ = 0;
    std::vector<std::pair<std::string, std::string>> acked_;
    std::minstd_rand rng_{std::random_device{}()};

    // Shared with the caller's thread.
    mutable std::mutex mu_;
    std::condition_variable idle_;
    int active_ = 0;
    call_window window_;
    call_window totals_;
    clock::time_point window_start_ = clock::now();
};

}  // namespace lake
