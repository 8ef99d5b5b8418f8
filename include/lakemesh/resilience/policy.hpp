// One resilience policy per target: deadline, retry, circuit breaker and bulkhead composed, and
// async_execute() to run any Asio asynchronous operation under it.
//
// Order, outermost first:
//
//   deadline  ->  retry  ->  circuit breaker  ->  bulkhead  ->  per-try timeout  ->  operation
//
// * The deadline (policy timeout, or the caller's inherited deadline, whichever is earlier)
//   bounds the whole call: queueing, every attempt and every backoff. No attempt starts at or past
//   it, and a backoff that would end past it ends the call with policy_errc::deadline_exceeded.
//   When it passes during an attempt, the attempt is cancelled.
// * Retry wraps each attempt, so every attempt asks the breaker and the bulkhead again. Policy
//   rejections (circuit_open, bulkhead_full, ...) are not retryable: a rejected call fails fast.
// * The breaker sits outside the bulkhead so that local queueing never counts as a failure of the
//   target; a permit taken for an attempt the bulkhead then rejects is handed back unused.
// * The bulkhead holds a slot per attempt, not during backoff, so sleeping retries do not hold
//   capacity.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/resilience/bulkhead.hpp>
#include <lakemesh/resilience/circuit_breaker.hpp>
#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/events.hpp>
#include <lakemesh/resilience/retry.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace lakemesh::resilience {

/// Everything a policy does, in one aggregate. Replace it at runtime with policy::replace().
struct policy_config {
    /// Name reported in events: the service (or endpoint) this policy protects.
    std::string target = "default";
    /// Total time allowed for a call, from its start, across all attempts, waits and backoffs.
    /// Zero: no timeout of its own (a deadline inherited through call_options still applies).
    duration timeout = duration::zero();
    /// Attempts, backoff and per-try timeout.
    retry_config retry{};
    /// Budget shared by all calls of this policy that caps retries.
    retry_budget_config retry_budget{};
    /// Circuit breaker settings. Empty: no breaker.
    std::optional<circuit_breaker_config> circuit_breaker = circuit_breaker_config{};
    /// Bulkhead settings. Empty: no concurrency limit.
    std::optional<bulkhead_config> bulkhead = bulkhead_config{};
    /// Which attempt errors count as failures of the target for the breaker. Empty:
    /// lakemesh::is_retryable (transport failures, timeouts, 429, 5xx). Other errors (a 404, a
    /// validation error) show the target answering and count as successes.
    std::function<bool(const error_code&)> breaker_failure{};
};

/// Per-call options of async_execute.
struct call_options {
    /// Deadline inherited from an enclosing call (see attempt_context::call_deadline). The call
    /// ends at the earlier of this and now + policy_config::timeout.
    deadline inherited{};
    /// Overrides retry_config::idempotent for this call.
    std::optional<bool> idempotent{};
    /// When the call fails, receives the error of its last attempt (e.g. the 503 behind
    /// retries_exhausted). Null: not reported. Must stay valid until the call completes.
    error_code* last_error = nullptr;
};

/// What an operation that accepts it learns about the attempt it runs.
struct attempt_context {
    unsigned attempt = 1;  ///< 1 for the first try.
    /// The whole call's deadline: give it to nested calls (call_options::inherited) so they
    /// inherit the remaining time.
    deadline call_deadline{};
    /// When this attempt will be cancelled (per-try timeout or call deadline).
    deadline attempt_deadline{};
};

namespace detail {
struct policy_core;
}  // namespace detail

/// A resilience policy bound to an executor. Shared state (breaker, bulkhead, retry budget) lives
/// here; each async_execute() call gets its own retry state.
///
/// Thread safety: not thread-safe. Start calls, call replace() and read state from the
/// executor's thread (use a strand executor when the io_context runs on several threads).
/// Destroying the policy while calls are in flight is safe; they finish under it.
class policy {
  public:
    /// `seed` feeds the jitter PRNG; empty: seeded from std::random_device.
    explicit policy(boost::asio::any_io_executor ex, policy_config cfg = {},
                    std::shared_ptr<event_listener> listener = {},
                    std::optional<std::uint64_t> seed = std::nullopt);
    explicit policy(boost::asio::io_context& ctx, policy_config cfg = {},
                    std::shared_ptr<event_listener> listener = {},
                    std::optional<std::uint64_t> seed = std::nullopt)
        : policy(ctx.get_executor(), std::move(cfg), std::move(listener), seed) {}

    boost::asio::any_io_executor get_executor() const noexcept;

    /// Replaces the configuration. Calls in flight keep the retry settings and deadline they
    /// started with; the breaker, bulkhead and budget keep their state and counts and apply the
    /// new limits from now on (a raised bulkhead limit admits waiters at once).
    void replace(policy_config cfg);
    /// The configuration new calls use.
    std::shared_ptr<const policy_config> config() const noexcept;

    /// Shared state, for inspection and metrics.
    const circuit_breaker& breaker() const noexcept;
    const bulkhead& concurrency() const noexcept;
    retry_budget& budget() noexcept;

    const std::shared_ptr<detail::policy_core>& core() const noexcept { return core_; }

  private:
    std::shared_ptr<detail::policy_core> core_;
};

namespace detail {

/// One call under a policy: the state machine behind async_execute (deadline, attempts,
/// breaker, bulkhead, backoff), with starting an attempt and delivering the outcome left to a
/// derived class. async_execute derives from it to run a type-erased Asio operation; a caller
/// with per-call state of its own (the mesh's calls) derives from it directly and so runs a
/// call with no further allocation or type-erased handler.
///
/// Owned by a std::shared_ptr (make_shared the derived class): backoff and bulkhead waits hold
/// it. Not thread-safe: everything on the policy's executor.
class policy_run : public std::enable_shared_from_this<policy_run> {
  public:
    policy_run() = default;
    policy_run(const policy_run&) = delete;
    policy_run& operator=(const policy_run&) = delete;
    virtual ~policy_run();

    /// Runs the call under `p`, once: the first attempt starts, or the call ends at once (an
    /// expired deadline, a rejection) with finished(ec, true). `opts.last_error` must outlive
    /// the call.
    void run(const policy& p, const call_options& opts);
    void run(const std::shared_ptr<policy_core>& core, const call_options& opts);
    /// Stops the call (the caller's cancellation): an attempt in flight is cancelled through
    /// cancel_attempt() and the call ends with operation_aborted when it reports back; a backoff
    /// or a wait for the bulkhead ends at once. Nothing before run() or after the end.
    void cancel();
    /// Reports the end of attempt `attempt` (the attempt_context::attempt it was started
    /// with): success when `ec` is clear. Call it from a completion, never from inside
    /// start_attempt().
    void attempt_complete(error_code ec, unsigned attempt);

    /// The call's deadline (set by run()).
    const deadline& call_deadline() const noexcept { return call_deadline_; }

  protected:
    /// Whether run() is on the stack (the first attempt, admitted at once, starts inside it).
    bool in_run() const noexcept { return initiating_; }
    /// Starts attempt `ctx.attempt`. It must end with exactly one attempt_complete(), also
    /// when cancelled.
    virtual void start_attempt(const attempt_context& ctx) = 0;
    /// Cancels the attempt in flight (per-try timeout, deadline, cancel()).
    virtual void cancel_attempt() = 0;
    /// The attempt in flight has reported back (before the decision on what follows).
    virtual void attempt_ended() {}
    /// The outcome, exactly once. `inside_run`: called from within run(), where Asio's rule
    /// says a completion handler must not run yet.
    virtual void finished(error_code ec, bool inside_run) = 0;

  private:
    enum class phase : std::uint8_t { starting, waiting, running, backing_off, done };
    enum class stop_reason : std::uint8_t { none, per_try_timeout, deadline, cancelled };

    void begin_attempt();
    void run_attempt(time_point now);
    void on_admitted();
    void on_wait_timer();
    void reject(error_code reason);
    void finish(error_code ec);
    void release_slot();
    bool is_breaker_failure(const error_code& ec) const;
    template <typename Fn>
    void arm_timer(time_point at, Fn fn);
    void disarm_timer();

    friend struct policy_core;

    std::shared_ptr<policy_core> core_;
    std::shared_ptr<const policy_config> config_;
    error_code* last_error_ = nullptr;
    deadline call_deadline_;
    std::optional<retry_state> retry_;
    /// Made when first armed: a call with no deadline, per-try timeout or backoff needs none.
    std::optional<boost::asio::steady_timer> timer_;
    std::uint64_t timer_generation_ = 0;
    phase current_ = phase::starting;
    stop_reason stop_ = stop_reason::none;
    bool initiating_ = false;
    bool holds_slot_ = false;
    breaker_permit permit_;
    std::uint64_t ticket_ = 0;
    time_point attempt_started_{};
    error_code last_attempt_error_;
};

/// Completion of one attempt of async_execute's type-erased operation.
class attempt_completion {
  public:
    attempt_completion(std::shared_ptr<policy_run> run, unsigned attempt) noexcept
        : run_(std::move(run)), attempt_(attempt) {}
    void operator()(error_code ec);

  private:
    std::shared_ptr<policy_run> run_;
    unsigned attempt_;
};

/// Type-erased "start one attempt of the user's operation".
class attempt_runner {
  public:
    virtual ~attempt_runner() = default;
    virtual void start(const attempt_context& ctx, boost::asio::cancellation_slot slot,
                       const boost::asio::any_io_executor& ex, attempt_completion done) = 0;
};

void execute(const std::shared_ptr<policy_core>& core, const call_options& opts,
             std::unique_ptr<attempt_runner> runner,
             boost::asio::any_completion_handler<void(error_code)> handler);

template <typename Op>
inline constexpr bool takes_context =
    std::is_invocable_v<Op&, const attempt_context&, boost::asio::deferred_t>;

template <typename Op, bool WithContext = takes_context<Op>>
struct signature_of {
    using type = boost::asio::completion_signature_of_t<Op&>;
};
template <typename Op>
struct signature_of<Op, true> {
    using type = boost::asio::completion_signature_of_t<Op&, const attempt_context&>;
};

template <typename Op, typename Handler>
void invoke_operation(Op& op, const attempt_context& ctx, Handler&& handler) {
    if constexpr (takes_context<Op>) {
        op(ctx, std::forward<Handler>(handler));
    } else {
        op(std::forward<Handler>(handler));
    }
}

template <typename Op, typename Signature>
class runner_impl {
    static_assert(sizeof(Op) == 0,
                  "async_execute: the operation must complete with void(error_code) or "
                  "void(error_code, T)");
};

template <typename Op>
class runner_impl<Op, void(error_code)> final : public attempt_runner {
  public:
    explicit runner_impl(Op op) : op_(std::move(op)) {}
    void start(const attempt_context& ctx, boost::asio::cancellation_slot slot,
               const boost::asio::any_io_executor& ex, attempt_completion done) override {
        invoke_operation(op_, ctx,
                         boost::asio::bind_cancellation_slot(
                             slot, boost::asio::bind_executor(ex, std::move(done))));
    }

  private:
    Op op_;
};

template <typename Op, typename T>
class runner_impl<Op, void(error_code, T)> final : public attempt_runner {
  public:
    using value_type = std::decay_t<T>;
    runner_impl(Op op, std::shared_ptr<std::optional<value_type>> result)
        : op_(std::move(op)), result_(std::move(result)) {}
    void start(const attempt_context& ctx, boost::asio::cancellation_slot slot,
               const boost::asio::any_io_executor& ex, attempt_completion done) override {
        auto keep_result = [result = result_, done = std::move(done)](error_code ec,
                                                                      T value) mutable {
            result->emplace(std::forward<T>(value));
            done(ec);
        };
        invoke_operation(op_, ctx,
                         boost::asio::bind_cancellation_slot(
                             slot, boost::asio::bind_executor(ex, std::move(keep_result))));
    }

  private:
    Op op_;
    std::shared_ptr<std::optional<value_type>> result_;
};

struct execute_initiation {
    template <typename Handler, typename Op>
    void operator()(Handler&& handler, std::shared_ptr<policy_core> core,
                    const boost::asio::any_io_executor& ex, call_options opts, Op&& op) const {
        using op_type = std::decay_t<Op>;
        using signature = typename signature_of<op_type>::type;
        if constexpr (std::is_same_v<signature, void(error_code)>) {
            execute(core, opts,
                    std::make_unique<runner_impl<op_type, signature>>(std::forward<Op>(op)),
                    std::forward<Handler>(handler));
        } else {
            using runner = runner_impl<op_type, signature>;
            using value_type = typename runner::value_type;
            auto result = std::make_shared<std::optional<value_type>>();
            // The erased handler must still carry the user's executor and cancellation slot.
            auto slot = boost::asio::get_associated_cancellation_slot(handler);
            auto handler_ex = boost::asio::get_associated_executor(handler, ex);
            auto deliver = [result, h = std::forward<Handler>(handler)](error_code ec) mutable {
                value_type value = result->has_value() ? std::move(**result) : value_type{};
                std::move(h)(ec, std::move(value));
            };
            execute(core, opts, std::make_unique<runner>(std::forward<Op>(op), std::move(result)),
                    boost::asio::bind_cancellation_slot(
                        slot, boost::asio::bind_executor(handler_ex, std::move(deliver))));
        }
    }
};

}  // namespace detail

/// Runs `op` under `p`: deadline, retries, circuit breaker, bulkhead (see the top of this file).
///
/// `op` is any Asio asynchronous operation as a function object: `op(token)` or
/// `op(const attempt_context&, token)`, started once per attempt, whose completion signature is
/// void(error_code) or void(error_code, T) (T default-constructible). For example
/// `[&](auto token) { return socket.async_connect(ep, token); }`.
///
/// Handler signature: the operation's own. On failure T is the last attempt's value (or T{} when
/// no attempt ran).
///
/// Errors: the last attempt's error when it is not retryable or when max_attempts is 1;
/// policy_errc::retries_exhausted after several failed attempts; retry_budget_exhausted;
/// deadline_exceeded; circuit_open; bulkhead_full; bulkhead_wait_timeout; operation_aborted when
/// cancelled. A per-try timeout ends its attempt with transport_errc::timeout (retried).
///
/// Cancellation: the handler's cancellation slot is honoured (terminal, partial and total all
/// stop the call): the attempt in flight is cancelled through its own slot, a backoff or a queue
/// wait ends at once. The operation should honour per-operation cancellation; the call waits for
/// it to complete so that the bulkhead never counts it twice.
///
/// Thread safety: start calls from the policy's executor. The operation is started and
/// completes on the policy's executor; the handler runs on its associated executor. No
/// exception escapes: an operation that throws when started fails its attempt with
/// boost::system::errc::io_error.
template <typename Op, typename CompletionToken>
auto async_execute(policy& p, call_options opts, Op&& op, CompletionToken&& token) {
    using signature = typename detail::signature_of<std::decay_t<Op>>::type;
    return boost::asio::async_initiate<CompletionToken, signature>(
        detail::execute_initiation{}, token, p.core(), p.get_executor(), std::move(opts),
        std::forward<Op>(op));
}

/// async_execute with default call options.
template <typename Op, typename CompletionToken>
auto async_execute(policy& p, Op&& op, CompletionToken&& token) {
    return async_execute(p, call_options{}, std::forward<Op>(op),
                         std::forward<CompletionToken>(token));
}

}  // namespace lakemesh::resilience
