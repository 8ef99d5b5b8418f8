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
    std::unordered_map<std::uint64_t, std::shared_ptr<policy_run>> waiters;
};

void policy_core::wake(std::uint64_t ticket) {
    const auto it = waiters.find(ticket);
    if (it == waiters.end()) {
        return;
    }
    std::shared_ptr<policy_run> waiter = std::move(it->second);
    waiters.erase(it);
    // Posted so that the releasing call finishes before the admitted one starts.
    asio::post(ex, [waiter = std::move(waiter)] { waiter->on_admitted(); });
}

policy_run::~policy_run() = default;

bool policy_run::is_breaker_failure(const error_code& ec) const {
    return config_->breaker_failure ? config_->breaker_failure(ec) : lakemesh::is_retryable(ec);
}

template <typename Fn>
void policy_run::arm_timer(time_point at, Fn fn) {
    if (!timer_) {
        timer_.emplace(core_->ex);
    }
    const std::uint64_t generation = ++timer_generation_;
    timer_->expires_at(at);
    timer_->async_wait([self = shared_from_this(), generation, fn](error_code ec) mutable {
        if (ec || generation != self->timer_generation_) {
            return;
        }
        fn(*self);
    });
}

void policy_run::disarm_timer() {
    ++timer_generation_;
    if (timer_) {
        timer_->cancel();
    }
}

void policy_run::run(const policy& p, const call_options& opts) {
    run(p.core(), opts);
}

void policy_run::run(const std::shared_ptr<policy_core>& core, const call_options& opts) {
    const time_point now = clock::now();
    core_ = core;
    config_ = core_->config;
    last_error_ = opts.last_error;
    call_deadline_ = opts.inherited.nested(now, config_->timeout);
    retry_.emplace(config_->retry, call_deadline_, opts.idempotent);
    current_ = phase::starting;
    initiating_ = true;
    core_->budget.record_request(now);
    begin_attempt();
    initiating_ = false;
}

void policy_run::begin_attempt() {
    const time_point now = clock::now();
    stop_ = stop_reason::none;
    if (call_deadline_.expired(now)) {
        finish(policy_errc::deadline_exceeded);
        return;
    }
    if (config_->circuit_breaker) {
        permit_ = core_->breaker.try_acquire(now);
        if (!permit_) {
            reject(policy_errc::circuit_open);
            return;
        }
    }
    if (config_->bulkhead) {
        const bulkhead_result admission = core_->bulk.try_acquire(now, call_deadline_);
        switch (admission.admission) {
            case bulkhead_admission::admitted:
                holds_slot_ = true;
                break;
            case bulkhead_admission::queued:
                current_ = phase::waiting;
                ticket_ = admission.ticket;
                core_->waiters.emplace(ticket_, shared_from_this());
                if (admission.wait_until != time_point::max()) {
                    arm_timer(admission.wait_until, [](policy_run& s) { s.on_wait_timer(); });
                }
                return;
            case bulkhead_admission::rejected:
                core_->breaker.on_ignored(permit_);
                permit_ = {};
                reject(policy_errc::bulkhead_full);
                return;
        }
    }
    run_attempt(now);
}

void policy_run::on_admitted() {
    if (current_ != phase::waiting) {
        return;
    }
    holds_slot_ = true;
    disarm_timer();
    const time_point now = clock::now();
    if (stop_ == stop_reason::cancelled || call_deadline_.expired(now)) {
        const bool cancelled = stop_ == stop_reason::cancelled;
        release_slot();
        core_->breaker.on_ignored(permit_);
        permit_ = {};
        finish(cancelled ? error_code(asio::error::operation_aborted)
                         : error_code(policy_errc::deadline_exceeded));
        return;
    }
    run_attempt(now);
}

void policy_run::on_wait_timer() {
    if (current_ != phase::waiting || !core_->bulk.cancel_wait(ticket_)) {
        return;
    }
    core_->waiters.erase(ticket_);
    core_->breaker.on_ignored(permit_);
    permit_ = {};
    if (call_deadline_.expired(clock::now())) {
        finish(policy_errc::deadline_exceeded);
    } else {
        reject(policy_errc::bulkhead_wait_timeout);
    }
}

void policy_run::run_attempt(time_point now) {
    current_ = phase::running;
    retry_->on_attempt();
    attempt_started_ = now;
    const unsigned attempt = retry_->attempts();
    if (core_->listener) {
        core_->listener->on_attempt(attempt_event{config_->target, attempt});
    }
    const deadline attempt_deadline = call_deadline_.nested(now, config_->retry.per_try_timeout);
    if (attempt_deadline.is_set()) {
        arm_timer(attempt_deadline.when(), [](policy_run& s) {
            // A cancel already asked for wins: the attempt must end as cancelled, not retried
            // as timed out.
            if (s.current_ != phase::running || s.stop_ == stop_reason::cancelled) {
                return;
            }
            s.stop_ = s.call_deadline_.expired(clock::now()) ? stop_reason::deadline
                                                             : stop_reason::per_try_timeout;
            s.cancel_attempt();
        });
    }
    const attempt_context ctx{attempt, call_deadline_, attempt_deadline};
    try {
        start_attempt(ctx);
    } catch (...) {
        attempt_complete(boost::system::errc::make_error_code(boost::system::errc::io_error),
                         attempt);
    }
}

void policy_run::attempt_complete(error_code ec, unsigned attempt) {
    if (current_ != phase::running || attempt != retry_->attempts()) {
        return;
    }
    disarm_timer();
    attempt_ended();
    const time_point now = clock::now();
    const duration latency = now - attempt_started_;
    const bool timed_out =
        ec && (stop_ == stop_reason::per_try_timeout || stop_ == stop_reason::deadline);
    const error_code attempt_error = timed_out ? error_code(transport_errc::timeout) : ec;

    release_slot();
    if (permit_) {
        if (stop_ == stop_reason::cancelled) {
            core_->breaker.on_ignored(permit_);
        } else if (attempt_error && is_breaker_failure(attempt_error)) {
            core_->breaker.on_failure(permit_, now, latency);
        } else {
            core_->breaker.on_success(permit_, now, latency);
        }
        permit_ = {};
    }
    if (!ec) {
        finish({});
        return;
    }
    last_attempt_error_ = attempt_error;
    if (stop_ == stop_reason::cancelled) {
        finish(asio::error::operation_aborted);
        return;
    }
    if (stop_ == stop_reason::deadline) {
        finish(policy_errc::deadline_exceeded);
        return;
    }
    const retry_decision decision =
        retry_->on_failure(attempt_error, now, &core_->budget, core_->rng);
    if (!decision.retry) {
        if (decision.error == policy_errc::retry_budget_exhausted && core_->listener) {
            core_->listener->on_budget_exhausted(
                budget_exhausted_event{config_->target, attempt_error});
        }
        finish(decision.error);
        return;
    }
    if (core_->listener) {
        core_->listener->on_retry(
            retry_event{config_->target, retry_->attempts() + 1, attempt_error, decision.delay});
    }
    current_ = phase::backing_off;
    arm_timer(now + decision.delay, [](policy_run& s) { s.begin_attempt(); });
}

void policy_run::cancel() {
    switch (current_) {
        case phase::starting:
        case phase::done:
            return;
        case phase::running:
            stop_ = stop_reason::cancelled;
            cancel_attempt();
            return;
        case phase::backing_off:
            finish(asio::error::operation_aborted);
            return;
        case phase::waiting:
            stop_ = stop_reason::cancelled;
            // When the ticket is no longer queued its admission is already posted, and
            // on_admitted ends the call.
            if (core_->bulk.cancel_wait(ticket_)) {
                core_->waiters.erase(ticket_);
                core_->breaker.on_ignored(permit_);
                permit_ = {};
                finish(asio::error::operation_aborted);
            }
            return;
    }
}

void policy_run::release_slot() {
    if (!holds_slot_) {
        return;
    }
    holds_slot_ = false;
    if (const auto next = core_->bulk.release()) {
        core_->wake(*next);
    }
}

void policy_run::reject(error_code reason) {
    if (core_->listener) {
        core_->listener->on_rejection(rejection_event{config_->target, reason});
    }
    finish(reason);
}

void policy_run::finish(error_code ec) {
    current_ = phase::done;
    disarm_timer();
    if (ec && last_error_ != nullptr) {
        *last_error_ = last_attempt_error_ ? last_attempt_error_ : ec;
    }
    finished(ec, initiating_);
}

namespace {

/// async_execute's run: a type-erased operation, its attempts cancelled through a signal, the
/// outcome handed to the caller's handler.
class erased_run final : public policy_run {
  public:
    erased_run(std::unique_ptr<attempt_runner> r, asio::any_completion_handler<void(error_code)> h,
               asio::any_io_executor e)
        : runner(std::move(r)), handler(std::move(h)), ex(std::move(e)) {}

    ~erased_run() override {
        if (outer_slot.is_connected()) {
            outer_slot.clear();
        }
    }

    void start(const std::shared_ptr<policy_core>& core, const call_options& opts) {
        outer_slot = asio::get_associated_cancellation_slot(handler);
        if (outer_slot.is_connected()) {
            outer_slot.assign([self = this](asio::cancellation_type) { self->cancel(); });
        }
        run(core, opts);
    }

  private:
    void start_attempt(const attempt_context& ctx) override {
        runner->start(ctx, attempt_signal.slot(), ex,
                      attempt_completion(shared_from_this(), ctx.attempt));
    }
    void cancel_attempt() override { attempt_signal.emit(asio::cancellation_type::terminal); }
    void attempt_ended() override { attempt_signal.slot().clear(); }
    void finished(error_code ec, bool inside_run) override {
        if (outer_slot.is_connected()) {
            outer_slot.clear();
        }
        auto h = std::move(handler);
        if (inside_run) {
            // Asio's rule: a handler never runs inside its initiating function.
            asio::post(ex, asio::append(std::move(h), ec));
        } else {
            asio::dispatch(ex, asio::append(std::move(h), ec));
        }
    }

    std::unique_ptr<attempt_runner> runner;
    asio::any_completion_handler<void(error_code)> handler;
    asio::any_io_executor ex;
    asio::cancellation_slot outer_slot;
    asio::cancellation_signal attempt_signal;
};

}  // namespace

void attempt_completion::operator()(error_code ec) {
    run_->attempt_complete(ec, attempt_);
}

void execute(const std::shared_ptr<policy_core>& core, const call_options& opts,
             std::unique_ptr<attempt_runner> runner,
             asio::any_completion_handler<void(error_code)> handler) {
    auto state = std::make_shared<erased_run>(std::move(runner), std::move(handler), core->ex);
    state->start(core, opts);
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
