#include <lakemesh/health/ttl_check_fsm.hpp>

#include <gtest/gtest.h>
#include <boost/asio/error.hpp>

#include <string>

namespace lakemesh::health {
namespace {

using namespace std::chrono_literals;

const time_point start{std::chrono::hours(1)};
const error_code refused = boost::asio::error::connection_refused;

ttl_check_config ttl30() {
    ttl_check_config cfg;
    cfg.ttl = 30s;
    cfg.refresh_fraction = 0.5;
    cfg.probe_timeout = 2s;
    cfg.push_backoff_base = 1s;
    cfg.push_backoff_cap = 8s;
    return cfg;
}

/// Runs one probe from due to completion at `now` and returns the completion's action.
check_action probe(ttl_check_fsm& fsm, time_point now, status result, std::string output = "") {
    const check_action started = fsm.on_probe_due(now);
    EXPECT_EQ(started.kind, check_action_kind::start_probe);
    return fsm.on_probe_completed(now, result, std::move(output));
}

/// A registered check whose first passing result Consul accepted at `start`.
ttl_check_fsm registered_passing(const ttl_check_config& cfg = ttl30()) {
    ttl_check_fsm fsm(cfg);
    EXPECT_EQ(fsm.on_registered(start).kind, check_action_kind::none);
    const check_action pushed = probe(fsm, start, status::passing, "ok");
    EXPECT_EQ(pushed.kind, check_action_kind::push);
    EXPECT_EQ(fsm.on_push_succeeded(start).kind, check_action_kind::none);
    return fsm;
}

TEST(HealthStatus, ToStringUsesConsulsWords) {
    EXPECT_EQ(to_string(status::passing), "passing");
    EXPECT_EQ(to_string(status::warning), "warning");
    EXPECT_EQ(to_string(status::critical), "critical");
}

TEST(FormatDuration, UsesTheLargestExactUnit) {
    EXPECT_EQ(format_duration(2s), "2s");
    EXPECT_EQ(format_duration(1500ms), "1500ms");
    EXPECT_EQ(format_duration(250us), "250us");
    EXPECT_EQ(format_duration(10ns), "10ns");
    EXPECT_EQ(format_duration(0s), "0ns");
}

TEST(TtlCheckFsm, ProbeDueStartsAProbeWithItsDeadline) {
    ttl_check_fsm fsm(ttl30());
    const check_action action = fsm.on_probe_due(start);
    EXPECT_EQ(action.kind, check_action_kind::start_probe);
    EXPECT_EQ(action.probe_deadline, start + 2s);
    EXPECT_EQ(fsm.probe(), probe_state::running);
    EXPECT_EQ(fsm.wake_at(), start + 2s);
}

TEST(TtlCheckFsm, ARunningProbeIsNotStartedTwice) {
    ttl_check_fsm fsm(ttl30());
    ASSERT_EQ(fsm.on_probe_due(start).kind, check_action_kind::start_probe);
    EXPECT_EQ(fsm.on_probe_due(start + 1s).kind, check_action_kind::none);
    EXPECT_EQ(fsm.on_probe_due(start + 1500ms).kind, check_action_kind::none);
    EXPECT_EQ(fsm.overlapping_ticks(), 2u);
    fsm.on_probe_completed(start + 1600ms, status::passing, "");
    EXPECT_EQ(fsm.on_probe_due(start + 2s).kind, check_action_kind::start_probe);
}

TEST(TtlCheckFsm, NothingIsPushedBeforeRegistrationThenTheLatestResultIs) {
    ttl_check_fsm fsm(ttl30());
    EXPECT_EQ(probe(fsm, start, status::warning, "slow").kind, check_action_kind::none);
    EXPECT_EQ(probe(fsm, start + 10s, status::passing, "ok").kind, check_action_kind::none);
    EXPECT_EQ(fsm.wake_at(), never);
    const check_action action = fsm.on_registered(start + 11s);
    ASSERT_EQ(action.kind, check_action_kind::push);
    EXPECT_EQ(action.push_status, status::passing);
    EXPECT_EQ(action.push_output, "ok");
}

TEST(TtlCheckFsm, RegisteredCheckWithoutAResultWaitsForTheFirstProbe) {
    ttl_check_fsm fsm(ttl30());
    EXPECT_EQ(fsm.on_registered(start).kind, check_action_kind::none);
    // Consul holds the registration's status; nothing to refresh before a probe has spoken.
    EXPECT_EQ(fsm.wake_at(), never);
    EXPECT_EQ(fsm.consul_status(), status::critical);
}

TEST(TtlCheckFsm, ResultEqualToTheRegisteredStatusIsNotPushed) {
    ttl_check_fsm fsm(ttl30());
    fsm.on_registered(start, status::passing);
    EXPECT_EQ(probe(fsm, start + 1s, status::passing, "").kind, check_action_kind::none);
    EXPECT_EQ(fsm.wake_at(), start + 15s);
}

TEST(TtlCheckFsm, PushesOnlyWhenStatusOrOutputChanges) {
    ttl_check_fsm fsm = registered_passing();
    EXPECT_EQ(probe(fsm, start + 1s, status::passing, "ok").kind, check_action_kind::none);
    EXPECT_EQ(probe(fsm, start + 2s, status::passing, "ok").kind, check_action_kind::none);

    const check_action warn = probe(fsm, start + 3s, status::warning, "ok");
    ASSERT_EQ(warn.kind, check_action_kind::push);
    EXPECT_EQ(warn.push_status, status::warning);
    fsm.on_push_succeeded(start + 3s);

    const check_action text = probe(fsm, start + 4s, status::warning, "queue 90% full");
    ASSERT_EQ(text.kind, check_action_kind::push);
    EXPECT_EQ(text.push_output, "queue 90% full");
    fsm.on_push_succeeded(start + 4s);
    EXPECT_EQ(fsm.consul_status(), status::warning);
    EXPECT_EQ(fsm.consul_output(), "queue 90% full");

    EXPECT_EQ(probe(fsm, start + 5s, status::warning, "queue 90% full").kind,
              check_action_kind::none);
}

TEST(TtlCheckFsm, UnchangedStatusIsPushedAgainBeforeTheTtlRunsOut) {
    ttl_check_fsm fsm = registered_passing();
    // Probes every 5 s, all passing: nothing until half the TTL has passed since the last push.
    EXPECT_EQ(probe(fsm, start + 5s, status::passing, "ok").kind, check_action_kind::none);
    EXPECT_EQ(probe(fsm, start + 10s, status::passing, "ok").kind, check_action_kind::none);
    const check_action refresh = probe(fsm, start + 15s, status::passing, "ok");
    ASSERT_EQ(refresh.kind, check_action_kind::push);
    EXPECT_EQ(refresh.push_status, status::passing);
    fsm.on_push_succeeded(start + 15s);
    EXPECT_EQ(probe(fsm, start + 20s, status::passing, "ok").kind, check_action_kind::none);
    EXPECT_EQ(fsm.wake_at(), start + 30s);
}

TEST(TtlCheckFsm, WakeRefreshesTheTtlEvenWhenNoProbeCompletes) {
    // Probe interval longer than half the TTL: the wake timer refreshes in between.
    ttl_check_fsm fsm = registered_passing();
    EXPECT_EQ(fsm.wake_at(), start + 15s);
    EXPECT_EQ(fsm.on_wake(start + 14s).kind, check_action_kind::none);
    const check_action refresh = fsm.on_wake(start + 15s);
    ASSERT_EQ(refresh.kind, check_action_kind::push);
    EXPECT_EQ(refresh.push_output, "ok");
    EXPECT_EQ(fsm.wake_at(), never);  // the push's completion drives what comes next
    fsm.on_push_succeeded(start + 15200ms);
    // The TTL restarted when Consul received the update: measured from when it was sent.
    EXPECT_EQ(fsm.consul_updated_at(), start + 15s);
    EXPECT_EQ(fsm.wake_at(), start + 30s);
}

TEST(TtlCheckFsm, ZeroTtlMeansNoRefresh) {
    ttl_check_config cfg = ttl30();
    cfg.ttl = 0s;
    ttl_check_fsm fsm = registered_passing(cfg);
    EXPECT_EQ(fsm.wake_at(), never);
    EXPECT_EQ(probe(fsm, start + 10h, status::passing, "ok").kind, check_action_kind::none);
}

TEST(TtlCheckFsm, RefreshFractionAndTimeoutDefaultsAreDerivedFromTheTtl) {
    ttl_check_config cfg;
    cfg.ttl = 20s;
    cfg.refresh_fraction = 0.0;
    cfg.probe_timeout = 0s;
    const ttl_check_fsm fsm(cfg);
    EXPECT_EQ(fsm.refresh_after(), 1s);
    EXPECT_EQ(fsm.probe_timeout(), 20s);
    cfg.ttl = 0s;
    EXPECT_EQ(ttl_check_fsm(cfg).probe_timeout(), duration::max());
    ttl_check_fsm no_limit(cfg);
    EXPECT_EQ(no_limit.on_probe_due(start).probe_deadline, never);
}

TEST(TtlCheckFsm, ProbePastItsDeadlineIsCriticalAndCancelledOnWake) {
    ttl_check_fsm fsm = registered_passing();
    ASSERT_EQ(fsm.on_probe_due(start + 5s).kind, check_action_kind::start_probe);
    EXPECT_EQ(fsm.wake_at(), start + 7s);
    EXPECT_EQ(fsm.on_wake(start + 6s).kind, check_action_kind::none);

    const check_action timeout = fsm.on_wake(start + 7s);
    EXPECT_TRUE(timeout.cancel_probe);
    ASSERT_EQ(timeout.kind, check_action_kind::push);
    EXPECT_EQ(timeout.push_status, status::critical);
    EXPECT_EQ(timeout.push_output, "probe timed out after 2s");
    EXPECT_EQ(fsm.probe(), probe_state::cancelling);

    // Until the cancelled probe completes, no new one starts.
    EXPECT_EQ(fsm.on_probe_due(start + 10s).kind, check_action_kind::none);
    // Its late result is not taken: the timeout stands.
    EXPECT_EQ(fsm.on_probe_completed(start + 10500ms, status::passing, "ok").kind,
              check_action_kind::none);
    EXPECT_EQ(fsm.current_status(), status::critical);
    EXPECT_EQ(fsm.probe(), probe_state::idle);
    EXPECT_EQ(fsm.on_probe_due(start + 15s).kind, check_action_kind::start_probe);
}

TEST(TtlCheckFsm, ProbeTimedOutEventMapsToCriticalWithTheTimeout) {
    ttl_check_config cfg = ttl30();
    cfg.probe_timeout = 1500ms;
    ttl_check_fsm fsm = registered_passing(cfg);
    fsm.on_probe_due(start + 5s);
    const check_action action = fsm.on_probe_timed_out(start + 6500ms);
    EXPECT_FALSE(action.cancel_probe);
    ASSERT_EQ(action.kind, check_action_kind::push);
    EXPECT_EQ(action.push_status, status::critical);
    EXPECT_EQ(action.push_output, "probe timed out after 1500ms");
    EXPECT_EQ(fsm.probe(), probe_state::idle);
}

TEST(TtlCheckFsm, ThrowingProbeIsCriticalWithTheExceptionText) {
    ttl_check_fsm fsm = registered_passing();
    fsm.on_probe_due(start + 5s);
    const check_action action = fsm.on_probe_threw(start + 5s, "database connection lost");
    ASSERT_EQ(action.kind, check_action_kind::push);
    EXPECT_EQ(action.push_status, status::critical);
    EXPECT_EQ(action.push_output, "probe threw: database connection lost");
    EXPECT_EQ(fsm.current_output(), "probe threw: database connection lost");
}

TEST(TtlCheckFsm, CompletionsThatDoNotFitAreIgnored) {
    ttl_check_fsm fsm = registered_passing();
    EXPECT_EQ(fsm.on_probe_completed(start + 1s, status::critical, "x").kind,
              check_action_kind::none);
    EXPECT_EQ(fsm.on_probe_threw(start + 1s, "x").kind, check_action_kind::none);
    EXPECT_EQ(fsm.on_probe_timed_out(start + 1s).kind, check_action_kind::none);
    EXPECT_EQ(fsm.current_status(), status::passing);
    EXPECT_EQ(fsm.on_push_succeeded(start + 1s).kind, check_action_kind::none);
    resilience::random_source rng(1);
    EXPECT_EQ(fsm.on_push_failed(start + 1s, refused, rng).kind, check_action_kind::none);
    EXPECT_EQ(fsm.consecutive_push_failures(), 0u);
}

TEST(TtlCheckFsm, OnePushInFlightAndChangesMeanwhileAreSentAfterIt) {
    ttl_check_fsm fsm = registered_passing();
    ASSERT_EQ(probe(fsm, start + 1s, status::warning, "w").kind, check_action_kind::push);
    EXPECT_EQ(fsm.push(), push_state::in_flight);
    EXPECT_EQ(probe(fsm, start + 2s, status::critical, "c").kind, check_action_kind::none);
    const check_action catch_up = fsm.on_push_succeeded(start + 2500ms);
    ASSERT_EQ(catch_up.kind, check_action_kind::push);
    EXPECT_EQ(catch_up.push_status, status::critical);
    EXPECT_EQ(catch_up.push_output, "c");
    EXPECT_EQ(fsm.consul_status(), status::warning);
    fsm.on_push_succeeded(start + 3s);
    EXPECT_EQ(fsm.consul_status(), status::critical);
    EXPECT_EQ(fsm.push(), push_state::idle);
}

TEST(TtlCheckFsm, AChangeThatRevertsDuringAPushNeedsNoSecondPush) {
    ttl_check_fsm fsm = registered_passing();
    ASSERT_EQ(probe(fsm, start + 1s, status::warning, "w").kind, check_action_kind::push);
    probe(fsm, start + 2s, status::warning, "w");
    EXPECT_EQ(fsm.on_push_succeeded(start + 3s).kind, check_action_kind::none);
}

TEST(TtlCheckFsm, FailedPushBacksOffKeepsTheLocalStatusAndCatchesUp) {
    ttl_check_fsm fsm = registered_passing();
    resilience::random_source rng(3);
    ASSERT_EQ(probe(fsm, start + 1s, status::critical, "down").kind, check_action_kind::push);

    const check_action backoff = fsm.on_push_failed(start + 1s, refused, rng);
    ASSERT_EQ(backoff.kind, check_action_kind::back_off);
    EXPECT_GE(backoff.retry_at, start + 1500ms);
    EXPECT_LE(backoff.retry_at, start + 2s);
    EXPECT_EQ(fsm.wake_at(), backoff.retry_at);
    EXPECT_EQ(fsm.current_status(), status::critical);
    EXPECT_EQ(fsm.consul_status(), status::passing);
    EXPECT_EQ(fsm.last_push_error(), refused);

    // Results during the back-off are kept, not sent.
    EXPECT_EQ(probe(fsm, start + 1200ms, status::warning, "degraded").kind,
              check_action_kind::none);
    EXPECT_EQ(fsm.on_wake(backoff.retry_at - 1ms).kind, check_action_kind::none);
    const check_action retry = fsm.on_wake(backoff.retry_at);
    ASSERT_EQ(retry.kind, check_action_kind::push);
    EXPECT_EQ(retry.push_status, status::warning);
    EXPECT_EQ(retry.push_output, "degraded");

    EXPECT_EQ(fsm.on_push_succeeded(backoff.retry_at).kind, check_action_kind::none);
    EXPECT_EQ(fsm.consecutive_push_failures(), 0u);
    EXPECT_EQ(fsm.consul_status(), status::warning);
}

TEST(TtlCheckFsmProperty, BackoffDoublesUpToTheCapWithinHalfAndFullCeiling) {
    resilience::random_source rng(17);
    for (int run = 0; run < 200; ++run) {
        ttl_check_fsm fsm = registered_passing();
        time_point now = start + 1s;
        ASSERT_EQ(probe(fsm, now, status::critical, "").kind, check_action_kind::push);
        duration ceiling = 1s;
        for (int failure = 1; failure <= 8; ++failure) {
            const check_action backoff = fsm.on_push_failed(now, refused, rng);
            ASSERT_EQ(backoff.kind, check_action_kind::back_off);
            const duration delay = backoff.retry_at - now;
            ASSERT_GE(delay, ceiling / 2) << failure;
            ASSERT_LE(delay, ceiling) << failure;
            EXPECT_EQ(fsm.consecutive_push_failures(), static_cast<unsigned>(failure));
            now = backoff.retry_at;
            // The refresh is due long since: the retry pushes even an unchanged status.
            ASSERT_EQ(fsm.on_wake(now).kind, check_action_kind::push);
            ceiling = std::min<duration>(ceiling * 2, 8s);
        }
    }
}

TEST(TtlCheckFsm, RefreshThatFailsIsRetriedEvenThoughNothingChanged) {
    ttl_check_fsm fsm = registered_passing();
    resilience::random_source rng(5);
    ASSERT_EQ(fsm.on_wake(start + 15s).kind, check_action_kind::push);
    const check_action backoff = fsm.on_push_failed(start + 15s, refused, rng);
    const check_action retry = fsm.on_wake(backoff.retry_at);
    ASSERT_EQ(retry.kind, check_action_kind::push);
    EXPECT_EQ(retry.push_status, status::passing);
}

TEST(TtlCheckFsm, ReRegistrationResetsWhatConsulHoldsAndEndsTheBackoff) {
    ttl_check_fsm fsm = registered_passing();
    resilience::random_source rng(9);
    ASSERT_EQ(fsm.on_wake(start + 15s).kind, check_action_kind::push);
    fsm.on_push_failed(start + 15s, make_error_code(consul_errc::not_found), rng);
    EXPECT_EQ(fsm.push(), push_state::backing_off);

    // The agent lost the check; the shell registered it again, critical as TTL checks start.
    const check_action action = fsm.on_registered(start + 16s);
    ASSERT_EQ(action.kind, check_action_kind::push);
    EXPECT_EQ(action.push_status, status::passing);
    EXPECT_EQ(fsm.consecutive_push_failures(), 0u);
}

TEST(TtlCheckFsm, APushSentBeforeAReRegistrationIsNotTakenAsAccepted) {
    ttl_check_fsm fsm = registered_passing();
    ASSERT_EQ(probe(fsm, start + 1s, status::warning, "w").kind, check_action_kind::push);
    // Re-registered while that push was in flight: Consul now holds the registration status.
    EXPECT_EQ(fsm.on_registered(start + 2s).kind, check_action_kind::none);
    const check_action again = fsm.on_push_succeeded(start + 3s);
    EXPECT_EQ(fsm.consul_status(), status::critical);
    ASSERT_EQ(again.kind, check_action_kind::push);
    EXPECT_EQ(again.push_status, status::warning);
}

TEST(TtlCheckFsm, SetTtlChangesTheRefreshAtOnce) {
    ttl_check_fsm fsm = registered_passing();
    fsm.set_ttl(10s);
    EXPECT_EQ(fsm.refresh_after(), 5s);
    EXPECT_EQ(fsm.wake_at(), start + 5s);
}

}  // namespace
}  // namespace lakemesh::health
