// The Asio shell of the health part: one steady_timer over a check_schedule, one ttl_check_fsm
// per probe check, registrations with back-off and the anti-entropy loop. Everything runs on
// one executor; network completions and async probe results come back through it.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/health/check_schedule.hpp>
#include <lakemesh/health/health_scheduler.hpp>
#include <lakemesh/health/ttl_check_fsm.hpp>
#include <lakemesh/resilience/random.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <deque>
#include <map>
#include <random>
#include <set>

namespace lakemesh::health {

namespace asio = boost::asio;

namespace detail {

/// One started async probe: the bridge between the thread that completes it and the executor.
struct probe_call {
    std::atomic<bool> done{false};
    std::atomic<bool> cancelled{false};
    /// Posts the result to the scheduler's executor (set before the probe starts).
    std::function<void(status, std::string)> deliver;
    /// Executor only.
    std::function<void()> cancel_hook;
};

}  // namespace detail

void probe_completion::operator()(status state, std::string output) const {
    if (!call_ || call_->done.exchange(true) || call_->cancelled.load()) {
        return;
    }
    call_->deliver(state, std::move(output));
}

bool probe_completion::cancelled() const noexcept {
    return call_ && call_->cancelled.load();
}

void probe_completion::on_cancel(std::function<void()> f) const {
    if (!call_ || !f) {
        return;
    }
    if (call_->cancelled.load()) {
        f();
        return;
    }
    call_->cancel_hook = std::move(f);
}

namespace {

/// Consul keeps 4 KiB of a check's output; cut on a UTF-8 boundary so the JSON stays valid text.
constexpr std::size_t max_output = 4096;
/// Timers due this close together are handled in one wake-up of the shell.
constexpr auto coalesce_window = std::chrono::milliseconds(2);

std::string truncate_output(std::string out) {
    if (out.size() <= max_output) {
        return out;
    }
    std::size_t cut = max_output;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0U) == 0x80U) {
        --cut;
    }
    out.resize(cut);
    return out;
}

consul::check_status to_consul(status s) noexcept {
    switch (s) {
        case status::passing:
            return consul::check_status::passing;
        case status::warning:
            return consul::check_status::warning;
        case status::critical:
            return consul::check_status::critical;
    }
    return consul::check_status::critical;
}

status from_consul(consul::check_status s) noexcept {
    switch (s) {
        case consul::check_status::passing:
            return status::passing;
        case consul::check_status::warning:
            return status::warning;
        default:
            return status::critical;
    }
}

std::chrono::milliseconds ceil_ms(duration d) {
    return std::chrono::ceil<std::chrono::milliseconds>(d);
}

duration effective_ttl(const probe_check& p) {
    return p.ttl > duration::zero() ? p.ttl : 3 * p.interval;
}

bool has_probe(const probe_check& p) {
    return std::visit([](const auto& f) { return static_cast<bool>(f); }, p.probe);
}

std::string describe(const error_code& ec, const diagnostics& diag) {
    std::string out = ec.message();
    const std::string extra = diag.to_string();
    if (!extra.empty()) {
        out += " (" + extra + ")";
    }
    return out;
}

/// The agent no longer has the check: it restarted without its state, or someone deregistered it.
/// (Consul 1.10 answers 500 "does not have associated TTL" here, which the client maps to
/// not_found as later versions answer.)
bool agent_lost_check(const error_code& ec) {
    return ec == consul_errc::not_found;
}

error_code validate_check(const service_check& check) {
    if (const auto* p = std::get_if<probe_check>(&check)) {
        if (!has_probe(*p)) {
            return validation_errc::invalid_argument;
        }
        if (p->interval <= duration::zero() || p->timeout < duration::zero() ||
            p->ttl < duration::zero() ||
            p->deregister_critical_service_after < std::chrono::milliseconds::zero()) {
            return validation_errc::invalid_duration;
        }
        return {};
    }
    const auto& d = std::get<consul::check_definition>(check);
    const int kinds = int(!d.http.empty()) + int(!d.tcp.empty()) + int(!d.grpc.empty());
    if (kinds != 1 || d.ttl != std::chrono::milliseconds::zero()) {
        return validation_errc::invalid_argument;  // TTL checks need a probe: probe_check.
    }
    if (d.interval <= std::chrono::milliseconds::zero() ||
        d.timeout < std::chrono::milliseconds::zero()) {
        return validation_errc::invalid_duration;
    }
    return {};
}

schedule_config schedule_config_of(const scheduler_config& cfg) {
    schedule_config out;
    out.jitter = cfg.probe_jitter;
    out.first_spread = 1.0;
    out.seed = cfg.seed;
    out.slack_fraction = cfg.timer_slack_fraction;
    out.slack_cap = cfg.timer_slack_cap;
    return out;
}

}  // namespace

// ------------------------------------------------------------------ impl

class health_scheduler::impl : public std::enable_shared_from_this<impl> {
  public:
    impl(executor_type ex, consul::agent_api agent, scheduler_config cfg, observe::logger log)
        : ex_(std::move(ex)),
          agent_(std::move(agent)),
          cfg_(std::move(cfg)),
          log_(log.with_component("health")),
          schedule_(schedule_config_of(cfg_)),
          rng_(cfg_.seed ? *cfg_.seed ^ 0x6865'616c'7468ULL : std::random_device{}()),
          timer_(ex_),
          reconcile_timer_(ex_) {}

    void start() { arm_reconcile(); }

    // ---------------------------------------------------------------- control

    error_code register_service(service_definition def) {
        if (stopped_) {
            return validation_errc::invalid_configuration;
        }
        auto& reg = def.registration;
        if (reg.name.empty()) {
            return validation_errc::invalid_name;
        }
        if (reg.id.empty()) {
            reg.id = reg.name;
        }
        if (reg.check || !reg.checks.empty()) {
            return validation_errc::invalid_argument;
        }
        std::set<std::string> ids;
        for (std::size_t i = 0; i < def.checks.size(); ++i) {
            if (auto ec = validate_check(def.checks[i])) {
                return ec;
            }
            std::string& id = check_id_of(def.checks[i]);
            if (id.empty()) {
                id = "service:" + reg.id + ":" + std::to_string(i + 1);
            }
            if (!ids.insert(id).second) {
                return validation_errc::invalid_name;
            }
        }

        const auto now = clock::now();
        std::shared_ptr<service_state> svc;
        std::map<std::string, std::pair<status, std::string>> carried;
        if (auto it = services_.find(reg.id); it != services_.end()) {
            // A new definition for a known service: keep the last results, so that registering
            // the same thing twice does not flap the checks to critical.
            svc = it->second;
            for (auto& [id, h] : svc->ttl) {
                if (auto* cs = find(h); cs != nullptr && cs->fsm.has_result()) {
                    carried.emplace(id,
                                    std::pair{cs->fsm.current_status(), cs->fsm.current_output()});
                }
                drop_check(*svc, h);
            }
            svc->ttl.clear();
            svc->agent.clear();
            svc->order.clear();
            svc->counts = {};
        } else {
            svc = std::make_shared<service_state>(ex_);
            svc->id = reg.id;
            services_.emplace(svc->id, svc);
            log_.info("service " + svc->id + " (" + reg.name + "): registering with " +
                      std::to_string(def.checks.size()) + " checks");
        }
        svc->registration = std::move(reg);
        svc->check_counter = def.checks.size();
        for (auto& check : def.checks) {
            insert_check(*svc, std::move(check), now, carried);
        }
        if (svc->ever_registered || svc->in_flight) {
            refresh_aggregate(*svc);
        } else {
            svc->aggregate = compute_aggregate(*svc);
        }
        request_register(svc, {});
        arm_timer();
        return {};
    }

    error_code add_check(const std::string& service_id, service_check check) {
        if (stopped_) {
            return validation_errc::invalid_configuration;
        }
        auto it = services_.find(service_id);
        if (it == services_.end()) {
            return validation_errc::invalid_name;
        }
        if (auto ec = validate_check(check)) {
            return ec;
        }
        auto svc = it->second;
        std::string& id = check_id_of(check);
        if (id.empty()) {
            id = "service:" + service_id + ":" + std::to_string(++svc->check_counter);
        }
        if (svc->ttl.contains(id) || svc->agent.contains(id)) {
            return validation_errc::invalid_name;
        }
        insert_check(*svc, std::move(check), clock::now(), {});
        refresh_aggregate(*svc);
        request_register(svc, {});
        arm_timer();
        return {};
    }

    bool remove_check(const std::string& service_id, const std::string& check_id) {
        auto it = services_.find(service_id);
        if (it == services_.end()) {
            return false;
        }
        auto svc = it->second;
        if (auto t = svc->ttl.find(check_id); t != svc->ttl.end()) {
            drop_check(*svc, t->second);
            svc->ttl.erase(t);
        } else if (auto a = svc->agent.find(check_id); a != svc->agent.end()) {
            --svc->counts[index_of(a->second.counted)];
            svc->agent.erase(a);
        } else {
            return false;
        }
        std::erase(svc->order, check_id);
        refresh_aggregate(*svc);
        request_register(svc, {});
        return true;
    }

    bool deregister_service(const std::string& service_id) {
        auto it = services_.find(service_id);
        if (it == services_.end()) {
            return false;
        }
        auto svc = it->second;
        services_.erase(it);
        retire(svc);
        return true;
    }

    void stop(asio::any_completion_handler<void(error_code)> handler) {
        stop_handlers_.push_back(std::move(handler));
        if (!stopping_) {
            stopping_ = true;
            log_.info("stopping: deregistering " + std::to_string(services_.size()) + " services");
            close();
            auto services = std::move(services_);
            services_.clear();
            for (auto& [id, svc] : services) {
                retire(svc);
            }
        }
        maybe_finish_stop();
    }

    /// Stops every timer and probe; nothing new starts. Registrations stay in Consul.
    void close() {
        stopped_ = true;
        queued_pushes_.clear();
        timer_.cancel();
        reconcile_timer_.cancel();
        for (auto& [id, svc] : services_) {
            svc->retry_timer.cancel();
            for (auto& [cid, h] : svc->ttl) {
                if (auto* cs = find(h)) {
                    cancel_running(*cs);
                }
            }
        }
    }

    // ---------------------------------------------------------------- status view

    std::optional<service_health> status_of(std::string_view id) const {
        if (auto it = services_.find(id); it != services_.end()) {
            return view_of(*it->second);
        }
        if (remote_) {
            auto h = remote_->health_of(id);
            if (h) {
                h->local = false;
            }
            return h;
        }
        return std::nullopt;
    }

    std::vector<service_health> statuses() const {
        std::vector<service_health> out;
        out.reserve(services_.size());
        for (const auto& [id, svc] : services_) {
            out.push_back(view_of(*svc));
        }
        return out;
    }

    std::uint64_t on_change(change_callback cb) {
        const auto id = ++next_subscription_;
        subscribers_.emplace(id, std::move(cb));
        return id;
    }
    void remove_on_change(std::uint64_t id) { subscribers_.erase(id); }
    void set_remote_source(std::shared_ptr<const remote_health_source> s) {
        remote_ = std::move(s);
    }
    void notify(const std::string& service_id, status old_status, status new_status) {
        asio::post(ex_, [self = shared_from_this(), service_id, old_status, new_status] {
            // Copied: a callback may subscribe or unsubscribe.
            auto subscribers = self->subscribers_;
            for (auto& [id, cb] : subscribers) {
                try {
                    cb(service_id, old_status, new_status);
                } catch (const std::exception& e) {
                    self->log_.error("change callback threw: " + std::string(e.what()));
                } catch (...) {
                    self->log_.error("change callback threw");
                }
            }
        });
    }

    std::size_t check_count() const noexcept { return schedule_.size(); }
    std::size_t service_count() const noexcept { return services_.size(); }
    std::uint64_t repairs() const noexcept { return repairs_; }
    std::uint64_t updates_sent() const noexcept { return updates_sent_; }
    std::uint64_t update_batches_sent() const noexcept { return update_batches_sent_; }
    const executor_type& executor() const noexcept { return ex_; }

  private:
    struct service_state;

    struct check_state {
        check_state(probe_check s, ttl_check_config c) : spec(std::move(s)), fsm(c) {}
        probe_check spec;
        ttl_check_fsm fsm;
        std::string id;
        check_handle handle;
        service_state* service = nullptr;
        std::shared_ptr<detail::probe_call> running;
        std::uint64_t probe_seq = 0;
        time_point probe_deadline = never;
        status counted = status::critical;
        bool reported = false;
        /// What the registration in flight (or the last one) told Consul.
        status registered_with = status::critical;
        std::uint64_t included_in = 0;
    };

    struct agent_check_state {
        consul::check_definition definition;
        status counted = status::critical;
        std::string output;
    };

    struct service_state {
        explicit service_state(const executor_type& ex) : retry_timer(ex) {}
        std::string id;
        consul::service_registration registration;
        std::map<std::string, check_handle> ttl;
        std::map<std::string, agent_check_state> agent;
        std::vector<std::string> order;
        std::size_t check_counter = 0;
        std::array<std::size_t, 3> counts{};
        status aggregate = status::passing;

        bool registered = false;
        bool ever_registered = false;
        bool in_flight = false;
        bool dirty = false;
        bool retry_pending = false;
        bool waiting_for_deregister = false;
        bool removed = false;
        bool deregister_after_register = false;
        bool push_failing = false;
        unsigned failures = 0;
        std::uint64_t register_seq = 0;
        time_point register_done_at{};
        std::string repair_reason;
        asio::steady_timer retry_timer;
    };

    static std::size_t index_of(status s) noexcept { return static_cast<std::size_t>(s); }

    static std::string& check_id_of(service_check& c) {
        if (auto* p = std::get_if<probe_check>(&c)) {
            return p->id;
        }
        return std::get<consul::check_definition>(c).id;
    }

    check_state* find(check_handle h) noexcept {
        if (!schedule_.contains(h) || h.index >= checks_.size()) {
            return nullptr;
        }
        return checks_[h.index].get();
    }

    void insert_check(service_state& svc, service_check check, time_point now,
                      const std::map<std::string, std::pair<status, std::string>>& carried) {
        std::string id = check_id_of(check);
        svc.order.push_back(id);
        if (auto* def = std::get_if<consul::check_definition>(&check)) {
            agent_check_state a;
            a.definition = std::move(*def);
            a.definition.service_id.clear();
            svc.agent.emplace(id, std::move(a));
            ++svc.counts[index_of(status::critical)];
            return;
        }
        auto& spec = std::get<probe_check>(check);
        ttl_check_config fc;
        fc.ttl = effective_ttl(spec);
        fc.refresh_fraction = cfg_.refresh_fraction;
        fc.probe_timeout = spec.timeout;
        fc.push_backoff_base = cfg_.backoff_base;
        fc.push_backoff_cap = cfg_.backoff_cap;
        const auto interval = spec.interval;
        auto cs = std::make_unique<check_state>(std::move(spec), fc);
        cs->handle = schedule_.add(interval, now);
        cs->id = id;
        cs->service = &svc;
        if (auto c = carried.find(id); c != carried.end()) {
            // Feed the previous result through the protocol so the new machine starts from it.
            cs->fsm.on_probe_due(now);
            cs->fsm.on_probe_completed(now, c->second.first, c->second.second);
            cs->reported = true;
        }
        cs->counted = cs->fsm.current_status();
        ++svc.counts[index_of(cs->counted)];
        if (checks_.size() <= cs->handle.index) {
            checks_.resize(cs->handle.index + 1);
        }
        svc.ttl.emplace(id, cs->handle);
        checks_[cs->handle.index] = std::move(cs);
    }

    void drop_check(service_state& svc, check_handle h) {
        if (auto* cs = find(h)) {
            cancel_running(*cs);
            --svc.counts[index_of(cs->counted)];
            schedule_.remove(h);
            checks_[h.index].reset();
        }
    }

    static status compute_aggregate(const service_state& svc) noexcept {
        if (svc.counts[index_of(status::critical)] > 0) {
            return status::critical;
        }
        if (svc.counts[index_of(status::warning)] > 0) {
            return status::warning;
        }
        return status::passing;
    }

    void refresh_aggregate(service_state& svc) {
        const status now = compute_aggregate(svc);
        if (now == svc.aggregate || svc.removed) {
            return;
        }
        const status old = svc.aggregate;
        svc.aggregate = now;
        log_.info("service " + svc.id + ": " + std::string(to_string(old)) + " -> " +
                  std::string(to_string(now)));
        notify(svc.id, old, now);
    }

    service_health view_of(const service_state& svc) const {
        service_health h;
        h.service_id = svc.id;
        h.service_name = svc.registration.name;
        h.aggregate = svc.aggregate;
        h.registered = svc.registered;
        h.local = true;
        for (const auto& id : svc.order) {
            check_health c;
            c.check_id = id;
            if (auto t = svc.ttl.find(id); t != svc.ttl.end()) {
                const auto& cs = *checks_[t->second.index];
                c.state = cs.fsm.current_status();
                c.output = cs.fsm.current_output();
            } else if (auto a = svc.agent.find(id); a != svc.agent.end()) {
                c.state = a->second.counted;
                c.output = a->second.output;
                c.agent_run = true;
            }
            h.checks.push_back(std::move(c));
        }
        return h;
    }

    // ---------------------------------------------------------------- the one timer

    void arm_timer() {
        if (stopped_) {
            return;
        }
        // With slack, everything due between next_due() and this wake-up is handled in it.
        const auto next = schedule_.next_wake();
        if (!next || (timer_armed_ && armed_at_ <= *next)) {
            return;  // an armed timer that fires early just re-arms
        }
        armed_at_ = *next;
        timer_armed_ = true;
        timer_.expires_at(*next);
        timer_.async_wait([self = shared_from_this(), gen = ++timer_generation_](error_code ec) {
            if (gen != self->timer_generation_) {
                return;
            }
            self->timer_armed_ = false;
            if (!ec && !self->stopped_) {
                self->on_timer();
            }
        });
    }

    void on_timer() {
        // Bounded so that a machine that keeps asking to be woken now cannot starve the executor.
        std::size_t budget = schedule_.size() * 2 + 64;
        auto now = clock::now();
        while (budget-- > 0 && !stopped_) {
            auto item = schedule_.pop_next(now + coalesce_window);
            if (!item) {
                break;
            }
            handle_due(*item, std::max(now, item->due));
            now = clock::now();
        }
        arm_timer();
    }

    void handle_due(const due_check& item, time_point t) {
        auto* cs = find(item.check);
        if (cs == nullptr) {
            return;
        }
        if (item.kind == due_kind::probe) {
            auto action = cs->fsm.on_probe_due(t);
            if (action.kind == check_action_kind::start_probe) {
                start_probe(item.check, action.probe_deadline, t);
                return;
            }
            apply(*cs, std::move(action), t);
            after_event(*cs);
            return;
        }
        if (cs->fsm.probe() == probe_state::running && t >= cs->probe_deadline) {
            // Enforce the deadline here, so a probe that never answers frees the check at once.
            cancel_running(*cs);
            apply(*cs, cs->fsm.on_probe_timed_out(t), t);
        }
        if (cs->fsm.wake_at() <= t) {
            apply(*cs, cs->fsm.on_wake(t), t);
        }
        after_event(*cs);
    }

    void start_probe(check_handle h, time_point deadline, time_point t) {
        auto* cs = find(h);
        cs->probe_deadline = deadline;
        const auto seq = ++cs->probe_seq;
        if (auto* sync = std::get_if<sync_probe>(&cs->spec.probe)) {
            probe_result r;
            std::optional<std::string> threw;
            const sync_probe probe = *sync;  // the probe may replace the check
            try {
                r = probe();
            } catch (const std::exception& e) {
                threw = e.what();
            } catch (...) {
                threw = "unknown exception";
            }
            cs = find(h);
            if (cs == nullptr || cs->probe_seq != seq) {
                return;
            }
            const auto done = clock::now();
            if (threw) {
                apply(*cs, cs->fsm.on_probe_threw(done, *threw), done);
            } else if (done >= deadline) {
                apply(*cs, cs->fsm.on_probe_timed_out(done), done);
            } else {
                apply(
                    *cs,
                    cs->fsm.on_probe_completed(done, r.state, truncate_output(std::move(r.output))),
                    done);
            }
            after_event(*cs);
            return;
        }
        auto call = std::make_shared<detail::probe_call>();
        call->deliver = [weak = weak_from_this(), ex = ex_, h, seq](status s, std::string out) {
            asio::post(ex, [weak, h, seq, s, out = std::move(out)]() mutable {
                if (auto self = weak.lock()) {
                    self->on_async_probe_done(h, seq, s, std::move(out));
                }
            });
        };
        cs->running = call;
        const async_probe probe = std::get<async_probe>(cs->spec.probe);
        std::optional<std::string> threw;
        try {
            probe(probe_completion(call));
        } catch (const std::exception& e) {
            threw = e.what();
        } catch (...) {
            threw = "unknown exception";
        }
        cs = find(h);
        if (cs == nullptr) {
            return;
        }
        if (threw && cs->probe_seq == seq && cs->running == call) {
            call->cancelled = true;
            cs->running.reset();
            apply(*cs, cs->fsm.on_probe_threw(t, *threw), t);
        }
        after_event(*cs);
    }

    void on_async_probe_done(check_handle h, std::uint64_t seq, status s, std::string out) {
        auto* cs = find(h);
        if (stopped_ || cs == nullptr || cs->probe_seq != seq || !cs->running) {
            return;  // timed out, replaced or stopped meanwhile
        }
        cs->running.reset();
        const auto now = clock::now();
        apply(*cs, cs->fsm.on_probe_completed(now, s, truncate_output(std::move(out))), now);
        after_event(*cs);
        arm_timer();
    }

    void cancel_running(check_state& cs) {
        auto call = std::move(cs.running);
        cs.running.reset();
        if (!call) {
            return;
        }
        call->cancelled = true;
        auto hook = std::move(call->cancel_hook);
        call->cancel_hook = nullptr;
        if (hook) {
            try {
                hook();
            } catch (...) {
                log_.warn("cancel hook of a probe of " + cs.service->id + " threw");
            }
        }
    }

    void apply(check_state& cs, check_action action, time_point t) {
        if (action.cancel_probe) {
            // Only reachable if the deadline was not enforced in handle_due: close the probe.
            cancel_running(cs);
            cs.fsm.on_probe_completed(t, status::critical, {});
        }
        if (action.kind == check_action_kind::push) {
            send_push(cs, action.push_status, std::move(action.push_output));
        }
    }

    /// After every event of a check: re-arm its wake timer and account a status change.
    void after_event(check_state& cs) {
        schedule_.set_wake(cs.handle, cs.fsm.wake_at());
        const status s = cs.fsm.current_status();
        auto& svc = *cs.service;
        if (!cs.reported && cs.fsm.has_result()) {
            cs.reported = true;
            if (s != status::passing) {
                log_.info("check " + svc.id + "/" + id_of(cs) + ": first result " +
                          std::string(to_string(s)) + ": " + cs.fsm.current_output());
            }
        } else if (s != cs.counted) {
            log_.info("check " + svc.id + "/" + id_of(cs) + ": " +
                      std::string(to_string(cs.counted)) + " -> " + std::string(to_string(s)) +
                      ": " + cs.fsm.current_output());
        }
        if (s != cs.counted) {
            --svc.counts[index_of(cs.counted)];
            ++svc.counts[index_of(s)];
            cs.counted = s;
            refresh_aggregate(svc);
        }
    }

    static const std::string& id_of(const check_state& cs) noexcept { return cs.id; }

    // ---------------------------------------------------------------- TTL updates

    /// An update the state machine asked for that waits for a free in-flight slot.
    struct queued_push {
        check_handle check;
        status state;
        std::string output;
    };

    /// Queues an update; the queue is flushed once the current event has been handled, so that
    /// the updates asked for by one timer wake-up go out together in batches.
    void send_push(check_state& cs, status s, std::string output) {
        queued_pushes_.push_back(queued_push{cs.handle, s, std::move(output)});
        if (!flush_posted_) {
            flush_posted_ = true;
            asio::post(ex_, [weak = weak_from_this()] {
                if (auto self = weak.lock()) {
                    self->flush_posted_ = false;
                    self->start_queued_pushes();
                }
            });
        }
    }

    /// Starts queued updates while slots are free, up to max_updates_per_batch pipelined in one
    /// request batch; those of removed checks are dropped.
    void start_queued_pushes() {
        const std::size_t per_batch = std::max<std::size_t>(cfg_.max_updates_per_batch, 1);
        while (!stopped_ && !queued_pushes_.empty()) {
            std::size_t room = queued_pushes_.size();
            if (cfg_.max_updates_in_flight > 0) {
                if (updates_in_flight_ >= cfg_.max_updates_in_flight) {
                    return;
                }
                room = std::min(room, cfg_.max_updates_in_flight - updates_in_flight_);
            }
            room = std::min(room, per_batch);
            std::vector<consul::check_update> batch;
            std::vector<check_handle> handles;
            batch.reserve(room);
            handles.reserve(room);
            while (batch.size() < room && !queued_pushes_.empty()) {
                auto next = std::move(queued_pushes_.front());
                queued_pushes_.pop_front();
                if (auto* cs = find(next.check)) {
                    batch.push_back(consul::check_update{id_of(*cs), to_consul(next.state),
                                                         std::move(next.output)});
                    handles.push_back(next.check);
                }
            }
            if (batch.size() == 1) {
                start_push(handles.front(), std::move(batch.front()));
            } else if (!batch.empty()) {
                start_batch(std::move(handles), std::move(batch));
            }
        }
    }

    void start_push(check_handle h, consul::check_update u) {
        ++updates_sent_;
        ++updates_in_flight_;
        agent_.async_check_update(
            std::move(u.check_id), u.status, std::move(u.output),
            [self = shared_from_this(), h](error_code ec, consul::result<std::monostate> r) {
                --self->updates_in_flight_;
                self->on_push_done(h, ec, r.diag);
                self->after_pushes();
            });
    }

    void start_batch(std::vector<check_handle> handles, std::vector<consul::check_update> batch) {
        const std::size_t k = batch.size();
        updates_sent_ += k;
        updates_in_flight_ += k;
        ++update_batches_sent_;
        agent_.async_check_updates(
            std::move(batch),
            [self = shared_from_this(), handles = std::move(handles)](
                error_code ec, consul::result<std::vector<consul::check_update_outcome>> r) {
                self->updates_in_flight_ -= handles.size();
                for (std::size_t i = 0; i < handles.size(); ++i) {
                    if (i < r.value.size()) {
                        self->on_push_done(handles[i], r.value[i].error, r.value[i].diag);
                    } else {
                        self->on_push_done(handles[i],
                                           ec ? ec : error_code(asio::error::operation_aborted),
                                           r.diag);
                    }
                }
                self->after_pushes();
            });
    }

    /// After the outcomes of a request: queued updates take the freed slots, the timer follows
    /// the state machines' new wake times.
    void after_pushes() {
        start_queued_pushes();
        arm_timer();
    }

    void on_push_done(check_handle h, error_code ec, const diagnostics& diag) {
        auto* cs = find(h);
        if (stopped_ || cs == nullptr) {
            return;
        }
        const auto now = clock::now();
        auto& svc = *cs->service;
        if (!ec) {
            if (svc.push_failing) {
                svc.push_failing = false;
                log_.info("service " + svc.id + ": check updates reach Consul again");
            }
            apply(*cs, cs->fsm.on_push_succeeded(now), now);
        } else {
            const bool lost = agent_lost_check(ec);
            if (!svc.push_failing && !lost) {
                svc.push_failing = true;
                log_.warn("service " + svc.id + ": updating check " + id_of(*cs) +
                          " failed, keeping local status and retrying: " + describe(ec, diag));
            } else {
                log_.debug("updating check " + id_of(*cs) + " failed: " + describe(ec, diag));
            }
            apply(*cs, cs->fsm.on_push_failed(now, ec, rng_), now);
            if (lost) {
                request_register(shared_of(svc), "the agent lost check " + id_of(*cs) + " (" +
                                                     describe(ec, diag) + ")");
            }
        }
        after_event(*cs);
    }

    // ---------------------------------------------------------------- registration

    std::shared_ptr<service_state> shared_of(const service_state& svc) {
        auto it = services_.find(svc.id);
        return it != services_.end() && it->second.get() == &svc ? it->second : nullptr;
    }

    void request_register(const std::shared_ptr<service_state>& svc, std::string reason) {
        if (!svc || svc->removed || stopped_) {
            return;
        }
        if (!reason.empty() && svc->repair_reason.empty()) {
            svc->repair_reason = std::move(reason);
        }
        if (svc->in_flight || svc->retry_pending || svc->waiting_for_deregister) {
            svc->dirty = true;
            return;
        }
        if (deregisters_in_flight_.contains(svc->id)) {
            // A deregistration of an earlier instance with this ID could overtake the register.
            svc->waiting_for_deregister = true;
            return;
        }
        send_register(svc);
    }

    consul::service_registration build_registration(service_state& svc) {
        consul::service_registration reg = svc.registration;
        reg.replace_existing_checks = true;
        reg.check.reset();
        reg.checks.clear();
        const auto seq = svc.register_seq;
        for (const auto& id : svc.order) {
            if (auto a = svc.agent.find(id); a != svc.agent.end()) {
                reg.checks.push_back(a->second.definition);
                reg.checks.back().id = id;
                continue;
            }
            auto* cs = find(svc.ttl.at(id));
            consul::check_definition d;
            d.id = id;
            d.name = cs->spec.name.empty() ? id : cs->spec.name;
            d.notes = cs->spec.notes;
            d.ttl = ceil_ms(effective_ttl(cs->spec));
            d.deregister_critical_service_after = cs->spec.deregister_critical_service_after;
            cs->registered_with =
                cs->fsm.has_result() ? cs->fsm.current_status() : status::critical;
            d.status = to_consul(cs->registered_with);
            cs->included_in = seq;
            reg.checks.push_back(std::move(d));
        }
        return reg;
    }

    void send_register(const std::shared_ptr<service_state>& svc) {
        svc->in_flight = true;
        svc->dirty = false;
        ++svc->register_seq;
        const auto reg = build_registration(*svc);
        agent_.async_service_register(reg,
                                      [self = shared_from_this(), svc, seq = svc->register_seq](
                                          error_code ec, consul::result<std::monostate> r) {
                                          self->on_register_done(svc, seq, ec, r.diag);
                                      });
    }

    void on_register_done(const std::shared_ptr<service_state>& svc, std::uint64_t seq,
                          error_code ec, const diagnostics& diag) {
        svc->in_flight = false;
        if (svc->removed) {
            if (svc->deregister_after_register) {
                svc->deregister_after_register = false;
                send_deregister(svc);
            }
            return;
        }
        if (stopped_) {
            return;
        }
        const auto now = clock::now();
        if (ec) {
            svc->registered = false;
            ++svc->failures;
            const auto delay = backoff(svc->failures);
            log_.warn("service " + svc->id + ": registration failed (attempt " +
                      std::to_string(svc->failures) + "), retrying in " + format_duration(delay) +
                      ": " + describe(ec, diag));
            svc->retry_pending = true;
            svc->retry_timer.expires_after(delay);
            svc->retry_timer.async_wait([self = shared_from_this(), svc](error_code wait_ec) {
                svc->retry_pending = false;
                if (!wait_ec && !svc->removed && !self->stopped_) {
                    self->send_register(svc);
                }
            });
            return;
        }
        if (!svc->repair_reason.empty()) {
            ++repairs_;
            log_.warn("service " + svc->id +
                      ": re-registered with its checks (repair): " + svc->repair_reason);
        } else if (!svc->ever_registered) {
            log_.info("service " + svc->id + ": registered");
        } else {
            log_.debug("service " + svc->id + ": registration updated");
        }
        svc->repair_reason.clear();
        svc->registered = true;
        svc->ever_registered = true;
        svc->failures = 0;
        svc->register_done_at = now;
        for (auto& [id, h] : svc->ttl) {
            auto* cs = find(h);
            if (cs == nullptr || cs->included_in != seq) {
                continue;  // added after this registration was sent; the next one has it
            }
            apply(*cs, cs->fsm.on_registered(now, cs->registered_with), now);
            after_event(*cs);
        }
        if (svc->dirty) {
            send_register(svc);
        } else if (!svc->agent.empty()) {
            // Agent-run checks report their first result within an interval: read it soon.
            std::chrono::milliseconds longest{0};
            for (const auto& [id, a] : svc->agent) {
                longest = std::max(longest, a.definition.interval);
            }
            reconcile_soon(longest + std::chrono::milliseconds(500));
        }
        arm_timer();
    }

    duration backoff(unsigned failures) {
        auto ceiling = std::chrono::duration_cast<duration>(cfg_.backoff_base);
        const auto cap = std::chrono::duration_cast<duration>(cfg_.backoff_cap);
        for (unsigned i = 1; i < failures && ceiling < cap; ++i) {
            ceiling *= 2;
        }
        ceiling = std::min(ceiling, cap);
        const auto half = static_cast<std::uint64_t>(ceiling.count() / 2);
        return ceiling - duration(static_cast<duration::rep>(rng_.below(half + 1)));
    }

    // ---------------------------------------------------------------- deregistration

    /// Takes a service out of the desired set: stops its probes and deregisters it from the
    /// agent, after any registration in flight (which could otherwise land after it).
    void retire(const std::shared_ptr<service_state>& svc) {
        svc->removed = true;
        svc->retry_timer.cancel();
        for (auto& [id, h] : svc->ttl) {
            drop_check(*svc, h);
        }
        svc->ttl.clear();
        ++deregisters_owed_;
        if (svc->in_flight) {
            svc->deregister_after_register = true;
        } else {
            send_deregister(svc);
        }
    }

    void send_deregister(const std::shared_ptr<service_state>& svc) {
        ++deregisters_in_flight_[svc->id];
        agent_.async_service_deregister(
            svc->id,
            [self = shared_from_this(), svc](error_code ec, consul::result<std::monostate> r) {
                self->on_deregister_done(svc, ec, r.diag);
            });
    }

    void on_deregister_done(const std::shared_ptr<service_state>& svc, error_code ec,
                            const diagnostics& diag) {
        if (auto it = deregisters_in_flight_.find(svc->id);
            it != deregisters_in_flight_.end() && --it->second == 0) {
            deregisters_in_flight_.erase(it);
        }
        --deregisters_owed_;
        if (ec && ec != consul_errc::not_found) {
            log_.warn("service " + svc->id + ": deregistration failed: " + describe(ec, diag));
            if (!stop_error_) {
                stop_error_ = ec;
            }
        } else {
            log_.info("service " + svc->id + ": deregistered");
        }
        // A new instance with the same ID waited for this deregistration.
        if (auto it = services_.find(svc->id); it != services_.end() &&
                                               it->second->waiting_for_deregister &&
                                               !deregisters_in_flight_.contains(svc->id)) {
            it->second->waiting_for_deregister = false;
            send_register(it->second);
        }
        maybe_finish_stop();
    }

    void maybe_finish_stop() {
        if (!stopping_ || deregisters_owed_ != 0 || stop_handlers_.empty()) {
            return;
        }
        log_.info("stopped");
        auto handlers = std::move(stop_handlers_);
        stop_handlers_.clear();
        for (auto& h : handlers) {
            asio::post(ex_, asio::append(std::move(h), stop_error_));
        }
    }

    // ---------------------------------------------------------------- anti-entropy

    duration jittered(duration period) {
        const double j = std::clamp(cfg_.reconcile_jitter, 0.0, 0.5);
        const double factor = 1.0 + j * (2.0 * rng_.unit() - 1.0);
        return std::chrono::duration_cast<duration>(period * factor);
    }

    void arm_reconcile() {
        if (stopped_ || cfg_.reconcile_interval <= std::chrono::milliseconds::zero()) {
            return;
        }
        arm_reconcile_at(clock::now() + jittered(cfg_.reconcile_interval));
    }

    void reconcile_soon(duration d) {
        const auto at = clock::now() + d;
        if (!reconcile_in_flight_ && at < reconcile_at_) {
            arm_reconcile_at(at);
        }
    }

    void arm_reconcile_at(time_point at) {
        if (stopped_) {
            return;
        }
        reconcile_at_ = at;
        reconcile_timer_.expires_at(at);
        reconcile_timer_.async_wait(
            [self = shared_from_this(), gen = ++reconcile_generation_](error_code ec) {
                if (ec || gen != self->reconcile_generation_ || self->stopped_) {
                    return;
                }
                self->reconcile_at_ = never;
                self->start_reconcile();
            });
    }

    void start_reconcile() {
        if (services_.empty()) {
            arm_reconcile();
            return;
        }
        reconcile_in_flight_ = true;
        const auto started = clock::now();
        agent_.async_services([self = shared_from_this(), started](
                                  error_code ec,
                                  consul::result<std::map<std::string, consul::agent_service>> r) {
            if (self->stopped_) {
                return;
            }
            if (ec) {
                self->reconcile_failed(ec, r.diag);
                return;
            }
            if (!self->reconcile_needs_checks()) {
                static const std::map<std::string, consul::agent_check> not_listed;
                self->reconcile(r.value, not_listed, started, false);
                return;
            }
            self->agent_.async_checks(
                [self, started, services = std::move(r.value)](
                    error_code ec2, consul::result<std::map<std::string, consul::agent_check>> r2) {
                    if (self->stopped_) {
                        return;
                    }
                    if (ec2) {
                        self->reconcile_failed(ec2, r2.diag);
                        return;
                    }
                    self->reconcile(services, r2.value, started, true);
                });
        });
    }

    /// Whether the reconciliation must list the agent's checks. Not when every check is a TTL
    /// check refreshed at least as often as the reconciliation runs: a TTL check the agent lost
    /// refuses its next refresh, which re-registers the service at once, so listing thousands
    /// of checks every period would find nothing sooner.
    bool reconcile_needs_checks() {
        const auto period = std::chrono::duration_cast<duration>(cfg_.reconcile_interval);
        for (const auto& [id, svc] : services_) {
            if (!svc->agent.empty()) {
                return true;  // agent-run checks: their status comes from the listing
            }
            for (const auto& [cid, h] : svc->ttl) {
                const auto* cs = find(h);
                if (cs != nullptr && (cs->fsm.refresh_after() <= duration::zero() ||
                                      cs->fsm.refresh_after() > period)) {
                    return true;
                }
            }
        }
        return false;
    }

    void reconcile_failed(const error_code& ec, const diagnostics& diag) {
        reconcile_in_flight_ = false;
        log_.warn("reconciliation: cannot read the agent's services, keeping local status: " +
                  describe(ec, diag));
        arm_reconcile();
    }

    std::string drift_of(const service_state& svc, const consul::agent_service& have) const {
        const auto& want = svc.registration;
        if (have.service != want.name) {
            return "name";
        }
        if (have.port != want.port) {
            return "port";
        }
        if (have.address != want.address) {
            return "address";
        }
        if (!want.enable_tag_override && have.tags != want.tags) {
            return "tags";
        }
        if (have.meta != want.meta) {
            return "meta";
        }
        if (want.weights && have.weights != *want.weights) {
            return "weights";
        }
        return {};
    }

    void reconcile(const std::map<std::string, consul::agent_service>& services,
                   const std::map<std::string, consul::agent_check>& checks, time_point started,
                   bool checks_listed) {
        reconcile_in_flight_ = false;
        std::vector<std::pair<std::shared_ptr<service_state>, std::string>> repairs;
        for (auto& [id, svc] : services_) {
            if (svc->in_flight || svc->retry_pending || svc->waiting_for_deregister ||
                !svc->ever_registered || svc->register_done_at > started) {
                continue;  // its state at the agent is changing; judge it next time
            }
            auto have = services.find(id);
            if (have == services.end()) {
                repairs.emplace_back(svc, "service missing from the agent");
                continue;
            }
            if (auto what = drift_of(*svc, have->second); !what.empty()) {
                repairs.emplace_back(svc, "the agent's " + what + " differ from the definition");
                continue;
            }
            std::string missing;
            for (const auto& cid : svc->order) {
                if (checks_listed && !checks.contains(cid)) {
                    missing = cid;
                    break;
                }
            }
            if (!missing.empty()) {
                repairs.emplace_back(svc, "check " + missing + " missing from the agent");
                continue;
            }
            for (auto& [cid, a] : svc->agent) {
                const auto& c = checks.at(cid);
                const status s = from_consul(c.status);
                a.output = c.output;
                if (s != a.counted) {
                    log_.info("check " + id + "/" + cid +
                              " (agent-run): " + std::string(to_string(a.counted)) + " -> " +
                              std::string(to_string(s)) + ": " + c.output);
                    --svc->counts[index_of(a.counted)];
                    ++svc->counts[index_of(s)];
                    a.counted = s;
                }
            }
            refresh_aggregate(*svc);
        }
        for (auto& [svc, reason] : repairs) {
            svc->registered = false;
            request_register(svc, std::move(reason));
        }
        arm_reconcile();
    }

    executor_type ex_;
    consul::agent_api agent_;
    scheduler_config cfg_;
    observe::logger log_;
    check_schedule schedule_;
    resilience::random_source rng_;
    asio::steady_timer timer_;
    asio::steady_timer reconcile_timer_;

    std::vector<std::unique_ptr<check_state>> checks_;  // by check_handle::index
    std::map<std::string, std::shared_ptr<service_state>, std::less<>> services_;
    std::map<std::string, int> deregisters_in_flight_;

    bool timer_armed_ = false;
    time_point armed_at_ = never;
    std::uint64_t timer_generation_ = 0;
    time_point reconcile_at_ = never;
    std::uint64_t reconcile_generation_ = 0;
    bool reconcile_in_flight_ = false;

    bool stopped_ = false;
    bool stopping_ = false;
    std::size_t deregisters_owed_ = 0;
    error_code stop_error_;
    std::vector<asio::any_completion_handler<void(error_code)>> stop_handlers_;

    std::map<std::uint64_t, change_callback> subscribers_;
    std::uint64_t next_subscription_ = 0;
    std::shared_ptr<const remote_health_source> remote_;
    std::uint64_t repairs_ = 0;
    std::uint64_t updates_sent_ = 0;
    std::size_t updates_in_flight_ = 0;
    std::deque<queued_push> queued_pushes_;
    /// A flush of queued_pushes_ is posted.
    bool flush_posted_ = false;
    std::uint64_t update_batches_sent_ = 0;
};

// ------------------------------------------------------------------ public shell

health_scheduler::health_scheduler(executor_type ex, consul::client& client, scheduler_config cfg,
                                   observe::logger log)
    : impl_(std::make_shared<impl>(std::move(ex), client.agent(), std::move(cfg), std::move(log))) {
    impl_->start();
}

health_scheduler::health_scheduler(boost::asio::io_context& io, consul::client& client,
                                   scheduler_config cfg, observe::logger log)
    : health_scheduler(io.get_executor(), client, std::move(cfg), std::move(log)) {}

health_scheduler::~health_scheduler() {
    if (impl_) {
        impl_->close();
    }
}

health_scheduler::executor_type health_scheduler::get_executor() const noexcept {
    return impl_->executor();
}

error_code health_scheduler::register_service(service_definition def) {
    return impl_->register_service(std::move(def));
}
bool health_scheduler::deregister_service(const std::string& service_id) {
    return impl_->deregister_service(service_id);
}
error_code health_scheduler::add_check(const std::string& service_id, service_check check) {
    return impl_->add_check(service_id, std::move(check));
}
bool health_scheduler::remove_check(const std::string& service_id, const std::string& check_id) {
    return impl_->remove_check(service_id, check_id);
}
std::optional<service_health> health_scheduler::status_of(std::string_view service_id) const {
    return impl_->status_of(service_id);
}
std::vector<service_health> health_scheduler::statuses() const {
    return impl_->statuses();
}
std::uint64_t health_scheduler::on_change(change_callback cb) {
    return impl_->on_change(std::move(cb));
}
void health_scheduler::remove_on_change(std::uint64_t id) {
    impl_->remove_on_change(id);
}
void health_scheduler::set_remote_source(std::shared_ptr<const remote_health_source> source) {
    impl_->set_remote_source(std::move(source));
}
void health_scheduler::notify_remote_change(const std::string& service_id, status old_status,
                                            status new_status) {
    impl_->notify(service_id, old_status, new_status);
}
std::size_t health_scheduler::check_count() const noexcept {
    return impl_->check_count();
}
std::size_t health_scheduler::service_count() const noexcept {
    return impl_->service_count();
}
std::uint64_t health_scheduler::repairs() const noexcept {
    return impl_->repairs();
}
std::uint64_t health_scheduler::updates_sent() const noexcept {
    return impl_->updates_sent();
}

std::uint64_t health_scheduler::update_batches_sent() const noexcept {
    return impl_->update_batches_sent();
}

void health_scheduler::start_stop(boost::asio::any_completion_handler<void(error_code)> handler) {
    impl_->stop(std::move(handler));
}

}  // namespace lakemesh::health
