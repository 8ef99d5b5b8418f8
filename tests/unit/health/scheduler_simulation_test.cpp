// check_schedule and ttl_check_fsm driven together the way the Asio shell will drive them, over
// a simulated hour with a fake agent that goes away for a while: the TTL never lapses while the
// agent is up, Consul catches up after the outage, and unchanged checks are not pushed on
// every probe.
#include <lakemesh/health/check_schedule.hpp>
#include <lakemesh/health/ttl_check_fsm.hpp>

#include <gtest/gtest.h>
#include <boost/asio/error.hpp>

#include <deque>
#include <string>
#include <vector>

namespace lakemesh::health {
namespace {

using namespace std::chrono_literals;

const time_point start{std::chrono::hours(1)};

struct consul_view {
    status held = status::critical;
    std::string output;
    time_point updated_at{};
};

struct completion {
    time_point at;
    check_handle check;
    bool is_push;
    // For probes: -1 threw, otherwise a status.
    int result;
};

class simulation {
  public:
    static constexpr int checks = 400;
    static constexpr auto tick = 50ms;

    simulation() : schedule_(schedule_config{.jitter = 0.1, .first_spread = 1.0, .seed = 77}) {
        ttl_check_config cfg;
        cfg.ttl = 30s;
        cfg.probe_timeout = 2s;
        cfg.push_backoff_base = 500ms;
        cfg.push_backoff_cap = 8s;
        for (int i = 0; i < checks; ++i) {
            const auto handle = schedule_.add(10s, start);
            EXPECT_EQ(handle.index, static_cast<std::uint32_t>(i));
            fsms_.emplace_back(cfg);
            consul_.emplace_back();
            consul_.back().updated_at = start;
            apply(handle, fsms_.back().on_registered(start), start);
        }
    }

    /// What check i's probe says at `now`: most pass; some flip every 20 minutes; some throw
    /// for a while; a few hang for a while.
    int probe_result(std::uint32_t i, time_point now) const {
        const auto minute = std::chrono::duration_cast<std::chrono::minutes>(now - start).count();
        if (i % 10 == 1) {
            return (minute / 20) % 2 == 0 ? static_cast<int>(status::passing)
                                          : static_cast<int>(status::warning);
        }
        if (i % 50 == 2 && minute >= 30 && minute < 32) {
            return -1;
        }
        if (i % 100 == 3 && minute >= 40 && minute < 42) {
            return -2;  // hangs
        }
        return static_cast<int>(status::passing);
    }

    bool agent_up(time_point now) const { return now < start + 10min || now >= start + 12min; }

    void run_until(time_point end) {
        std::vector<due_check> batch;
        for (; now_ <= end; now_ += tick) {
            while (!pending_.empty() && pending_.front().at <= now_) {
                const completion c = pending_.front();
                pending_.pop_front();
                complete(c);
            }
            batch.clear();
            schedule_.pop_due(now_, batch);
            for (const due_check& fired : batch) {
                ttl_check_fsm& fsm = fsms_[fired.check.index];
                ++(fired.kind == due_kind::probe ? probe_pops : wake_pops);
                apply(fired.check,
                      fired.kind == due_kind::probe ? fsm.on_probe_due(now_) : fsm.on_wake(now_),
                      now_);
            }
            if ((now_ - start) % 5s == 0s) {
                check_ttls();
            }
        }
    }

    void complete(const completion& c) {
        ttl_check_fsm& fsm = fsms_[c.check.index];
        if (c.is_push) {
            if (agent_up(now_)) {
                ++pushes_accepted;
                consul_[c.check.index] = {pushed_[c.check.index].held,
                                          pushed_[c.check.index].output, c.at};
                apply(c.check, fsm.on_push_succeeded(now_), now_);
            } else {
                apply(c.check,
                      fsm.on_push_failed(now_, boost::asio::error::connection_refused, rng_), now_);
            }
            return;
        }
        if (c.result == -1) {
            apply(c.check, fsm.on_probe_threw(now_, "boom"), now_);
        } else {
            apply(c.check, fsm.on_probe_completed(now_, static_cast<status>(c.result), "ok"), now_);
        }
    }

    void apply(check_handle check, const check_action& action, time_point now) {
        const std::uint32_t i = check.index;
        if (action.cancel_probe) {
            // The cancelled hung probe completes on the next tick; its result is ignored.
            ++cancels;
            pending_.push_back({now + tick, check, false, static_cast<int>(status::passing)});
        }
        switch (action.kind) {
            case check_action_kind::start_probe: {
                ++probes_started;
                const int result = probe_result(i, now);
                if (result != -2) {
                    pending_.push_back({now + tick, check, false, result});
                }
                break;
            }
            case check_action_kind::push:
                ++pushes_sent;
                pushed_.resize(checks);
                pushed_[i] = {action.push_status, action.push_output, now};
                pending_.push_back({now + tick, check, true, 0});
                break;
            case check_action_kind::back_off:
            case check_action_kind::none:
                break;
        }
        schedule_.set_wake(check, fsms_[i].wake_at());
    }

    void check_ttls() {
        // Past startup (first probes spread over 10 s) and while the agent is up (and after a
        // grace for catching up), no check's TTL lapses.
        if (now_ < start + 20s || !agent_up(now_) || !agent_up(now_ - 40s)) {
            return;
        }
        for (int i = 0; i < checks; ++i) {
            ASSERT_LT(now_ - consul_[i].updated_at, 30s) << "check " << i;
        }
    }

    check_schedule schedule_;
    std::vector<ttl_check_fsm> fsms_;
    std::vector<consul_view> consul_;
    std::vector<consul_view> pushed_ = std::vector<consul_view>(checks);
    std::deque<completion> pending_;
    resilience::random_source rng_{5};
    time_point now_ = start;

    long probe_pops = 0;
    long wake_pops = 0;
    long probes_started = 0;
    long pushes_sent = 0;
    long pushes_accepted = 0;
    long cancels = 0;
};

TEST(HealthSchedulerSimulation, FourHundredChecksForAnHourWithAnAgentOutage) {
    simulation sim;
    sim.run_until(start + 1h);

    // Every probe timer pop started a probe except those overlapping a hung probe.
    EXPECT_NEAR(static_cast<double>(sim.probe_pops), simulation::checks * 360.0,
                simulation::checks * 1.0);
    long overlapping = 0;
    for (const auto& fsm : sim.fsms_) {
        overlapping += static_cast<long>(fsm.overlapping_ticks());
    }
    EXPECT_EQ(sim.probes_started + overlapping, sim.probe_pops);
    // Hung probes (1 check in 100, 2 minutes each) were cancelled at their deadline.
    EXPECT_GE(sim.cancels, simulation::checks / 100 * 11);

    // Unchanged checks are refreshed about every 20 s (2/3 of the 30 s TTL), not on each 10 s
    // probe.
    EXPECT_LT(sim.pushes_accepted, sim.probes_started * 3 / 4);
    EXPECT_GT(sim.pushes_accepted, simulation::checks * 3600 / 20 * 9 / 10);

    // After the outage Consul caught up: it holds what each check last found.
    for (int i = 0; i < simulation::checks; ++i) {
        const auto& fsm = sim.fsms_[i];
        EXPECT_EQ(sim.consul_[i].held, fsm.current_status()) << i;
        EXPECT_EQ(sim.consul_[i].output, fsm.current_output()) << i;
        EXPECT_EQ(fsm.consecutive_push_failures(), 0u);
    }
}

TEST(HealthSchedulerSimulation, ThrowingAndHangingProbesReachConsulAsCritical) {
    simulation sim;
    sim.run_until(start + 31min);
    EXPECT_EQ(sim.consul_[2].held, status::critical);
    EXPECT_EQ(sim.consul_[2].output, "probe threw: boom");
    sim.run_until(start + 41min);
    EXPECT_EQ(sim.consul_[3].held, status::critical);
    EXPECT_EQ(sim.consul_[3].output, "probe timed out after 2s");
    sim.run_until(start + 43min);
    EXPECT_EQ(sim.consul_[3].held, status::passing);
}

}  // namespace
}  // namespace lakemesh::health
