// Blocking-query watch: follows one Consul endpoint's X-Consul-Index and hands each new value to
// a subscriber. The rules live in watch_fsm, a sans-I/O state machine (time comes in as `now`);
// blocking_watch<T> is the thin Asio shell that runs it over any fetch operation, so the watch
// does not depend on the HTTP client.
//
// Rules, from https://developer.hashicorp.com/consul/api-docs/features/blocking:
// * the first call uses index 0; each later call passes back the last X-Consul-Index;
// * a returned index of 0 is treated as 1, because passing 0 back would not block;
// * an index that goes backwards (Consul lost its state, or another server answered) resets the
//   index to 0 and the value is delivered as current;
// * the wait is jittered so that watches started together do not wake together;
// * an answer whose index did not move forward is rate-limited: the next call starts no sooner
//   than `min_unchanged_interval` after the previous one started;
// * errors back off exponentially with full jitter, capped, reset by the next success.
#pragma once

#include <lakemesh/consul/types.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/resilience/random.hpp>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

namespace lakemesh::consul {

/// The clock of the watch shell. watch_fsm never reads it: time is passed in.
using watch_clock = std::chrono::steady_clock;

/// Longest wait Consul honours; longer waits are clamped to it (Consul would do the same).
inline constexpr std::chrono::milliseconds max_blocking_wait = std::chrono::minutes(10);
/// Consul's wait when none is given; what `watch_config::wait == 0` means.
inline constexpr std::chrono::milliseconds default_blocking_wait = std::chrono::minutes(5);

/// Settings of one watch. Plain aggregate; every field has a usable default.
struct watch_config {
    /// Blocking wait asked of Consul (?wait=), before jitter. Zero: Consul's default of 5 min.
    /// Clamped to [1 ms, 10 min]. The fetch's own request timeout must exceed
    /// wait * (1 + wait_jitter) plus Consul's server-side jitter of up to wait / 16.
    std::chrono::milliseconds wait = default_blocking_wait;
    /// Jitter of the wait as a fraction of it: each call waits uniformly within
    /// wait * [1 - f, 1 + f], then clamped to [1 ms, 10 min]. Clamped to [0, 0.5]; zero: none.
    double wait_jitter = 1.0 / 16.0;
    /// Least time between the starts of two calls when the index did not move forward (same
    /// index, or a reset), so that an agent answering at once cannot cause a tight loop.
    /// Zero: no rate limit.
    watch_clock::duration min_unchanged_interval = std::chrono::seconds(1);
    /// Least time between the starts of two calls when the index moved forward; limits the
    /// load of an endpoint that changes all the time. Zero: the next call starts at once.
    watch_clock::duration min_changed_interval = watch_clock::duration::zero();
    /// Backoff ceiling after the first consecutive error; it doubles with every further error.
    /// The actual delay is uniform in [0, ceiling] ("full jitter"). Zero: retry at once.
    watch_clock::duration error_backoff_base = std::chrono::milliseconds(100);
    /// Cap of the backoff ceiling. Zero: no cap (not recommended).
    watch_clock::duration error_backoff_cap = std::chrono::seconds(30);
    /// Seed of the jitter PRNG, for reproducible tests. Empty: seeded from std::random_device.
    std::optional<std::uint64_t> seed{};
};

/// Parameters of one blocking call: pass them as ?index=<index>&wait=<wait>.
struct fetch_params {
    /// X-Consul-Index to block on; 0 asks for the current state without blocking.
    std::uint64_t index = 0;
    /// How long Consul may hold the request (already jittered); never zero.
    std::chrono::milliseconds wait{};

    friend bool operator==(const fetch_params&, const fetch_params&) = default;
};

/// What the shell must do next.
enum class watch_action_kind : std::uint8_t {
    fetch,    ///< Start a fetch now with `watch_action::fetch`.
    sleep,    ///< Wait until `watch_action::wake_at`, then call watch_fsm::on_timer().
    stopped,  ///< The watch is over; do nothing more.
    none,     ///< The event did not fit the state and was ignored; keep doing what you do.
};

/// The state machine's answer to an event.
struct watch_action {
    watch_action_kind kind = watch_action_kind::stopped;
    /// For `fetch`: the parameters of the call.
    fetch_params fetch{};
    /// For `sleep`: when to call on_timer().
    watch_clock::time_point wake_at{};
    /// The value that came with this result must go to the subscriber (first result, index moved
    /// forward, or reset). Only ever set by on_result().
    bool deliver = false;
    /// The index went backwards (the agent lost its state, or another server answered). After a
    /// blocking call the index is reset to 0; after the non-blocking call that follows errors
    /// the lower index is taken as it is. Only ever set by on_result().
    bool reset = false;
    /// For sleeps after an error: the backoff drawn (wake_at - now).
    watch_clock::duration backoff{};
};

/// Where the state machine is.
enum class watch_state : std::uint8_t {
    idle,      ///< Not started.
    fetching,  ///< A fetch is in flight; expects on_result() or on_error().
    sleeping,  ///< Waiting; expects on_timer().
    stopped,   ///< Final.
};

/// The rules of a blocking-query watch as a sans-I/O state machine: events in, actions out, no
/// clock reads and no I/O, so tests drive it with a manual clock.
///
/// Protocol: start() -> fetch; then on_result()/on_error() after each fetch and on_timer() after
/// each sleep; stop() at any time. Events that do not fit the current state (e.g. on_result()
/// while sleeping) are ignored and answer `none` (`stopped` once stopped), so a late completion
/// cannot start a second fetch.
///
/// Errors: every error, retryable or not, is answered with a backoff sleep and the watch goes on
/// (as Consul's own watches do): a 403 may be fixed by an operator updating the token, and the
/// backoff keeps a permanent error from loading the agent. The owner decides to give up by
/// calling stop(). The first fetch after errors does not block (index 0): if the agent lost its
/// state while it was unreachable, our index may be ahead of all it has and a blocking call
/// would hang for the whole wait. Its answer is delivered only when its index differs from the
/// one kept across the errors, and that index (even a lower one) is taken as the new base.
///
/// Thread safety: none; one owner.
class watch_fsm {
  public:
    explicit watch_fsm(const watch_config& cfg = {});

    /// First fetch, with index 0. Only valid when idle.
    watch_action start(watch_clock::time_point now);
    /// The fetch succeeded and Consul answered with X-Consul-Index `index`.
    watch_action on_result(watch_clock::time_point now, std::uint64_t index);
    /// The fetch failed with `ec`.
    watch_action on_error(watch_clock::time_point now, const error_code& ec);
    /// The sleep asked for ended (a call before wake_at answers with the same sleep).
    watch_action on_timer(watch_clock::time_point now);
    /// The owner learnt that Consul answers again (another request succeeded): a backoff sleep
    /// after errors ends now with a fetch. Anything else (fetching, a rate-limit sleep without
    /// errors, stopped) answers `none`, and the sleep in progress stays in force.
    watch_action retry_now(watch_clock::time_point now);
    /// Ends the watch; every later event answers `stopped`.
    watch_action stop() noexcept;

    watch_state state() const noexcept { return state_; }
    bool stopped() const noexcept { return state_ == watch_state::stopped; }
    /// Index the next fetch passes to Consul.
    std::uint64_t index() const noexcept { return index_; }
    /// Errors since the last success.
    unsigned consecutive_errors() const noexcept { return consecutive_errors_; }
    /// Ceiling of the full-jitter backoff after `errors` consecutive errors (0 for none):
    /// min(cap, base * 2^(errors - 1)).
    watch_clock::duration backoff_ceiling(unsigned errors) const noexcept;
    /// Wait after clamping and before jitter.
    std::chrono::milliseconds nominal_wait() const noexcept { return wait_; }
    const watch_config& config() const noexcept { return cfg_; }

  private:
    watch_action fetch_now(watch_clock::time_point now);
    watch_action sleep_until(watch_clock::time_point when);
    watch_action fetch_no_sooner_than(watch_clock::time_point now,
                                      watch_clock::time_point earliest);
    watch_action ignored() const noexcept;
    std::chrono::milliseconds jittered_wait();

    watch_config cfg_;
    std::chrono::milliseconds wait_;
    resilience::random_source rng_;
    watch_state state_ = watch_state::idle;
    std::uint64_t index_ = 0;
    unsigned consecutive_errors_ = 0;
    /// The fetch in flight is the non-blocking one that follows errors.
    bool resync_ = false;
    fetch_params pending_fetch_{};
    watch_clock::time_point fetch_started_{};
    watch_clock::time_point wake_at_{};
};

/// The fetch a watch runs: start one blocking read with `params` and complete the handler with
/// (error, value, X-Consul-Index). The value is ignored when the error is set. The handler has
/// an associated cancellation slot: the fetch should stop when it is signalled (the watch
/// signals it on stop()), and it may complete with any error then. It must complete through the
/// handler's associated executor (as every Asio operation does); an inline completion is
/// tolerated and finished on a fresh stack. A fetch that throws counts as a failed fetch with
/// errc::io_error.
template <class T>
using watch_fetch = std::function<void(
    fetch_params params,
    boost::asio::any_completion_handler<void(error_code, T, std::uint64_t)> handler)>;

/// Makes a watch fetch out of a client read, so any blocking endpoint can be watched:
///
///     auto fetch = consul::watch_read<std::vector<kv_pair>>(
///         query_options{}, [&c, prefix](const query_options& q, auto handler) {
///             c.async_kv_list(prefix, q, std::move(handler));
///         });
///     consul::blocking_watch<std::vector<kv_pair>> w(io, watch_config{}, fetch, handlers);
///
/// `read(q, handler)` must start one read with options `q` (a copy of `base` with the watch's
/// index and wait filled in) and complete `handler` with (error_code, result<T>), as every
/// client operation does. The handler's cancellation slot and executor are the watch's, so
/// stopping the watch cancels the read in flight.
template <class T, class Read>
watch_fetch<T> watch_read(query_options base, Read read) {
    return [base = std::move(base), read = std::move(read)](
               fetch_params params,
               boost::asio::any_completion_handler<void(error_code, T, std::uint64_t)> handler) {
        query_options q = base;
        q.index = params.index;
        q.wait = params.wait;
        auto slot = boost::asio::get_associated_cancellation_slot(handler);
        auto ex = boost::asio::get_associated_executor(handler);
        read(q, boost::asio::bind_executor(
                    ex, boost::asio::bind_cancellation_slot(
                            slot, [h = std::move(handler)](error_code ec, result<T> r) mutable {
                                std::move(h)(ec, std::move(r.value), r.meta.index);
                            })));
    };
}

/// Where a watch reports.
template <class T>
struct watch_handlers {
    /// A new value and the index it came with: on the first success, when the index moved
    /// forward, and after a reset. Never for an answer with an unchanged index. Null: ignored.
    std::function<void(const T& value, std::uint64_t index)> on_value{};
    /// Each failed fetch; the watch backs off and goes on. Null: ignored.
    std::function<void(const error_code& ec)> on_error{};
    /// Every successful fetch, delivered or not (after on_value when both apply): Consul was
    /// reached and the value is current as of `index`. Null: ignored.
    std::function<void(std::uint64_t index)> on_confirm{};
    // Exceptions thrown by these handlers are swallowed: none may escape into the executor.
};

namespace detail {

/// The fetch as the compiled shell sees it: the value stays with the typed wrapper.
using erased_watch_fetch = std::function<void(
    fetch_params, boost::asio::any_completion_handler<void(error_code, std::uint64_t)>)>;

/// The type-independent shell behind blocking_watch<T>, compiled in src/consul/watch.cpp.
class watch_runner {
  public:
    watch_runner(boost::asio::any_io_executor ex, const watch_config& cfg, erased_watch_fetch fetch,
                 std::function<void(bool deliver, std::uint64_t index)> on_success,
                 std::function<void(const error_code&)> on_error);
    watch_runner(watch_runner&&) noexcept = default;
    watch_runner& operator=(watch_runner&&) noexcept;
    ~watch_runner();

    void start();
    void stop() noexcept;
    void retry_now();
    bool running() const noexcept;
    std::uint64_t index() const noexcept;
    unsigned consecutive_errors() const noexcept;
    boost::asio::any_io_executor get_executor() const noexcept;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace detail

/// Runs a watch_fsm on an executor over a fetch operation: follows the index, delivers new
/// values to `handlers.on_value`, reports errors to `handlers.on_error`, and sleeps on a
/// steady_timer for rate limits and backoff.
///
/// Usage:
/// @code
///   consul::blocking_watch<services> w(ex, {}, fetch_services, {.on_value = update});
///   w.start();   // ... later:
///   w.stop();    // nothing is delivered after this returns
/// @endcode
///
/// Handlers run on the executor (through the fetch's handler, which is bound to it).
///
/// Thread safety: not thread-safe. Construct, start, stop and destroy on the executor's thread
/// (use a strand executor when the io_context runs on several threads).
///
/// Cancellation: stop() (and the destructor) emits cancellation_type::all on the in-flight
/// fetch's cancellation slot and cancels the timer. No handler is called after stop() returns,
/// even when the fetch completes with a value later. stop() is final; it may be called from
/// inside a handler. The shared state lives until the in-flight fetch completes, so destroying
/// the watch while a fetch is in flight is safe; the handlers are released at stop().
///
/// Errors: see watch_fsm; the watch never ends by itself.
template <class T>
class blocking_watch {
  public:
    blocking_watch(boost::asio::any_io_executor ex, const watch_config& cfg, watch_fetch<T> fetch,
                   watch_handlers<T> handlers)
        : runner_(make_runner(std::move(ex), cfg, std::move(fetch), std::move(handlers))) {}
    blocking_watch(boost::asio::io_context& ctx, const watch_config& cfg, watch_fetch<T> fetch,
                   watch_handlers<T> handlers)
        : blocking_watch(ctx.get_executor(), cfg, std::move(fetch), std::move(handlers)) {}

    blocking_watch(const blocking_watch&) = delete;
    blocking_watch& operator=(const blocking_watch&) = delete;
    blocking_watch(blocking_watch&&) noexcept = default;
    blocking_watch& operator=(blocking_watch&&) noexcept = default;
    /// Stops the watch.
    ~blocking_watch() = default;

    /// Starts the first fetch (index 0) before returning. A second call, or a call after stop(),
    /// does nothing.
    void start() { runner_.start(); }
    /// Ends the watch; see the class documentation.
    void stop() noexcept { runner_.stop(); }
    /// Ends a backoff after errors at once (see watch_fsm::retry_now): for an owner that knows
    /// Consul is reachable again. Nothing happens otherwise.
    void retry_now() { runner_.retry_now(); }
    /// Started and not stopped.
    bool running() const noexcept { return runner_.running(); }
    /// Index the next fetch passes to Consul.
    std::uint64_t index() const noexcept { return runner_.index(); }
    /// Errors since the last success.
    unsigned consecutive_errors() const noexcept { return runner_.consecutive_errors(); }
    boost::asio::any_io_executor get_executor() const noexcept { return runner_.get_executor(); }

  private:
    static detail::watch_runner make_runner(boost::asio::any_io_executor ex,
                                            const watch_config& cfg, watch_fetch<T> fetch,
                                            watch_handlers<T> handlers) {
        // The typed value waits here between the fetch's completion and the FSM's decision
        // whether to deliver it; the compiled runner only sees the index.
        auto latest = std::make_shared<std::optional<T>>();
        detail::erased_watch_fetch erased =
            [fetch = std::move(fetch), latest](
                fetch_params params,
                boost::asio::any_completion_handler<void(error_code, std::uint64_t)> done) {
                // Keep the runner's cancellation slot and executor on the typed handler.
                auto slot = boost::asio::get_associated_cancellation_slot(done);
                auto hex = boost::asio::get_associated_executor(done);
                fetch(params,
                      boost::asio::bind_executor(
                          hex, boost::asio::bind_cancellation_slot(
                                   slot, [latest, done = std::move(done)](
                                             error_code ec, T value, std::uint64_t index) mutable {
                                       if (!ec) {
                                           *latest = std::move(value);
                                       }
                                       std::move(done)(ec, index);
                                   })));
            };
        auto on_success = [latest, on_value = std::move(handlers.on_value),
                           on_confirm = std::move(handlers.on_confirm)](bool deliver,
                                                                        std::uint64_t index) {
            if (deliver && latest->has_value() && on_value) {
                on_value(**latest, index);
            }
            if (on_confirm) {
                on_confirm(index);
            }
            // An undelivered value equals the one delivered before: no need to keep it.
            latest->reset();
        };
        return detail::watch_runner(std::move(ex), cfg, std::move(erased), std::move(on_success),
                                    std::move(handlers.on_error));
    }

    detail::watch_runner runner_;
};

}  // namespace lakemesh::consul
