// Retry: attempts, exponential backoff with jitter, the retry budget, and the per-call decision
// "retry after d" or "stop with e". All sans-I/O: time comes in as `now`, randomness from a
// caller-owned random_source.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/random.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace lakemesh::resilience {

/// How the backoff delay is randomised.
enum class jitter_kind : std::uint8_t {
    none,          ///< Exactly base * multiplier^(n-1), capped.
    full,          ///< Uniform in [0, capped exponential delay] (AWS "full jitter").
    decorrelated,  ///< Uniform in [base, 3 * previous delay], capped (AWS "decorrelated jitter").
};

/// Retry settings of one policy.
struct retry_config {
    /// Attempts in total, the first one included. 1 means no retry; 0 is treated as 1.
    unsigned max_attempts = 3;
    /// Backoff before the first retry (before jitter). Zero: retry at once.
    duration base_backoff = std::chrono::milliseconds(25);
    /// Upper bound of any backoff. Zero: no cap.
    duration max_backoff = std::chrono::seconds(1);
    /// Growth of the backoff per retry; values below 1 are treated as 1.
    double multiplier = 2.0;
    /// Randomisation of the backoff.
    jitter_kind jitter = jitter_kind::full;
    /// Time limit of each attempt; an attempt that exceeds it is cancelled and counts as a
    /// retryable transport_errc::timeout. Zero: no per-attempt limit (the call deadline still
    /// applies).
    duration per_try_timeout = duration::zero();
    /// Whether the operation may safely run twice. When false, only failures that prove the
    /// request never left (connect/resolve/TLS-handshake failures) or was refused unread (a
    /// partition owner's "not owner", partition_errc::not_owner) are retried.
    bool idempotent = true;
    /// Which errors are worth retrying. Empty: lakemesh::is_retryable.
    std::function<bool(const error_code&)> retry_on{};
};

/// A retry budget caps retries to a fraction of recent first attempts plus a floor per second,
/// so that retries cannot multiply the load on a struggling service (as in Finagle and Envoy).
struct retry_budget_config {
    /// Retries allowed as a fraction of the first attempts seen in the window (0.2 = 20 %).
    /// Zero: only the floor below allows retries.
    double ratio = 0.2;
    /// Retries always allowed per second of window regardless of traffic, so that a quiet
    /// client can still retry. Zero: no floor.
    double min_retries_per_second = 10.0;
    /// Length of the sliding window over which requests and retries are counted.
    /// Zero: no budget at all (retries limited only by max_attempts and the deadline).
    duration window = std::chrono::seconds(10);
};

/// Exponential backoff with cap and jitter for one call. Sans-I/O.
class backoff {
  public:
    explicit backoff(const retry_config& cfg) noexcept;
    /// Delay before retry number `retry` (1 for the first retry). Within [0, max_backoff] for
    /// full jitter, [base, max] for decorrelated, exactly the capped exponential for none.
    duration next(random_source& rng) noexcept;
    /// Exponential delay before jitter for retry number `retry`, capped.
    duration ceiling(unsigned retry) const noexcept;

  private:
    duration base_;
    duration cap_;
    double multiplier_;
    jitter_kind jitter_;
    unsigned retries_ = 0;
    duration previous_{};
};

/// Counts first attempts and retries in a sliding window and decides whether one more retry
/// fits. Shared by all calls of a policy. Sans-I/O; not thread-safe.
class retry_budget {
  public:
    explicit retry_budget(retry_budget_config cfg = {});

    /// A first attempt was made.
    void record_request(time_point now) noexcept;
    /// True and counts the retry when the budget allows one more retry now.
    bool try_withdraw(time_point now) noexcept;
    /// Retries still allowed right now (may be fractional; 0 when exhausted).
    double available(time_point now) noexcept;
    /// Replaces the settings; counts already in the window are kept when the window length is
    /// unchanged, dropped otherwise.
    void reconfigure(retry_budget_config cfg);
    const retry_budget_config& config() const noexcept { return cfg_; }

  private:
    static constexpr std::size_t bucket_count = 10;
    struct bucket {
        std::int64_t epoch = -1;
        std::uint32_t requests = 0;
        std::uint32_t retries = 0;
    };
    void advance(time_point now) noexcept;
    double allowance() const noexcept;

    retry_budget_config cfg_;
    std::int64_t bucket_ticks_ = 1;
    std::int64_t head_epoch_ = -1;
    std::uint64_t requests_ = 0;
    std::uint64_t retries_ = 0;
    bucket buckets_[bucket_count]{};
};

/// What to do after a failed attempt.
struct retry_decision {
    bool retry = false;  ///< True: wait `delay`, then attempt again.
    duration delay{};
    /// When not retrying: the error the call completes with. The attempt's own error when it is
    /// not retryable or when only one attempt was allowed; otherwise a policy_errc
    /// (retries_exhausted, retry_budget_exhausted, deadline_exceeded).
    error_code error{};
};

/// The retry decisions of one call. Sans-I/O.
class retry_state {
  public:
    /// `cfg` must outlive the state. `idempotent` overrides cfg.idempotent for this call.
    retry_state(const retry_config& cfg, deadline call_deadline,
                std::optional<bool> idempotent = std::nullopt) noexcept;

    /// Attempts started so far (1 after the first).
    unsigned attempts() const noexcept { return attempts_; }
    /// Counts a started attempt.
    void on_attempt() noexcept { ++attempts_; }

    /// Decides after attempt `attempts()` failed with `ec` at `now`. When the decision is to retry,
    /// the budget (if any) has been charged. Never schedules an attempt at or past the deadline.
    retry_decision on_failure(const error_code& ec, time_point now, retry_budget* budget,
                              random_source& rng);

    /// True when `ec` is worth retrying: the classifier says so, and the call is idempotent or
    /// the failure proves the request was never sent.
    bool should_retry(const error_code& ec) const;

  private:
    const retry_config* cfg_;
    deadline deadline_;
    backoff backoff_;
    bool idempotent_;
    unsigned attempts_ = 0;
};

/// True for failures that prove the request was never sent (so even a non-idempotent request
/// may be retried): connect, resolve and TLS handshake failures, connection refused.
bool is_unsent_failure(const error_code& ec) noexcept;

}  // namespace lakemesh::resilience
