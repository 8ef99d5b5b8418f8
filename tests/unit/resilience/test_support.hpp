// Shared helpers of the resilience unit tests: a manual clock and an event recorder.
#pragma once

#include <lakemesh/resilience/events.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace lakemesh::resilience::test {

/// Time that moves only when the test says so.
struct manual_clock {
    time_point current{std::chrono::hours(1)};
    time_point now() const { return current; }
    void advance(duration d) { current += d; }
};

/// Remembers every event it receives.
struct event_recorder : event_listener {
    std::vector<attempt_event> attempts;
    std::vector<retry_event> retries;
    std::vector<budget_exhausted_event> budget_exhausted;
    std::vector<breaker_transition_event> transitions;
    std::vector<error_code> rejections;
    std::vector<std::string> ejected;
    std::vector<std::string> returned;
    std::vector<ejection_event> ejections;

    void on_attempt(const attempt_event& e) override { attempts.push_back(e); }
    void on_retry(const retry_event& e) override { retries.push_back(e); }
    void on_budget_exhausted(const budget_exhausted_event& e) override {
        budget_exhausted.push_back(e);
    }
    void on_breaker_transition(const breaker_transition_event& e) override {
        transitions.push_back(e);
    }
    void on_rejection(const rejection_event& e) override { rejections.push_back(e.reason); }
    void on_ejection(const ejection_event& e) override {
        ejections.push_back(e);
        (e.ejected ? ejected : returned).emplace_back(e.endpoint_id);
    }
};

}  // namespace lakemesh::resilience::test
