#include <lakemesh/partition/lease_fsm.hpp>

#include <gtest/gtest.h>

namespace lakemesh::partition {
namespace {

using namespace std::chrono_literals;

lease_config fast() {
    lease_config c;
    c.session_ttl = 10s;
    c.lock_delay = 1s;
    c.margin = 200ms;
    c.renew_interval = 200ms;
    return c;
}

const clock::time_point t0{std::chrono::hours(1)};

TEST(lease_fsm, trust_window_is_the_shorter_of_ttl_and_lock_delay_less_the_margin) {
    EXPECT_EQ(trust_window(fast()), 800ms);
    lease_config c;  // Consul's defaults: TTL 15 s, lock-delay 15 s
    EXPECT_EQ(trust_window(c), 14s);
    EXPECT_EQ(effective_renew_interval(c), 3500ms);
    c.lock_delay = 60s;
    EXPECT_EQ(trust_window(c), 14s);  // never beyond TTL - margin
}

TEST(lease_fsm, creates_renews_and_extends_its_window_from_the_renew_send_time) {
    lease_fsm f(fast());
    auto a = f.start(t0);
    EXPECT_TRUE(a.create);
    EXPECT_EQ(f.state(), lease_state::creating);
    EXPECT_FALSE(f.trusted(t0));

    // The create was sent at t0 and answered 30 ms later.
    a = f.on_created(t0 + 30ms, t0, "s1");
    EXPECT_EQ(f.state(), lease_state::held);
    EXPECT_EQ(f.session(), "s1");
    EXPECT_EQ(f.valid_until(), t0 + 800ms);
    EXPECT_TRUE(f.trusted(t0 + 799ms));
    EXPECT_FALSE(f.trusted(t0 + 800ms));
    EXPECT_EQ(a.wake_at, t0 + 230ms);  // next renew
    EXPECT_FALSE(a.renew);

    a = f.on_timer(t0 + 230ms);
    ASSERT_TRUE(a.renew);
    EXPECT_EQ(a.renew_id, "s1");
    EXPECT_EQ(a.wake_at, t0 + 800ms);  // only the window's end while the renew is out
    // No second renew while one is in flight.
    EXPECT_FALSE(f.on_timer(t0 + 300ms).renew);
    a = f.on_renewed(t0 + 260ms, t0 + 230ms, "s1");
    EXPECT_EQ(f.valid_until(), t0 + 230ms + 800ms);
    EXPECT_EQ(a.wake_at, t0 + 460ms);
    EXPECT_EQ(f.fencings(), 0u);
}

TEST(lease_fsm, a_session_created_too_slowly_to_be_trusted_is_given_back) {
    auto cfg = fast();
    cfg.retry_base = 100ms;
    cfg.retry_cap = 1s;
    lease_fsm f(cfg);
    f.start(t0);
    // The agent took 3 s to answer: the window (800 ms from sending) ended long before.
    auto a = f.on_created(t0 + 3s, t0, "late");
    EXPECT_NE(f.state(), lease_state::held);
    EXPECT_FALSE(f.trusted(t0 + 3s));
    EXPECT_TRUE(f.session().empty());
    EXPECT_FALSE(a.fenced);  // nothing was ever held
    ASSERT_EQ(a.destroy.size(), 1u);
    EXPECT_EQ(a.destroy[0], "late");
    EXPECT_FALSE(a.create);
    EXPECT_EQ(a.wake_at, t0 + 3s + 100ms);  // retried after the back-off
    a = f.on_timer(t0 + 3s + 100ms);
    EXPECT_TRUE(a.create);
    // A create answered within the window is held as usual.
    f.on_created(t0 + 3s + 150ms, t0 + 3s + 100ms, "s2");
    EXPECT_EQ(f.state(), lease_state::held);
    EXPECT_EQ(f.session(), "s2");
    EXPECT_EQ(f.fencings(), 0u);
}

TEST(lease_fsm, self_fences_when_no_renew_gets_through_within_the_window) {
    lease_fsm f(fast());
    f.start(t0);
    f.on_created(t0, t0, "s1");
    // Every renew fails with a transport error: retried at half the interval.
    auto a = f.on_timer(t0 + 200ms);
    ASSERT_TRUE(a.renew);
    a = f.on_renew_failed(t0 + 250ms, "s1", make_error_code(transport_errc::connect_failed));
    EXPECT_FALSE(a.fenced);
    EXPECT_TRUE(f.trusted(t0 + 250ms));
    EXPECT_EQ(a.wake_at, t0 + 350ms);
    a = f.on_timer(t0 + 350ms);
    ASSERT_TRUE(a.renew);
    // Still in flight when the window ends: the node fences itself at valid_until, never later
    // than last renew + TTL - margin.
    a = f.on_timer(t0 + 800ms);
    EXPECT_TRUE(a.fenced);
    EXPECT_FALSE(f.trusted(t0 + 800ms));
    ASSERT_EQ(a.destroy.size(), 1u);
    EXPECT_EQ(a.destroy[0], "s1");
    // And asks for a new session at once.
    EXPECT_TRUE(a.create);
    EXPECT_EQ(f.fencings(), 1u);
    // The late answer of the old renew changes nothing.
    a = f.on_renewed(t0 + 900ms, t0 + 350ms, "s1");
    EXPECT_FALSE(a.fenced);
    EXPECT_EQ(f.state(), lease_state::creating);
    a = f.on_created(t0 + 950ms, t0 + 900ms, "s2");
    EXPECT_TRUE(f.trusted(t0 + 950ms));
    EXPECT_EQ(f.sessions_created(), 2u);
}

TEST(lease_fsm, a_session_consul_no_longer_knows_fences_at_once) {
    lease_fsm f(fast());
    f.start(t0);
    f.on_created(t0, t0, "s1");
    f.on_timer(t0 + 200ms);
    auto a = f.on_renew_failed(t0 + 210ms, "s1", make_error_code(consul_errc::not_found));
    EXPECT_TRUE(a.fenced);
    EXPECT_TRUE(a.create);
    EXPECT_FALSE(f.trusted(t0 + 210ms));
}

TEST(lease_fsm, invalidation_seen_elsewhere_fences_only_the_current_session) {
    lease_fsm f(fast());
    f.start(t0);
    f.on_created(t0, t0, "s1");
    EXPECT_FALSE(f.on_invalidated(t0 + 10ms, "old").fenced);
    EXPECT_TRUE(f.trusted(t0 + 10ms));
    EXPECT_TRUE(f.on_invalidated(t0 + 20ms, "s1").fenced);
}

TEST(lease_fsm, a_renew_answered_after_the_window_does_not_revive_the_lease) {
    lease_fsm f(fast());
    f.start(t0);
    f.on_created(t0, t0, "s1");
    f.on_timer(t0 + 200ms);
    // The answer arrives after valid_until, before the timer fired.
    auto a = f.on_renewed(t0 + 850ms, t0 + 200ms, "s1");
    EXPECT_TRUE(a.fenced);
    EXPECT_FALSE(f.trusted(t0 + 850ms));
}

TEST(lease_fsm, create_failures_back_off_and_a_stop_destroys_the_session) {
    lease_fsm f(fast());
    f.start(t0);
    auto a = f.on_create_failed(t0, make_error_code(consul_errc::internal_error));
    EXPECT_FALSE(a.create);
    EXPECT_EQ(a.wake_at, t0 + 100ms);
    a = f.on_timer(t0 + 100ms);
    EXPECT_TRUE(a.create);
    a = f.on_create_failed(t0 + 100ms, make_error_code(consul_errc::internal_error));
    EXPECT_EQ(a.wake_at, t0 + 300ms);
    f.on_timer(t0 + 300ms);
    f.on_created(t0 + 310ms, t0 + 300ms, "s1");
    a = f.stop();
    ASSERT_EQ(a.destroy.size(), 1u);
    EXPECT_EQ(a.destroy[0], "s1");
    EXPECT_EQ(f.state(), lease_state::stopped);
    EXPECT_FALSE(f.on_timer(t0 + 10s).create);

    // A create answered after a stop is destroyed at once.
    lease_fsm g(fast());
    g.start(t0);
    g.stop();
    a = g.on_created(t0 + 5ms, t0, "late");
    ASSERT_EQ(a.destroy.size(), 1u);
    EXPECT_EQ(a.destroy[0], "late");
    EXPECT_FALSE(g.trusted(t0 + 5ms));
}

TEST(lease_fsm, retry_now_cuts_a_create_back_off_short_once) {
    lease_fsm f(fast());
    // Before start() (the registry is still ending an earlier process's sessions) it does not
    // create anything.
    EXPECT_FALSE(f.retry_now(t0).create);
    EXPECT_EQ(f.state(), lease_state::none);
    f.start(t0);
    // The member check was not passing yet: the create failed and backs off 100 ms.
    auto a = f.on_create_failed(t0 + 2ms, make_error_code(consul_errc::internal_error));
    EXPECT_EQ(a.wake_at, t0 + 102ms);
    // The member check passes now: the create goes out at once.
    a = f.retry_now(t0 + 10ms);
    EXPECT_TRUE(a.create);
    EXPECT_EQ(f.state(), lease_state::creating);

    // Evidence that came while a create was in flight: that create's failure is retried at
    // once, but only once; the next failure backs off again (400 ms: the third failure in a row).
    EXPECT_FALSE(f.retry_now(t0 + 11ms).create);
    a = f.on_create_failed(t0 + 12ms, make_error_code(consul_errc::internal_error));
    EXPECT_TRUE(a.create);
    a = f.on_create_failed(t0 + 14ms, make_error_code(consul_errc::internal_error));
    EXPECT_FALSE(a.create);
    EXPECT_EQ(a.wake_at, t0 + 14ms + 400ms);

    // A held session is left alone: no create, the renew schedule unchanged.
    f.on_timer(t0 + 414ms);
    f.on_created(t0 + 420ms, t0 + 414ms, "s1");
    a = f.retry_now(t0 + 430ms);
    EXPECT_FALSE(a.create);
    EXPECT_FALSE(a.renew);
    EXPECT_EQ(f.session(), "s1");
    EXPECT_EQ(a.wake_at, t0 + 620ms);  // the next renew, 200 ms after the create's answer
    // And after a stop it does nothing.
    f.stop();
    EXPECT_FALSE(f.retry_now(t0 + 1s).create);
}

TEST(lease_fsm, settings_that_break_consul_limits_or_the_fencing_margin_are_refused) {
    diagnostics d;
    EXPECT_FALSE(validate(fast(), d));
    EXPECT_FALSE(validate(lease_config{}, d));
    auto c = fast();
    c.session_ttl = 9s;
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
    EXPECT_NE(d.client_message().find("session_ttl"), std::string::npos);
    c = fast();
    c.session_ttl = std::chrono::hours(25);
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
    c = fast();
    c.lock_delay = 61s;
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
    c = fast();
    c.lock_delay = 300ms;  // window 100 ms: less than two renew intervals
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
    EXPECT_NE(d.client_message().find("self-fencing window"), std::string::npos);
    c = fast();
    c.lock_delay = 0ms;
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
    c = fast();
    c.margin = 0ms;
    EXPECT_EQ(validate(c, d), validation_errc::invalid_duration);
}

}  // namespace
}  // namespace lakemesh::partition
