#include <lakemesh/health/check_schedule.hpp>
#include <lakemesh/resilience/random.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

namespace lakemesh::health {
namespace {

using namespace std::chrono_literals;

const time_point start{std::chrono::hours(1)};

schedule_config exact(std::uint64_t seed = 1) {
    schedule_config cfg;
    cfg.jitter = 0.0;
    cfg.first_spread = 0.0;
    cfg.seed = seed;
    return cfg;
}

schedule_config jittered(double jitter, std::uint64_t seed) {
    schedule_config cfg;
    cfg.jitter = jitter;
    cfg.seed = seed;
    return cfg;
}

std::vector<due_check> pop_all(check_schedule& schedule, time_point now) {
    std::vector<due_check> out;
    schedule.pop_due(now, out);
    return out;
}

TEST(CheckSchedule, EmptyScheduleHasNothingDue) {
    check_schedule schedule(exact());
    EXPECT_TRUE(schedule.empty());
    EXPECT_FALSE(schedule.next_due().has_value());
    EXPECT_FALSE(schedule.pop_next(start + 1000h).has_value());
}

TEST(CheckSchedule, DueChecksComeOutInDeadlineOrder) {
    check_schedule schedule(exact());
    const auto c = schedule.add_at(10s, start + 3s);
    const auto a = schedule.add_at(10s, start + 1s);
    const auto d = schedule.add_at(10s, start + 4s);
    const auto b = schedule.add_at(10s, start + 2s);
    EXPECT_EQ(schedule.size(), 4u);
    EXPECT_EQ(schedule.next_due(), start + 1s);

    const auto fired = pop_all(schedule, start + 3500ms);
    ASSERT_EQ(fired.size(), 3u);
    EXPECT_EQ(fired[0], (due_check{a, due_kind::probe, start + 1s}));
    EXPECT_EQ(fired[1], (due_check{b, due_kind::probe, start + 2s}));
    EXPECT_EQ(fired[2], (due_check{c, due_kind::probe, start + 3s}));
    EXPECT_EQ(schedule.next_due(), start + 4s);
    EXPECT_EQ(schedule.probe_due(d), start + 4s);
    // The popped ones were re-armed one interval on.
    EXPECT_EQ(schedule.probe_due(a), start + 11s);
    EXPECT_EQ(schedule.probe_due(c), start + 13s);
}

TEST(CheckSchedule, TiesComeOutInTheOrderTheyWereArmed) {
    check_schedule schedule(exact());
    std::vector<check_handle> added;
    for (int i = 0; i < 50; ++i) {
        added.push_back(schedule.add_at(5s, start));
    }
    for (int round = 0; round < 3; ++round) {
        const auto fired = pop_all(schedule, start + round * 5s);
        ASSERT_EQ(fired.size(), added.size());
        for (std::size_t i = 0; i < added.size(); ++i) {
            EXPECT_EQ(fired[i].check, added[i]) << "round " << round << " position " << i;
        }
    }
}

TEST(CheckSchedule, NothingHappensBeforeTheNextDueTime) {
    check_schedule schedule(exact());
    schedule.add_at(10s, start + 10s);
    schedule.add_at(10s, start + 20s);
    for (auto now = start; now < start + 10s; now += 1s) {
        EXPECT_FALSE(schedule.pop_next(now).has_value());
    }
    EXPECT_EQ(schedule.next_due(), start + 10s);
    EXPECT_EQ(pop_all(schedule, start + 10s).size(), 1u);
}

TEST(CheckSchedule, AddSpreadsTheFirstFiringUniformlyOverTheInterval) {
    check_schedule schedule(jittered(0.1, 42));
    const duration interval = 10s;
    duration earliest = duration::max();
    duration latest = duration::min();
    int first_half = 0;
    for (int i = 0; i < 10'000; ++i) {
        const auto check = schedule.add(interval, start);
        const duration offset = schedule.probe_due(check) - start;
        ASSERT_GE(offset, 0s);
        ASSERT_LT(offset, interval);
        earliest = std::min(earliest, offset);
        latest = std::max(latest, offset);
        first_half += offset < interval / 2 ? 1 : 0;
    }
    EXPECT_LT(earliest, 50ms);
    EXPECT_GT(latest, 9950ms);
    EXPECT_NEAR(first_half, 5000, 300);
}

TEST(CheckSchedule, FirstSpreadFractionNarrowsTheFirstFiring) {
    schedule_config cfg = jittered(0.1, 7);
    cfg.first_spread = 0.25;
    check_schedule schedule(cfg);
    duration latest = duration::min();
    for (int i = 0; i < 2000; ++i) {
        const duration offset = schedule.probe_due(schedule.add(8s, start)) - start;
        ASSERT_GE(offset, 0s);
        ASSERT_LT(offset, 2s);
        latest = std::max(latest, offset);
    }
    EXPECT_GT(latest, 1900ms);
}

TEST(CheckSchedule, JitterAndSpreadAreClamped) {
    schedule_config cfg;
    cfg.jitter = 3.0;
    cfg.first_spread = -1.0;
    check_schedule schedule(cfg);
    EXPECT_EQ(schedule.config().jitter, 0.5);
    EXPECT_EQ(schedule.config().first_spread, 0.0);
    EXPECT_EQ(schedule.probe_due(schedule.add(10s, start)), start);
}

TEST(CheckSchedule, IntervalsAreClampedToAtLeastOneMillisecond) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(0s, start);
    EXPECT_EQ(schedule.interval(check), min_probe_interval);
    ASSERT_EQ(pop_all(schedule, start).size(), 1u);
    EXPECT_EQ(schedule.probe_due(check), start + 1ms);
}

// Each later firing is drawn within nominal ± jitter * interval, and both ends are reached.
TEST(CheckScheduleProperty, LaterFiringsStayWithinTheJitterBounds) {
    for (const double jitter : {0.05, 0.1, 0.25, 0.5}) {
        check_schedule schedule(jittered(jitter, 99));
        const duration interval = 1s;
        const auto bound = duration(static_cast<duration::rep>(jitter * 1e9));
        const auto check = schedule.add_at(interval, start);
        duration low = duration::max();
        duration high = duration::min();
        time_point previous = start;
        for (int k = 1; k <= 5000; ++k) {
            const auto fired = schedule.pop_next(schedule.next_due().value());
            ASSERT_TRUE(fired.has_value());
            const duration offset = schedule.probe_due(check) - (start + k * interval);
            ASSERT_GE(offset, -bound) << "jitter " << jitter << " firing " << k;
            ASSERT_LE(offset, bound) << "jitter " << jitter << " firing " << k;
            ASSERT_GE(schedule.probe_due(check), previous);
            previous = schedule.probe_due(check);
            low = std::min(low, offset);
            high = std::max(high, offset);
        }
        EXPECT_LT(low, -bound * 95 / 100) << jitter;
        EXPECT_GT(high, bound * 95 / 100) << jitter;
    }
}

// The k-th firing stays near first_due + k * interval however many intervals pass, whether the
// owner pops exactly on time or on a coarse tick.
TEST(CheckScheduleProperty, NoDriftOverTenThousandIntervals) {
    for (const duration tick : {duration::zero(), duration(100ms), duration(730ms)}) {
        check_schedule schedule(jittered(0.1, 5));
        const duration interval = 10s;
        const auto check = schedule.add_at(interval, start);
        time_point now = start;
        for (int k = 0; k < 10'000; ++k) {
            const time_point due = schedule.next_due().value();
            if (tick > duration::zero()) {
                // The next tick of a timer that only wakes every `tick`.
                now = start + ((due - start + tick - 1ns) / tick) * tick;
            } else {
                now = due;
            }
            const auto fired = schedule.pop_next(now);
            ASSERT_TRUE(fired.has_value());
            const duration offset = fired->due - (start + k * interval);
            ASSERT_LE(offset, 1s) << "tick " << tick.count() << " firing " << k;
            ASSERT_GE(offset, -1s) << "tick " << tick.count() << " firing " << k;
        }
        EXPECT_EQ(schedule.missed_firings(), 0u);
        const duration last = schedule.probe_due(check) - (start + 10'000 * interval);
        EXPECT_LE(last, 1s);
        EXPECT_GE(last, -1s);
    }
}

TEST(CheckSchedule, ZeroJitterFiresExactlyOnTheGrid) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(250ms, start);
    for (int k = 0; k < 1000; ++k) {
        const auto fired = schedule.pop_next(start + k * 250ms + 10ms);
        ASSERT_TRUE(fired.has_value());
        EXPECT_EQ(fired->due, start + k * 250ms);
    }
    EXPECT_EQ(schedule.probe_due(check), start + 1000 * 250ms);
}

// Acceptance: 10,000 checks at 10 s over a simulated hour on a 50 ms tick; every check fires
// once per interval, each firing within its jitter window, none missed.
TEST(CheckScheduleProperty, TenThousandChecksFireOncePerIntervalForAnHour) {
    constexpr int checks = 10'000;
    const duration interval = 10s;
    const duration tick = 50ms;
    const double jitter = 0.1;
    check_schedule schedule(jittered(jitter, 2024));
    std::vector<time_point> first_due(checks);
    std::vector<int> fired_count(checks, 0);
    for (int i = 0; i < checks; ++i) {
        const auto check = schedule.add(interval, start);
        ASSERT_EQ(check.index, static_cast<std::uint32_t>(i));
        first_due[i] = schedule.probe_due(check);
    }
    const time_point end = start + 1h;
    std::vector<due_check> batch;
    std::size_t ticks_with_work = 0;
    for (time_point now = start; now <= end; now += tick) {
        batch.clear();
        if (schedule.pop_due(now, batch) > 0) {
            ++ticks_with_work;
        }
        for (const due_check& fired : batch) {
            ASSERT_EQ(fired.kind, due_kind::probe);
            const std::uint32_t i = fired.check.index;
            const time_point nominal = first_due[i] + fired_count[i] * interval;
            ASSERT_LE(fired.due, now);
            ASSERT_LT(now - fired.due, tick);
            ASSERT_LE(fired.due - nominal, interval / 10) << "check " << i;
            ASSERT_GE(fired.due - nominal, -interval / 10) << "check " << i;
            ++fired_count[i];
        }
    }
    const auto window = duration(static_cast<duration::rep>(jitter * interval.count()));
    long total = 0;
    for (int i = 0; i < checks; ++i) {
        // Nominal times up to `end` minus those whose jitter may still push them past it.
        const auto at_least = (end - first_due[i] - window) / interval + 1;
        const auto at_most = (end - first_due[i] + window) / interval + 1;
        ASSERT_GE(fired_count[i], at_least) << "check " << i;
        ASSERT_LE(fired_count[i], at_most) << "check " << i;
        total += fired_count[i];
    }
    EXPECT_NEAR(static_cast<double>(total), checks * 360.0, checks * 1.0);
    EXPECT_EQ(schedule.missed_firings(), 0u);
    // Spread out: most 50 ms ticks have work, none has the whole population.
    EXPECT_GT(ticks_with_work, 60'000u);
}

TEST(CheckSchedule, WithoutSlackTheWakeIsTheNextDueTime) {
    check_schedule schedule(exact());
    EXPECT_FALSE(schedule.next_wake().has_value());
    schedule.add_at(10s, start + 1s);
    EXPECT_EQ(schedule.slack(), duration::zero());
    EXPECT_EQ(schedule.next_wake(), start + 1s);
}

TEST(CheckSchedule, SlackIsAFractionOfTheShortestIntervalCappedAndClamped) {
    schedule_config cfg = exact();
    cfg.slack_fraction = 0.01;
    cfg.slack_cap = 250ms;
    check_schedule schedule(cfg);
    EXPECT_EQ(schedule.slack(), duration::zero());
    const auto slow = schedule.add_at(60s, start + 2s);
    EXPECT_EQ(schedule.slack(), 250ms);  // 600 ms, capped
    const auto fast = schedule.add_at(10s, start + 1s);
    EXPECT_EQ(schedule.slack(), 100ms);
    EXPECT_EQ(schedule.next_wake(), start + 1s + 100ms);
    schedule.set_interval(slow, 2s);
    EXPECT_EQ(schedule.slack(), 20ms);
    schedule.remove(slow);
    EXPECT_EQ(schedule.slack(), 100ms);
    schedule.remove(fast);
    EXPECT_EQ(schedule.slack(), duration::zero());

    cfg.slack_fraction = 5.0;  // clamped to 0.1
    cfg.slack_cap = 1h;
    check_schedule wide(cfg);
    wide.add_at(10s, start);
    EXPECT_EQ(wide.slack(), 1s);
    cfg.slack_cap = duration::zero();
    check_schedule off(cfg);
    off.add_at(10s, start);
    EXPECT_EQ(off.slack(), duration::zero());
}

// The owner wakes at next_wake() and pops what is due: no timer, probe or wake, is handled more
// than slack_fraction * its interval (capped) after its due time, and one wake-up handles many
// firings instead of one each.
TEST(CheckScheduleProperty, WakingWithSlackHandlesEveryTimerWithinTheBoundInFewerWakeUps) {
    schedule_config cfg = jittered(0.1, 31);
    cfg.slack_fraction = 0.01;
    cfg.slack_cap = 250ms;
    check_schedule schedule(cfg);
    resilience::random_source rng(8);
    std::vector<check_handle> handles;
    for (int i = 0; i < 2000; ++i) {
        const duration interval = i % 10 == 0 ? duration(60s) : duration(10s);
        handles.push_back(schedule.add(interval, start));
    }
    const duration bound = 100ms;  // 1% of the shortest interval, under the cap
    ASSERT_EQ(schedule.slack(), bound);
    std::vector<due_check> batch;
    std::size_t wakes = 0;
    std::size_t handled = 0;
    const time_point end = start + 10min;
    time_point now = start;
    while (now < end) {
        now = schedule.next_wake().value();
        ++wakes;
        batch.clear();
        schedule.pop_due(now, batch);
        ASSERT_FALSE(batch.empty());
        for (const due_check& fired : batch) {
            ASSERT_LE(fired.due, now);
            ASSERT_LE(now - fired.due, bound);
            ASSERT_LE(now - fired.due, schedule.interval(fired.check) / 100);
            ++handled;
            if (fired.kind == due_kind::probe && rng.below(4) == 0) {
                // A refresh or deadline a little later, as the state machine asks.
                schedule.set_wake(
                    fired.check,
                    now + duration(static_cast<duration::rep>(rng.below(5'000'000'000ULL))));
            }
        }
    }
    EXPECT_EQ(schedule.missed_firings(), 0u);
    // ~1,900 firings/s of simulated time against at most 10 wake-ups a second.
    EXPECT_GT(handled, 10 * wakes);
    EXPECT_LE(wakes, 10u * 600u + 1u);
}

TEST(CheckSchedule, RemovingACheckThatIsAlsoDueDuringPopKeepsItFromFiring) {
    check_schedule schedule(exact());
    const auto a = schedule.add_at(10s, start + 1s);
    const auto b = schedule.add_at(10s, start + 2s);
    const auto c = schedule.add_at(10s, start + 3s);
    const auto first = schedule.pop_next(start + 5s);
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->check, a);
    // Handling a removes b (e.g. its service was deregistered).
    EXPECT_TRUE(schedule.remove(b));
    const auto second = schedule.pop_next(start + 5s);
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(second->check, c);
    EXPECT_FALSE(schedule.pop_next(start + 5s).has_value());
    EXPECT_EQ(schedule.size(), 2u);
}

TEST(CheckSchedule, RemovingTheCheckBeingHandledStopsItsFutureFirings) {
    check_schedule schedule(exact());
    const auto a = schedule.add_at(1s, start);
    const auto b = schedule.add_at(1s, start);
    const auto batch = pop_all(schedule, start);
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_TRUE(schedule.remove(batch[0].check));
    EXPECT_FALSE(schedule.contains(a));
    EXPECT_TRUE(schedule.contains(b));
    const auto later = pop_all(schedule, start + 10s);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].check, b);
}

TEST(CheckSchedule, StaleHandlesAreRefusedAndSlotsAreReusedWithANewGeneration) {
    check_schedule schedule(exact());
    const auto a = schedule.add_at(1s, start);
    EXPECT_TRUE(schedule.remove(a));
    EXPECT_FALSE(schedule.remove(a));
    EXPECT_FALSE(schedule.reschedule(a, start));
    EXPECT_FALSE(schedule.set_interval(a, 2s));
    EXPECT_FALSE(schedule.set_wake(a, start));
    EXPECT_EQ(schedule.probe_due(a), never);
    EXPECT_FALSE(schedule.contains(check_handle{}));

    const auto b = schedule.add_at(1s, start + 5s);
    EXPECT_EQ(b.index, a.index);
    EXPECT_NE(b, a);
    EXPECT_FALSE(schedule.contains(a));
    EXPECT_TRUE(schedule.contains(b));
    EXPECT_EQ(schedule.capacity(), 1u);
    EXPECT_EQ(schedule.next_due(), start + 5s);
}

TEST(CheckSchedule, APopMoreThanAnIntervalLateFiresOnceAndStaysOnTheGrid) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(10s, start);
    // The process was paused for 35 s.
    const auto batch = pop_all(schedule, start + 35s);
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_EQ(schedule.missed_firings(), 3u);
    EXPECT_EQ(schedule.probe_due(check), start + 40s);
}

TEST(CheckSchedule, ALatePopNeverReArmsAtOrBeforeNow) {
    // With the widest jitter and a pop late by almost an interval, the drawn time may fall
    // before `now`; the check must not come out of the same pop again.
    check_schedule schedule(jittered(0.5, 3));
    const auto check = schedule.add_at(10s, start);
    for (int k = 0; k < 2000; ++k) {
        const time_point nominal = start + k * 10s;
        const auto fired = pop_all(schedule, nominal + 9999ms);
        ASSERT_EQ(fired.size(), 1u) << k;
        ASSERT_GT(schedule.probe_due(check), nominal + 9999ms);
        ASSERT_LE(schedule.probe_due(check), nominal + 15s);
        schedule.reschedule(check, nominal + 10s);
    }
}

TEST(CheckSchedule, RescheduleMovesTheNextFiringAndReAnchorsLaterOnes) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(10s, start + 10s);
    const auto other = schedule.add_at(10s, start + 5s);
    EXPECT_TRUE(schedule.reschedule(check, start + 2s));
    EXPECT_EQ(schedule.next_due(), start + 2s);
    const auto fired = pop_all(schedule, start + 2s);
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0].check, check);
    EXPECT_EQ(schedule.probe_due(check), start + 12s);
    EXPECT_EQ(schedule.probe_due(other), start + 5s);
}

TEST(CheckSchedule, SetIntervalAppliesFromTheNextFiringOn) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(10s, start + 10s);
    EXPECT_TRUE(schedule.set_interval(check, 3s));
    EXPECT_EQ(schedule.probe_due(check), start + 10s);
    pop_all(schedule, start + 10s);
    EXPECT_EQ(schedule.probe_due(check), start + 13s);
    EXPECT_EQ(schedule.interval(check), 3s);
}

TEST(CheckSchedule, WakeTimerIsOneShotAndReplaceable) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(10s, start + 10s);
    EXPECT_EQ(schedule.wake_at(check), never);
    EXPECT_TRUE(schedule.set_wake(check, start + 4s));
    EXPECT_EQ(schedule.next_due(), start + 4s);
    EXPECT_TRUE(schedule.set_wake(check, start + 3s));
    EXPECT_EQ(schedule.wake_at(check), start + 3s);

    const auto fired = pop_all(schedule, start + 5s);
    ASSERT_EQ(fired.size(), 1u);
    EXPECT_EQ(fired[0], (due_check{check, due_kind::wake, start + 3s}));
    EXPECT_EQ(schedule.wake_at(check), never);
    EXPECT_EQ(schedule.next_due(), start + 10s);

    EXPECT_TRUE(schedule.set_wake(check, start + 6s));
    EXPECT_TRUE(schedule.set_wake(check, never));
    EXPECT_EQ(schedule.next_due(), start + 10s);
    EXPECT_TRUE(pop_all(schedule, start + 9s).empty());
}

TEST(CheckSchedule, ProbeAndWakeOfOneCheckAtTheSameTimeComeOutInArmingOrder) {
    check_schedule schedule(exact());
    const auto check = schedule.add_at(10s, start + 10s);
    schedule.set_wake(check, start + 10s);
    const auto fired = pop_all(schedule, start + 10s);
    ASSERT_EQ(fired.size(), 2u);
    EXPECT_EQ(fired[0].kind, due_kind::probe);
    EXPECT_EQ(fired[1].kind, due_kind::wake);
}

TEST(CheckSchedule, RemoveDisarmsTheWakeTimerToo) {
    check_schedule schedule(exact());
    const auto a = schedule.add_at(10s, start + 10s);
    schedule.set_wake(a, start + 1s);
    schedule.remove(a);
    EXPECT_FALSE(schedule.next_due().has_value());
}

// The indexed heap against a plain list searched linearly, over random operations.
TEST(CheckScheduleProperty, MatchesALinearModelUnderRandomOperations) {
    struct model_check {
        check_handle handle;
        time_point anchor;
        duration interval;
        time_point probe;
        std::uint64_t probe_seq;
        time_point wake;
        std::uint64_t wake_seq;
    };
    check_schedule schedule(exact());
    std::vector<model_check> model;
    std::uint64_t seq = 0;
    resilience::random_source rng(11);
    time_point now = start;
    auto random_time = [&] { return now + duration(std::chrono::milliseconds(rng.below(20'000))); };

    // Adds and removes balance, so the model stays a few hundred checks and the linear search
    // stays cheap.
    for (int step = 0; step < 5'000; ++step) {
        const auto op = rng.below(10);
        if (op < 2 || model.empty()) {
            const auto interval = std::chrono::milliseconds(1 + rng.below(5000));
            const time_point due = random_time();
            const auto h = schedule.add_at(interval, due);
            model.push_back({h, due, interval, due, seq++, never, 0});
        } else if (op < 4) {
            const auto i = rng.below(model.size());
            ASSERT_TRUE(schedule.remove(model[i].handle));
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
        } else if (op == 4) {
            auto& m = model[rng.below(model.size())];
            const time_point due = random_time();
            schedule.reschedule(m.handle, due);
            m.anchor = m.probe = due;
            m.probe_seq = seq++;
        } else if (op == 5) {
            auto& m = model[rng.below(model.size())];
            const time_point when = rng.below(4) == 0 ? never : random_time();
            const bool unchanged = when == m.wake;
            schedule.set_wake(m.handle, when);
            if (!unchanged) {
                m.wake = when;
                m.wake_seq = seq++;
            }
        } else {
            now += std::chrono::milliseconds(rng.below(3000));
            for (;;) {
                model_check* best = nullptr;
                bool best_is_wake = false;
                auto key = [](time_point t, std::uint64_t s) { return std::pair{t, s}; };
                for (auto& m : model) {
                    if (m.probe <= now &&
                        (best == nullptr ||
                         key(m.probe, m.probe_seq) < (best_is_wake
                                                          ? key(best->wake, best->wake_seq)
                                                          : key(best->probe, best->probe_seq)))) {
                        best = &m;
                        best_is_wake = false;
                    }
                    if (m.wake != never && m.wake <= now &&
                        (best == nullptr ||
                         key(m.wake, m.wake_seq) < (best_is_wake
                                                        ? key(best->wake, best->wake_seq)
                                                        : key(best->probe, best->probe_seq)))) {
                        best = &m;
                        best_is_wake = true;
                    }
                }
                const auto fired = schedule.pop_next(now);
                if (best == nullptr) {
                    ASSERT_FALSE(fired.has_value()) << "step " << step;
                    break;
                }
                ASSERT_TRUE(fired.has_value()) << "step " << step;
                ASSERT_EQ(fired->check, best->handle) << "step " << step;
                ASSERT_EQ(fired->kind, best_is_wake ? due_kind::wake : due_kind::probe);
                if (best_is_wake) {
                    ASSERT_EQ(fired->due, best->wake);
                    best->wake = never;
                } else {
                    ASSERT_EQ(fired->due, best->probe);
                    best->anchor += best->interval;
                    if (best->anchor <= now) {
                        best->anchor +=
                            ((now - best->anchor) / best->interval + 1) * best->interval;
                    }
                    best->probe = best->anchor;
                    best->probe_seq = seq++;
                }
            }
        }
        ASSERT_EQ(schedule.size(), model.size());
        time_point earliest = never;
        for (const auto& m : model) {
            earliest = std::min({earliest, m.probe, m.wake});
        }
        ASSERT_EQ(schedule.next_due().value_or(never), earliest) << "step " << step;
    }
}

}  // namespace
}  // namespace lakemesh::health
