#include <lakemesh/consul/watch.hpp>

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace lakemesh::consul {

namespace {

using std::chrono::milliseconds;
using duration = watch_clock::duration;
using time_point = watch_clock::time_point;

constexpr milliseconds min_blocking_wait{1};

std::uint64_t initial_seed(const watch_config& cfg) {
    if (cfg.seed) {
        return *cfg.seed;
    }
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

milliseconds nominal_wait_of(const watch_config& cfg) noexcept {
    const milliseconds wait = cfg.wait > milliseconds::zero() ? cfg.wait : default_blocking_wait;
    return std::clamp(wait, min_blocking_wait, max_blocking_wait);
}

// Saturates instead of overflowing for configured intervals near duration::max().
time_point saturating_add(time_point t, duration d) noexcept {
    if (d <= duration::zero()) {
        return t;
    }
    return time_point::max() - t < d ? time_point::max() : t + d;
}

}  // namespace

// ------------------------------------------------------------------------------------ watch_fsm

watch_fsm::watch_fsm(const watch_config& cfg)
    : cfg_(cfg), wait_(nominal_wait_of(cfg)), rng_(initial_seed(cfg)) {}

watch_action watch_fsm::ignored() const noexcept {
    watch_action a;
    a.kind = stopped() ? watch_action_kind::stopped : watch_action_kind::none;
    return a;
}

milliseconds watch_fsm::jittered_wait() {
    // `!(x > 0)` also catches NaN.
    const double fraction = !(cfg_.wait_jitter > 0.0) ? 0.0 : std::min(cfg_.wait_jitter, 0.5);
    const auto spread =
        static_cast<milliseconds::rep>(std::floor(static_cast<double>(wait_.count()) * fraction));
    if (spread <= 0) {
        return wait_;
    }
    const auto offset =
        static_cast<milliseconds::rep>(rng_.below(2 * static_cast<std::uint64_t>(spread) + 1));
    return std::clamp(wait_ - milliseconds(spread) + milliseconds(offset), min_blocking_wait,
                      max_blocking_wait);
}

watch_action watch_fsm::fetch_now(time_point now) {
    state_ = watch_state::fetching;
    // After an error the agent may have restarted and lost its state, so that our index is
    // ahead of everything it has: a blocking call would then hang for the whole wait. Ask for
    // the current state without blocking instead; on_result() compares its index with ours.
    resync_ = consecutive_errors_ > 0;
    pending_fetch_ = fetch_params{resync_ ? 0 : index_, jittered_wait()};
    fetch_started_ = now;
    watch_action a;
    a.kind = watch_action_kind::fetch;
    a.fetch = pending_fetch_;
    return a;
}

watch_action watch_fsm::sleep_until(time_point when) {
    state_ = watch_state::sleeping;
    wake_at_ = when;
    watch_action a;
    a.kind = watch_action_kind::sleep;
    a.wake_at = when;
    return a;
}

watch_action watch_fsm::fetch_no_sooner_than(time_point now, time_point earliest) {
    return now >= earliest ? fetch_now(now) : sleep_until(earliest);
}

watch_action watch_fsm::start(time_point now) {
    if (state_ != watch_state::idle) {
        return ignored();
    }
    return fetch_now(now);
}

watch_action watch_fsm::on_result(time_point now, std::uint64_t index) {
    if (state_ != watch_state::fetching) {
        return ignored();
    }
    consecutive_errors_ = 0;
    // Passing 0 back would make the next call return at once, every time: treat 0 as 1.
    const std::uint64_t returned = std::max<std::uint64_t>(index, 1);
    bool deliver = false;
    bool reset = false;
    bool moved = false;
    if (resync_ && index_ != 0) {
        // A non-blocking answer after errors is the agent's current state: deliver it when its
        // index differs from ours, and take its index either way, even a lower one.
        resync_ = false;
        if (returned != index_) {
            deliver = true;
            moved = true;
            reset = returned < index_;
            index_ = returned;
        }
    } else if (index_ == 0 || returned > index_) {
        // First answer, answer after a reset, or a change.
        deliver = true;
        moved = true;
        index_ = returned;
    } else if (returned < index_) {
        // Consul lost its state or another server answered: start over from the current state.
        // The value is current, so it is delivered; the reset call that follows is rate-limited
        // like any answer that did not move forward, so a flapping index cannot loop tightly.
        deliver = true;
        reset = true;
        index_ = 0;
    }
    const duration gap = moved ? cfg_.min_changed_interval : cfg_.min_unchanged_interval;
    watch_action a = fetch_no_sooner_than(now, saturating_add(fetch_started_, gap));
    a.deliver = deliver;
    a.reset = reset;
    return a;
}

watch_action watch_fsm::on_error(time_point now, const error_code& /*ec*/) {
    if (state_ != watch_state::fetching) {
        return ignored();
    }
    if (consecutive_errors_ < std::numeric_limits<unsigned>::max()) {
        ++consecutive_errors_;
    }
    const duration ceiling = backoff_ceiling(consecutive_errors_);
    // Full jitter: uniform in [0, ceiling]; below(span + 1) cannot overflow as span < 2^63.
    const duration delay(
        static_cast<duration::rep>(rng_.below(static_cast<std::uint64_t>(ceiling.count()) + 1)));
    watch_action a = fetch_no_sooner_than(now, saturating_add(now, delay));
    a.backoff = delay;
    return a;
}

watch_action watch_fsm::on_timer(time_point now) {
    if (state_ != watch_state::sleeping) {
        return ignored();
    }
    return fetch_no_sooner_than(now, wake_at_);
}

watch_action watch_fsm::retry_now(time_point now) {
    if (state_ != watch_state::sleeping || consecutive_errors_ == 0) {
        return ignored();
    }
    return fetch_now(now);
}

watch_action watch_fsm::stop() noexcept {
    state_ = watch_state::stopped;
    return watch_action{};
}

duration watch_fsm::backoff_ceiling(unsigned errors) const noexcept {
    const duration base = std::max(cfg_.error_backoff_base, duration::zero());
    const duration cap =
        cfg_.error_backoff_cap > duration::zero() ? cfg_.error_backoff_cap : duration::max();
    if (errors == 0 || base == duration::zero()) {
        return duration::zero();
    }
    const unsigned shift = errors - 1;
    // base << shift, saturating at the cap without overflowing.
    if (shift >= 62 || base.count() > (duration::max().count() >> shift)) {
        return cap;
    }
    return std::min(cap, duration(base.count() << shift));
}

// ---------------------------------------------------------------------------- watch_runner

namespace detail {

namespace asio = boost::asio;

struct watch_runner::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor executor, const watch_config& cfg, erased_watch_fetch fetch_fn,
         std::function<void(bool, std::uint64_t)> success_fn,
         std::function<void(const error_code&)> error_fn)
        : ex(std::move(executor)),
          fsm(cfg),
          timer(ex),
          fetch(std::move(fetch_fn)),
          on_success(std::move(success_fn)),
          on_error(std::move(error_fn)) {}

    asio::any_io_executor ex;
    watch_fsm fsm;
    asio::steady_timer timer;
    asio::cancellation_signal fetch_signal;
    erased_watch_fetch fetch;
    std::function<void(bool, std::uint64_t)> on_success;
    std::function<void(const error_code&)> on_error;
    // > 0 while user code (fetch or a handler) runs: stop() must not destroy the std::function
    // that is executing, so the release waits until the outermost call returns.
    int user_code_depth = 0;
    bool release_pending = false;
    // True while fetch() runs, to catch fetches that complete inline and would otherwise recurse.
    bool initiating = false;

    // Returns false when `f` threw. No exception may escape into the executor.
    template <class F>
    bool call_user(F&& f) {
        ++user_code_depth;
        bool ok = true;
        try {
            std::forward<F>(f)();
        } catch (...) {
            ok = false;
        }
        if (--user_code_depth == 0 && release_pending) {
            release();
        }
        return ok;
    }

    void release() noexcept {
        if (user_code_depth > 0) {
            release_pending = true;
            return;
        }
        release_pending = false;
        fetch = nullptr;
        on_success = nullptr;
        on_error = nullptr;
    }

    void execute(const watch_action& a) {
        switch (a.kind) {
            case watch_action_kind::fetch:
                start_fetch(a.fetch);
                break;
            case watch_action_kind::sleep:
                timer.expires_at(a.wake_at);
                timer.async_wait([self = shared_from_this()](error_code) { self->wake(); });
                break;
            case watch_action_kind::stopped:
            case watch_action_kind::none:
                break;
        }
    }

    void start_fetch(const fetch_params& params) {
        asio::any_completion_handler<void(error_code, std::uint64_t)> handler =
            asio::bind_cancellation_slot(
                fetch_signal.slot(),
                asio::bind_executor(
                    ex, [self = shared_from_this()](error_code ec, std::uint64_t index) {
                        self->fetch_done(ec, index);
                    }));
        initiating = true;
        const bool ok = call_user([&] { fetch(params, std::move(handler)); });
        initiating = false;
        if (!ok && fsm.state() == watch_state::fetching) {
            // A fetch that throws failed to start: back off like any failed fetch.
            asio::post(ex, [self = shared_from_this()] {
                self->fetch_done(
                    boost::system::errc::make_error_code(boost::system::errc::io_error), 0);
            });
        }
    }

    void fetch_done(error_code ec, std::uint64_t index) {
        if (initiating) {
            // Completed inside fetch(): finish on a fresh stack so a fake or cached fetch that
            // always answers at once cannot grow the stack without bound.
            asio::post(ex, [self = shared_from_this(), ec, index] { self->fetch_done(ec, index); });
            return;
        }
        // A completed operation no longer listens; a later emit must not reach it.
        fetch_signal.slot().clear();
        if (fsm.stopped()) {
            return;
        }
        const auto now = watch_clock::now();
        if (ec) {
            const watch_action a = fsm.on_error(now, ec);
            if (on_error) {
                call_user([&] { on_error(ec); });
            }
            if (!fsm.stopped()) {
                execute(a);
            }
            return;
        }
        const watch_action a = fsm.on_result(now, index);
        if (on_success) {
            call_user([&] { on_success(a.deliver, index); });
        }
        if (!fsm.stopped()) {
            execute(a);
        }
    }

    void wake() {
        if (fsm.stopped()) {
            return;
        }
        execute(fsm.on_timer(watch_clock::now()));
    }

    void retry_now() {
        const watch_action a = fsm.retry_now(watch_clock::now());
        if (a.kind == watch_action_kind::fetch) {
            // The cancelled wait's wake() meets a fetching state machine and does nothing.
            timer.cancel();
            execute(a);
        }
    }

    void start() {
        if (fsm.state() != watch_state::idle) {
            return;
        }
        execute(fsm.start(watch_clock::now()));
    }

    void stop() noexcept {
        if (fsm.stopped()) {
            return;
        }
        const bool fetching = fsm.state() == watch_state::fetching;
        fsm.stop();
        if (fetching) {
            fetch_signal.emit(asio::cancellation_type::all);
        }
        timer.cancel();
        release();
    }
};

watch_runner::watch_runner(asio::any_io_executor ex, const watch_config& cfg,
                           erased_watch_fetch fetch,
                           std::function<void(bool, std::uint64_t)> on_success,
                           std::function<void(const error_code&)> on_error)
    : impl_(std::make_shared<impl>(std::move(ex), cfg, std::move(fetch), std::move(on_success),
                                   std::move(on_error))) {}

watch_runner& watch_runner::operator=(watch_runner&& other) noexcept {
    if (this != &other) {
        stop();
        impl_ = std::move(other.impl_);
    }
    return *this;
}

watch_runner::~watch_runner() {
    stop();
}

void watch_runner::start() {
    if (impl_) {
        impl_->start();
    }
}

void watch_runner::retry_now() {
    if (impl_) {
        impl_->retry_now();
    }
}

void watch_runner::stop() noexcept {
    if (impl_) {
        impl_->stop();
    }
}

bool watch_runner::running() const noexcept {
    return impl_ && impl_->fsm.state() != watch_state::idle && !impl_->fsm.stopped();
}

std::uint64_t watch_runner::index() const noexcept {
    return impl_ ? impl_->fsm.index() : 0;
}

unsigned watch_runner::consecutive_errors() const noexcept {
    return impl_ ? impl_->fsm.consecutive_errors() : 0;
}

asio::any_io_executor watch_runner::get_executor() const noexcept {
    return impl_ ? impl_->ex : asio::any_io_executor{};
}

}  // namespace detail

}  // namespace lakemesh::consul
