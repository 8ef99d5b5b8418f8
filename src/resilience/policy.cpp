#include <lakemesh/resilience/policy.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/errc.hpp>

#include <random>
#include <unordered_map>

namespace lakemesh::resilience {
namespace detail {

namespace asio = boost::asio;

struct policy_core {
    policy_core(asio::any_io_executor executor, std::shared_ptr<const policy_config> cfg,
                std::shared_ptr<event_listener> events, std::uint64_t seed)
        : ex(std::move(executor)),
          config(std::move(cfg)),
          listener(std::move(events)),
          breaker(config->circuit_breaker.value_or(circuit_breaker_config{})),
          bulk(config->bulkhead.value_or(bulkhead_config{0, 0, duration::zero()})),
          budget(config->retry_budget),
          rng(seed) {
        breaker.set_listener(listener, config->target);
    }

    /// Hands the slot freed for `ticket` to its waiting call.
    void wake(std::uint64_t ticket);

    asio::any_io_executor ex;
    std::shared_ptr<const policy_config> config;
    std::shared_ptr<event_listener> listener;
    circuit_breaker breaker;
    bulkhead bulk;
    retry_budget budget;
    random_source rng;
    std::unordered_map<std::uint64_t, std::shared_ptr<call_state>> waiters;
};

struct call_state : std::enable_shared_from_this<call_state> {
    enum class phase : std::uint8_t { starting, waiting, running, backing_off, done };
    enum class stop_reason : std::uint8_t { none, per_try_timeout, deadline, cancelled };

    call_state(std::shared_ptr<policy_core> c, const call_options& o,
               std::unique_ptr<attempt_runner> r, asio::any_completion_handler<void(error_code)> h,
               time_point now)
        : core(std::move(c)),
          config(core->config),
          opts(o),
          runner(std::move(r)),
          handler(std::move(h)),
          call_deadline(o.inherited.nested(now, config->timeout)),
          retry(config->retry, call_deadline, o.idempotent),
          timer(core->ex) {}

    ~call_state() {
        if (outer_slot.is_connected()) {
            outer_slot.clear();
        }
    }

    void start(time_point now);
    void begin_attempt();
    void run_attempt(time_point now);
    void on_attempt_complete(error_code ec, unsigned attempt);
    void on_admitted();
    void on_wait_timer();
    void on_cancel();
    void reject(error_code reason);
    void finish(error_code ec);
    void release_slot();
    bool is_breaker_failure(const error_code& ec) const {
        return config->breaker_failure ? config->breaker_failure(ec) : lakemesh::is_retryable(ec);
    }

    template <typename Fn>
    void arm_timer(time_point at, Fn fn) {
        const std::uint64_t generation = ++timer_generation;
        timer.expires_at(at);
        timer.async_wait([self = shared_from_this(), generation, fn](error_code ec) mutable {
            if (ec || generation != self->timer_generation) {
                return;
            }
            fn(*self);
        });
    }
    void disarm_timer() {
        ++timer_generation;
        timer.cancel();
    }

    std::shared_ptr<policy_core> core;
    std::shared_ptr<const policy_config> config;
    call_options opts;
    std::unique_ptr<attempt_runner> runner;
    asio::any_completion_handler<void(error_code)> handler;
    asio::cancellation_slot outer_slot;
    asio::cancellation_signal attempt_signal;
    deadline call_deadline;
    retry_state retry;
    asio::steady_timer timer;
    std::uint64_t timer_generation = 0;
    phase current = phase::starting;
    stop_reason stop = stop_reason::none;
    bool initiating = true;
    bool holds_slot = false;
    breaker_permit permit;
    std::uint64_t ticket = 0;
    time_point attempt_started{};
    error_code last_attempt_error;
};

void policy_core::wake(std::uint64_t ticket) {
    const auto it = waiters.find(ticket);
    if (it == waiters.end()) {
        return;
    }
    std::shared_ptr<call_state> waiter = std::move(it->second);
    waiters.erase(it);
    // Posted so that the releasing call finishes before the admitted one starts.
    asio::post(ex, [waiter = std::move(waiter)] { waiter->on_admitted(); });
}

void call_state::start(time_point now) {
    outer_slot = asio::get_associated_cancellation_slot(handler);
    if (outer_slot.is_connected()) {
        outer_slot.assign([self = this](asio::cancellation_type) { self->on_cancel(); });
    }
    core->budget.record_request(now);
    begin_attempt();
    initiating = false;
}

void call_state::begin_attempt() {
    const time_point now = clock::now();
    stop = stop_reason::none;
    if (call_deadline.expired(now)) {
        finish(policy_errc::deadline_exceeded);
        return;
    }
    if (config->circuit_breaker) {
        permit = core->breaker.try_acquire(now);
        if (!permit) {
            reject(policy_errc::circuit_open);
            return;
        }
    }
    if (config->bulkhead) {
        const bulkhead_result admission = core->bulk.try_acquire(now, call_deadline);
        switch (admission.admission) {
            case bulkhead_admission::admitted:
                holds_slot = true;
                break;
            case bulkhead_admission::queued:
                current = phase::waiting;
                ticket = admission.ticket;
                core->waiters.emplace(ticket, shared_from_this());
                if (admission.wait_until != time_point::max()) {
                    arm_timer(admission.wait_until, [](call_state& s) { s.on_wait_timer(); });
                }
                return;
            case bulkhead_admission::rejected:
                core->breaker.on_ignored(permit);
                permit = {};
                reject(policy_errc::bulkhead_full);
                return;
        }
    }
    run_attempt(now);
}

void call_state::on_admitted() {
    if (current != phase::waiting) {
        return;
    }
    holds_slot = true;
    disarm_timer();
    const time_point now = clock::now();
    if (stop == stop_reason::cancelled || call_deadline.expired(now)) {
        const bool cancelled = stop == stop_reason::cancelled;
        release_slot();
        core->breaker.on_ignored(permit);
        permit = {};
        finish(cancelled ? error_code(asio::error::operation_aborted)
                         : error_code(policy_errc::deadline_exceeded));
        return;
    }
    run_attempt(now);
}

void call_state::on_wait_timer() {
    if (current != phase::waiting || !core->bulk.cancel_wait(ticket)) {
        return;
    }
    core->waiters.erase(ticket);
    core->breaker.on_ignored(permit);
    permit = {};
    if (call_deadline.expired(clock::now())) {
        finish(policy_errc::deadline_exceeded);
    } else {
        reject(policy_errc::bulkhead_wait_timeout);
    }
}

void call_state::run_attempt(time_point now) {
    current = phase::running;
    retry.on_attempt();
    attempt_started = now;
    const unsigned attempt = retry.attempts();
    if (core->listener) {
        core->listener->on_attempt(attempt_event{config->target, attempt});
    }
    const deadline attempt_deadline = call_deadline.nested(now, config->retry.per_try_timeout);
    if (attempt_deadline.is_set()) {
        arm_timer(attempt_deadline.when(), [](call_state& s) {
            if (s.current != phase::running) {
                return;
            }
            s.stop = s.call_deadline.expired(clock::now()) ? stop_reason::deadline
                                                           : stop_reason::per_try_timeout;
            s.attempt_signal.emit(asio::cancellation_type::terminal);
        });
    }
    const attempt_context ctx{attempt, call_deadline, attempt_deadline};
    try {
        runner->start(ctx, attempt_signal.slot(), core->ex,
                      attempt_completion(shared_from_this(), attempt));
    } catch (...) {
        on_attempt_complete(boost::system::errc::make_error_code(boost::system::errc::io_error),
                            attempt);
    }
}

void call_state::on_attempt_complete(error_code ec, unsigned attempt) {
    if (current != phase::running || attempt != retry.attempts()) {
        return;
    }
    disarm_timer();
    attempt_signal.slot().clear();
    const time_point now = clock::now();
    const duration latency = now - attempt_started;
    const bool timed_out =
        ec && (stop == stop_reason::per_try_timeout || stop == stop_reason::deadline);
    const error_code attempt_error = timed_out ? error_code(transport_errc::timeout) : ec;

    release_slot();
    if (permit) {
        if (stop == stop_reason::cancelled) {
            core->breaker.on_ignored(permit);
        } else if (attempt_error && is_breaker_failure(attempt_error)) {
            core->breaker.on_failure(permit, now, latency);
        } else {
            core->breaker.on_success(permit, now, latency);
        }
        permit = {};
    }
    if (!ec) {
        finish({});
        return;
    }
    last_attempt_error = attempt_error;
    if (stop == stop_reason::cancelled) {
        finish(asio::error::operation_aborted);
        return;
    }
    if (stop == stop_reason::deadline) {
        finish(policy_errc::deadline_exceeded);
        return;
    }
    const retry_decision decision = retry.on_failure(attempt_error, now, &core->budget, core->rng);
    if (!decision.retry) {
        if (decision.error == policy_errc::retry_budget_exhausted && core->listener) {
            core->listener->on_budget_exhausted(
                budget_exhausted_event{config->target, attempt_error});
        }
        finish(decision.error);
        return;
    }
    if (core->listener) {
        core->listener->on_retry(
            retry_event{config->target, retry.attempts() + 1, attempt_error, decision.delay});
    }
    current = phase::backing_off;
    arm_timer(now + decision.delay, [](call_state& s) { s.begin_attempt(); });
}

void call_state::on_cancel() {
    switch (current) {
        case phase::starting:
        case phase::done:
            return;
        case phase::running:
            stop = stop_reason::cancelled;
            attempt_signal.emit(asio::cancellation_type::terminal);
            return;
        case phase::backing_off:
            finish(asio::error::operation_aborted);
            return;
        case phase::waiting:
            stop = stop_reason::cancelled;
            // When the ticket is no longer queued its admission is already posted, and
            // on_admitted ends the call.
            if (core->bulk.cancel_wait(ticket)) {
                core->waiters.erase(ticket);
                core->breaker.on_ignored(permit);
                permit = {};
                finish(asio::error::operation_aborted);
            }
            return;
    }
}

void call_state::release_slot() {
    if (!holds_slot) {
        return;
    }
    holds_slot = false;
    if (const auto next = core->bulk.release()) {
        core->wake(*next);
    }
}

void call_state::reject(error_code reason) {
    if (core->listener) {
        core->listener->on_rejection(rejection_event{config->target, reason});
    }
    finish(reason);
}

void call_state::finish(error_code ec) {
    current = phase::done;
    disarm_timer();
    if (outer_slot.is_connected()) {
        outer_slot.clear();
    }
    if (ec && opts.last_error != nullptr) {
        *opts.last_error = last_attempt_error ? last_attempt_error : ec;
    }
    auto h = std::move(handler);
    if (initiating) {
        // Asio's rule: a handler never runs inside its initiating function.
        asio::post(core->ex, asio::append(std::move(h), ec));
    } else {
        asio::dispatch(core->ex, asio::append(std::move(h), ec));
    }
}

void attempt_completion::operator()(error_code ec) {
    state_->on_attempt_complete(ec, attempt_);
}

void execute(const std::shared_ptr<policy_core>& core, const call_options& opts,
             std::unique_ptr<attempt_runner> runner,
             asio::any_completion_handler<void(error_code)> handler) {
    const time_point now = clock::now();
    auto state =
        std::make_shared<call_state>(core, opts, std::move(runner), std::move(handler), now);
    state->start(now);
}

}  // namespace detail

namespace {
std::uint64_t random_seed() {
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}
}  // namespace

policy::policy(boost::asio::any_io_executor ex, policy_config cfg,
               std::shared_ptr<event_listener> listener, std::optional<std::uint64_t> seed)
    : core_(std::make_shared<detail::policy_core>(
          std::move(ex), std::make_shared<const policy_config>(std::move(cfg)), std::move(listener),
          seed ? *seed : random_seed())) {}

boost::asio::any_io_executor policy::get_executor() const noexcept {
    return core_->ex;
}

void policy::replace(policy_config cfg) {
    auto snapshot = std::make_shared<const policy_config>(std::move(cfg));
    core_->breaker.reconfigure(snapshot->circuit_breaker.value_or(circuit_breaker_config{}));
    core_->breaker.set_listener(core_->listener, snapshot->target);
    core_->budget.reconfigure(snapshot->retry_budget);
    const auto admitted = core_->bulk.reconfigure(
        snapshot->bulkhead.value_or(bulkhead_config{0, 0, duration::zero()}));
    core_->config = std::move(snapshot);
    for (const std::uint64_t ticket : admitted) {
        core_->wake(ticket);
    }
}

std::shared_ptr<const policy_config> policy::config() const noexcept {
    return core_->config;
}
const circuit_breaker& policy::breaker() const noexcept {
    return core_->breaker;
}
const bulkhead& policy::concurrency() const noexcept {
    return core_->bulk;
}
retry_budget& policy::budget() noexcept {
    return core_->budget;
}

}  // namespace lakemesh::resilience
